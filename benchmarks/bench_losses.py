"""Which loss for my data? Each loss with and without a cross-batch memory, and the loss CV picks.

Question: on the shared sets, with a class-disjoint split (the test classes
are never trained on), which ``criterion`` recognises the unseen classes best
(MAP@R and P@1 by leave-one-out retrieval among the test samples,
:func:`sktriplet.evaluation.metrics.retrieval_scores`), does a cross-batch
memory (``memory_size``) help the pair-based losses, and does choosing the
loss by class-disjoint cross-validation *on the training classes only* pick
one whose test MAP@R is no lower than the default triplet loss's minus 0.01?

Every row is ``TripletEmbedder`` with the set's settings below and every
other parameter at its default; only ``criterion`` (and ``memory_size``)
change. The losses' own hyperparameters are their papers' /
pytorch-metric-learning's defaults (no tuning on these sets).

``cars``
    ``stanford_cars_196x8``: classes 001-098 train (784 photos), 099-196
    test (784 photos). The pretrained-backbone route,
    ``TripletEmbedder(module=BackboneEmbedder,
    module__backbone="efficientnet_lite0", module__freeze=True)`` at 128 px,
    ``batch_size=32`` (4 classes x 8 photos: the small-batch, many-class case
    a memory is meant for). ``module__freeze=True`` trains the head on cached
    backbone features.
``glint``
    ``glint_faces24``: 24 people split 12 / 12 at random with ``--seed``;
    the same backbone route at 128 px, default batch.
``omniglot``
    ``omniglot_small_28.npz``: 242 characters split 121 / 121 at random with
    ``--seed`` (20 drawings each); the from-scratch ``ConvEmbedder`` (the
    default network for images), ``--omniglot-epochs`` epochs.
``digits``
    scikit-learn's ``load_digits``: digits 0-5 train, 6-9 test; the default
    MLP.

Photos are decoded once (the file route's reading: shorter side to 128 px,
centre cut, ``sktriplet.vision.transforms.ResizeCenterCrop``) and given to
``fit`` as uint8 arrays; the frozen backbone's pooled features are computed
once per photo and reused by every fit (a memo around
``BackboneEmbedder.features``; the values are the network's own), so "fit
(s)" is the time to train the head on cached features. The first fit of a
set (untimed, ``max_epochs=0``) fills the memo.

Memory rows use ``memory_size`` = the largest power of two up to two thirds
of the training samples (cars 512, glint 256, omniglot 1024, digits 512),
for ``triplet``, ``contrastive`` and ``multi_similarity`` (the classifier
losses compare samples with class weights, not with other samples).

Selection: ``GridSearchCV(estimator, {"criterion": [the five]},
cv=GroupKFold(--folds), scoring=make_retrieval_scorer(),
refit=PreferDefault(criterion="triplet"))`` fitted on the training classes
with ``groups=y`` (class-disjoint folds). The rule keeps the triplet loss
unless another loss beats it by more than the standard error of the paired
per-fold gains; the table also shows what the plain best mean would have
picked. The chosen loss's test MAP@R is that of the search's refitted
``best_estimator_``.

``--sweep`` adds the triplet loss on cars at batch 32 over memory sizes,
with the MAP@R of the training classes among the training samples (how
well the seen classes are fitted) beside the unseen classes';
``--micro`` times one loss forward + backward of the semi-hard triplet loss
against a memory of growing size (batch 32 and 128, width 1280), interleaved.
Timings move with the machine's load, which the header records.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_losses.py
       [--datasets [cars glint omniglot digits]] [--no-cv] [--folds 3] [--sweep] [--micro]
       [--omniglot-epochs 10] [--seed 0] [--data ../shared/data]
       [--cache /tmp/sktriplet-bench]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, GroupKFold

from sktriplet import TripletEmbedder
from sktriplet.datasets import list_image_folder
from sktriplet.evaluation.metrics import retrieval_scores
from sktriplet.evaluation.scoring import make_retrieval_scorer
from sktriplet.evaluation.selection import PreferDefault
from sktriplet.networks import BackboneEmbedder
from sktriplet.vision.transforms import ResizeCenterCrop

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("cars", "glint", "omniglot", "digits")
LOSSES = ("triplet", "contrastive", "multi_similarity", "normalized_softmax", "arcface")
PAIR_LOSSES = ("triplet", "contrastive", "multi_similarity")
BACKBONE = {"module": BackboneEmbedder, "module__backbone": "efficientnet_lite0"}


# ------------------------------------------------------------------ data
class Split:
    """Training and unseen-class test samples of one set, with its estimator settings."""

    def __init__(self, name, train, test, params, note):
        self.name, self.note, self.params = name, note, params
        self.X_train, self.y_train = train
        self.X_test, self.y_test = test

    @property
    def memory_size(self) -> int:
        return 1 << int(np.log2(len(self.y_train) * 2 / 3))

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} training samples of "
            f"{len(np.unique(self.y_train))} classes, {len(self.y_test)} test samples of "
            f"{len(np.unique(self.y_test))} unseen classes; {self.note}"
        )


def decode_folder(root: Path, size: int, cache: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """Every photo of a class folder as uint8 (N, 3, size, size), decoded once to ``cache``."""
    target = cache / f"{root.parent.name}_{size}.npz"
    paths, labels, names = list_image_folder(root)
    if target.exists():
        saved = np.load(target)
        return saved["X"], saved["y"], names
    policy = ResizeCenterCrop(size)
    X = np.stack([policy(p, 3) for p in paths])
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target, X=X, y=labels)
    return X, labels, names


def split_classes(X, y, train_classes):
    is_train = np.isin(y, train_classes)
    return (X[is_train], y[is_train]), (X[~is_train], y[~is_train])


def load_set(name: str, args) -> Split:
    data = Path(args.data)
    rng = np.random.default_rng(args.seed)
    if name in ("cars", "glint"):
        folder = {"cars": "stanford_cars_196x8", "glint": "glint_faces24"}[name]
        X, y, names = decode_folder(data / folder / "images", 128, Path(args.cache))
        if name == "cars":
            train = [i for i, n in enumerate(names) if int(n[:3]) <= 98]
            params = {**BACKBONE, "module__freeze": True, "batch_size": 32}
            note = "EfficientNet-Lite0 frozen, head on cached features, 128 px, batch 32"
        else:
            train = sorted(rng.permutation(len(names))[: len(names) // 2])
            params = {**BACKBONE, "module__freeze": True}
            note = "EfficientNet-Lite0 frozen, head on cached features, 128 px, batch 128"
        return Split(name, *split_classes(X, y, train), params, note)
    if name == "omniglot":
        saved = np.load(data / "omniglot_small" / "omniglot_small_28.npz")
        X, y = saved["X"], saved["y"]
        classes = np.unique(y)
        train = sorted(rng.permutation(classes)[: len(classes) // 2])
        params = {"max_epochs": args.omniglot_epochs}
        note = f"ConvEmbedder from scratch, 28 px, {args.omniglot_epochs} epochs"
        return Split(name, *split_classes(X, y, train), params, note)
    X, y = load_digits(return_X_y=True)
    return Split(name, *split_classes(X, y, np.arange(6)), {}, "MLP, digits 0-5 -> 6-9")


# ------------------------------------------------------- backbone memo
def memoise_backbone_features() -> None:
    """Compute each photo's frozen backbone features once across all fits."""
    original = BackboneEmbedder.features
    memo: dict[bytes, torch.Tensor] = {}

    def features(self, x):
        if any(p.requires_grad for p in self.backbone.parameters()):
            return original(self, x)
        rows = x.detach().float().contiguous().cpu().numpy()
        keys = [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]
        missing = [i for i, k in enumerate(keys) if k not in memo]
        if missing:
            with torch.no_grad():
                computed = original(self, x[missing])
            for i, f in zip(missing, computed, strict=True):
                memo[keys[i]] = f.detach().clone()
        return torch.stack([memo[k] for k in keys]).to(x.device)

    BackboneEmbedder.features = features


