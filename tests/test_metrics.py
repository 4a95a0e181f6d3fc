"""Tests of sktriplet.evaluation.metrics against independent brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sktriplet.evaluation.metrics import (
    _ranking,
    equal_error_rate,
    map_at_r,
    precision_at_k,
    r_precision,
    recall_at_k,
    retrieval_scores,
    tar_at_far,
    verification_scores,
)

DISTANCES = ["sqeuclidean", "euclidean", "cosine"]
KS = (1, 3, 7)


# --------------------------------------------------------------------------
# Brute-force reference: Python loops, float64, full stable argsort.
# --------------------------------------------------------------------------


def reference_distances(q: np.ndarray, g: np.ndarray, distance: str) -> np.ndarray:
    """Distance matrix by explicit differences (no matrix-product tricks)."""
    q, g = np.asarray(q, np.float64), np.asarray(g, np.float64)
    if distance == "cosine":
        nq = np.sqrt((q**2).sum(1))[:, None]
        ng = np.sqrt((g**2).sum(1))[None, :]
        return 1.0 - (q[:, None, :] * g[None, :, :]).sum(-1) / (nq * ng)
    sq = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    return sq if distance == "sqeuclidean" else np.sqrt(sq)


def reference_scores(q, q_labels, g, g_labels, distance, ks=KS) -> dict:
    """Every metric, one query at a time; ``g is None`` means leave-one-out."""
    loo = g is None
    g, g_labels = (q, q_labels) if loo else (g, g_labels)
    q_labels, g_labels = np.asarray(q_labels), np.asarray(g_labels)
    per_query: dict[str, list[float]] = {}
    for i in range(len(q)):
        d = reference_distances(q[i : i + 1], g, distance)[0]
        others = np.delete(np.arange(len(g)), i) if loo else np.arange(len(g))
        order = others[np.argsort(d[others], kind="stable")]
        is_relevant = g_labels[order] == q_labels[i]
        r = int(is_relevant.sum())
        if r == 0:
            continue
        rel = [bool(v) for v in is_relevant[: max(r, *ks)]]  # ranks 1, 2, ...
        row = {}
        for k in ks:
            row[f"precision_at_{k}"] = sum(rel[:k]) / k
            row[f"recall_at_{k}"] = float(any(rel[:k]))
        row["r_precision"] = sum(rel[:r]) / r
        row["map_at_r"] = sum(sum(rel[: j + 1]) / (j + 1) for j in range(r) if rel[j]) / r
        for name, value in row.items():
            per_query.setdefault(name, []).append(value)
    out = {name: float(np.mean(v)) for name, v in per_query.items()}
    out["n_queries"] = len(q)
    out["n_evaluated"] = len(per_query.get("map_at_r", []))
    out["n_skipped"] = len(q) - out["n_evaluated"]
    return out


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def make_data(kind: str, distance: str, n: int, seed: int, n_classes: int = 4):
    """Embeddings and labels; ``kind="ties"`` makes many exactly equal distances.

    Tied data is exact in float32 and float64 alike: small integers for the
    Euclidean distances; for cosine, sign vectors times a positive integer, so
    that every normalised coordinate is +-0.5 and every cosine is a multiple
    of 1/4. Some points are duplicated.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    if kind == "continuous":
        x = rng.normal(size=(n, 5)) + labels[:, None] * 0.7
    elif distance == "cosine":
        signs = rng.choice([-1.0, 1.0], size=(n, 4))
        x = signs * rng.integers(1, 4, size=(n, 1))
    else:
        x = rng.integers(-2, 3, size=(n, 3)).astype(np.float64)
    dup = rng.choice(n, size=n // 5, replace=False)
    x[dup[: len(dup) // 2]] = x[dup[len(dup) // 2 : 2 * (len(dup) // 2)]]
    return x, labels


def assert_scores_equal(got: dict, want: dict) -> None:
    """Assert the same keys, equal counts and scores equal to rounding."""
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


# --------------------------------------------------------------------------
# Retrieval metrics against the reference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_leave_one_out_matches_reference(distance: str, kind: str) -> None:
    """Each sample is a query against the others."""
    x, y = make_data(kind, distance, n=90, seed=1)
    want = reference_scores(x, y, None, None, distance)
    got = retrieval_scores(x, y, k=KS, distance=distance)
    assert_scores_equal(got, want)
    assert precision_at_k(x, y, k=3, distance=distance) == pytest.approx(want["precision_at_3"])
    assert recall_at_k(x, y, k=7, distance=distance) == pytest.approx(want["recall_at_7"])
    assert r_precision(x, y, distance=distance) == pytest.approx(want["r_precision"])
    assert map_at_r(x, y, distance=distance) == pytest.approx(want["map_at_r"])


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_query_gallery_matches_reference(distance: str, kind: str) -> None:
    """Queries against a separate gallery, with a query class absent there."""
    x, y = make_data(kind, distance, n=110, seed=2, n_classes=5)
    q, qy, g, gy = x[:40], y[:40], x[40:], y[40:]
    gy = np.where(gy == 4, 3, gy)  # class 4 queries have no relevant sample
    want = reference_scores(q, qy, g, gy, distance)
    assert want["n_skipped"] > 0
    got = retrieval_scores(q, qy, gallery=g, gallery_labels=gy, k=KS, distance=distance)
    assert_scores_equal(got, want)
    assert map_at_r(q, qy, gallery=g, gallery_labels=gy, distance=distance) == (
        pytest.approx(want["map_at_r"])
    )


def test_wide_gallery_matches_reference() -> None:
    """A gallery wide enough for the candidate prefilter, with many ties."""
    x, y = make_data("ties", "sqeuclidean", n=4200, seed=3, n_classes=300)
    q, qy = x[:25], y[:25]
    want = reference_scores(q, qy, x, y, "sqeuclidean", ks=(1, 10))
    assert_scores_equal(retrieval_scores(q, qy, gallery=x, gallery_labels=y, k=(1, 10)), want)


@pytest.fixture(params=[True, False], ids=["numpy-scan", "torch-scan"])
def small_prefilter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the candidate prefilter on rows of 64 columns or more.

    Both scans are run: NumPy's (CPU) and torch's (what other devices use).
    """
    monkeypatch.setattr(_ranking, "_SORT_WIDTH", 64)
    monkeypatch.setattr(_ranking, "_SAMPLE_STRIDE", 8)
    monkeypatch.setattr(_ranking, "_NUMPY_SCAN", request.param)


@pytest.mark.usefixtures("small_prefilter")
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_prefilter_matches_reference(distance: str, kind: str) -> None:
    """The candidate prefilter, leave-one-out and against a gallery."""
    x, y = make_data(kind, distance, n=400, seed=8, n_classes=30)
    want = reference_scores(x, y, None, None, distance, ks=(1, 5))
    assert_scores_equal(retrieval_scores(x, y, k=(1, 5), distance=distance), want)
    q, qy, g, gy = x[:40], y[:40], x[40:], y[40:]
    want = reference_scores(q, qy, g, gy, distance, ks=(1, 5))
    got = retrieval_scores(q, qy, gallery=g, gallery_labels=gy, k=(1, 5), distance=distance)
    assert_scores_equal(got, want)


@pytest.mark.usefixtures("small_prefilter")
def test_prefilter_fallback_matches_reference() -> None:
    """Sampled columns closest to every query: the prefilter keeps too few."""
    rng = np.random.default_rng(4)
    g = rng.integers(5, 9, size=(400, 2)).astype(np.float64)
    g[::8] = 0.0  # every sampled gallery point sits next to the queries
    gy = rng.integers(0, 10, len(g))
    q = rng.integers(-1, 2, size=(12, 2)).astype(np.float64)
    qy = rng.integers(0, 10, len(q))
    want = reference_scores(q, qy, g, gy, "sqeuclidean", ks=(90,))
    got = retrieval_scores(q, qy, gallery=g, gallery_labels=gy, k=90)
    assert_scores_equal(got, want)


def test_nearest_neighbours_are_ranked_by_distance_then_index() -> None:
    """Exact hand-checked ranking: ties go to the lower gallery index."""
    g = np.array([[1.0], [-1.0], [1.0], [2.0]])
    # Distances to the query 0: 1, 1, 1, 4 -> ranking 0, 1, 2, 3.
    gy = np.array(["b", "a", "a", "b"])
    assert precision_at_k([[0.0]], ["a"], gallery=g, gallery_labels=gy) == 0.0
    assert precision_at_k([[0.0]], ["b"], gallery=g, gallery_labels=gy) == 1.0
    # R = 2, relevant at ranks 2, 3: (1/2 + 0) / 2.
    assert map_at_r([[0.0]], ["a"], gallery=g, gallery_labels=gy) == 0.25


def test_leave_one_out_excludes_query_by_index() -> None:
    """An exact duplicate of the query is its own nearest neighbour."""
    x = np.array([[0.0], [0.0], [5.0], [5.0], [5.0]])
    assert map_at_r(x, [0, 0, 1, 1, 1]) == 1.0
    # All points equal: each query ranks the others by index.
    # Query 0 ranks 1, 2, 3 (labels 1, 1, 0); query 3 ranks 0 first.
    y = [0, 1, 1, 0]
    assert precision_at_k(np.zeros((4, 1)), y) == 0.25
    assert map_at_r(np.zeros((4, 1)), y) == 0.25
    assert recall_at_k(np.zeros((4, 1)), y, k=2) == 0.75


# --------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_blocked_equals_unblocked(block_size: int) -> None:
    """Blocking changes nothing, not even in the last bit."""
    x, y = make_data("ties", "sqeuclidean", n=80, seed=5)
    assert retrieval_scores(x, y, k=KS, block_size=block_size) == retrieval_scores(x, y, k=KS)
    q, qy = x[:30], y[:30]
    kwargs = {"gallery": x[30:], "gallery_labels": y[30:], "k": KS}
    assert retrieval_scores(q, qy, block_size=block_size, **kwargs) == retrieval_scores(
        q, qy, **kwargs
    )


def test_labels_compared_by_equality_only() -> None:
    """String, object and float labels give the same result as int codes."""
    x, y = make_data("continuous", "sqeuclidean", n=60, seed=6)
    names = np.array(["cat", "dog", "emu", "yak"])
    want = retrieval_scores(x, y, k=KS)
    for labels in (names[y], names[y].astype(object), y * 1.5, torch.as_tensor(y)):
        assert retrieval_scores(x, labels, k=KS) == want
    q_labels, g_labels = list(names[y[:20]]), names[y[20:]]
    assert retrieval_scores(
        x[:20], q_labels, gallery=x[20:], gallery_labels=g_labels
    ) == retrieval_scores(x[:20], y[:20], gallery=x[20:], gallery_labels=y[20:])


def test_numpy_and_torch_inputs_agree() -> None:
    """float32/float64 arrays and tensors give identical results on exact data."""
    x, y = make_data("ties", "sqeuclidean", n=70, seed=7)
    want = retrieval_scores(x, y, k=KS)
    for emb in (x.astype(np.float32), torch.as_tensor(x), torch.as_tensor(x).float()):
        assert retrieval_scores(emb, y, k=KS) == want
    assert retrieval_scores(x.astype(int), y, k=KS) == want
    mixed = retrieval_scores(
        torch.as_tensor(x[:20]).float(), y[:20], gallery=x[20:], gallery_labels=y[20:]
    )
    assert mixed == retrieval_scores(x[:20], y[:20], gallery=x[20:], gallery_labels=y[20:])


def test_skipped_queries_are_counted_and_excluded() -> None:
    """Singleton classes are skipped; the averages cover the others only."""
    x = np.array([[0.0], [0.1], [3.0], [9.0], [9.05]])
    y = np.array([0, 0, 7, 1, 1])
    scores = retrieval_scores(x, y, k=1)
    assert (scores["n_queries"], scores["n_evaluated"], scores["n_skipped"]) == (
        5,
        4,
        1,
    )
    assert scores["map_at_r"] == map_at_r(x, y) == 1.0
    assert precision_at_k(x, y) == 1.0


def test_all_queries_skipped_gives_nan_and_warns() -> None:
    """No query has a relevant sample: nan and one RuntimeWarning."""
    x = np.arange(4.0)[:, None]
    with pytest.warns(RuntimeWarning, match="skipped"):
        assert math.isnan(map_at_r(x, [0, 1, 2, 3]))
    with pytest.warns(RuntimeWarning, match="skipped") as record:
        scores = retrieval_scores(x, ["a", "b", "c", "d"], k=2)
    assert len(record) == 1
    assert math.isnan(scores["precision_at_2"]) and scores["n_skipped"] == 4
    with pytest.warns(RuntimeWarning):
        assert math.isnan(recall_at_k(x, [0, 0, 1, 1], gallery=x, gallery_labels=[2, 2, 3, 3]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [0, 1]}, "same length"),
        ({"embeddings": np.zeros(4)}, "2-D"),
        ({"embeddings": np.zeros((4, 2, 1))}, "2-D"),
        ({"labels": np.zeros((4, 1))}, "1-D"),
        ({"embeddings": np.zeros((0, 2)), "labels": []}, "empty"),
        ({"embeddings": np.full((4, 2), np.nan)}, "NaN"),
        ({"k": 0}, "k must be >= 1"),
        ({"k": 4}, "exceeds"),
        ({"k": 2.0}, "integer"),
        ({"k": ()}, "empty"),
        ({"distance": "manhattan"}, "not supported"),
        ({"block_size": 0}, "block_size"),
        ({"gallery": np.zeros((3, 2))}, "together"),
        ({"gallery": np.zeros((3, 3)), "gallery_labels": [0, 1, 1]}, "features"),
        ({"gallery": np.zeros((3, 2)), "gallery_labels": [0, 1]}, "gallery_labels"),
    ],
)
def test_invalid_inputs_raise(kwargs: dict, match: str) -> None:
    """Clear ValueErrors for malformed input."""
    args = {"embeddings": np.zeros((4, 2)), "labels": [0, 0, 1, 1], "k": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        retrieval_scores(args.pop("embeddings"), args.pop("labels"), **args)


# --------------------------------------------------------------------------
# pytorch-metric-learning as a second, independent reference
# --------------------------------------------------------------------------


def tie_free_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous data without near-ties (> 2e-6 apart in every row)."""
    for s in range(seed, seed + 100):
        rng = np.random.default_rng(s)
        y = rng.integers(0, 6, n)
        y[0] = 6  # one lone query
        x = rng.normal(size=(n, 8)) + y[:, None] * 0.3
        ok = True
        for distance in ("euclidean", "cosine"):
            d = np.sort(reference_distances(x, x, distance), axis=1)[:, 1:]
            ok &= bool((np.diff(d, axis=1) > 2e-6).all())
        if ok:
            return x, y
    raise AssertionError("no tie-free data found")


@pytest.mark.parametrize("gallery_mode", [False, True])
def test_matches_pytorch_metric_learning(gallery_mode: bool) -> None:
    """MAP@R, R-precision and precision@1 as computed by PML 2.x."""
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    assert pml.__version__.startswith("2.")
    x, y = tie_free_data(80, seed=10)
    ours = {"precision_at_1", "r_precision", "map_at_r"}
    pairs = [("sqeuclidean", False), ("euclidean", False), ("cosine", True)]
    for distance, normalize in pairs:
        calc = AccuracyCalculator(
            include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
            k="max_bin_count",
            device=torch.device("cpu"),
            knn_func=CustomKNN(LpDistance(normalize_embeddings=normalize)),
        )
        if gallery_mode:
            q, qy, g, gy = x[:30], y[:30], x[30:], y[30:]
            want = calc.get_accuracy(q, qy, g, gy, ref_includes_query=False)
            got = retrieval_scores(q, qy, gallery=g, gallery_labels=gy, distance=distance)
        else:
            want = calc.get_accuracy(x, y)
            got = retrieval_scores(x, y, distance=distance)
        want["map_at_r"] = want.pop("mean_average_precision_at_r")
        for name in ours:
            assert got[name] == pytest.approx(want[name], rel=1e-6), (distance, name)
        assert got["n_skipped"] >= 1


# --------------------------------------------------------------------------
# Verification metrics against scikit-learn
# --------------------------------------------------------------------------


def reference_eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Walk the ROC polyline to where FAR == FRR, i.e. fpr + tpr == 1."""
    for i in range(len(fpr) - 1):
        x0, y0, x1, y1 = fpr[i], tpr[i], fpr[i + 1], tpr[i + 1]
        s0, s1 = x0 + y0, x1 + y1
        if s0 <= 1.0 <= s1 and s1 > s0:
            return float(x0 + (1.0 - s0) / (s1 - s0) * (x1 - x0))
    raise AssertionError("no crossing")


@pytest.mark.parametrize("decimals", [None, 1])
def test_verification_matches_sklearn(decimals: int | None) -> None:
    """ROC AUC, EER and TAR@FAR from sklearn's roc_curve, with and without ties."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(11)
    same = rng.random(3000) < 0.3
    d = rng.normal(size=3000) + np.where(same, 0.0, 1.5)
    if decimals is not None:
        d = np.round(d, decimals)
    fpr, tpr, _ = metrics.roc_curve(same, -d, drop_intermediate=False)
    far = (0.0, 1e-3, 1e-2, 1e-1, 0.5, 1.0)
    got = verification_scores(d, same, far=far)
    assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(same, -d), rel=1e-12)
    assert got["eer"] == pytest.approx(reference_eer(fpr, tpr), rel=1e-12)
    assert equal_error_rate(d, same) == got["eer"]
    for rate in far:
        want = tpr[fpr <= rate].max()
        assert got[f"tar_at_far_{rate:g}"] == pytest.approx(want, rel=1e-12)
        assert tar_at_far(d, same.astype(int), rate) == pytest.approx(want, rel=1e-12)
    assert list(got) == ["roc_auc", "eer"] + [f"tar_at_far_{r:g}" for r in far]


def test_verification_extremes() -> None:
    """Perfect, inverted and uninformative distances."""
    same = np.array([True, True, False, False])
    perfect = verification_scores([0.1, 0.2, 0.3, 0.4], same, far=(0.0,))
    assert perfect == {"roc_auc": 1.0, "eer": 0.0, "tar_at_far_0": 1.0}
    inverted = verification_scores([0.4, 0.3, 0.2, 0.1], same, far=(0.0,))
    assert inverted == {"roc_auc": 0.0, "eer": 1.0, "tar_at_far_0": 0.0}
    flat = verification_scores([1.0, 1.0, 1.0, 1.0], same, far=(0.5,))
    assert flat == {"roc_auc": 0.5, "eer": 0.5, "tar_at_far_0.5": 0.0}


@pytest.mark.parametrize(
    ("distances", "is_same", "far", "match"),
    [
        ([0.1, 0.2], [True], 0.1, "entries"),
        ([[0.1, 0.2]], [[True, False]], 0.1, "1-D"),
        ([0.1, np.nan], [True, False], 0.1, "NaN"),
        ([0.1, 0.2], [True, True], 0.1, "both"),
        ([0.1, 0.2], [2, 0], 0.1, "boolean"),
        ([0.1, 0.2], [True, False], 1.5, r"\[0, 1\]"),
    ],
)
def test_verification_invalid_inputs(distances, is_same, far, match) -> None:
    """Clear ValueErrors for malformed pairs."""
    with pytest.raises(ValueError, match=match):
        tar_at_far(distances, is_same, far)
