"""Calibration that holds a target FAR over stranger classes: bounds, leave-class-out, warning."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone

from sktriplet import OpenSetKNeighborsClassifier, calibrate_threshold
from sktriplet.evaluation.neighbors import (
    FewStrangerClassesWarning,
    stranger_classes_needed,
    stranger_far,
)


# ---------------------------------------------------------------- references
def _bound_by_hand(d, groups, t, confidence):
    """Rate, lower and upper bound at one threshold, class by class (no envelope)."""
    classes = sorted(set(groups.tolist()))
    k = np.array([np.sum((d <= t) & (groups == c)) for c in classes], dtype=float)
    n = np.array([np.sum(groups == c) for c in classes], dtype=float)
    K, N, G = k.sum(), n.sum(), len(classes)
    p = K / N
    deff = 1.0
    if G > 1 and 0 < K < N:
        var = G / (G - 1) * sum((kg - p * ng) ** 2 for kg, ng in zip(k, n, strict=True)) / N**2
        scale = (stats.t.ppf(confidence, G - 1) / stats.norm.ppf(confidence)) ** 2
        deff = max(1.0, scale * var / (p * (1 - p) / N))
    n_eff = N / deff
    x = p * n_eff
    upper = 1.0 if K == N else stats.beta.ppf(confidence, x + 1, n_eff - x)
    lower = 0.0 if K == 0 else stats.beta.ppf(1 - confidence, x, n_eff - x + 1)
    return p, lower, upper


def _bounds_by_hand(d, groups, thresholds, confidence=0.95):
    rows = np.array([_bound_by_hand(d, groups, t, confidence) for t in thresholds])
    far, lower, upper = rows.T
    # Monotone in the threshold, as the rate is.
    upper = np.array([upper[: i + 1].max() for i in range(len(upper))])
    lower = np.array([lower[i:].min() for i in range(len(lower))])
    return far, lower, upper


def _data(seed, n_known=60, n_classes=6, per_class=15):
    """Known queries near 0; stranger classes at distances around a level of their own."""
    rng = np.random.default_rng(seed)
    known_d = np.round(rng.gamma(2.0, 0.3, n_known), 2)
    correct = rng.random(n_known) < 0.9
    groups = np.repeat(np.arange(n_classes), per_class)
    level = rng.uniform(0.5, 1.5, n_classes)[groups]
    stranger_d = np.round(level + rng.gamma(2.0, 0.4, len(groups)), 2)
    d = np.r_[known_d, stranger_d]
    known = np.r_[np.ones(n_known, bool), np.zeros(len(groups), bool)]
    correct = np.r_[correct, np.zeros(len(groups), bool)]
    return d, correct, known, np.r_[np.full(n_known, -1), groups]


# ------------------------------------------------------------------ the bound
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_stranger_far_matches_the_bound_computed_by_hand(seed, confidence):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(1, 6))
    groups = rng.integers(0, n_classes, 60)
    d = np.round(rng.normal(size=60) + 0.5 * groups, 1)  # ties, classes apart
    t = np.r_[-np.inf, np.unique(d), 10.0]
    res = stranger_far(d, groups, t, confidence=confidence)
    far, lower, upper = _bounds_by_hand(d, groups, t, confidence)
    np.testing.assert_allclose(res["far"], far)
    np.testing.assert_allclose(res["upper"], upper, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res["lower"], lower, rtol=1e-9, atol=1e-12)
    assert res["n_classes"] == len(np.unique(groups)) and res["n_queries"] == 60


def test_the_bound_counts_classes_not_queries():
    # The same 5 % rate: from one class of two, or one query in each of five.
    t = [1.0]
    clustered = stranger_far(np.r_[np.full(5, 0.5), np.full(95, 2.0)], np.repeat([0, 1], 50), t)
    spread = stranger_far(np.where(np.arange(100) % 20 == 0, 0.5, 2.0), np.arange(100) // 20, t)
    assert clustered["far"][0] == spread["far"][0] == 0.05
    assert clustered["upper"][0] > 0.5 and clustered["design_effect"][0] > 50
    # Classes that agree: the exact binomial bound of all the queries.
    binomial = stats.beta.ppf(0.95, 6, 95)
    assert spread["design_effect"][0] == 1.0
    assert spread["upper"][0] == pytest.approx(binomial)
    # Each query a class of its own: about the same (t with 99 degrees of freedom).
    independent = stranger_far(np.r_[np.full(5, 0.5), np.full(95, 2.0)], np.arange(100), t)
    assert independent["upper"][0] == pytest.approx(binomial, rel=0.02)


def test_stranger_far_refuses_bad_input():
    with pytest.raises(ValueError, match="no stranger queries"):
        stranger_far([], [], [1.0])
    with pytest.raises(ValueError, match="groups has 1"):
        stranger_far([0.1, 0.2], [0], [1.0])
    with pytest.raises(ValueError, match=r"confidence must be a number in \[0.5, 1\)"):
        stranger_far([0.1], [0], [1.0], confidence=1.0)


# ------------------------------------------------------------ the threshold
def _choose_by_hand(d, correct, known, sources, target):
    """Every candidate threshold; the most correct accepts with every bound within target."""
    candidates = np.r_[-np.inf, np.unique(np.concatenate([d, *[s[0] for s in sources]]))]
    upper = np.max([_bounds_by_hand(sd, sg, candidates)[2] for sd, sg in sources], axis=0)
    limit = max(target, upper.min())  # a target no threshold reaches: the bound's floor
    best = (-1, -np.inf)
    for i, t in enumerate(candidates):
        if upper[i] <= limit + 1e-12:
            tp = int(np.sum((d <= t) & correct))
            if tp > best[0]:
                best = (tp, t)
    return best[1]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.05, 0.1, 0.3])
def test_threshold_is_the_brute_force_choice(seed, target):
    d, correct, known, groups = _data(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = calibrate_threshold(d, correct, known, target_far=target, groups=groups)
    expected = _choose_by_hand(d, correct, known, [(d[~known], groups[~known])], target)
    assert res["threshold"] == expected
    assert res["far_rule"] == "bound"
    if res["recall"] > 0:
        assert res["far_interval"][1] <= target + 1e-12
    # With left-out strangers too, both kinds must hold the target.
    rng = np.random.default_rng(100 + seed)
    lo_groups = rng.integers(10, 14, 40)
    lo_d = np.round(rng.uniform(0.3, 2.0, 40), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = calibrate_threshold(
            d, correct, known, target_far=target, groups=groups, left_out=(lo_d, lo_groups)
        )
    expected = _choose_by_hand(
        d, correct, known, [(d[~known], groups[~known]), (lo_d, lo_groups)], target
    )
    assert res["threshold"] == expected
    assert set(res["strangers"]) == {"unknown", "left_out"}
    assert res["strangers"]["left_out"]["n_classes"] == len(np.unique(lo_groups))


def test_bound_rule_is_more_cautious_than_the_measured_rate():
    d, correct, known, groups = _data(0, n_classes=30, per_class=10)
    bound = calibrate_threshold(d, correct, known, target_far=0.1, groups=groups)
    measured = calibrate_threshold(
        d, correct, known, target_far=0.1, groups=groups, far_rule="empirical"
    )
    assert bound["threshold"] <= measured["threshold"]
    assert measured["far"] <= 0.1 and bound["far_interval"][1] <= 0.1
    # The curve has the bound beside the measured rate at every candidate.
    curve = bound["curve"]
    assert np.all(curve["far_upper"] >= curve["far"] - 1e-12)
    assert np.all(np.diff(curve["far_upper"]) >= 0)


def test_few_stranger_classes_warn():
    assert stranger_classes_needed(0.05) == 19 and stranger_classes_needed(0.5) == 1
    assert stranger_classes_needed(0.0) == math.inf
    d, correct, known, groups = _data(1, n_classes=4)
    with pytest.warns(FewStrangerClassesWarning, match=r"4 stranger classes.*at least 19"):
        calibrate_threshold(d, correct, known, target_far=0.05, groups=groups)
    d, correct, known, groups = _data(1, n_classes=20, per_class=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewStrangerClassesWarning)
        calibrate_threshold(d, correct, known, target_far=0.05, groups=groups)
        calibrate_threshold(d, correct, known, groups=groups)  # no target: no promise


def test_too_few_stranger_queries_accept_none_of_them_and_warn():
    # 20 strangers cannot show 5 %: with none accepted the bound is 1 - 0.05 ** (1 / 20).
    d, correct, known, groups = _data(3, n_classes=20, per_class=1)
    with pytest.warns(FewStrangerClassesWarning, match="at least 59 stranger queries"):
        res = calibrate_threshold(d, correct, known, target_far=0.05, groups=groups)
    assert res["threshold"] < d[~known].min()  # accepts no stranger ...
    larger = d[known & correct & (d > res["threshold"])]
    assert larger.size == 0 or larger.min() >= d[~known].min()  # ... and is the largest such
    assert res["far_interval"][1] == pytest.approx(1 - 0.05 ** (1 / 20))
    assert res["recall"] > 0.5


def test_calibrate_threshold_errors():
    d, correct, known, groups = _data(2)
    with pytest.raises(ValueError, match="far_rule must be one of"):
        calibrate_threshold(d, correct, known, target_far=0.1, far_rule="pooled")
    with pytest.raises(ValueError, match="groups has 3"):
        calibrate_threshold(d, correct, known, target_far=0.1, groups=[1, 2, 3])
    with pytest.raises(ValueError, match="left_out holds 2 distances but 1 classes"):
        calibrate_threshold(d, correct, known, target_far=0.1, left_out=([0.1, 0.2], [1]))
    with pytest.raises(ValueError, match="needs unknown queries"):
        calibrate_threshold(
            d[known], correct[known], known[known], target_far=0.1, far_rule="empirical",
            left_out=([0.1, 0.2], [1, 2]),
        )


# -------------------------------------------------------- leave-class-out
def _gallery(seed, n_classes=6, shots=4, dim=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes + 3, dim))

    def sample(classes, per_class):
        y = np.repeat(classes, per_class)
        return 2.0 * centres[y] + 0.5 * rng.normal(size=(len(y), dim)), y

    return sample


def _left_out_by_hand(G, yg, Q, yq, k):
    """Match distance of each query with its own class removed: k-NN vote, exhaustively."""
    out = []
    for q, c in zip(Q, yq, strict=True):
        keep = yg != c
        d = ((G[keep] - q) ** 2).sum(axis=1)
        order = np.argsort(d, kind="stable")[:k]
        labels = yg[keep][order]
        votes = {lab: np.sum(labels == lab) for lab in set(labels.tolist())}
        top = max(votes.values())
        winner = min(lab for lab, v in votes.items() if v == top)  # smallest class on ties
        out.append(d[order][labels == winner][0])
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3])
def test_leave_class_out_matches_brute_force(k):
    sample = _gallery(3)
    Xg, yg = sample(np.arange(6), 4)
    clf = OpenSetKNeighborsClassifier(n_neighbors=k).fit(Xg, yg)
    Xq, yq = sample(np.arange(6), 15)
    Xu, yu = sample(np.array([6, 7]), 20)
    X, y = np.r_[Xq, Xu], np.r_[yq, yu]
    with pytest.warns(FewStrangerClassesWarning):
        clf.calibrate(X, y, target_far=0.1)
    cal = clf.calibration_
    lo_d = _left_out_by_hand(Xg, yg, Xq, yq, k)
    assert cal["strangers"]["left_out"]["n_classes"] == 6
    assert cal["strangers"]["unknown"]["n_classes"] == 2
    match = clf.match(X)[1]
    known = np.isin(y, yg)
    correct = known & (clf.match(X)[0] == y)
    expected = _choose_by_hand(
        match, correct, known, [(match[~known], y[~known]), (lo_d, yq)], 0.1
    )
    assert clf.threshold_ == expected
    lo = cal["strangers"]["left_out"]
    assert lo["far"] == pytest.approx(np.mean(lo_d <= clf.threshold_))
    # Known queries only: the enrolled classes left out are the strangers.
    assert clf.calibration_["recall"] > 0.5
    with pytest.warns(FewStrangerClassesWarning, match="6 enrolled, left out in turn"):
        clf.calibrate(Xq, yq, target_far=0.1)
    assert clf.calibration_["recall"] > 0.5
    assert set(clf.calibration_["strangers"]) == {"left_out"}
    assert clf.threshold_ == _choose_by_hand(
        clf.match(Xq)[1], clf.match(Xq)[0] == yq, np.ones(len(yq), bool), [(lo_d, yq)], 0.1
    )


def test_calibrate_records_the_expected_far_and_keeps_the_options():
    sample = _gallery(4, n_classes=20)
    clf = OpenSetKNeighborsClassifier().fit(*sample(np.arange(20), 3))
    Xq, yq = sample(np.arange(20), 6)
    # 20 never-enrolled identities would need more classes than _gallery has:
    # draw them around fresh centres.
    rng = np.random.default_rng(5)
    Xu = rng.normal(size=(200, 5)) * 1.3
    yu = np.repeat(np.arange(100, 120), 10)
    X, y = np.r_[Xq, Xu], np.r_[yq, yu]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewStrangerClassesWarning)  # 20 classes: enough
        clf.calibrate(X, y, target_far=0.1)
    cal = clf.calibration_
    assert set(cal["strangers"]) == {"unknown"}  # enough unknown classes: no left-out
    assert clf.expected_far_ == cal["expected_far"] == cal["strangers"]["unknown"]["far"]
    assert clf.far_interval_ == cal["far_interval"]
    lo, hi = clf.far_interval_
    assert lo <= clf.expected_far_ <= hi <= 0.1
    assert np.mean(clf.predict(Xu) != clf.unknown_label_) == pytest.approx(cal["far"])
    # Explicit options: the measured rate, and left-out classes on demand.
    clf.calibrate(X, y, target_far=0.1, far_rule="empirical")
    assert clf.calibration_["far_rule"] == "empirical" and clf.calibration_["far"] <= 0.1
    clf.calibrate(X, y, target_far=0.1, leave_class_out=True)
    assert set(clf.calibration_["strangers"]) == {"unknown", "left_out"}
    clf.calibrate(X, y, target_precision=0.9, leave_class_out=False)
    assert clf.calibration_["method"] == "precision" and clf.expected_far_ is not None
    with pytest.raises(ValueError, match="leave_class_out must be True, False or 'auto'"):
        clf.calibrate(X, y, leave_class_out="yes")
    # fit forgets the calibration; clone keeps only parameters.
    assert not hasattr(clone(clf), "expected_far_")
    clf.fit(*sample(np.arange(20), 3))
    assert not hasattr(clf, "expected_far_") and not hasattr(clf, "far_interval_")


def test_the_bound_holds_on_new_kinds_of_stranger_where_the_measured_rate_does_not():
    # Stranger classes differ in how close they come; the threshold is set on
    # 30 of them and checked on 1000 others, in 20 replications.
    def draw(rng, n_classes, per_class=10):
        level = rng.uniform(0.8, 2.0, n_classes)
        return (level[:, None] + rng.gamma(2.0, 0.3, (n_classes, per_class))).ravel()

    over = {"bound": 0, "empirical": 0}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        known_d = rng.gamma(2.0, 0.3, 200)
        cal = draw(rng, 30)
        d = np.r_[known_d, cal]
        known = np.r_[np.ones(200, bool), np.zeros(300, bool)]
        groups = np.r_[np.full(200, -1), np.repeat(np.arange(30), 10)]
        new = draw(rng, 1000)
        for rule in over:
            res = calibrate_threshold(
                d, known, known, target_far=0.05, groups=groups, far_rule=rule
            )
            over[rule] += np.mean(new <= res["threshold"]) > 0.05
    assert over["bound"] <= 2  # about 1 in 20 at 95 % confidence
    assert over["empirical"] >= 6