# ------------------------------------------------------------------ rows
def estimator(split: Split, args, **params) -> TripletEmbedder:
    return TripletEmbedder(**{**split.params, "random_state": args.seed, **params})


def test_scores(est: TripletEmbedder, split: Split) -> dict:
    z = est.transform(split.X_test)
    return retrieval_scores(np.asarray(z, dtype=np.float32), split.y_test, k=1)


def fit_row(split: Split, args, criterion: str, memory_size: int | None, seen=False) -> dict:
    est = estimator(split, args, criterion=criterion, memory_size=memory_size)
    start = time.perf_counter()
    est.fit(split.X_train, split.y_train)
    seconds = time.perf_counter() - start
    scores = test_scores(est, split)
    row = {"map": scores["map_at_r"], "p1": scores["precision_at_1"], "fit": seconds}
    if seen:  # MAP@R among the training samples: how well the seen classes are fitted
        z = np.asarray(est.transform(split.X_train), dtype=np.float32)
        row["seen"] = retrieval_scores(z, split.y_train, k=1)["map_at_r"]
    return row


def loss_table(split: Split, args) -> dict:
    print(f"\n### {split.describe()}\n")
    print("| criterion | memory_size | unseen MAP@R | unseen P@1 | fit (s) |")
    print("|---|---:|---:|---:|---:|", flush=True)
    rows = {}
    for criterion in LOSSES:
        for memory in (None, split.memory_size) if criterion in PAIR_LOSSES else (None,):
            row = rows[criterion, memory] = fit_row(split, args, criterion, memory)
            print(
                f"| {criterion} | {memory or '-'} | {row['map']:.3f} | {row['p1']:.3f} "
                f"| {row['fit']:.1f} |",
                flush=True,
            )
    return rows


