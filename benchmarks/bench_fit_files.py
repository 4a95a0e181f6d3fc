"""Throughput of TripletEmbedder on image files against a plain PyTorch loop.

Question: how many images per second do ``TripletEmbedder.fit`` and
``transform`` process on real JPEGs (Stanford Cars, 73 to 3896 px, read at
``image_size`` 64), with 0, 1 and 2 data-loader workers, compared with a
hand-written PyTorch loop that does the same work? Targets (issue 16): fit
>= 0.9x the plain loop, transform >= 0.95x.

The two sides do the same work:

- **fit**: the files of classes 001-098 (784 JPEGs), PK batches of 64 (16
  classes x 4), the same random resized crop + flip decoded with Pillow
  (:class:`sktriplet.vision.transforms.RandomResizedCrop`), the same network
  (the plain loop trains a copy of the estimator's network as it was when
  the estimator's training began, at the estimator's learning rate, on the
  same uint8 batches, so architecture, input scaling and starting weights
  are identical; the estimator's warm-up and cosine schedule are its own),
  semi-hard triplet loss, Adam. The plain side is
  :func:`bench_files.plain_loop_images_per_s`. Both clocks start after the
  first batch (worker start-up and warm-up excluded): the
  estimator's is read by a callback at the end of every training batch. One
  epoch is 13 batches; with ``--epochs E`` both sides run E epochs (the
  plain loop re-iterates its DataLoader, starting its workers anew, as the
  estimator does) and time the last ``13 E - 1`` batches. "fit wall" is
  the whole ``fit`` call (input checks, channel and normalisation
  statistics from a sample of the files, building the net, the epochs and
  the final check).
- **transform**: the files of classes 099-196 (784 JPEGs), resized and
  centre-cropped (:class:`~sktriplet.vision.transforms.ResizeCenterCrop`),
  batches of 64, the fitted network in eval mode without gradients; the plain
  side is a DataLoader over a minimal Dataset and a ``torch.inference_mode``
  loop. Both are timed from the call to the last batch (worker start-up
  included on both sides).

Before the repeats, one untimed warm-up round (the estimator's fit for one
epoch, then the plain loop, 0 workers) takes the costs of the first training
in a process (the heap growing to its working size), which would otherwise
fall on whichever side runs first; its rates are printed apart. It also fixes
the starting weights and learning rate that every later pair uses (checked:
the estimator starts each fit from the same weights). Per repeat, the
configurations run in turn; for each worker count the two sides alternate
which goes first (even repeats: the estimator's fit, the plain loop, then the
two transforms; odd repeats: the plain loop, the fit, then the transforms in
the other order), so load from other processes and the process's history
fall on both sides alike. The table gives the median over repeats of each
side and the median of the per-repeat ratios. "fit CPU ratio" (0 workers
only) compares training images per CPU-second of the process: with 0
workers all the work runs in it, and CPU time moves far less than wall time
with load from other processes, so it isolates the estimator's own overhead.

``--malloc both`` runs the whole benchmark twice, each in a fresh process:
once with glibc's malloc as it comes (the estimator then tunes it during
``fit``, :mod:`sktriplet.runtime.allocator`; the plain loop does not)
and once with ``GLIBC_TUNABLES`` set so that glibc keeps the memory it
frees for both sides (the estimator then leaves it alone). The
end of each run prints the process's peak RSS and minor page faults.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_fit_files.py [--workers 0 1 2] [--repeats 3]
    [--epochs 3] [--malloc {as-is,keep,both}] [--transform-pairs N] [--step] [--profile]
    [--cars ../shared/data/stanford_cars_196x8/images]
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_files import CARS, plain_loop_images_per_s  # noqa: E402

from sktriplet import TripletEmbedder  # noqa: E402
from sktriplet.inputs.files import ImageFileDataset  # noqa: E402
from sktriplet.triplets.losses import triplet_loss  # noqa: E402
from sktriplet.vision.folders import list_image_folder  # noqa: E402
from sktriplet.vision.transforms import ResizeCenterCrop  # noqa: E402

BATCH, K, SIZE = 64, 4, 64


class BatchClock(Callback):
    """Training images per second after the first batch of the first epoch."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # The weights training starts from, for the plain loop to start there too.
        self.start_module = copy.deepcopy(net.module_)

    def initialize(self):
        self.t0 = self.cpu0 = None
        self.images = 0
        self.t_end = self.cpu_end = None
        return self

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        now, cpu = time.perf_counter(), time.process_time()
        if self.t0 is None:
            self.t0, self.cpu0 = now, cpu
            return
        self.images += len(batch[1])
        self.t_end, self.cpu_end = now, cpu

    def rate(self) -> float:
        return self.images / (self.t_end - self.t0)

    def cpu_rate(self) -> float:
        """Images per CPU-second of this process (all the work with 0 workers)."""
        return self.images / (self.cpu_end - self.cpu0)


