"""OpenSetKNeighborsClassifier, threshold calibration and pair verification.

References: scikit-learn's KNeighborsClassifier (closed-set votes), brute-force
distance matrices (match distances, per-class distances) and brute-force
threshold sweeps written as plain loops.
"""

import math
import re

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sktriplet import TripletEmbedder
from sktriplet.evaluation.metrics import tar_at_far
from sktriplet.evaluation.neighbors import (
    OpenSetKNeighborsClassifier,
    calibrate_pair_threshold,
    calibrate_threshold,
    pair_distances,
    verify_pairs,
)

SCIPY_METRIC = {"sqeuclidean": "sqeuclidean", "euclidean": "euclidean", "cosine": "cosine"}


# sklearn's check data (make_blobs) holds two rows of different classes 1e-8
# apart (rows 162 and 194 of the binary problem): their cosine distances to
# either tie at float precision, and predict (sklearn's search) and
# decision_function (torch, float64) break the tie differently.
_COSINE_TIE = "a near-duplicate pair of opposite classes ties at float precision"


@parametrize_with_checks(
    [OpenSetKNeighborsClassifier(), OpenSetKNeighborsClassifier(distance="cosine")],
    expected_failed_checks=lambda est: (
        {"check_classifiers_train": _COSINE_TIE} if est.distance == "cosine" else {}
    ),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _blobs(rng, n_classes, per_class, dim=8, spread=0.35):
    centres = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), per_class)
    X = centres[y] + spread * rng.normal(size=(len(y), dim))
    return X.astype(np.float32), y, centres


# ------------------------------------------------------------ closed-set votes
@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("k", [1, 5])
def test_votes_match_kneighborsclassifier(distance, weights, k):
    rng = np.random.default_rng(1)
    X, y, _ = _blobs(rng, 4, 30, spread=1.0)
    Q = rng.normal(size=(60, 8)).astype(np.float32) * 1.5
    clf = OpenSetKNeighborsClassifier(n_neighbors=k, weights=weights, distance=distance)
    clf.fit(X, y)
    if weights == "distance" and distance == "sqeuclidean":
        ref_weights = lambda d: 1.0 / d**2  # noqa: E731 - sklearn gives euclidean d
    else:
        ref_weights = weights
    ref = KNeighborsClassifier(
        n_neighbors=k,
        weights=ref_weights,
        metric="cosine" if distance == "cosine" else "euclidean",
        algorithm="brute",
    ).fit(X, y)
    np.testing.assert_array_equal(clf.predict(Q), ref.predict(Q))
    np.testing.assert_allclose(clf.predict_proba(Q), ref.predict_proba(Q), atol=1e-6)


@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
def test_rejection_and_match_distance_brute_force(distance):
    rng = np.random.default_rng(2)
    X, y, _ = _blobs(rng, 5, 10)
    Q = rng.normal(size=(200, 8)).astype(np.float32)
    D = cdist(Q.astype(np.float64), X.astype(np.float64), SCIPY_METRIC[distance])
    nearest = D.argmin(axis=1)
    d_min = D.min(axis=1)
    threshold = float(np.median(d_min))
    clf = OpenSetKNeighborsClassifier(threshold=threshold, distance=distance).fit(X, y)
    labels, match = clf.match(Q)
    np.testing.assert_array_equal(labels, y[nearest])
    np.testing.assert_allclose(match, d_min, rtol=1e-4, atol=1e-5)
    expected = np.where(d_min <= threshold, y[nearest], -1)
    away = np.abs(d_min - threshold) > 1e-4  # float32 search vs float64 reference
    assert away.sum() > 150
    np.testing.assert_array_equal(clf.predict(Q)[away], expected[away])
    assert clf.unknown_label_ == -1
    assert set(clf.predict(Q)) == set(expected)


def test_match_distance_is_nearest_of_voted_class():
    rng = np.random.default_rng(3)
    X, y, _ = _blobs(rng, 3, 12, spread=1.2)
    Q = rng.normal(size=(80, 8)).astype(np.float32)
    clf = OpenSetKNeighborsClassifier(n_neighbors=7).fit(X, y)
    labels, match = clf.match(Q)
    D = cdist(Q, X, "sqeuclidean")
    order = np.argsort(D, axis=1)[:, :7]
    for i in range(len(Q)):
        votes = np.bincount(y[order[i]], minlength=3)
        assert labels[i] == np.argmax(votes)
        assert math.isclose(match[i], D[i, y == labels[i]].min(), rel_tol=1e-4, abs_tol=1e-5)


