"""Vote weights in triplet mode: ``fit(I, sample_weight=w)``.

The weighted loss is checked against a hand-computed weighted mean and
against repeating each triplet ``w`` times; the estimator against training on
repeated triplets, and its errors and cross-validation against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from sktriplet import TripletEmbedder
from sktriplet.triplets.losses import TripletLoss, triplet_loss

FAST = {"max_epochs": 3, "n_components": 4, "random_state": 0, "device": "cpu"}


def _data(seed=0, n=30, d=5, n_triplets=24):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = (rng.normal(size=(n, d)) + 3 * np.eye(3, d)[y]).astype(np.float32)
    rows = []
    while len(rows) < n_triplets:
        a, p, q = rng.integers(n, size=3)
        if a != p and y[a] == y[p] and y[q] != y[a]:
            rows.append((a, p, q))
    return X, np.array(rows, dtype=np.int64)


def test_weighted_loss_is_the_weighted_mean_of_the_hinge_terms():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(7, 3))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    t = np.array([[0, 1, 2], [3, 4, 5], [6, 0, 1], [2, 3, 4]])
    w = np.array([3.0, 1.0, 0.0, 2.0])
    d_ap = ((emb[t[:, 0]] - emb[t[:, 1]]) ** 2).sum(axis=1)
    d_an = ((emb[t[:, 0]] - emb[t[:, 2]]) ** 2).sum(axis=1)
    hinge = np.maximum(d_ap - d_an + 1.0, 0.0)
    expected = (w * hinge).sum() / w.sum()
    got = triplet_loss(
        torch.tensor(emb), triplets=torch.tensor(t), margin=1.0, weights=torch.tensor(w)
    )
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mining", ["none", "hard", "semihard"])
def test_integer_weights_equal_repeated_triplets(mining):
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(8, 3), dim=1).requires_grad_()
    t = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 0], [1, 0, 5]])
    w = torch.tensor([2, 1, 3, 1])
    criterion = TripletLoss(margin=0.5, mining=mining)
    weighted = criterion(emb, indices_tuple=tuple(t.T), weights=w.float())
    repeated = criterion(emb, indices_tuple=tuple(t.repeat_interleave(w, dim=0).T))
    torch.testing.assert_close(weighted, repeated)
    (g1,) = torch.autograd.grad(weighted, emb)
    (g2,) = torch.autograd.grad(repeated, emb)
    torch.testing.assert_close(g1, g2)


def test_unit_weights_train_exactly_as_no_weights():
    X, idx = _data()
    plain = TripletEmbedder(triplets=True, samples=X, batch_size=8, **FAST).fit(idx)
    ones = TripletEmbedder(triplets=True, samples=X, batch_size=8, **FAST)
    ones.fit(idx, sample_weight=np.ones(len(idx)))
    np.testing.assert_array_equal(ones.transform(X), plain.transform(X))


def test_integer_weights_train_as_repeated_triplets_in_one_batch():
    """One batch per epoch: the weighted fit is the fit on the repeated triplets."""
    X, idx = _data()
    w = np.random.default_rng(1).integers(1, 4, size=len(idx))
    # float32 embeddings: under precision="auto" a CPU with native bfloat16
    # embeds in bfloat16, whose rounding turns float32-level differences in
    # the weights (summation order) into ~1e-3 differences.
    big = {"batch_size": 256, "precision": "32", **FAST}
    weighted = TripletEmbedder(triplets=True, samples=X, **big).fit(idx, sample_weight=w)
    repeated = TripletEmbedder(triplets=True, samples=X, **big).fit(np.repeat(idx, w, axis=0))
    np.testing.assert_allclose(weighted.transform(X), repeated.transform(X), atol=1e-5)
    unweighted = TripletEmbedder(triplets=True, samples=X, **big).fit(idx)
    assert np.abs(unweighted.transform(X) - weighted.transform(X)).max() > 1e-3


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.ones(5), "one weight per triplet"),
        (-np.ones(24), "non-negative"),
        (np.full(24, np.nan), "non-negative"),
        (np.zeros(24), "all zero"),
    ],
)
def test_bad_weights_get_a_clear_error_and_fit_nothing(weights, match):
    X, idx = _data()
    est = TripletEmbedder(triplets=True, samples=X, **FAST)
    with pytest.raises(ValueError, match=match):
        est.fit(idx, sample_weight=weights)
    assert not hasattr(est, "net_")


def test_labelled_weights_are_one_per_sample_not_per_triplet():
    """With labels sample_weight is a weight per sample (tests/test_sample_weights.py)."""
    X, idx = _data()
    est = TripletEmbedder(**FAST)
    with pytest.raises(ValueError, match=f"one weight per sample, shape \\({len(X)},\\)"):
        est.fit(X, np.arange(len(X)) % 3, sample_weight=np.ones(len(idx)))
    assert not hasattr(est, "net_")


@pytest.mark.filterwarnings("ignore:The scoring TripletEmbedder.score does not support")
def test_grid_search_and_cross_val_split_the_weights_with_the_triplets():
    X, idx = _data(n_triplets=30)
    w = np.random.default_rng(0).integers(1, 4, size=len(idx)).astype(float)
    est = TripletEmbedder(triplets=True, samples=X, batch_size=8, **FAST)
    grid = GridSearchCV(est, {"margin": [0.5, 1.0]}, cv=KFold(3)).fit(idx, sample_weight=w)
    assert grid.best_params_["margin"] in (0.5, 1.0)
    # A whole-length weight vector reaching a fold's fit would fail its length check.
    scores = cross_val_score(est, idx, cv=KFold(3), params={"sample_weight": w})
    assert scores.shape == (3,) and np.isfinite(scores).all()
