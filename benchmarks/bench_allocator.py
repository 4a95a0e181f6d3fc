"""What keeping freed memory in glibc's heap does to fit and transform on the CPU.

Question: how much does :func:`sktriplet.runtime.allocator.keep_freed_memory`
(entered by ``fit`` on the CPU)
change training speed, page faults and peak memory? Each run is a fresh
process that fits ``TripletEmbedder(image_size=64)`` for ``--epochs`` epochs
on the 784 JPEGs of Stanford Cars classes 001-098 (PK batches of 64, 0
data-loader workers, 1 torch thread), then embeds the 784 JPEGs of classes
099-196, with the allocator setting of its row:

- **library** - the library as it is (glibc tuned during fit);
- **off** - ``SKTRIPLET_KEEP_FREED_MEMORY=0`` (glibc's malloc as it comes:
  blocks above its adaptive threshold, at most 32 MiB, are ``mmap``-ed and
  unmapped per step, and the heap's free top is trimmed).

The two settings alternate (library, off; then off, library; ...), so load
from other processes falls on both alike. The table gives medians over the
repeats: training images/s after the first batch, the whole ``fit`` call,
minor page faults per training step (the kernel's count for the process
during ``fit``, over its steps), the process's peak RSS, and ``transform``.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_allocator.py [--repeats 3] [--epochs 2]
    [--cars ../shared/data/stanford_cars_196x8/images]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_files import CARS  # noqa: E402
from bench_fit_files import BATCH, BatchClock, cars_split, make_estimator  # noqa: E402

from sktriplet.runtime.allocator import ENV_SWITCH  # noqa: E402

SETTINGS = {"library": "1", "off": "0"}


def child(cars: Path, epochs: int) -> dict:
    """One fit and one transform in this process; the measurements as a dict."""
    torch.set_num_threads(1)
    paths, labels, train, test = cars_split(cars)
    clock = BatchClock()
    emb = make_estimator(0, clock, epochs)
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    emb.fit(paths[train], labels[train])
    fit_wall = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    steps = epochs * int(np.ceil(train.sum() / BATCH))
    t0 = time.perf_counter()
    emb.transform(paths[test])
    transform = time.perf_counter() - t0
    return {
        "rate": clock.rate(),
        "fit_wall": fit_wall,
        "faults_per_step": faults / steps,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "transform": transform,
    }


def run_child(setting: str, cars: Path, epochs: int) -> dict:
    env = {**os.environ, ENV_SWITCH: SETTINGS[setting]}
    done = subprocess.run(
        [sys.executable, __file__, "--child", "--cars", str(cars), "--epochs", str(epochs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cars", type=Path, default=CARS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.cars, args.epochs)))
        return
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU(s), load average "
        f"{os.getloadavg()[0]:.1f} at the start, GLIBC_TUNABLES="
        f"{os.environ.get('GLIBC_TUNABLES', '(unset)')}"
    )
    print()
    results: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for r in range(args.repeats):
        order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
        for setting in order:
            results[setting].append(run_child(setting, args.cars, args.epochs))
            print(f"repeat {r} {setting}: {results[setting][-1]}", file=sys.stderr, flush=True)
    print(
        f"## Stanford Cars JPEGs, image_size 64, batches of {BATCH}, {args.epochs} epoch(s), "
        f"0 workers, median of {args.repeats} fresh processes per setting"
    )
    print()
    print(
        "| allocator | fit (images/s) | fit wall (s) | minor faults per step "
        "| peak RSS (MiB) | transform (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for setting, rows in results.items():

        def med(key: str, rows: list[dict] = rows) -> float:
            return statistics.median(row[key] for row in rows)

        print(
            f"| {setting} | {med('rate'):.1f} | {med('fit_wall'):.1f} "
            f"| {med('faults_per_step'):,.0f} | {med('peak_mib'):,.0f} "
            f"| {med('transform'):.2f} |"
        )
    print()
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