@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_decision_function_brute_force(distance, n_classes):
    rng = np.random.default_rng(4)
    X, y, _ = _blobs(rng, n_classes, 9)
    Q = rng.normal(size=(30, 8)).astype(np.float32)
    clf = OpenSetKNeighborsClassifier(distance=distance).fit(X, y)
    D = cdist(Q.astype(np.float64), X.astype(np.float64), SCIPY_METRIC[distance])
    per_class = np.stack([-D[:, y == c].min(axis=1) for c in range(n_classes)], axis=1)
    dec = clf.decision_function(Q)
    if n_classes == 2:
        np.testing.assert_allclose(dec, per_class[:, 1] - per_class[:, 0], atol=1e-5)
    else:
        np.testing.assert_allclose(dec, per_class, atol=1e-5)
        np.testing.assert_array_equal(clf.classes_[dec.argmax(axis=1)], clf.predict(Q))


def test_threshold_is_inclusive():
    clf = OpenSetKNeighborsClassifier(distance="euclidean", threshold=5.0)
    clf.fit([[0.0, 0.0], [9.0, 9.0]], [1, 2])
    assert clf.predict([[3.0, 4.0]]).tolist() == [1]  # distance exactly 5
    assert clf.set_params(threshold=4.999).fit([[0.0, 0.0]], [1]).predict([[3.0, 4.0]]) == -1


# ------------------------------------------------------------------ labels
def test_unknown_label_defaults_and_conflicts():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    far = [[100.0, 100.0]]
    clf = OpenSetKNeighborsClassifier(threshold=1.0)
    assert clf.fit(X, [3, 3, 7]).predict(far)[0] == -1
    assert clf.fit(X, ["a", "a", "b"]).predict(far)[0] == "unknown"
    assert clf.fit(X, [-1, -1, 1]).predict(far)[0] == -2
    pred = clf.fit(X, np.array([1.0, 1.0, 2.0])).predict(far + [[0.0, 0.1]])
    assert pred.tolist() == [-1.0, 1.0]
    assert clf.set_params(unknown_label="nobody").fit(X, [1, 1, 2]).predict(far).tolist() == [
        "nobody"
    ]
    msg = "unknown_label='b' is also an enrolled class"
    with pytest.raises(ValueError, match=re.escape(msg)):
        clf.set_params(unknown_label="b").fit(X, ["a", "a", "b"])


# ---------------------------------------------------------------- enrolment
@pytest.mark.parametrize("method", ["enroll", "partial_fit"])
def test_enroll_equals_fitting_everything(method):
    rng = np.random.default_rng(5)
    X, y, centres = _blobs(rng, 6, 8)
    Q = (centres[rng.integers(0, 6, 100)] + 0.6 * rng.normal(size=(100, 8))).astype(np.float32)
    first = y < 4
    clf = OpenSetKNeighborsClassifier(threshold=2.0, n_neighbors=3).fit(X[first], y[first])
    assert clf.classes_.tolist() == [0, 1, 2, 3]
    before = clf.predict(Q)
    getattr(clf, method)(X[~first], y[~first])
    getattr(clf, method)(X[:2], y[:2])  # more samples of an enrolled class
    assert clf.classes_.tolist() == [0, 1, 2, 3, 4, 5]
    assert len(clf.index_) == len(X) + 2
    full = OpenSetKNeighborsClassifier(threshold=2.0, n_neighbors=3).fit(
        np.concatenate([X[first], X[~first], X[:2]]),
        np.concatenate([y[first], y[~first], y[:2]]),
    )
    np.testing.assert_array_equal(clf.predict(Q), full.predict(Q))
    np.testing.assert_allclose(clf.decision_function(Q), full.decision_function(Q), atol=1e-6)
    assert not np.array_equal(before, clf.predict(Q))  # the new classes are found


def test_enroll_before_fit_fits_and_checks_features():
    X = np.eye(3)
    clf = OpenSetKNeighborsClassifier().enroll(X, [0, 1, 2])
    assert clf.predict(X).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="features"):
        clf.enroll(np.ones((1, 4)), [3])


