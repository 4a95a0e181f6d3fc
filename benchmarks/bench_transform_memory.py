"""Peak memory of ``TripletEmbedder.transform`` on a million rows.

Question: does ``transform`` stream its input through the network in
batches, so that its extra memory is the output array plus about one batch,
whatever the number of rows? Or does it grow with the input, as a single
forward pass over all rows would (every hidden layer's activations for every
row at once)?

Method: fit a default ``TripletEmbedder`` (MLP 64 -> 256 -> 256 -> 64) on
2,000 random rows, build ``X`` of ``n_rows x 64`` float32 (in chunks, so that
building it leaves no high-water mark above its own size), then measure the
process's resident set size (RSS) just before ``transform(X)`` and its peak
during the call: a thread samples ``/proc/self/statm`` every millisecond, and
``getrusage``'s ``ru_maxrss`` confirms the peak. "Extra" is peak minus
before; it is compared with the output (``n_rows x n_components`` float32)
plus one batch (``TRANSFORM_BATCH_SIZE`` rows of input, hidden activations
and output).

With ``--naive`` the same network also runs as one forward pass over all rows
(what ``transform`` avoids); that needs several GB for a million rows.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_transform_memory.py [--rows 1000000] [--naive]
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time

import numpy as np
import torch

from sktriplet import TripletEmbedder
from sktriplet.embedder import TRANSFORM_BATCH_SIZE

MB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakSampler(threading.Thread):
    """Sample the RSS every millisecond until stopped; keep the maximum."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, rss())
        return self.peak


def measure(fn):
    before = rss()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    peak = sampler.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result, before, peak, maxrss, maxrss_before, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--naive", action="store_true", help="also time one forward pass")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    emb = TripletEmbedder(max_epochs=1, random_state=0, device="cpu")
    emb.fit(
        rng.normal(size=(2000, args.features)).astype(np.float32),
        rng.integers(0, 20, size=2000),
    )
    X = np.empty((args.rows, args.features), dtype=np.float32)
    for start in range(0, args.rows, 65536):
        stop = min(start + 65536, args.rows)
        X[start:stop] = rng.standard_normal((stop - start, args.features), dtype=np.float32)

    widths = [m.out_features for m in emb.net_.module_.modules() if hasattr(m, "out_features")]
    out_bytes = args.rows * emb.n_components_ * 4
    batch_bytes = TRANSFORM_BATCH_SIZE * 4 * (args.features + sum(widths))
    Z, before, peak, maxrss, maxrss_before, seconds = measure(lambda: emb.transform(X))
    assert Z.shape == (args.rows, emb.n_components_) and np.isfinite(Z).all()
    del Z

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), network widths "
        f"{args.features} -> {' -> '.join(map(str, widths))}, batch {TRANSFORM_BATCH_SIZE}"
    )
    print(
        f"X: {args.rows:,} x {args.features} float32 = {X.nbytes / MB:,.1f} MiB; "
        f"output {args.rows:,} x {emb.n_components_} float32 = {out_bytes / MB:,.1f} MiB; "
        f"one batch (input + activations + output) = {batch_bytes / MB:,.2f} MiB"
    )
    print()
    print(
        f"| {'method':<22} | {'RSS before':>11} | {'peak RSS':>11} | {'extra':>11} "
        f"| {'extra - output':>14} | {'ru_maxrss':>11} | {'seconds':>7} |"
    )
    print(f"|{'-' * 24}|{'-' * 13}|{'-' * 13}|{'-' * 13}|{'-' * 16}|{'-' * 13}|{'-' * 9}|")

    def row(name, before, peak, maxrss, seconds):
        extra = peak - before
        print(
            f"| {name:<22} | {before / MB:>7,.1f} MiB | {peak / MB:>7,.1f} MiB "
            f"| {extra / MB:>7,.1f} MiB | {(extra - out_bytes) / MB:>10,.1f} MiB "
            f"| {maxrss / MB:>7,.1f} MiB | {seconds:>7.1f} |"
        )

    row("transform (streaming)", before, peak, maxrss, seconds)
    if maxrss_before > peak:
        print("(ru_maxrss was already above this peak before transform)")
    if args.naive:
        module = emb.net_.module_.eval()

        def naive():
            with torch.inference_mode():
                return module(torch.from_numpy(X)).numpy()

        Z, before, peak, maxrss, _, seconds = measure(naive)
        del Z
        row("one forward pass", before, peak, maxrss, seconds)


if __name__ == "__main__":
    main()