def selection(split: Split, args, rows: dict) -> None:
    rule = PreferDefault(criterion="triplet")
    search = GridSearchCV(
        estimator(split, args),
        {"criterion": list(LOSSES)},
        cv=GroupKFold(n_splits=args.folds),
        scoring=make_retrieval_scorer(),
        refit=rule,
    )
    start = time.perf_counter()
    search.fit(split.X_train, split.y_train, groups=split.y_train)
    seconds = time.perf_counter() - start
    print(f"\nClass-disjoint {args.folds}-fold CV on the training classes ({seconds:.0f} s):\n")
    print("| criterion | CV MAP@R | gain over triplet | SE of gain | qualifies | test MAP@R |")
    print("|---|---:|---:|---:|---|---:|")
    for r in rule.last_:
        c = r["params"]["criterion"]
        print(
            f"| {c} | {r['mean']:.3f} | {r['gain']:+.3f} | {r['se']:.3f} "
            f"| {'yes' if r['qualifies'] else 'no'} | {rows[c, None]['map']:.3f} |"
        )
    best_mean = max(rule.last_, key=lambda r: r["mean"])["params"]["criterion"]
    chosen = search.best_params_["criterion"]
    chosen_map = test_scores(search.best_estimator_, split)["map_at_r"]
    default_map = rows["triplet", None]["map"]
    verdict = "ok" if chosen_map >= default_map - 0.01 else "MISLEADS"
    print(
        f"\nChosen by the rule: **{chosen}**, test MAP@R {chosen_map:.3f} against the default "
        f"triplet's {default_map:.3f} ({verdict}: must be >= {default_map - 0.01:.3f}). "
        f"The best CV mean alone would pick {best_mean} (test MAP@R "
        f"{rows[best_mean, None]['map']:.3f}).",
        flush=True,
    )


def fill_memo(split: Split, args) -> None:
    """Untimed: the backbone features of every photo of ``split`` into the memo."""
    estimator(split, args, max_epochs=0).fit(split.X_train, split.y_train).transform(split.X_test)


def sweep(args) -> None:
    split = load_set("cars", args)
    fill_memo(split, args)  # cheap after the cars table: the memo is filled
    print("\n### cars, triplet loss at batch 32: memory size\n")
    print("| memory_size | unseen MAP@R | unseen P@1 | training-class MAP@R | fit (s) |")
    print("|---:|---:|---:|---:|---:|", flush=True)
    for memory in (None, 128, 256, 512, 768):
        row = fit_row(split, args, "triplet", memory, seen=True)
        print(
            f"| {memory or '-'} | {row['map']:.3f} | {row['p1']:.3f} | {row['seen']:.3f} "
            f"| {row['fit']:.1f} |",
            flush=True,
        )


def micro(args) -> None:
    from sktriplet.triplets.losses import TripletLoss
    from sktriplet.triplets.memory import CrossBatchMemory

    width, classes = 1280, 98
    print(f"\n### One semi-hard triplet loss step against a memory (width {width})\n")
    print("| batch | memory_size | forward + backward (ms) | ratio to no memory |")
    print("|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(0)
    for batch in (32, 128):
        sizes = (0, 1024, 4096, 16384)
        losses = {}
        for m in sizes:
            if m:
                loss = CrossBatchMemory(TripletLoss(), width, memory_size=m)
                z = torch.nn.functional.normalize(torch.randn(m, width, generator=g), dim=1)
                loss.enqueue(z, torch.randint(0, classes, (m,), generator=g))
            else:
                loss = TripletLoss()
            losses[m] = loss
        times = {m: [] for m in sizes}
        labels = torch.arange(batch) // 8 % classes
        for _ in range(5):  # interleaved rounds
            for m in sizes:
                z = torch.nn.functional.normalize(torch.randn(batch, width, generator=g), dim=1)
                z.requires_grad_()
                losses[m].eval()  # the memory stays as filled
                start = time.perf_counter()
                losses[m](z, labels).backward()
                times[m].append(time.perf_counter() - start)
        base = np.median(times[0])
        for m in sizes:
            t = np.median(times[m])
            print(f"| {batch} | {m or '-'} | {1000 * t:.2f} | {t / base:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", nargs="*", choices=SETS, default=list(SETS), help="none: --sweep only"
    )
    parser.add_argument("--no-cv", action="store_true", help="skip the selection by CV")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--omniglot-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--cache", default="/tmp/sktriplet-bench")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {' '.join(sys.argv)}\n")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs shared with other "
        f"jobs, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, 1 thread"
    )
    memoise_backbone_features()
    for name in args.datasets:
        split = load_set(name, args)
        if name in ("cars", "glint"):
            fill_memo(split, args)
        rows = loss_table(split, args)
        if not args.no_cv:
            selection(split, args, rows)
    if args.sweep:
        sweep(args)
    if args.micro:
        micro(args)


if __name__ == "__main__":
    main()
