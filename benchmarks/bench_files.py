"""Image files on disk: bounded memory of a lazy pass, and JPEG decoding speed.

Questions:

1. **Memory.** Is the peak memory of one full pass of a DataLoader over an
   :class:`sktriplet.inputs.files.ImageFileDataset` (training augmentation,
   ``image_size`` 64, batches of 64, 0 / 1 / 2 workers) the same for 2,000
   and for 20,000 files (target: within 10 %)? The files are synthesised
   JPEGs of mixed sizes (300 distinct images of 40 to 320 px, hard-linked to make
   up the count). Every (files, workers) pair runs in a fresh subprocess; a
   thread samples the proportional set size (PSS, so pages that forked
   workers share are counted once) of the process and its workers every
   10 ms. "peak" is the highest total PSS during the pass; "before" is the
   PSS once the data set is built, before the first batch.
2. **Decoding.** How many images per second does decoding with
   ``Image.draft`` (libjpeg's DCT scaling, :mod:`sktriplet.vision.decode`)
   give on the real Stanford Cars JPEGs (73 to 3896 px), against decoding
   at full size, both resized to ``image_size`` with the evaluation policy?
   The two alternate file by file over several rounds, in one process.

:func:`plain_loop_images_per_s` is the plain-PyTorch side of the fit
throughput comparison (a DataLoader over a minimal Dataset with the same
decoding, a given model, triplet loss, Adam), for a later comparison with
``TripletEmbedder.fit`` on paths; ``--plain`` runs it on the cars JPEGs.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_files.py [--files 2000 20000] [--workers 0 1 2]
    [--cars ../shared/data/stanford_cars_196x8/images] [--cars-limit 200] [--rounds 3]
    [--skip-memory] [--skip-decode] [--plain] [--mode pass|estimator]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from sktriplet.inputs.files import ImageFileDataset
from sktriplet.training.sampling import PKSampler
from sktriplet.triplets.losses import triplet_loss
from sktriplet.vision.folders import list_image_folder
from sktriplet.vision.transforms import RandomResizedCrop, ResizeCenterCrop, augmentation_rng

MB = 2**20
CARS = Path(__file__).resolve().parents[2] / "shared" / "data" / "stanford_cars_196x8" / "images"


# ------------------------------------------------------------- synthesis
def synthesise_jpegs(folder: Path, n_files: int, n_distinct: int = 300, seed: int = 0) -> list:
    """``n_files`` JPEG paths in ``folder``: ``n_distinct`` images of mixed sizes, hard-linked."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    distinct = []
    for i in range(n_distinct):
        h, w = (int(s) for s in rng.integers(40, 320, size=2))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
        noise = rng.normal(0, 20, size=(h, w, 3))
        path = folder / f"distinct_{i:04d}.jpg"
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=85)
        distinct.append(path)
    paths = []
    for i in range(n_files):
        path = folder / f"{i:06d}.jpg"
        try:
            os.link(distinct[i % n_distinct], path)
        except OSError:  # no hard links on this file system: copy
            path.write_bytes(distinct[i % n_distinct].read_bytes())
        paths.append(str(path))
    return paths


# ------------------------------------------------------------- memory
def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


