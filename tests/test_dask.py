"""Embedding Dask collections of image paths: partitions embedded where they live."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
db = pytest.importorskip("dask.bag")

from sktriplet.dask import dask_transform  # noqa: E402


class NameModel:
    """A fitted-model stand-in: embeds a path by the characters of its name."""

    def __init__(self):
        self.params = {}
        self.calls = []

    def transform(self, X):
        assert isinstance(X, np.ndarray) and X.dtype == object
        self.calls.append(len(X))
        return np.array([[len(p), p.count("1")] for p in X], dtype=np.float32)

    def get_feature_names_out(self):
        return np.array(["e0", "e1"], dtype=object)

    def set_params(self, **params):
        self.params = {**self.params, **params}
        return self


PATHS = [f"/data/class{i % 3}/img{i:03d}.jpg" for i in range(23)]
REFERENCE = np.array([[len(p), p.count("1")] for p in PATHS], dtype=np.float32)


def test_series_partitions_keep_their_index():
    series = pd.Series(PATHS, index=np.arange(100, 123))
    paths = dd.from_pandas(series, npartitions=4)
    model = NameModel()
    result = dask_transform(model, paths, num_workers=1)
    assert list(result.columns) == ["e0", "e1"]
    frame = result.compute(scheduler="sync")
    np.testing.assert_array_equal(frame.to_numpy(), REFERENCE)
    assert frame.index.tolist() == list(range(100, 123))
    assert (frame.dtypes == np.float32).all()
    # the caller's estimator is not changed; the shipped copy has the workers set
    assert model.params == {}


def test_bag_gives_a_path_column_and_empty_partitions_work():
    bag = db.from_sequence(PATHS, npartitions=5)
    bag = bag.filter(lambda p: not p.endswith(("000.jpg", "001.jpg", "002.jpg", "003.jpg")))
    frame = dask_transform(NameModel(), bag).compute(scheduler="sync")
    assert list(frame.columns) == ["path", "e0", "e1"]
    assert frame["path"].tolist() == PATHS[4:]
    np.testing.assert_array_equal(frame[["e0", "e1"]].to_numpy(), REFERENCE[4:])


def test_the_model_is_one_key_of_the_graph():
    paths = dd.from_pandas(pd.Series(PATHS), npartitions=4)
    graph = dict(dask_transform(NameModel(), paths).__dask_graph__())
    names = [k[0] if isinstance(k, tuple) else k for k in graph]
    model_keys = [n for n in names if str(n).startswith("sktriplet-model-")]
    assert len(model_keys) == 1


def test_other_inputs_are_refused():
    with pytest.raises(TypeError, match=r"dask.dataframe.Series or dask.bag.Bag.*ddf\['path'\]"):
        dask_transform(NameModel(), PATHS)


@pytest.fixture(scope="module")
def fitted_on_files(tmp_path_factory):
    """A TripletEmbedder fitted (1 epoch, 12 px) on 24 small PNG files of 3 classes."""
    from PIL import Image

    from sktriplet import TripletEmbedder

    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(24):
        h, w = (int(v) for v in rng.integers(12, 30, size=2))
        pixels = np.clip(rng.normal(90 * (i % 3), 25, (h, w, 3)), 0, 255).astype(np.uint8)
        path = root / f"{i:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
        labels.append(i % 3)
    est = TripletEmbedder(
        image_size=12,
        max_epochs=1,
        batch_size=12,
        samples_per_class=4,
        n_components=4,
        device="cpu",
        random_state=0,
        iterator_train__num_workers=0,
        iterator_valid__num_workers=0,
    ).fit(paths, labels)
    return est, paths


@pytest.fixture(scope="module")
def local_client():
    """A client of a LocalCluster: 2 worker processes of 1 thread each."""
    import dask

    distributed = pytest.importorskip("dask.distributed")
    # A worker process restarted after a death can take longer than the
    # default 15 s to come back on a busy machine; the cluster would then
    # drop it for good.
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "120s"}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_embedding_on_a_local_cluster(fitted_on_files, local_client):
    from dask.distributed import get_task_stream

    est, paths = fitted_on_files
    series = dd.from_pandas(pd.Series(paths), npartitions=4)
    result = dask_transform(est, series)
    with get_task_stream(local_client) as tasks:
        frame = result.compute()
    bag_frame = dask_transform(est, db.from_sequence(paths, npartitions=3)).compute()
    workers = set(local_client.scheduler_info()["workers"])
    # the four partitions were embedded on the cluster's workers
    ran = [t for t in tasks.data if "_embed_partition" in str(t["key"])]
    assert len(ran) == 4 and {t["worker"] for t in ran} <= workers
    # the workers' embeddings are the fitted model's, row for row
    expected = est.transform(paths)
    np.testing.assert_allclose(frame.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert frame.index.tolist() == list(range(len(paths)))
    assert bag_frame["path"].tolist() == paths
    np.testing.assert_allclose(bag_frame.iloc[:, 1:].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    # the model shipped to the workers is a copy: the caller's keeps its settings
    dask_transform(est, series, num_workers=3)
    assert est.net_.iterator_valid__num_workers == 0
    assert est.iterator_valid__num_workers == 0


class _DiesOnce:
    """A fitted model whose worker process dies (SIGKILL) the first time it sees ``victim``.

    A file marks that the death happened, so the recomputed partition goes through.
    """

    def __init__(self, model, victim, marker):
        self.model, self.victim, self.marker = model, victim, marker

    def transform(self, X):
        import os
        import signal

        if self.victim in list(X) and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.model.transform(X)

    def get_feature_names_out(self):
        return self.model.get_feature_names_out()

    def set_params(self, **params):
        self.model = self.model.set_params(**params)
        return self


def test_a_worker_killed_mid_run_loses_no_row(fitted_on_files, local_client, tmp_path):
    # One worker process dies in the middle of the run (the first partition
    # holding the victim kills it): its partitions, and the model it held, are
    # computed again elsewhere, and every row comes back in order.
    from dask.distributed import wait

    est, paths = fitted_on_files
    marker = tmp_path / "killed"
    model = _DiesOnce(est, paths[len(paths) // 2], str(marker))
    before = set(local_client.scheduler_info()["workers"])
    series = dask_transform(model, dd.from_pandas(pd.Series(paths), npartitions=4))
    bag = dask_transform(model, db.from_sequence(paths, npartitions=4))
    futures = local_client.compute([series, bag])
    wait(futures, timeout=120)  # a lost partition would hang the run: fail instead
    frame, bag_frame = local_client.gather(futures)
    assert marker.exists()  # a worker did die ...
    assert set(local_client.scheduler_info()["workers"]) != before  # ... and was replaced
    expected = est.transform(paths)
    assert frame.index.tolist() == list(range(len(paths)))
    np.testing.assert_allclose(frame.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert bag_frame.pop("path").tolist() == paths
    np.testing.assert_allclose(bag_frame.to_numpy(), expected, rtol=1e-5, atol=1e-6)
