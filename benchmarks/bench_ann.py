"""How much recall does approximate search give up, for how much speed, at 10^6 x 64-d?

Question: for a gallery of ``--n`` (default 10^6) 64-d unit embeddings, what
recall@10 (fraction of the true 10 nearest neighbours found) and queries per
second do sktriplet's approximate indexes (faiss HNSW, faiss IVF, hnswlib)
reach, compared with the exact default (scikit-learn ``NearestNeighbors``,
brute force), and how much memory does each index take?

Data (``--data clustered``, the default): clustered synthetic unit vectors,
like trained embeddings: ``--n / 100`` random unit centres, each gallery row
a centre plus Gaussian noise (sigma 0.1 per coordinate), renormalised;
``--queries`` fresh rows drawn the same way. ``--data iid``: i.i.d. standard
normal rows and queries, without any structure, the hardest case for a graph
or inverted lists. Distance: squared Euclidean (on unit vectors, the cosine
ranking). Ground truth: exact top-10 by a blocked matrix product in float64.
The search parameter ``auto`` is the indexes' default (``ef_search="auto"``,
``nprobe="auto"``; see ``sktriplet.evaluation.neighbors.auto_ef_search``).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_ann.py            # 10^6 rows
    OMP_NUM_THREADS=1 python benchmarks/bench_ann.py --n 100000 --threads 1
    OMP_NUM_THREADS=1 python benchmarks/bench_ann.py --n 20000 --data iid

Prints a Markdown table (paste into docs/benchmarks.md) plus the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from sktriplet.evaluation.neighbors import (
    ExactIndex,
    FaissIndex,
    HNSWIndex,
    auto_ef_search,
    auto_nprobe,
)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_data(
    n: int, n_queries: int, dim: int, seed: int, kind: str = "clustered"
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "iid":
        G = rng.standard_normal((n, dim), dtype=np.float32)
        return G, rng.standard_normal((n_queries, dim), dtype=np.float32)
    n_centres = max(n // 100, 1)
    centres = rng.standard_normal((n_centres, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), dtype=np.float32)
        for s in range(0, m, 100_000):
            e = min(m, s + 100_000)
            x = centres[rng.integers(0, n_centres, e - s)]
            x = x + 0.1 * rng.standard_normal((e - s, dim), dtype=np.float32)
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(n_queries)


def ground_truth(G: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    g = torch.from_numpy(G).double()
    q = torch.from_numpy(Q).double()
    g2 = (g * g).sum(1)
    ids = []
    for s in range(0, len(q), 100):
        d = g2[None, :] - 2.0 * q[s : s + 100] @ g.T
        ids.append(torch.topk(d, k, dim=1, largest=False).indices.numpy())
    return np.concatenate(ids)


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ids, truth, strict=True)]
    return float(np.mean(hits) / truth.shape[1])


def timed_search(index, Q: np.ndarray, k: int, min_seconds: float = 1.0):
    start = time.perf_counter()
    _, ids = index.search(Q, k)
    elapsed = time.perf_counter() - start
    reps = 1
    while elapsed < min_seconds and reps < 20:  # fast indexes: repeat for a stable rate
        t0 = time.perf_counter()
        index.search(Q, k)
        elapsed += time.perf_counter() - t0
        reps += 1
    return ids, reps * len(Q) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=float, default=1e6, help="gallery rows")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--exact-queries",
        type=int,
        default=200,
        help="queries timed for the (slow) exact sklearn search",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", choices=["clustered", "iid"], default="clustered")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], help="rows to skip: exact faiss hnswlib")
    args = parser.parse_args()
    n, k = int(args.n), 10
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    G, Q = make_data(n, args.queries, args.dim, args.seed, args.data)
    truth = ground_truth(G, Q, k)
    print(
        f"data + ground truth: {time.perf_counter() - t0:.1f} s; "
        f"gallery {G.nbytes / 2**20:.0f} MiB",
        flush=True,
    )

    rows = []

    def add_row(name, params, build_s, mem, ids, qps):
        rows.append((name, params, build_s, mem, recall(ids, truth), qps))
        print(
            f"{name:28s} {params:14s} build {build_s:7.1f} s  mem {mem / 2**20:7.0f} MiB  "
            f"recall@10 {rows[-1][4]:.4f}  {qps:9.0f} q/s",
            flush=True,
        )

    if "exact" not in args.skip:
        t0 = time.perf_counter()
        index = ExactIndex("sqeuclidean", n_jobs=args.threads)
        index.add(G)
        index.search(Q[:1], k)  # fits NearestNeighbors
        build = time.perf_counter() - t0
        mem = G.nbytes  # it keeps the float32 gallery array itself
        m = args.exact_queries
        ids, qps = timed_search(index, Q[:m], k, min_seconds=0)
        rows.append(
            ("exact: sklearn brute (default)", "-", build, mem, recall(ids, truth[:m]), qps)
        )
        print(rows[-1], flush=True)
        del index

    if "faiss" not in args.skip:
        t0 = time.perf_counter()
        flat = FaissIndex("sqeuclidean", factory="Flat", n_threads=args.threads)
        flat.add(G)
        build = time.perf_counter() - t0
        ids, qps = timed_search(flat, Q[: args.exact_queries], k, min_seconds=0)
        rows.append(
            (
                "exact: faiss Flat",
                "-",
                build,
                flat.memory_bytes(),
                recall(ids, truth[: args.exact_queries]),
                qps,
            )
        )
        print(rows[-1], flush=True)
        del flat

        t0 = time.perf_counter()
        hnsw = FaissIndex("sqeuclidean", factory="HNSW32", n_threads=args.threads)
        hnsw.add(G)
        build = time.perf_counter() - t0
        mem = hnsw.memory_bytes()
        for ef in (16, 64, 256, "auto"):
            hnsw.ef_search = ef
            ids, qps = timed_search(hnsw, Q, k)
            label = f"auto ({auto_ef_search(n, k)})" if ef == "auto" else ef
            add_row("faiss HNSW32", f"efSearch={label}", build, mem, ids, qps)
        del hnsw

        n_lists = 1024 if n >= 200_000 else max(16, n // 200)
        t0 = time.perf_counter()
        ivf = FaissIndex("sqeuclidean", factory=f"IVF{n_lists},Flat", n_threads=args.threads)
        ivf.add(G)
        build = time.perf_counter() - t0
        mem = ivf.memory_bytes()
        for nprobe in (4, 16, 64, "auto"):
            ivf.nprobe = nprobe
            ids, qps = timed_search(ivf, Q, k)
            label = f"auto ({auto_nprobe(n_lists)})" if nprobe == "auto" else nprobe
            add_row(f"faiss IVF{n_lists},Flat", f"nprobe={label}", build, mem, ids, qps)
        del ivf

    if "hnswlib" not in args.skip:
        before = rss_bytes()
        t0 = time.perf_counter()
        hl = HNSWIndex("sqeuclidean", M=16, ef_construction=100, n_threads=args.threads)
        hl.add(G)
        build = time.perf_counter() - t0
        mem = max(rss_bytes() - before, 0)
        for ef in (16, 64, 256, "auto"):
            hl.ef_search = ef
            ids, qps = timed_search(hl, Q, k)
            label = f"auto ({auto_ef_search(n, k)})" if ef == "auto" else ef
            add_row("hnswlib M=16, efC=100", f"ef={label}", build, mem, ids, qps)

    print()
    print(
        f"Gallery {n:,} x {args.dim}-d float32 {args.data} ({G.nbytes / 2**20:.0f} MiB), "
        f"{args.queries} queries, k=10, {args.threads} thread(s); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs."
    )
    print()
    print(
        "Memory: the gallery array (exact), the serialised faiss index, the growth of the "
        "process's resident memory while hnswlib builds."
    )
    print()
    print("| index | search parameter | build (s) | index memory (MiB) | recall@10 | queries/s |")
    print("|---|---|---:|---:|---:|---:|")
    for name, params, build, mem, rec, qps in rows:
        print(f"| {name} | {params} | {build:.1f} | {mem / 2**20:.0f} | {rec:.3f} | {qps:,.0f} |")


if __name__ == "__main__":
    main()
