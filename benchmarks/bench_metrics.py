"""How long does MAP@R take on a large set, and how much memory does it need?

Leave-one-out ``map_at_r`` (and ``retrieval_scores``) on N random 64-d
embeddings of 100 Gaussian classes, each size in a fresh subprocess so the
peak RSS (ru_maxrss) belongs to that run alone. The embeddings themselves take
N x 64 x 4 bytes (24.4 MiB at N = 100,000).

Usage: python benchmarks/bench_metrics.py [--sizes 10000 100000] [--dim 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(n: int, dim: int, device: str) -> dict:
    import numpy as np
    import torch

    from sktriplet.evaluation.metrics import map_at_r, retrieval_scores

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(100, dim))
    y = rng.integers(0, 100, n)
    X = (centers[y] + rng.normal(scale=1.5, size=(n, dim))).astype(np.float32)
    Z = torch.from_numpy(X).to(device)
    start = time.perf_counter()
    value = map_at_r(Z, y)
    t_map = time.perf_counter() - start
    start = time.perf_counter()
    retrieval_scores(Z, y, k=(1, 10))
    t_all = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "map_at_r": value, "t_map": t_map, "t_all": t_all, "rss_mib": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", type=int, default=None)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.dim, args.device)))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}\n")
    print("| N | dim | MAP@R | map_at_r (s) | retrieval_scores k=1,10 (s) | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--dim",
                str(args.dim),
                "--device",
                args.device,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['n']:,} | {args.dim} | {r['map_at_r']:.4f} | {r['t_map']:.1f} | "
            f"{r['t_all']:.1f} | {r['rss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