def make_estimator(workers: int, clock: BatchClock, epochs: int = 1) -> TripletEmbedder:
    return TripletEmbedder(
        image_size=SIZE,
        batch_size=BATCH,
        samples_per_class=K,
        max_epochs=epochs,
        device="cpu",
        random_state=0,
        callbacks=[("clock", clock)],
        iterator_train__num_workers=workers,
        iterator_valid__num_workers=workers,
    )


def cars_split(cars: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(paths, labels, train mask, test mask): classes 001-098 train, 099-196 test."""
    paths, labels, names = list_image_folder(cars)
    ids = np.array([int(n.split("_")[0]) for n in names])[labels]
    return paths, labels, ids <= 98, ids >= 99


def estimator_fit(
    paths, labels, workers: int, epochs: int = 1
) -> tuple[TripletEmbedder, float, float, float, torch.nn.Module]:
    """(fitted estimator, training images/s after the first batch, fit wall seconds,
    training images per CPU-second of the main process, the network it started from)."""
    clock = BatchClock()
    emb = make_estimator(workers, clock, epochs)
    t0 = time.perf_counter()
    emb.fit(paths, labels)
    wall = time.perf_counter() - t0
    return emb, clock.rate(), wall, clock.cpu_rate(), clock.start_module


class PlainEvalFiles(Dataset):
    """A plain user's eval dataset: resize + centre crop one file per item."""

    def __init__(self, paths) -> None:
        self.paths = list(paths)
        self.policy = ResizeCenterCrop(SIZE)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.policy(self.paths[i], 3))


def plain_eval_seconds(module: torch.nn.Module, paths, workers: int) -> float:
    """Seconds for a plain eval loop over ``paths`` (worker start-up included)."""
    t0 = time.perf_counter()
    loader = DataLoader(PlainEvalFiles(paths), batch_size=BATCH, num_workers=workers)
    module.eval()
    out = []
    with torch.inference_mode():
        for x in loader:
            out.append(module(x).float().numpy())
    np.concatenate(out)
    return time.perf_counter() - t0


