"""How fast and how lean is sktriplet's online mining, next to PML and the floor?

Times the triplet loss forward + backward (median of ``--repeats`` runs after
one warm-up) and measures the peak resident memory of each configuration in a
fresh subprocess, for batch sizes from 64 to 16384 of unit-normalised 64-d
embeddings:

- sktriplet ``triplet_loss`` with ``mining="semihard"``, ``"hard"`` and ``"all"``;
- pytorch-metric-learning (PML) ``TripletMarginMiner(type_of_triplets="semihard")``
  + ``TripletMarginLoss`` and ``BatchHardMiner`` + ``TripletMarginLoss``
  (the ``compare`` extra; skipped with a note when not installed);
- the floor: the pairwise distance matrix alone, ``torch.cdist`` forward +
  backward.

Two label distributions: PK batches (``B / K`` classes of ``K`` samples, for
each ``--k``) and "few" (4 large classes of ``B / 4``, not a PK batch). Ratios
are to the floor and to PML's corresponding miner + loss (``PML ms / this
ms``: how many times faster sktriplet is). "x floor" divides medians measured
in separate processes; "x floor, paired" is the median ratio of runs of the
floor and the method taken back to back in one process (after the peak
memory was read), which a shared machine's changing load disturbs less. A
configuration whose predicted memory (extrapolated from the previous batch
size with the growth measured between the last two sizes, kept between
``B^2`` and the method's bound, ``B^3`` for PML's semi-hard miner) or time
exceeds the limits is skipped with a note instead of crashing the machine.

Usage: python benchmarks/bench_mining.py [--device cpu] [--sizes 64 256 1024 4096 16384]
       [--k 8 16] [--labels pk few] [--threads 1] [--max-memory-gib 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("floor", "semihard", "hard", "all", "pml-semihard", "pml-batchhard")
#: Exponent of memory and time growth in B, used to predict the next size.
GROWTH = {"pml-semihard": 3, "pml-batchhard": 2, "floor": 2, "semihard": 2, "hard": 2, "all": 2}
#: PML counterpart of each sktriplet strategy (for the ``x PML`` column).
PML_OF = {"semihard": "pml-semihard", "hard": "pml-batchhard"}


def make_batch(batch: int, dim: int, k: int, labels: str, device: str, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen), dim=1)
    if labels == "pk":
        y = torch.arange(batch // k).repeat_interleave(k)
        y = torch.cat([y, torch.arange(batch - len(y)) + len(y)])  # leftovers
    else:
        y = torch.randint(0, 4, (batch,), generator=gen)
    perm = torch.randperm(batch, generator=gen)
    return x[perm].to(device), y[perm].to(device)


def loss_fn(method: str, margin: float = 0.2):
    """A function ``(embeddings, labels) -> scalar loss`` for ``method``."""
    import torch

    if method == "floor":
        return lambda e, y: torch.cdist(e, e).sum()
    if method.startswith("pml-"):
        from pytorch_metric_learning import losses, miners

        miner = (
            miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")
            if method == "pml-semihard"
            else miners.BatchHardMiner()
        )
        loss = losses.TripletMarginLoss(margin=margin)
        return lambda e, y: loss(e, y, miner(e, y))
    from sktriplet.triplets.losses import triplet_loss

    return lambda e, y: triplet_loss(e, y, margin=margin, mining=method)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def child(args) -> None:
    """Run one configuration and print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    x, y = make_batch(args.batch, args.dim, args.k, args.labels, args.device)
    fn = loss_fn(args.method)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def once():
        e = x.clone().requires_grad_(True)
        loss = fn(e, y)
        loss.backward()
        _sync(args.device)
        return loss

    times = []
    loss = once()  # warm-up
    budget_end = time.perf_counter() + args.time_budget
    for i in range(args.repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
        if i + 1 >= 5 and time.perf_counter() > budget_end:
            break
    out = {
        "median_ms": 1e3 * statistics.median(times),
        "runs": len(times),
        "loss": float(loss.detach()),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "base_rss_mib": base_rss,
    }
    if args.device.startswith("cuda"):
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if args.method != "floor" and not args.method.startswith("pml-"):
        # The ratio to the floor, measured in pairs (floor, method) in this
        # process after the peak memory was read: a load change on a shared
        # machine then moves both halves of a pair alike.
        floor_fn = loss_fn("floor")

        def floor_once():
            e = x.clone().requires_grad_(True)
            floor_fn(e, y).backward()
            _sync(args.device)

        floor_once()
        ratios = []
        budget_end = time.perf_counter() + args.time_budget
        for i in range(args.repeats):
            t0 = time.perf_counter()
            floor_once()
            t1 = time.perf_counter()
            once()
            ratios.append((time.perf_counter() - t1) / (t1 - t0))
            if i + 1 >= 5 and time.perf_counter() > budget_end:
                break
        out["paired_ratio"] = statistics.median(ratios)
    print(json.dumps(out))


def run_config(args, method: str, batch: int, labels: str, k: int) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--method",
        method,
        "--batch",
        str(batch),
        "--labels",
        labels,
        "--dim",
        str(args.dim),
        "--k",
        str(k),
        "--device",
        args.device,
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
        "--time-budget",
        str(args.time_budget),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:120]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def have_pml() -> bool:
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096, 16384])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument(
        "--k", type=int, nargs="+", default=[8], help="samples per class of PK batches"
    )
    parser.add_argument("--labels", nargs="+", default=["pk", "few"], choices=["pk", "few"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (at least 5)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-memory-gib", type=float, default=8.0)
    parser.add_argument(
        "--time-budget", type=float, default=120.0, help="seconds per configuration (predicted)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.labels = args.labels[0]
        args.k = args.k[0]
        child(args)
        return
    args.repeats = max(args.repeats, 5)
    methods = list(args.methods)
    notes = []
    if not have_pml():
        methods = [m for m in methods if not m.startswith("pml-")]
        notes.append("pytorch-metric-learning is not installed: PML columns skipped.")
    import torch

    rows = []
    settings = [(lab, k) for lab in args.labels for k in (args.k if lab == "pk" else [None])]
    for labels, k in settings:
        name = f"pk, K={k}" if labels == "pk" else labels
        last: dict[str, list[tuple[int, dict]]] = {}
        for batch in args.sizes:
            results = {}
            for method in methods:
                skip = None
                if method in last:
                    prev_b, prev = last[method][-1]
                    scale = (batch / prev_b) ** GROWTH[method]
                    if "error" in prev or "skip" in prev:
                        skip = "skipped: smaller size failed or was skipped"
                    else:
                        mem = prev["peak_rss_mib"] - prev["base_rss_mib"]
                        mem_scale = scale
                        if len(last[method]) > 1 and "peak_rss_mib" in last[method][-2][1]:
                            # The growth measured between the last two sizes, if faster.
                            b0, r0 = last[method][-2]
                            m0 = max(r0["peak_rss_mib"] - r0["base_rss_mib"], 1.0)
                            growth = math.log(max(mem, 1.0) / m0) / math.log(prev_b / b0)
                            mem_scale = (batch / prev_b) ** min(max(growth, 2.0), GROWTH[method])
                        mem_pred = prev["base_rss_mib"] + mem * mem_scale
                        time_pred = prev["median_ms"] * scale * 6 / 1e3
                        if mem_pred > args.max_memory_gib * 1024:
                            skip = f"skipped: predicted {mem_pred / 1024:.0f} GiB"
                        elif time_pred > args.time_budget:
                            skip = f"skipped: predicted {time_pred:.0f} s"
                res = {"skip": skip} if skip else run_config(args, method, batch, labels, k or 8)
                results[method] = res
                last.setdefault(method, []).append((batch, res))
                print(f"# {name} B={batch} {method}: {res}", file=sys.stderr, flush=True)
            rows.append((name, batch, results))

    print(
        f"\nMachine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"device {args.device}, {args.threads} thread(s), load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    print(
        "| labels | B | method | median ms | x floor | x floor, paired | PML ms / this ms "
        "| peak RSS MiB (+ over start) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for labels, batch, results in rows:
        floor = results.get("floor", {})
        for method, res in results.items():
            if "skip" in res or "error" in res:
                print(
                    f"| {labels} | {batch} | {method} | {res.get('skip') or res['error']} | | | | |"
                )
                continue
            ratio_floor = (
                f"{res['median_ms'] / floor['median_ms']:.2f}" if "median_ms" in floor else ""
            )
            pml = results.get(PML_OF.get(method, ""), {})
            ratio_pml = (
                f"{pml['median_ms'] / res['median_ms']:.1f}"
                if "median_ms" in pml and method in PML_OF
                else ""
            )
            paired = f"{res['paired_ratio']:.2f}" if "paired_ratio" in res else ""
            mem = res.get("cuda_peak_mib", res["peak_rss_mib"])
            over = res["peak_rss_mib"] - res["base_rss_mib"]
            print(
                f"| {labels} | {batch} | {method} | {res['median_ms']:.1f} | {ratio_floor} | "
                f"{paired} | {ratio_pml} | {mem:.0f} (+{over:.0f}) |"
            )
    for note in notes:
        print(f"\n{note}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"labels": lab, "B": b, **r} for lab, b, r in rows], fh, indent=1)


if __name__ == "__main__":
    main()
