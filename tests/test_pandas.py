"""pandas and scikit-learn conventions: DataFrames, set_output, HTML repr."""

import numpy as np
import pandas as pd
import pytest
from sklearn import set_config
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sktriplet import TripletEmbedder

FAST = {"max_epochs": 1, "n_components": 4, "batch_size": 32, "random_state": 0}


@pytest.fixture(scope="module")
def frame(digits):
    X, y = digits
    df = pd.DataFrame(X[:200, :16], columns=[f"pixel_{i}" for i in range(16)])
    df.index = pd.RangeIndex(1000, 1200)
    return df, y[:200]


def test_dataframe_input_sets_feature_names_and_matches_numpy(frame):
    df, y = frame
    est = TripletEmbedder(**FAST).fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, df.columns)
    assert est.n_features_in_ == 16
    Z_frame = est.transform(df)
    Z_array = TripletEmbedder(**FAST).fit(df.to_numpy(), y).transform(df.to_numpy())
    assert isinstance(Z_frame, np.ndarray)
    np.testing.assert_array_equal(Z_frame, Z_array)
    with pytest.raises(ValueError, match="feature names"):
        est.transform(df.rename(columns={"pixel_0": "other"}))


def test_get_feature_names_out():
    X = np.random.default_rng(0).normal(size=(40, 5))
    y = np.repeat(np.arange(4), 10)
    est = TripletEmbedder(**FAST).fit(X, y)
    np.testing.assert_array_equal(
        est.get_feature_names_out(), [f"tripletembedder{i}" for i in range(4)]
    )


def test_set_output_pandas_in_pipeline(frame):
    df, y = frame
    pipe = make_pipeline(StandardScaler(), TripletEmbedder(**FAST)).set_output(transform="pandas")
    Z = pipe.fit(df, y).transform(df)
    assert isinstance(Z, pd.DataFrame)
    assert list(Z.columns) == [f"tripletembedder{i}" for i in range(4)]
    assert Z.index.equals(df.index)
    assert Z.dtypes.eq(np.float32).all()
    np.testing.assert_array_equal(Z.to_numpy(), pipe[-1].transform(pipe[0].transform(df)))
    np.testing.assert_array_equal(pipe.get_feature_names_out(), Z.columns)


def test_global_transform_output_config(frame):
    df, y = frame
    set_config(transform_output="pandas")
    try:
        Z = TripletEmbedder(**FAST).fit_transform(df, y)
    finally:
        set_config(transform_output="default")
    assert isinstance(Z, pd.DataFrame)
    assert Z.columns[0] == "tripletembedder0"


def test_column_transformer_upstream_for_mixed_data():
    rng = np.random.default_rng(0)
    n = 120
    y = np.repeat(np.array(["a", "b", "c", "d"]), n // 4)
    df = pd.DataFrame(
        {
            "size": rng.normal(size=n) + (y == "a") * 3,
            "weight": rng.normal(size=n),
            "colour": np.where(y == "b", "red", rng.choice(["green", "blue"], size=n)),
            "shape": np.where(y == "c", "round", "square"),
        }
    )
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), make_column_selector(dtype_include="number")),
            (
                "cat",
                OneHotEncoder(sparse_output=False),
                make_column_selector(dtype_exclude="number"),
            ),
        ]
    )
    pipe = make_pipeline(pre, TripletEmbedder(**FAST)).set_output(transform="pandas")
    Z = pipe.fit(df, y).transform(df)
    assert list(Z.columns) == [f"tripletembedder{i}" for i in range(4)]
    # 2 numeric + 3 colours + 2 shapes after one-hot encoding
    assert pipe[-1].n_features_in_ == 7
    assert list(pipe[-1].feature_names_in_[:2]) == ["num__size", "num__weight"]
    clf = make_pipeline(pre, TripletEmbedder(**FAST), KNeighborsClassifier(3)).fit(df, y)
    # classes b and c differ only in the categorical columns
    assert clf.score(df, y) > 0.9


def test_html_repr_shows_changed_parameters():
    est = TripletEmbedder(margin=0.5, n_components=16)
    html = est._repr_html_()
    assert "TripletEmbedder" in html
    assert "margin" in html and "0.5" in html
    pipe = make_pipeline(StandardScaler(), est, KNeighborsClassifier())
    html = pipe._repr_html_()
    for name in ("StandardScaler", "TripletEmbedder", "KNeighborsClassifier"):
        assert name in html
    assert "TripletEmbedder(margin=0.5, n_components=16)" in repr(est)
