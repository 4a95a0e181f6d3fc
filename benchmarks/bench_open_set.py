"""Does the calibrated false accept rate hold on held-out identities of real images?

Question: train a TripletEmbedder on part of the classes of a real image set,
enrol other classes with a few shots each, calibrate the rejection threshold
of OpenSetKNeighborsClassifier for a target false accept rate (FAR) on
validation queries, and measure FAR on *held-out* never-enrolled classes
(disjoint from the calibration ones) and recognition of the enrolled ones.

Protocol (classes split at random with ``--seed``): 50 % of the classes train
the embedding; 25 % are enrolled with ``--shots`` images each (the rest of
their images are queries, split half for calibration, half for test); the
last 25 % are never enrolled: half of those classes calibrate, the other
half test (and the other way round). Reported per target FAR: the held-out
FAR with a 95 % interval from resampling the held-out unknown classes, the
held-out recall (queries of enrolled classes accepted with the right class),
and closed-set top-1 accuracy.

Data: any ``.npz`` with ``X`` (n, H, W) uint8 images and ``y`` labels; by
default the Omniglot subset in ``../shared/data`` (242 characters x 20
drawers, 28x28).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_open_set.py
    OMP_NUM_THREADS=1 python benchmarks/bench_open_set.py \
        --data ../shared/data/coil20_32/coil20_32.npz --shots 3
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator

from sktriplet import OpenSetKNeighborsClassifier, TripletEmbedder
from sktriplet.evaluation.neighbors import FewStrangerClassesWarning

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/omniglot_small/omniglot_small_28.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--far", type=float, nargs="*", default=[0.01, 0.05, 0.1])
    parser.add_argument(
        "--far-rule",
        choices=["bound", "empirical"],
        default="empirical",
        help="calibrate's far_rule: the measured rate (the table of docs/open_set.md) "
        "or the upper bound over stranger classes (the default of calibrate)",
    )
    args = parser.parse_args()

    data = np.load(args.data)
    X, y = data["X"], data["y"]
    rng = np.random.default_rng(args.seed)
    classes = rng.permutation(np.unique(y))
    n = len(classes)
    train_c = classes[: n // 2]
    enrol_c = classes[n // 2 : 3 * n // 4]
    unknown_c = classes[3 * n // 4 :]
    cal_unknown_c, test_unknown_c = (
        unknown_c[: len(unknown_c) // 2],
        unknown_c[len(unknown_c) // 2 :],
    )

    gallery, cal_known, test_known = [], [], []
    for c in enrol_c:
        idx = rng.permutation(np.flatnonzero(y == c))
        gallery.append(idx[: args.shots])
        rest = idx[args.shots :]
        cal_known.append(rest[: len(rest) // 2])
        test_known.append(rest[len(rest) // 2 :])
    gallery, cal_known, test_known = map(np.concatenate, (gallery, cal_known, test_known))
    cal = np.concatenate([cal_known, np.flatnonzero(np.isin(y, cal_unknown_c))])
    test_unknown = np.flatnonzero(np.isin(y, test_unknown_c))
    train = np.flatnonzero(np.isin(y, train_c))

    t0 = time.perf_counter()
    embedder = TripletEmbedder(
        n_components=64,
        max_epochs=args.max_epochs,
        samples_per_class=4,
        device="cpu",
        random_state=args.seed,
        module__channels=(16, 32, 64),
    ).fit(X[train], y[train])
    train_s = time.perf_counter() - t0
    clf = OpenSetKNeighborsClassifier(embedder=FrozenEstimator(embedder))
    clf.fit(X[gallery], y[gallery])

    print(f"data: {args.data.name}, images {X.shape[1:]}, {n} classes")
    print(
        f"train: {len(train_c)} classes / {len(train)} images, {train_s:.0f} s; "
        f"enrolled: {len(enrol_c)} classes x {args.shots} shots; "
        f"calibration: {len(cal_known)} known + {len(cal) - len(cal_known)} unknown queries "
        f"({len(cal_unknown_c)} classes); test: {len(test_known)} known + "
        f"{len(test_unknown)} unknown queries ({len(test_unknown_c)} other classes)"
    )
    labels, _ = clf.match(X[test_known])
    top1 = np.mean(labels == y[test_known])
    print(f"closed-set top-1 accuracy on enrolled test queries: {top1:.3f}")
    print()
    print(
        "Held-out FAR with a 95 % interval from resampling the held-out unknown *classes* "
        "(queries of one class are not independent). Split B->A swaps the roles of the "
        "calibration and test halves."
    )
    print()
    print(
        "| split | target FAR | threshold | calibration FAR | held-out FAR | 95 % class-bootstrap "
        "| held-out recall |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    cal_unknown = np.flatnonzero(np.isin(y, cal_unknown_c))
    halves = {
        "A->B": (np.concatenate([cal_known, cal_unknown]), test_known, test_unknown),
        "B->A": (np.concatenate([test_known, test_unknown]), cal_known, cal_unknown),
    }
    boot = np.random.default_rng(12345)
    for split, (cal_idx, known_idx, unknown_idx) in halves.items():
        for target in args.far:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FewStrangerClassesWarning)
                clf.calibrate(X[cal_idx], y[cal_idx], target_far=target, far_rule=args.far_rule)
            accepted = clf.predict(X[unknown_idx]) != clf.unknown_label_
            recall = np.mean(clf.predict(X[known_idx]) == y[known_idx])
            lo, hi = class_bootstrap(accepted, y[unknown_idx], boot)
            print(
                f"| {split} | {target:g} | {clf.threshold_:.3f} | {clf.calibration_['far']:.3f} "
                f"| {accepted.mean():.3f} | {lo:.3f}-{hi:.3f} | {recall:.3f} |"
            )


def class_bootstrap(accepted: np.ndarray, labels: np.ndarray, rng, reps: int = 2000):
    """95 % interval of the accept rate, resampling whole classes."""
    classes, codes = np.unique(labels, return_inverse=True)
    hits = np.bincount(codes, weights=accepted, minlength=len(classes))
    sizes = np.bincount(codes, minlength=len(classes))
    draws = rng.integers(0, len(classes), size=(reps, len(classes)))
    rates = hits[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    return np.percentile(rates, 2.5), np.percentile(rates, 97.5)


if __name__ == "__main__":
    main()
