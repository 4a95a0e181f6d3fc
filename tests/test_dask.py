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
