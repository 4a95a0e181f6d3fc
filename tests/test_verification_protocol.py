"""The k-fold verification accuracy of the face benchmarks, and the pair scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from sktriplet.evaluation.metrics import tar_at_far, verification_accuracy
from sktriplet.evaluation.scoring import make_verification_scorer


def _brute_force(d, same, n_folds):
    """Folds in order; per fold, every candidate threshold of the other folds tried."""
    n = len(d)
    sizes = [n // n_folds + (1 if i < n % n_folds else 0) for i in range(n_folds)]
    bounds = np.cumsum([0, *sizes])
    accuracies = []
    for i in range(n_folds):
        test = np.zeros(n, dtype=bool)
        test[bounds[i] : bounds[i + 1]] = True
        train_d, train_same = d[~test], same[~test]
        best_t, best = None, -1
        for t in [-math.inf, *sorted(set(train_d.tolist()))]:
            right = sum((x <= t) == s for x, s in zip(train_d, train_same, strict=True))
            if right > best:  # strictly better: ties keep the smaller threshold
                best_t, best = t, right
        accuracies.append(np.mean((d[test] <= best_t) == same[test]))
    return float(np.mean(accuracies)), float(np.std(accuracies)), accuracies


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_folds", [2, 3, 10])
def test_k_fold_accuracy_matches_brute_force(seed, n_folds):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(n_folds, 90))
    same = rng.random(n) < rng.uniform(0.2, 0.8)
    # Overlapping classes, rounded so that many distances tie.
    d = np.round(rng.normal(1.0, 0.6, n) + 0.8 * ~same, 1)
    if not same.any() or same.all():
        same[0] = not same[0]
    mean, std, folds = verification_accuracy(d, same, n_folds=n_folds, return_folds=True)
    ref_mean, ref_std, ref_folds = _brute_force(d, same, n_folds)
    assert mean == pytest.approx(ref_mean)
    assert std == pytest.approx(ref_std)
    np.testing.assert_allclose(folds["accuracy"], ref_folds)
    assert verification_accuracy(d, same, n_folds=n_folds) == (mean, std)


def test_degenerate_folds():
    # The first fold holds only "same" pairs, the second only "different"
    # ones: each fold's threshold is chosen on pairs of the other kind alone.
    d = np.array([0.1, 0.5, 0.9, 0.2, 0.6, 1.0])
    same = np.array([True, True, True, False, False, False])
    mean, std, folds = verification_accuracy(d, same, n_folds=2, return_folds=True)
    # Only "different" pairs to learn from: rejecting all is perfect there.
    assert folds["threshold"][0] == -math.inf and folds["accuracy"][0] == 0.0
    # Only "same" pairs: accepting all (the largest distance) is perfect.
    assert folds["threshold"][1] == 0.9 and folds["accuracy"][1] == pytest.approx(1 / 3)
    assert (mean, std) == pytest.approx(_brute_force(d, same, 2)[:2])
    # One pair per fold (leave-one-out) works too.
    assert verification_accuracy(d, same, n_folds=6)[0] == pytest.approx(
        _brute_force(d, same, 6)[0]
    )


@pytest.mark.parametrize("n", [100, 103])
def test_folds_are_kfold_folds(n):
    rng = np.random.default_rng(0)
    d, same = rng.random(n), rng.random(n) < 0.5
    _, _, folds = verification_accuracy(d, same, return_folds=True)
    expected = [test for _, test in KFold(10).split(d)]
    for got, want in zip(folds["indices"], expected, strict=True):
        np.testing.assert_array_equal(got, want)
    _, _, folds = verification_accuracy(d, same, shuffle=True, random_state=3, return_folds=True)
    expected = [test for _, test in KFold(10, shuffle=True, random_state=3).split(d)]
    for got, want in zip(folds["indices"], expected, strict=True):
        np.testing.assert_array_equal(np.sort(got), want)


def test_bad_input():
    d, same = [0.1, 0.2, 0.3], [True, False, True]
    with pytest.raises(ValueError, match="n_folds must be an integer of at least 2"):
        verification_accuracy(d, same, n_folds=1)
    with pytest.raises(ValueError, match="n_folds=4 is more than the 3 pairs"):
        verification_accuracy(d, same, n_folds=4)
    with pytest.raises(ValueError, match="only used with shuffle=True"):
        verification_accuracy(d, same, n_folds=3, random_state=0)
    with pytest.raises(ValueError, match="both same and different"):
        verification_accuracy(d, [True, True, True], n_folds=3)
    with pytest.raises(ValueError, match="NaN"):
        verification_accuracy([0.1, np.nan, 0.3], same, n_folds=3)


# ------------------------------------------------------------------- scorer
@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(150, 6))
    same = rng.random(150) < 0.5
    b = np.where(same[:, None], a + 0.8 * rng.normal(size=a.shape), rng.normal(size=a.shape))
    model = PCA(n_components=3).fit(np.r_[a, b])
    return model, np.stack([a, b], axis=1), same


def test_scorer_metrics_on_pairs(pairs):
    model, X, same = pairs
    # Reference: each side embedded on its own, distances by hand.
    d = ((model.transform(X[:, 0]) - model.transform(X[:, 1])) ** 2).sum(axis=1)
    assert make_verification_scorer()(model, X, same) == pytest.approx(
        _brute_force(d, same, 10)[0]
    )
    assert make_verification_scorer(n_folds=5)(model, X, same) == pytest.approx(
        _brute_force(d, same, 5)[0]
    )
    scorer = make_verification_scorer("tar_at_far", far=0.1)
    assert scorer(model, X, same) == pytest.approx(tar_at_far(d, same, far=0.1))
    auc = make_verification_scorer("roc_auc")(model, X, same)
    assert auc == pytest.approx(roc_auc_score(same, -d))
    cosine = make_verification_scorer("roc_auc", distance="cosine")(model, X, same)
    Za, Zb = model.transform(X[:, 0]), model.transform(X[:, 1])
    cos = (Za * Zb).sum(1) / np.linalg.norm(Za, axis=1) / np.linalg.norm(Zb, axis=1)
    assert cosine == pytest.approx(roc_auc_score(same, cos))
    assert repr(scorer) == "make_verification_scorer('tar_at_far', far=0.1)"


def test_scorer_refuses_bad_input(pairs):
    model, X, same = pairs
    with pytest.raises(ValueError, match="metric='map_at_r' is not supported"):
        make_verification_scorer("map_at_r")
    with pytest.raises(ValueError, match="n_folds must be an integer"):
        make_verification_scorer(n_folds=1)
    with pytest.raises(ValueError, match=r"far must be a number in \[0, 1\]"):
        make_verification_scorer("tar_at_far", far=2)
    with pytest.raises(ValueError, match=r"shape \(n_pairs, 2, \.\.\.\)"):
        make_verification_scorer()(model, X[:, 0], same)
    with pytest.raises(ValueError, match="needs y"):
        make_verification_scorer()(model, X, None)