# --------------------------------------------------------------- calibration
def _brute_force_choice(d, correct, known, rule):
    """Loop over every candidate threshold; the best by ``rule``, smallest on ties."""
    candidates = [-math.inf] + sorted(set(d.tolist()))
    n_known, n_unknown = known.sum(), (~known).sum()
    best = None
    for t in candidates:
        acc = d <= t
        tp = int((acc & correct).sum())
        fa = int((acc & ~known).sum())
        n_acc = int(acc.sum())
        rates = {
            "far": fa / n_unknown if n_unknown else 0.0,
            "precision": tp / n_acc if n_acc else 1.0,
            "recall": tp / n_known,
            "f1": 2 * tp / (n_acc + n_known),
        }
        score = rule(rates, tp)
        if score is not None and (best is None or score > best[0]):
            best = (score, t, rates)
    return best[1], best[2]


@pytest.mark.parametrize("seed", range(5))
def test_calibrate_threshold_matches_brute_force_sweep(seed):
    rng = np.random.default_rng(seed)
    n = 120
    known = rng.random(n) < 0.6
    correct = known & (rng.random(n) < 0.8)
    # Unknown and wrong queries lie farther on average; rounding makes ties.
    d = np.round(rng.gamma(2.0, 1.0, n) + 1.5 * ~correct, 1)
    for far in [0.0, 0.05, 0.1, 0.3, 1.0]:
        # The measured rate (the bound over classes: tests/test_calibration_bound.py).
        res = calibrate_threshold(d, correct, known, target_far=far, far_rule="empirical")
        t, rates = _brute_force_choice(
            d, correct, known, lambda r, tp, far=far: tp if r["far"] <= far else None
        )
        assert res["threshold"] == t
        for name in rates:
            assert res[name] == pytest.approx(rates[name])
        assert res["far"] <= far
    for precision in [0.5, 0.8, 0.95]:
        res = calibrate_threshold(d, correct, known, target_precision=precision)
        t, rates = _brute_force_choice(
            d,
            correct,
            known,
            lambda r, tp, p=precision: tp if r["precision"] >= p else None,
        )
        assert res["threshold"] == t
        assert res["precision"] == pytest.approx(rates["precision"])
        assert res["precision"] >= precision
    res = calibrate_threshold(d, correct, known)
    t, rates = _brute_force_choice(d, correct, known, lambda r, tp: r["f1"])
    assert res["threshold"] == t and res["method"] == "f1"
    assert res["f1"] == pytest.approx(rates["f1"])
    # The reported accuracy and misidentification rate, recomputed directly.
    acc = d <= res["threshold"]
    assert res["accuracy"] == pytest.approx(((acc & correct) | (~acc & ~known)).mean())
    wrong = (acc & known & ~correct).sum() / known.sum()
    assert res["misidentification_rate"] == pytest.approx(wrong)


def test_calibrate_threshold_errors_and_warnings():
    d, c, k = [0.1, 0.2], [True, False], [True, True]
    with pytest.raises(ValueError, match="needs validation queries of classes"):
        calibrate_threshold(d, c, k, target_far=0.1)
    with pytest.raises(ValueError, match="at most one of"):
        calibrate_threshold(d, c, [True, False], target_far=0.1, target_precision=0.9)
    with pytest.raises(ValueError, match=re.escape("target_far must be a number in [0, 1]")):
        calibrate_threshold(d, c, [True, False], target_far=1.5)
    with pytest.raises(ValueError, match="marked correct must also be marked known"):
        calibrate_threshold(d, [True, False], [False, True])
    with pytest.raises(ValueError, match="same length"):
        calibrate_threshold([0.1], c, k)
    with pytest.warns(RuntimeWarning, match="accepts no known query"):
        res = calibrate_threshold(
            [0.5, 0.1], [True, False], [True, False], target_far=0.0, far_rule="empirical"
        )
    assert res["threshold"] == -math.inf


