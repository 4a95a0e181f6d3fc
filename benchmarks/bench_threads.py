"""How do torch's threads change the run time of a small fit, alone and under load?

Question: ``examples/quickstart.py`` (two ``TripletEmbedder`` fits on the
8x8 digits, a small MLP) was seen to take many times longer with the default
threads than with ``OMP_NUM_THREADS=1`` on a busy 2-core machine. This
script runs it in fresh processes with the default threads and with
``OMP_NUM_THREADS=1``, with the machine as it is ("no extra load") and with
one extra CPU-bound process spinning on a core ("+1 busy process"), importing
scikit-learn before torch and torch before scikit-learn. Three thread
settings: "default" (no variable set: the library's own choice,
``sktriplet.runtime.threads.fit_threads``, one thread for this small
network), "torch default" (no variable set and the library's choice switched
off, as before it existed: torch's thread count) and "OMP_NUM_THREADS=1".
Configurations are interleaved, ``--repeats`` times each, and the table
reports the median wall time of the whole script and the 1-minute load
average before each run. ``--settings "default + transform"`` adds the
proposed change to ``TripletEmbedder.transform`` (embedding inside
``fit_threads`` too), patched in for the run. It also lists the thread pools (threadpoolctl)
each import order loads.

``--steps`` instead times one training step (forward, backward, Adam) of
three MLPs on a batch of 128, with one and with two torch threads,
interleaved in one process: the sizes around ``SMALL_NETWORK_WORK``.

Usage:
    python benchmarks/bench_threads.py                 # 12 configurations x 1 run
    python benchmarks/bench_threads.py --repeats 3
    python benchmarks/bench_threads.py --steps

Prints a Markdown table (paste into docs/scaling.md) plus the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "quickstart.py"
ORDERS = {
    "sklearn, torch": "import sklearn, sklearn.neighbors, torch",
    "torch, sklearn": "import torch, sklearn, sklearn.neighbors",
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
SETTINGS = ("default", "torch default", "OMP_NUM_THREADS=1")
# The proposed integration in TripletEmbedder.transform, patched in for a row.
TRANSFORM_TOO = (
    "import sktriplet.embedder as _e\n"
    "from sktriplet.runtime.threads import fit_threads as _ft\n"
    "_embed = _e.TripletEmbedder._embed\n"
    "def _threaded(self, X):\n"
    "    with _ft(module=self.net_.module_, batch_size=self.net_.batch_size):\n"
    "        return _embed(self, X)\n"
    "_e.TripletEmbedder._embed = _threaded\n"
)
NO_FIX = (
    "import contextlib, sktriplet.training.net as _net\n"
    "_net.fit_threads = lambda *a, **k: contextlib.nullcontext()\n"
)


def pools(order: str) -> str:
    code = (
        f"{ORDERS[order]}\nfrom threadpoolctl import threadpool_info\n"
        "print('; '.join(f\"{d['internal_api']} {os.path.basename(d['filepath'])} "
        "({d['num_threads']})\" for d in threadpool_info()))"
    )
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    out = subprocess.run(
        [sys.executable, "-c", "import os\n" + code], env=env, capture_output=True, text=True
    )
    return out.stdout.strip() or out.stderr.strip()[-300:]


def run_once(order: str, threads: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if threads == "OMP_NUM_THREADS=1":
        env.update(dict.fromkeys(THREAD_VARS, "1"))
    patch = {"torch default": NO_FIX, "default + transform": TRANSFORM_TOO}.get(threads, "")
    code = f"{ORDERS[order]}\n{patch}import runpy\n"
    code += f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - start


def step_times(rounds: int = 6, steps: int = 20) -> None:
    import torch
    from torch import nn

    from sktriplet.runtime.threads import SMALL_NETWORK_WORK

    print(f"load average {os.getloadavg()[0]:.1f}; SMALL_NETWORK_WORK = {SMALL_NETWORK_WORK:.2e}")
    print()
    print("| MLP (in, width) | parameters x batch | 1 thread (ms) | 2 threads (ms) |")
    print("|---|---:|---:|---:|")
    torch.manual_seed(0)
    for n_in, width in ((64, 256), (256, 512), (1024, 1024)):
        net = nn.Sequential(
            nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, 64),
        )  # fmt: skip
        opt = torch.optim.Adam(net.parameters())
        x = torch.randn(128, n_in)
        ms: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(rounds):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                start = time.perf_counter()
                for _ in range(steps):
                    opt.zero_grad()
                    net(x).pow(2).sum().backward()
                    opt.step()
                ms[threads].append((time.perf_counter() - start) / steps * 1e3)
        work = sum(p.numel() for p in net.parameters()) * 128
        one, two = statistics.median(ms[1]), statistics.median(ms[2])
        print(f"| ({n_in}, {width}) | {work:.2e} | {one:.2f} | {two:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--steps", action="store_true", help="time training steps only")
    parser.add_argument(
        "--settings", nargs="*", default=list(SETTINGS),
        choices=[*SETTINGS, "default + transform"],
        help="thread settings to run ('default + transform': also transform inside "
        "fit_threads, the proposed TripletEmbedder change)",
    )  # fmt: skip
    parser.add_argument("--orders", nargs="*", default=list(ORDERS), choices=list(ORDERS))
    parser.add_argument("--loads", nargs="*", default=["none", "busy"], choices=["none", "busy"])
    args = parser.parse_args()
    if args.steps:
        step_times()
        return
    for order in args.orders:
        print(f"thread pools after import {order}: {pools(order)}", flush=True)
    configs = [
        (load, order, threads)
        for load in args.loads
        for order in args.orders
        for threads in args.settings
    ]
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    loadavg: dict[tuple, list[float]] = {c: [] for c in configs}
    for _ in range(args.repeats):
        for load in args.loads:
            spinner = None
            if load == "busy":
                spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            try:
                for config in [c for c in configs if c[0] == load]:
                    loadavg[config].append(os.getloadavg()[0])
                    times[config].append(run_once(config[1], config[2]))
                    print(config, f"{times[config][-1]:.1f} s", flush=True)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    print()
    print(
        f"examples/quickstart.py, whole script, median of {args.repeats} run(s); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs."
    )
    print()
    print("| extra load | import order | threads | wall time (s) | x one thread | load avg |")
    print("|---|---|---|---:|---:|---:|")
    for load, order, threads in configs:
        t = statistics.median(times[(load, order, threads)])
        one = statistics.median(times.get((load, order, "OMP_NUM_THREADS=1"), [float("nan")]))
        extra = "none" if load == "none" else "+1 busy process"
        avg = statistics.median(loadavg[(load, order, threads)])
        print(f"| {extra} | {order} | {threads} | {t:.1f} | {t / one:.2f} | {avg:.1f} |")


if __name__ == "__main__":
    main()