class TreeSampler(threading.Thread):
    """Sample the PSS of this process plus its children every 10 ms; keep the maximum."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = self.total()
        self._stop_event = threading.Event()

    @staticmethod
    def total() -> int:
        pid = os.getpid()
        return _pss(pid) + sum(_pss(c) for c in _children(pid))

    def run(self) -> None:
        while not self._stop_event.wait(0.01):
            self.peak = max(self.peak, self.total())

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def memory_child(folder: str, n_files: int, workers: int) -> dict:
    """One full training pass over ``n_files`` files; memory and time as a dict."""
    torch.set_num_threads(1)
    paths = [os.path.join(folder, f"{i:06d}.jpg") for i in range(n_files)]
    labels = np.arange(n_files) % 100
    dataset = ImageFileDataset(paths, labels, image_size=64, channels=3, train=True, seed=0)
    del paths
    sampler = BatchSampler(
        RandomSampler(dataset, generator=torch.Generator().manual_seed(0)), 64, drop_last=False
    )
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=workers)
    before = TreeSampler.total()
    watcher = TreeSampler()
    watcher.start()
    t0 = time.perf_counter()
    seen = 0
    for images, _ in loader:
        seen += len(images)
    seconds = time.perf_counter() - t0
    peak = watcher.stop()
    assert seen == n_files
    return {"before": before, "peak": peak, "seconds": seconds}


def estimator_child(folder: str, n_files: int, workers: int) -> dict:
    """``TripletEmbedder.fit`` (one epoch) then ``transform`` on ``n_files`` files."""
    from sktriplet import TripletEmbedder

    torch.set_num_threads(1)
    paths = [os.path.join(folder, f"{i:06d}.jpg") for i in range(n_files)]
    labels = np.arange(n_files) % 100
    est = TripletEmbedder(
        image_size=32,
        max_epochs=1,
        batch_size=64,
        module__channels=(8, 16),
        random_state=0,
        iterator_train__num_workers=workers,
        iterator_valid__num_workers=workers,
    )
    before = TreeSampler.total()
    watcher = TreeSampler()
    watcher.start()
    t0 = time.perf_counter()
    Z = est.fit(paths, labels).transform(paths)
    seconds = time.perf_counter() - t0
    peak = watcher.stop()
    assert Z.shape[0] == n_files
    import resource

    # High-water marks (kernel-kept, not sampled): this process, and the
    # largest of the data-loader workers that have ended.
    main_hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    worker_hwm = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "before": before,
        "peak": peak,
        "seconds": seconds,
        "main_hwm": main_hwm,
        "worker_hwm": worker_hwm,
    }


def run_memory(files: list[int], workers: list[int], mode: str = "pass") -> None:
    """Peak memory of a data-loader pass (``mode="pass"``) or of fit + transform."""
    what = "one pass, image_size 64" if mode == "pass" else (
        "TripletEmbedder fit (1 epoch) + transform, image_size 32"
    )
    print(f"## Peak memory (PSS of the process and its workers) of {what}")
    print()
    if mode == "pass":
        print("| workers | files | before | peak | peak / peak at fewest files | images/s |")
        print("|---:|---:|---:|---:|---:|---:|")
    else:
        print(
            "| workers | files | before | peak (sampled PSS) | ratio | main process high-water "
            "RSS | ratio | largest worker high-water RSS | images/s |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthesise_jpegs(Path(tmp), max(files))
        made = time.perf_counter() - t0
        for w in workers:
            first = None
            for n in sorted(files):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", tmp, str(n), str(w), "--mode", mode],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                first = first or r
                if mode != "pass":
                    rate = 2 * n / r["seconds"]
                    print(
                        f"| {w} | {n:,} | {r['before'] / MB:,.1f} MiB | {r['peak'] / MB:,.1f} MiB "
                        f"| {r['peak'] / first['peak']:.3f} | {r['main_hwm'] / MB:,.1f} MiB "
                        f"| {r['main_hwm'] / first['main_hwm']:.3f} "
                        f"| {r['worker_hwm'] / MB:,.1f} MiB | {rate:,.0f} |",
                        flush=True,
                    )
                    continue
                print(
                    f"| {w} | {n:,} | {r['before'] / MB:,.1f} MiB | {r['peak'] / MB:,.1f} MiB "
                    f"| {r['peak'] / first['peak']:.3f} | {n / r['seconds']:,.0f} |",
                    flush=True,
                )
    print()
    print(f"({max(files):,} files synthesised in {made:.1f} s)")
    print()


# ------------------------------------------------------------- decoding
def run_decode(cars: Path, limit: int, rounds: int, sizes=(64, 224)) -> None:
    from PIL import Image

    paths, _, _ = list_image_folder(cars)
    sides = np.array([max(Image.open(p).size) for p in paths])
    spread = paths[np.linspace(0, len(paths) - 1, min(limit, len(paths))).astype(int)]
    large = paths[sides > 2000][: max(limit // 10, 1)]
    print(f"## Decoding Stanford Cars JPEGs, {rounds} rounds alternating file by file")
    print()
    print("| files | image_size | with draft (images/s) | full decode (images/s) | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name, group in [
        (f"{len(spread)} spread over the set", spread),
        (f"{len(large)} with a side > 2000 px", large),
    ]:
        for size in sizes:
            policy = ResizeCenterCrop(size)
            spent = {True: 0.0, False: 0.0}
            for _ in range(rounds):
                for p in group:
                    for draft in (True, False):
                        t0 = time.perf_counter()
                        policy(p, 3, draft=draft)
                        spent[draft] += time.perf_counter() - t0
            n = len(group) * rounds
            print(
                f"| {name} | {size} | {n / spent[True]:,.0f} | {n / spent[False]:,.0f} "
                f"| {spent[False] / spent[True]:.2f}x |",
                flush=True,
            )
    print()


# ------------------------------------------------------------- plain loop
class PlainImageFiles(Dataset):
    """What a plain PyTorch user writes: decode one file per item, collate by default."""

    def __init__(self, paths, labels, image_size, channels: int, seed: int = 0) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels)
        self.policy = RandomResizedCrop(image_size)
        self.channels = channels
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        rng = augmentation_rng(self.seed, 0, i)
        image = self.policy(self.paths[i], rng, self.channels)
        return torch.from_numpy(image), int(self.labels[i])


def plain_loop_images_per_s(
    paths,
    labels,
    model: torch.nn.Module,
    *,
    image_size=64,
    channels: int = 3,
    batch_size: int = 64,
    samples_per_class: int = 4,
    num_workers: int = 0,
    n_batches: int = 20,
    epochs: int = 1,
    cpu_rate: bool = False,
    scale_pixels: bool = True,
    lr: float = 1e-3,
    margin: float = 0.2,
    seed: int = 0,
) -> float:
    """Training throughput of a hand-written loop over image files, in images/s.

    A ``DataLoader`` over :class:`PlainImageFiles` (the same decoding and
    random resized crop as :class:`~sktriplet.inputs.files.ImageFileDataset`)
    with PK batches, pixels scaled to ``[0, 1]``, ``model``, semi-hard
    triplet loss and Adam. Each of ``epochs`` passes over the loader draws
    ``n_batches + 1`` batches (workers are started anew for each pass, as a
    plain ``for epoch in ...`` loop does); the clock starts after the very
    first batch (worker start-up and warm-up excluded) and stops after the
    last, so ``epochs * (n_batches + 1) - 1`` batches are timed. With
    ``cpu_rate=True`` returns ``(images/s, images per CPU-second of this
    process)``; the second is all the work with 0 workers and hardly moves
    with load from other processes. ``scale_pixels=False`` feeds the uint8
    batches as they are, for a model that standardises its own input (the
    estimator's network does).
    """
    torch.manual_seed(seed)
    sampler = PKSampler(
        labels,
        batch_size=batch_size,
        samples_per_class=samples_per_class,
        n_batches=n_batches + 1,
        random_state=seed,
    )
    dataset = PlainImageFiles(paths, labels, image_size, channels, seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    images_seen, t0 = 0, None
    for _ in range(epochs):
        for x, y in loader:
            x = x.float().div_(255) if scale_pixels else x  # else: the model standardises
            loss = triplet_loss(model(x), y, margin=margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if t0 is None:
                t0, cpu0 = time.perf_counter(), time.process_time()
            else:
                images_seen += len(x)
    rate = images_seen / (time.perf_counter() - t0)
    if cpu_rate:  # also images per CPU-second of this process
        return rate, images_seen / (time.process_time() - cpu0)
    return rate


def run_plain(cars: Path, workers: list[int], n_batches: int) -> None:
    from sktriplet.networks import ConvEmbedder

    paths, labels, _ = list_image_folder(cars)
    print(f"## Plain PyTorch loop on Stanford Cars files, ConvEmbedder, {n_batches} batches of 64")
    print()
    print("| workers | images/s |")
    print("|---:|---:|")
    for w in workers:
        model = ConvEmbedder(in_channels=3, image_size=(64, 64))
        rate = plain_loop_images_per_s(paths, labels, model, num_workers=w, n_batches=n_batches)
        print(f"| {w} | {rate:,.1f} |", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cars", type=Path, default=CARS)
    parser.add_argument("--cars-limit", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--plain", action="store_true", help="also time the plain loop")
    parser.add_argument("--plain-batches", type=int, default=10)
    parser.add_argument(
        "--mode",
        choices=("pass", "estimator"),
        default="pass",
        help="memory of a data-loader pass, or of TripletEmbedder fit + transform",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, n, w = args.child
        child = memory_child if args.mode == "pass" else estimator_child
        print(json.dumps(child(folder, int(n), int(w))))
        return
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU(s), "
        f"load average {os.getloadavg()[0]:.1f}, 1 torch thread"
    )
    print()
    if not args.skip_memory:
        run_memory(args.files, args.workers, args.mode)
    if not args.skip_decode:
        run_decode(args.cars, args.cars_limit, args.rounds)
    if args.plain:
        run_plain(args.cars, args.workers, args.plain_batches)


if __name__ == "__main__":
    main()