def test_classifier_calibrate_reaches_measured_far_on_held_out_data():
    rng = np.random.default_rng(6)
    n_classes, dim = 40, 16
    centres = rng.normal(size=(n_classes, dim))

    def sample(classes, per_class):
        y = np.repeat(classes, per_class)
        return (centres[y] + 0.45 * rng.normal(size=(len(y), dim))).astype(np.float32), y

    enrolled, unknown_val, unknown_test = np.arange(20), np.arange(20, 30), np.arange(30, 40)
    clf = OpenSetKNeighborsClassifier().fit(*sample(enrolled, 3))
    Xk, yk = sample(enrolled, 20)
    Xu, yu = sample(unknown_val, 40)
    clf.calibrate(
        np.concatenate([Xk, Xu]), np.concatenate([yk, yu]), target_far=0.1, far_rule="empirical"
    )
    cal = clf.calibration_
    assert cal["method"] == "far" and cal["n_unknown"] == 400 and cal["n_known"] == 400
    assert cal["far"] <= 0.1
    assert np.mean(clf.predict(Xu) != -1) == pytest.approx(cal["far"])
    # The threshold is a known query's match distance: "accept if <=" keeps it.
    assert np.mean(clf.predict(Xk) == yk) == pytest.approx(cal["recall"])
    assert clf.threshold_ == cal["threshold"]
    # Held-out queries of other never-enrolled classes: FAR within sampling error.
    Xt, _ = sample(unknown_test, 200)
    far = np.mean(clf.predict(Xt) != -1)
    assert abs(far - 0.1) < 3 * math.sqrt(0.1 * 0.9 / len(Xt)) + 3 * math.sqrt(0.09 / 400)
    Xk2, yk2 = sample(enrolled, 20)
    pred = clf.predict(Xk2)
    assert np.mean(pred == yk2) > 0.8
    # clone forgets the calibration (threshold is a parameter, threshold_ learnt).
    assert clone(clf).threshold is None


# ----------------------------------------------------------------- embedders
def test_embedder_is_trained_or_frozen(digits):
    X, y = digits
    seen, unseen = y < 6, y >= 6
    emb = TripletEmbedder(
        n_components=16, max_epochs=2, device="cpu", random_state=0, module__hidden_units=(64,)
    )
    clf = OpenSetKNeighborsClassifier(embedder=emb).fit(X[seen][:600], y[seen][:600])
    assert hasattr(clf.embedder_, "net_") and not hasattr(emb, "net_")  # a clone was fitted
    assert clf.n_features_in_ == 64
    frozen = OpenSetKNeighborsClassifier(embedder=FrozenEstimator(clf.embedder_))
    idx = np.flatnonzero(unseen)
    gallery, queries = idx[::10], np.setdiff1d(idx, idx[::10])
    before = clf.embedder_.transform(X[:20])
    frozen.fit(X[gallery], y[gallery])
    frozen.enroll(X[seen][600:650], y[seen][600:650])
    np.testing.assert_array_equal(clf.embedder_.transform(X[:20]), before)  # not retrained
    # The same as a pipeline on the embeddings.
    pipe = make_pipeline(FrozenEstimator(clf.embedder_), OpenSetKNeighborsClassifier())
    pipe.fit(
        np.concatenate([X[gallery], X[seen][600:650]]),
        np.concatenate([y[gallery], y[seen][600:650]]),
    )
    np.testing.assert_array_equal(frozen.predict(X[queries]), pipe.predict(X[queries]))
    # Unseen digits, enrolled with ~18 shots each, are recognised.
    assert np.mean(frozen.predict(X[queries]) == y[queries]) > 0.7


# -------------------------------------------------------------- verification
@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
def test_pair_distances_and_verify(distance):
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    ref = np.array(
        [cdist(a[None], b[None], SCIPY_METRIC[distance])[0, 0] for a, b in zip(A, B, strict=True)]
    )
    d = pair_distances(A, B, distance)
    np.testing.assert_allclose(d, ref, rtol=1e-10, atol=1e-12)
    t = float(np.median(ref))
    np.testing.assert_array_equal(verify_pairs(A, B, t, distance), ref <= t)
    with pytest.raises(ValueError, match="same shape"):
        pair_distances(A, B[:3])


@pytest.mark.parametrize("seed", range(4))
def test_calibrate_pair_threshold_brute_force(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(200) < 0.4
    d = np.round(rng.normal(size=200) + 1.5 * ~same, 1)
    for far in [0.0, 0.01, 0.1, 0.5]:
        res = calibrate_pair_threshold(d, same, target_far=far)
        assert res["tar"] == pytest.approx(tar_at_far(d, same, far))
        best = None
        for t in [-math.inf] + sorted(set(d.tolist())):
            fa = np.mean(d[~same] <= t)
            ta = np.mean(d[same] <= t)
            if fa <= far and (best is None or ta > best[0]):
                best = (ta, t, fa)
        assert res["threshold"] == best[1] and res["far"] == pytest.approx(best[2])
    res = calibrate_pair_threshold(d, same)
    accs = [np.mean((d <= t) == same) for t in [-math.inf] + sorted(set(d.tolist()))]
    assert res["accuracy"] == pytest.approx(max(accs))
    with pytest.raises(ValueError, match="both same and different"):
        calibrate_pair_threshold(d, np.ones(200, bool))
