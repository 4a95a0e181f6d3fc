"""Does a calibrated target FAR hold on strangers never seen in calibration?

The protocol of issue 29, on sklearn's digits and on faces. Classes are
split three ways: *enrolled* classes, *calibration strangers* (classes that
are not enrolled, whose queries calibrate the threshold) and *new
strangers* (never seen by anything). Half of each enrolled class trains the
embedder; the other half is split into the gallery (its first half) and the
known queries (the second half), which calibrate the threshold together with
the calibration strangers. ``OpenSetKNeighborsClassifier.calibrate(...,
target_far=...)`` then sets the threshold, with the default rule (an upper
confidence bound over stranger classes, with the enrolled classes left out
in turn; ``bound``) and with the rate measured on the calibration strangers
(``far_rule="empirical"``; ``empirical``). Reported per seed: the threshold's
false accept rate on the calibration strangers and on the new strangers,
the expected FAR and its interval (``expected_far_``, ``far_interval_``),
and the *known accuracy*: the fraction of known queries accepted with the
right class. ``raw@FAR`` is raw pixels' known accuracy (1-NN on the same
gallery) at the best threshold whose FAR on the new strangers is at most
the embedding's: the comparison at the same FAR.

Data sets (``--data``):

``digits``
    sklearn's 8x8 digits: 0-4 enrolled, 5-6 calibration strangers, 7-9 new
    strangers; the embedder is ``TripletEmbedder(random_state=seed)`` with
    every other parameter at its default. The split of each digit into
    halves is drawn with the seed too (``--split-seed 0``: the split of
    ``bench_few_classes.py``'s open-set check for every seed, only
    ``random_state`` varying).
``glint`` / ``faces94``
    ``glint_faces24`` (24 people) or ``faces94_subset18`` (18 people) from
    ``--data-dir``; the people are split 50 % / 17 % / 33 % (12 / 4 / 8 and
    9 / 3 / 6) at random with the seed. The embedding is EfficientNet-Lite0
    (ImageNet weights) at ``--image-size`` px: ``--embedding frozen`` uses
    its pooled features (L2-normalised, nothing trained; computed once and
    kept in ``--cache``), ``--embedding head`` trains
    ``TripletEmbedder(module=BackboneEmbedder,
    module__backbone="efficientnet_lite0", image_size=...)`` (head only,
    defaults otherwise) on the training half of the enrolled people. Raw
    pixels are the photos at 32 px, flattened.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py --data digits --seeds 0 1 2 3 4
    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py --data glint --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from sktriplet import OpenSetKNeighborsClassifier, TripletEmbedder

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
FACES = {"glint": "glint_faces24/images", "faces94": "faces94_subset18/images"}
BACKBONE = "efficientnet_lite0"


# ------------------------------------------------------------------ splits
def split_classes(classes: np.ndarray, seed: int, digits: bool):
    """Enrolled, calibration-stranger and new-stranger classes."""
    if digits:
        return classes[:5], classes[5:7], classes[7:]
    perm = np.random.default_rng(seed).permutation(classes)
    n_enrolled, n_cal = len(perm) // 2, max(2, round(len(perm) / 6))
    return perm[:n_enrolled], perm[n_enrolled : n_enrolled + n_cal], perm[n_enrolled + n_cal :]


def split_samples(y: np.ndarray, enrolled: np.ndarray, seed: int):
    """Training, gallery and known-query indices of the enrolled classes."""
    rng = np.random.default_rng(seed)
    train, gallery, queries = [], [], []
    for c in enrolled:
        idx = rng.permutation(np.flatnonzero(y == c))
        half = len(idx) // 2
        held = idx[half:]
        train.append(idx[:half])
        gallery.append(held[: len(held) // 2])
        queries.append(held[len(held) // 2 :])
    return tuple(map(np.concatenate, (train, gallery, queries)))


# -------------------------------------------------------------------- data
def load_digits_data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y, X.astype(np.float32)


def load_faces(name: str, args):
    """Paths, labels, raw 32 px pixels and the frozen features (cached)."""
    from sktriplet.datasets import list_image_folder
    from sktriplet.vision.transforms import ResizeCenterCrop

    paths, y, _ = list_image_folder(args.data_dir / FACES[name])
    paths, y = np.asarray(paths), np.asarray(y)
    cache = args.cache / f"calibration_{name}_{args.image_size}.npz"
    if cache.exists():
        stored = np.load(cache)
        return paths, y, stored["raw"], stored["frozen"]
    small = ResizeCenterCrop(32)
    raw = np.stack([small(p, 3).reshape(-1) for p in paths]).astype(np.float32)
    frozen = frozen_features(paths, args.image_size)
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache, raw=raw, frozen=frozen)
    return paths, y, raw, frozen


def frozen_features(paths, image_size: int) -> np.ndarray:
    import torch

    from sktriplet.networks import BackboneEmbedder
    from sktriplet.vision.transforms import ResizeCenterCrop

    net = BackboneEmbedder(BACKBONE, image_size=image_size, freeze=True).eval()
    mean = torch.tensor(net.input_mean).reshape(1, 3, 1, 1)
    std = torch.tensor(net.input_std).reshape(1, 3, 1, 1)
    policy = ResizeCenterCrop(image_size)
    out = []
    with torch.no_grad():
        for start in range(0, len(paths), 64):
            batch = np.stack([policy(p, 3) for p in paths[start : start + 64]])
            x = (torch.from_numpy(batch).float() / 255 - mean) / std
            f = net.features(x)
            out.append(torch.nn.functional.normalize(f, dim=1).numpy())
    return np.concatenate(out)


# ------------------------------------------------------------------ checks
def known_accuracy(clf, Z, y, threshold) -> float:
    label, distance = clf.match(Z)
    return float(np.mean((distance <= threshold) & (label == y)))


def accuracy_at_far(clf, Zq, yq, Znew, far: float) -> float:
    """Known accuracy at the best threshold whose FAR on the new strangers is at most ``far``."""
    label, dq = clf.match(Zq)
    _, dn = clf.match(Znew)
    dn = np.sort(dn)
    best = 0.0
    for t in np.unique(np.r_[dq, dn]):
        if np.searchsorted(dn, t, side="right") / len(dn) <= far + 1e-12:
            best = max(best, float(np.mean((dq <= t) & (label == yq))))
    return best


def evaluate(Z, raw, y, parts, target: float, confidence: float) -> list[dict]:
    gallery, queries, cal_strangers, new = parts
    cal = np.concatenate([queries, cal_strangers])
    raw_clf = OpenSetKNeighborsClassifier().fit(raw[gallery], y[gallery])
    rows = []
    for rule in ("bound", "empirical"):
        clf = OpenSetKNeighborsClassifier().fit(Z[gallery], y[gallery])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.calibrate(
                Z[cal], y[cal], target_far=target, far_rule=rule, confidence=confidence
            )
        new_far = float(np.mean(clf.match(Z[new])[1] <= clf.threshold_))
        rows.append(
            {
                "rule": rule,
                "threshold": clf.threshold_,
                "cal_far": clf.calibration_["far"],
                "expected": clf.expected_far_,
                "interval": clf.far_interval_,
                "classes": clf.calibration_["n_stranger_classes"],
                "new_far": new_far,
                "accuracy": known_accuracy(clf, Z[queries], y[queries], clf.threshold_),
                "raw_at_far": accuracy_at_far(
                    raw_clf, raw[queries], y[queries], raw[new], new_far
                ),
            }
        )
    return rows


def run_seed(data: str, seed: int, args, loaded) -> list[dict]:
    digits = data == "digits"
    if digits:
        X, y, raw = loaded
        paths = None
    else:
        paths, y, raw, frozen = loaded
    split = seed if args.split_seed is None else args.split_seed
    enrolled, cal_classes, new_classes = split_classes(np.unique(y), split, digits)
    train, gallery, queries = split_samples(y, enrolled, split)
    if digits:
        Z = TripletEmbedder(random_state=seed, verbose=0).fit(X[train], y[train]).transform(X)
    elif args.embedding == "frozen":
        Z = frozen
    else:
        from sktriplet.networks import BackboneEmbedder

        emb = TripletEmbedder(
            module=BackboneEmbedder,
            module__backbone=BACKBONE,
            image_size=args.image_size,
            random_state=seed,
            verbose=0,
        ).fit(paths[train], y[train])
        Z = emb.transform(paths)
    parts = (
        gallery,
        queries,
        np.flatnonzero(np.isin(y, cal_classes)),
        np.flatnonzero(np.isin(y, new_classes)),
    )
    return evaluate(Z, raw, y, parts, args.target_far, args.confidence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=["digits", *FACES], default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--target-far", type=float, default=0.05)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="draw the split with this seed for every seed (only random_state varies); "
        "default: the seed itself",
    )
    parser.add_argument("--embedding", choices=["frozen", "head"], default="frozen")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/sktriplet-bench"))
    args = parser.parse_args()
    start = time.perf_counter()
    loaded = load_digits_data() if args.data == "digits" else load_faces(args.data, args)
    print(f"data: {args.data}, target_far {args.target_far:g}, confidence {args.confidence:g}, "
          "embedding "
          f"{'TripletEmbedder' if args.data == 'digits' else args.embedding}")
    print("| seed | rule | threshold | FAR calibration strangers | expected FAR [interval] "
          "| stranger classes | FAR new strangers | known accuracy | raw pixels at that FAR |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|")
    summary: dict[str, list] = {}
    for seed in args.seeds:
        for row in run_seed(args.data, seed, args, loaded):
            lo, hi = row["interval"]
            print(
                f"| {seed} | {row['rule']} | {row['threshold']:.3f} | {row['cal_far']:.3f} "
                f"| {row['expected']:.3f} [{lo:.3f}, {hi:.3f}] | {row['classes']} "
                f"| {row['new_far']:.3f} | {row['accuracy']:.3f} | {row['raw_at_far']:.3f} |",
                flush=True,
            )
            summary.setdefault(row["rule"], []).append(row)
    for rule, rows in summary.items():
        new = np.array([r["new_far"] for r in rows])
        acc = np.array([r["accuracy"] for r in rows])
        raw = np.array([r["raw_at_far"] for r in rows])
        print(
            f"{rule}: FAR on new strangers mean {new.mean():.3f}, max {new.max():.3f}; "
            f"known accuracy {acc.mean():.3f} against raw pixels' {raw.mean():.3f} at the same "
            f"FAR (at least raw in {int(np.sum(acc >= raw))} of {len(rows)} seeds)"
        )
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