def estimator_transform_seconds(emb: TripletEmbedder, paths) -> float:
    t0 = time.perf_counter()
    emb.transform(paths)
    return time.perf_counter() - t0


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two networks hold identical parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def run(cars: Path, workers: list[int], repeats: int, epochs: int) -> None:
    paths, labels, train, test = cars_split(cars)
    n_batches = int(np.ceil(train.sum() / BATCH)) - 1  # timed batches of one epoch
    keys = ("fit", "plain", "wall", "tr", "plain_tr", "cpu", "plain_cpu")
    rows = {w: {k: [] for k in keys} for w in workers}

    def plain(w: int, start: torch.nn.Module, lr: float, n_epochs: int = epochs):
        return plain_loop_images_per_s(
            paths[train],
            labels[train],
            copy.deepcopy(start),
            image_size=SIZE,
            batch_size=BATCH,
            samples_per_class=K,
            num_workers=w,
            n_batches=n_batches,
            epochs=n_epochs,
            cpu_rate=True,
            scale_pixels=False,  # uint8 in, as the estimator feeds its network
            lr=lr,
        )

    # Warm-up: the first training in a process pays one-time costs (the heap
    # growing, allocator thresholds adapting) that fall on whichever side runs
    # first; one untimed round of each side, reported apart, takes them.
    emb, cold_fit, _, _, start = estimator_fit(paths[train], labels[train], 0, 1)
    lr = float(emb.net_.lr)
    cold_plain = plain(0, start, lr, 1)[0]
    print(
        f"warm-up (first training in the process, estimator first, 1 epoch, 0 workers): "
        f"fit {cold_fit:.1f} vs plain {cold_plain:.1f} images/s",
        file=sys.stderr,
        flush=True,
    )
    for r in range(repeats):
        for w in workers:
            # Alternate which side of each pair runs first (A B, then B A).
            if r % 2 == 1:
                plain_rate, plain_cpu = plain(w, start, lr)
            emb, fit_rate, wall, cpu_rate, fit_start = estimator_fit(
                paths[train], labels[train], w, epochs
            )
            if not same_weights(fit_start, start):
                raise RuntimeError("the estimator started from other weights than the plain loop")
            if r % 2 == 0:
                plain_rate, plain_cpu = plain(w, start, lr)
                tr = estimator_transform_seconds(emb, paths[test])
                plain_tr = plain_eval_seconds(copy.deepcopy(emb.net_.module_), paths[test], w)
            else:
                plain_tr = plain_eval_seconds(copy.deepcopy(emb.net_.module_), paths[test], w)
                tr = estimator_transform_seconds(emb, paths[test])
            for key, value in zip(
                keys,
                (fit_rate, plain_rate, wall, tr, plain_tr, cpu_rate, plain_cpu),
                strict=True,
            ):
                rows[w][key].append(value)
            print(
                f"repeat {r} workers {w}: fit {fit_rate:.1f} vs plain {plain_rate:.1f} images/s "
                f"({cpu_rate:.1f} vs {plain_cpu:.1f} per main-process CPU-s); "
                f"transform {tr:.2f} s vs plain {plain_tr:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    n_test = int(test.sum())
    print(
        f"## Fit and transform on Stanford Cars JPEGs, image_size {SIZE}, batches of {BATCH}, "
        f"{epochs} epoch(s) ({epochs * (n_batches + 1) - 1} timed batches), "
        f"median of {repeats} repeats"
    )
    print()
    print(
        "| workers | fit (images/s) | plain loop (images/s) | ratio | fit wall (s) "
        "| transform (images/s) | plain eval (images/s) | ratio | fit CPU ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    med = statistics.median
    for w in workers:
        d = rows[w]
        fit_ratio = med(a / b for a, b in zip(d["fit"], d["plain"], strict=True))
        tr_ratio = med(b / a for a, b in zip(d["tr"], d["plain_tr"], strict=True))
        cpu_ratio = med(a / b for a, b in zip(d["cpu"], d["plain_cpu"], strict=True))
        print(
            f"| {w} | {med(d['fit']):,.1f} | {med(d['plain']):,.1f} | {fit_ratio:.2f}x "
            f"| {med(d['wall']):.1f} | {n_test / med(d['tr']):,.1f} "
            f"| {n_test / med(d['plain_tr']):,.1f} | {tr_ratio:.2f}x "
            f"| {f'{cpu_ratio:.2f}x' if w == 0 else '-'} |"
        )
    print()
    print(
        f"Warm-up round, not in the table (the process's first training, the estimator "
        f"first, 1 epoch, 0 workers): fit {cold_fit:.1f} vs plain {cold_plain:.1f} images/s."
    )
    print()


def profile(cars: Path) -> None:
    """Where one fit with 0 workers spends its time (cProfile, top 25 by cumulative time)."""
    import cProfile
    import pstats

    paths, labels, train, _ = cars_split(cars)
    profiler = cProfile.Profile()
    profiler.enable()
    estimator_fit(paths[train], labels[train], 0)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def step_times(cars: Path, steps: int = 15) -> None:
    """Seconds per training step on one identical batch: the estimator's step against a plain one.

    Fits the estimator for one epoch (0 workers), then times its
    ``net_.train_step`` (skorch's step: forward, triplet loss, backward, Adam,
    callbacks' batch hooks excluded) and a plain ``loss.backward(); step()``
    on a copy of the same network, on the same decoded batch of 64 training
    files, alternating which goes first, ``steps`` times each. Equal times
    mean the estimator adds no cost per step; what differs end to end is
    then data, weights and noise.
    """
    paths, labels, train, _ = cars_split(cars)
    emb = estimator_fit(paths[train], labels[train], 0)[0]
    net = emb.net_
    codes = np.unique(labels[train], return_inverse=True)[1]
    data = ImageFileDataset(paths[train], codes, image_size=SIZE, channels=3, train=True)
    batch = data[np.arange(0, train.sum(), 12)[:BATCH]]
    module = copy.deepcopy(net.module_)
    optimizer = torch.optim.Adam(module.parameters(), lr=float(net.lr))

    def plain_step():
        loss = triplet_loss(module(batch[0]), batch[1], margin=0.2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    sides = {"estimator": lambda: net.train_step(batch), "plain": plain_step}
    for step in sides.values():
        step()  # warm-up
    spent = dict.fromkeys(sides, 0.0)
    for i in range(steps):
        for name in sorted(sides, reverse=i % 2 == 1):
            t0 = time.perf_counter()
            sides[name]()
            spent[name] += time.perf_counter() - t0
    print("| side | seconds per step |")
    print("|---|---:|")
    for name, seconds in spent.items():
        print(f"| {name} | {seconds / steps:.4f} |")
    print(f"\nplain / estimator: {spent['plain'] / spent['estimator']:.3f}")


def transform_pairs(cars: Path, workers: list[int], pairs: int) -> None:
    """Transform against the plain eval loop only, in many alternating pairs.

    One fit (1 epoch, 0 workers) gives the network; then, ``pairs`` times
    for each worker count, the estimator's ``transform`` and the plain eval
    loop embed the 784 test photos, alternating which goes first. A
    transform takes a few seconds, so single pairs vary by 10-20 % on a
    shared machine; many pairs give a median that the noise moves less.
    """
    paths, labels, train, test = cars_split(cars)
    emb = estimator_fit(paths[train], labels[train], 0, 1)[0]
    print(
        f"## transform vs plain eval, {test.sum()} Stanford Cars JPEGs, image_size {SIZE}, "
        f"batches of {BATCH}, {pairs} alternating pairs per worker count"
    )
    print()
    print(
        "| workers | transform (images/s) | plain eval (images/s) | median ratio | pairs >= 0.95x |"
    )
    print("|---:|---:|---:|---:|---:|")
    for w in workers:
        emb.set_params(iterator_valid__num_workers=w)  # transform reads it after fit too
        tr, plain_tr = [], []
        for r in range(pairs):
            if r % 2 == 0:
                tr.append(estimator_transform_seconds(emb, paths[test]))
            plain_tr.append(plain_eval_seconds(copy.deepcopy(emb.net_.module_), paths[test], w))
            if r % 2 == 1:
                tr.append(estimator_transform_seconds(emb, paths[test]))
        ratios = [p / t for p, t in zip(plain_tr, tr, strict=True)]
        print(
            f"| {w} | {test.sum() / statistics.median(tr):.1f} "
            f"| {test.sum() / statistics.median(plain_tr):.1f} "
            f"| {statistics.median(ratios):.2f}x | {sum(x >= 0.95 for x in ratios)} of {pairs} |",
            flush=True,
        )
    print()


#: glibc keeps the memory it frees: no ``mmap`` per large block, no trimming of the heap.
KEEP_FREED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824"


def in_child(argv: list[str], tunables: str | None) -> None:
    """Run this script with ``argv`` in a fresh process, glibc tuned by ``tunables``."""
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    print(f"### GLIBC_TUNABLES={tunables or '(unset: glibc defaults)'}", flush=True)
    print(flush=True)
    subprocess.run([sys.executable, __file__, *argv], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per fit (13 batches each; default 3)"
    )
    parser.add_argument("--cars", type=Path, default=CARS)
    parser.add_argument("--profile", action="store_true", help="profile one fit instead")
    parser.add_argument(
        "--step", action="store_true", help="time training steps on one identical batch instead"
    )
    parser.add_argument(
        "--transform-pairs",
        type=int,
        default=0,
        metavar="N",
        help="time only transform against the plain eval loop, N alternating pairs per "
        "worker count",
    )
    parser.add_argument(
        "--malloc",
        choices=("as-is", "keep", "both"),
        default="as-is",
        help="as-is: this process's allocator settings; keep: a child process with "
        f"GLIBC_TUNABLES={KEEP_FREED}; both: glibc's defaults, then keep, in two children",
    )
    args = parser.parse_args()
    if args.malloc != "as-is":
        argv = [a for a in sys.argv[1:] if not a.startswith("--malloc")]
        argv = [a for a in argv if a not in ("keep", "both")]
        for tunables in ([None] if args.malloc == "both" else []) + [KEEP_FREED]:
            in_child(argv, tunables)
        return
    torch.set_num_threads(1)
    if args.profile:
        profile(args.cars)
        return
    if args.step:
        step_times(args.cars)
        return
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU(s), "
        f"load average {os.getloadavg()[0]:.1f} at the start, 1 torch thread, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}"
    )
    print()
    if args.transform_pairs:
        transform_pairs(args.cars, args.workers, args.transform_pairs)
    else:
        run(args.cars, args.workers, args.repeats, args.epochs)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"(load average {os.getloadavg()[0]:.1f} at the end; main process: peak RSS "
        f"{usage.ru_maxrss / 1024:,.0f} MiB, {usage.ru_minflt:,} minor page faults)"
    )
    print()


if __name__ == "__main__":
    main()
