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


def test_embedding_on_a_local_cluster(fitted_on_files):
    distributed = pytest.importorskip("dask.distributed")
    est, paths = fitted_on_files
    series = dd.from_pandas(pd.Series(paths), npartitions=4)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = dask_transform(est, series)
        with distributed.get_task_stream(client) as tasks:
            frame = result.compute()
        bag_frame = dask_transform(est, db.from_sequence(paths, npartitions=3)).compute()
        workers = set(client.scheduler_info()["workers"])
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
