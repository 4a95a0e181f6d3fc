"""Tests of sktriplet.evaluation.scoring with stand-in embedders and model selection."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sktriplet.evaluation.scoring import RetrievalScorer, make_retrieval_scorer

from .test_metrics import reference_scores


class FixedEmbedder(TransformerMixin, BaseEstimator):
    """Stand-in for an embedder: ``transform`` keeps the first columns."""

    def __init__(self, n_dims: int = 2, distance: str = "sqeuclidean", tensor=False):
        self.n_dims = n_dims
        self.distance = distance
        self.tensor = tensor

    def fit(self, X, y=None):
        """Remember the number of features, nothing else."""
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        """Return the first ``n_dims`` columns (a tensor if ``tensor``)."""
        z = np.asarray(X, dtype=np.float64)[:, : self.n_dims]
        return torch.as_tensor(z) if self.tensor else z


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Feature 0: loud noise; features 1-2: the classes, direction-coded."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), 15)
    angle = y * np.pi / 2 + rng.normal(scale=0.3, size=len(y))
    radius = rng.uniform(0.2, 3.0, size=len(y))
    x = np.column_stack(
        [
            rng.normal(scale=10.0, size=len(y)),
            radius * np.cos(angle),
            radius * np.sin(angle),
        ]
    )
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


@pytest.mark.parametrize(
    ("metric", "k", "key"),
    [
        ("map_at_r", None, "map_at_r"),
        ("r_precision", None, "r_precision"),
        ("precision_at_k", 3, "precision_at_3"),
        ("recall_at_k", 2, "recall_at_2"),
        ("precision_at_k", None, "precision_at_1"),
    ],
)
def test_scorer_matches_reference(metric: str, k: int | None, key: str) -> None:
    """Leave-one-out metric of the transformed data, by the brute force."""
    x, y = make_data()
    embedder = FixedEmbedder(n_dims=3).fit(x)
    want = reference_scores(x, y, None, None, "sqeuclidean", ks=(k or 1,))[key]
    scorer = make_retrieval_scorer(metric, k=k)
    assert scorer(embedder, x, y) == pytest.approx(want, rel=1e-12)
    assert isinstance(scorer(embedder, x, y), float)


def test_distance_defaults_to_the_estimators() -> None:
    """distance=None reads the estimator's (or last pipeline step's) distance."""
    x, y = make_data()
    z = x[:, 1:]
    cos = reference_scores(z, y, None, None, "cosine")["map_at_r"]
    sq = reference_scores(z, y, None, None, "sqeuclidean")["map_at_r"]
    assert cos > sq + 0.1  # direction carries the classes, radius is noise
    scorer = make_retrieval_scorer()
    cosine_embedder = FixedEmbedder(n_dims=2, distance="cosine")
    assert scorer(cosine_embedder, z, y) == pytest.approx(cos, rel=1e-12)
    assert scorer(FixedEmbedder(n_dims=2), z, y) == pytest.approx(sq, rel=1e-12)
    pipe = make_pipeline(StandardScaler(with_mean=False, with_std=False), cosine_embedder)
    assert scorer(pipe.fit(z), z, y) == pytest.approx(cos, rel=1e-12)
    # An explicit distance wins; an estimator without one means sqeuclidean.
    assert make_retrieval_scorer(distance="sqeuclidean")(cosine_embedder, z, y) == pytest.approx(
        sq, rel=1e-12
    )
    assert scorer(PCA(n_components=2).fit(z), z, y) == pytest.approx(
        reference_scores(PCA(n_components=2).fit_transform(z), y, None, None, "sqeuclidean")[
            "map_at_r"
        ],
        rel=1e-9,
    )


def test_tensor_embeddings_and_block_size() -> None:
    """Accept tensors from transform; pass block_size through."""
    x, y = make_data()
    want = make_retrieval_scorer()(FixedEmbedder(n_dims=3), x, y)
    assert make_retrieval_scorer(block_size=4)(FixedEmbedder(3, tensor=True), x, y) == want


def test_grid_search_picks_informative_components() -> None:
    """In GridSearchCV, the scorer prefers keeping the class-bearing features."""
    x, y = make_data()
    pipe = Pipeline([("pca", PCA()), ("embed", FixedEmbedder(n_dims=3, distance="cosine"))])
    cv = StratifiedKFold(n_splits=3)
    search = GridSearchCV(
        pipe, {"pca__n_components": [1, 3]}, scoring=make_retrieval_scorer(), cv=cv
    )
    search.fit(x, y)
    assert search.best_params_ == {"pca__n_components": 3}
    # The reported score of a split is the metric on that split's test part.
    train, test = next(cv.split(x, y))
    pca = PCA(n_components=3).fit(x[train])
    want = reference_scores(pca.transform(x[test]), y[test], None, None, "cosine")
    assert search.cv_results_["split0_test_score"][1] == pytest.approx(want["map_at_r"], rel=1e-9)
    scores = cross_val_score(pipe, x, y, cv=cv, scoring=make_retrieval_scorer("recall_at_k", k=5))
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()


def test_repr_and_pickle() -> None:
    """Readable repr; survives pickling (needed for n_jobs)."""
    assert repr(make_retrieval_scorer()) == "make_retrieval_scorer('map_at_r')"
    scorer = make_retrieval_scorer("recall_at_k", k=5, distance="cosine", block_size=64)
    text = "make_retrieval_scorer('recall_at_k', k=5, distance='cosine', block_size=64)"
    assert repr(scorer) == text
    assert repr(pickle.loads(pickle.dumps(scorer))) == text
    assert isinstance(scorer, RetrievalScorer)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("accuracy",), {}, "metric='accuracy' is not supported"),
        (("map_at_r",), {"k": 5}, "k is not used"),
        (("precision_at_k",), {"k": 0}, "positive integer"),
        (("precision_at_k",), {"k": 1.5}, "positive integer"),
        ((), {"distance": "manhattan"}, "not supported"),
        ((), {"gallery": np.zeros((2, 2))}, "Unexpected keyword"),
    ],
)
def test_invalid_arguments(args: tuple, kwargs: dict, match: str) -> None:
    """Mistakes are caught when the scorer is made, not when it is used."""
    with pytest.raises(ValueError, match=match):
        make_retrieval_scorer(*args, **kwargs)


def test_labels_are_required() -> None:
    """An unsupervised call has nothing to score against."""
    x, _ = make_data()
    with pytest.raises(ValueError, match="labels"):
        make_retrieval_scorer()(FixedEmbedder(), x, None)
