"""Vote weights: should a judgement answered 3-0 count more than one answered 2-1?

Question: when each triplet question ("is a more like b or like c?") was put
to several people who did not all agree, what should training use: the
majority answer alone, the majority answer weighted by the agreement, or
every vote as a triplet of its own?

Setup, per seed (``--seeds``): the digits split and label-consistent
questions of ``bench_triplets.py`` (``--n-triplets`` questions over the
training part, the same draw); each question gets ``--votes`` answers, each
wrong (positive and negative swapped) with probability ``--noise``,
independently (seeded). Training is the plain loop of ``bench_triplets.py``
(``Standardize`` + ``MLPEmbedder``, Adam at ``--lr`` with a cosine decay over
``--epochs``, batches of ``--batch-triplets`` triplets, the given triplets:
``mining="none"``, margin ``--margin``) with a weighted hinge: a batch's loss
is ``sum_i w_i h_i / sum_i w_i`` with ``h_i = max(d(a_i, p_i) - d(a_i, n_i) +
margin, 0)`` (squared Euclidean on the L2-normalised embeddings), the
semantics ``fit(I, sample_weight=w)`` is meant to have. Weightings:

* ``majority``: one triplet per question (its majority answer), weight 1;
* ``agreement``: the same triplets, weight ``(votes for - votes against) /
  votes`` (3-0: 1, 2-1: 1/3);
* ``all``: every vote a triplet of its own, weight 1 (a 2-1 question
  contributes two triplets and one contradicting triplet);
* ``clean``: the correct answer to every question (what no crowd gives).

``--method estimator`` trains ``TripletEmbedder(triplets=True,
samples=X_train, max_epochs=--epochs, random_state=seed)`` with
``fit(I, sample_weight=w)`` instead (every other parameter at its default:
``mining="auto"``, ``margin="auto"``; ``--margin`` is then unused).

Scores as in ``bench_triplets.py``: test MAP@R and test triplet accuracy,
and the share of the training triplets that are wrong.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_votes.py [--seeds 0 1 2]
       [--votes 3] [--noise 0.3] [--weighting majority agreement all clean]
       [--n-triplets 6000] [--epochs 20] [--margin 0.5] [--lr 1e-3]
       [--batch-triplets 128] [--method loop estimator]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics

import numpy as np
import torch
from bench_triplets import random_triplets, scores, split, torch_embed

from sktriplet import TripletEmbedder
from sktriplet.inputs.triplet_batches import TripletBatchSampler, TripletDataset
from sktriplet.networks import MLPEmbedder, Standardize
from sktriplet.triplets.distances import paired_distances


def crowd(triplets: np.ndarray, votes: int, noise: float, seed: int):
    """Majority triplets, their agreement weights, and every vote as a triplet."""
    rng = np.random.default_rng([seed, 2])
    wrong = rng.random((len(triplets), votes)) < noise
    swapped = triplets[:, [0, 2, 1]]
    n_wrong = wrong.sum(axis=1)
    flip = n_wrong * 2 > votes
    majority = np.where(flip[:, None], swapped, triplets)
    weight = np.abs(votes - 2 * n_wrong) / votes
    every = np.concatenate([np.where(wrong[:, v, None], swapped, triplets) for v in range(votes)])
    return majority, weight, every, flip, wrong.ravel(order="F")


def train(X, triplets, weight, args, seed):
    """The plain loop with a weighted hinge; the trained network (eval mode)."""
    torch.manual_seed(seed)
    scale = X.std(axis=0)
    net = torch.nn.Sequential(
        Standardize(X.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)),
        MLPEmbedder(X.shape[1], n_components=64),
    )
    data = TripletDataset(triplets, X)
    w_all = torch.as_tensor(weight, dtype=torch.float32)
    sampler = TripletBatchSampler(len(data), args.batch_triplets, random_state=seed)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    net.train()
    for epoch in range(args.epochs):
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
        for ids in sampler:
            Xb, idx = data[ids]
            z = net(Xb)
            d_ap = paired_distances(z[idx[:, 0]], z[idx[:, 1]])
            d_an = paired_distances(z[idx[:, 0]], z[idx[:, 2]])
            w = w_all[ids]
            loss = (w * torch.relu(d_ap - d_an + args.margin)).sum() / w.sum().clamp_min(1e-12)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def run(args, weighting: str) -> str:
    maps, accs, bad = [], [], []
    for seed in args.seeds:
        X_train, X_test, y_train, y_test = split(seed, 0.3)
        rng = np.random.default_rng(seed)
        clean = random_triplets(y_train, args.n_triplets, rng)
        test = random_triplets(y_test, 2000, rng)
        majority, weight, every, flip, wrong = crowd(clean, args.votes, args.noise, seed)
        trip, w, share = {
            "majority": (majority, np.ones(len(majority)), flip.mean()),
            "agreement": (majority, weight, flip.mean()),
            "all": (every, np.ones(len(every)), wrong.mean()),
            "clean": (clean, np.ones(len(clean)), 0.0),
        }[weighting]
        if args.method == "estimator":
            emb = TripletEmbedder(
                triplets=True, samples=X_train, max_epochs=args.epochs, random_state=seed
            )
            embed = emb.fit(trip, sample_weight=w).transform
        else:
            embed = torch_embed(train(X_train, trip, w, args, seed))
        m, acc = scores(embed, X_test, y_test, test)
        maps.append(m)
        accs.append(acc)
        bad.append(share)
    return (
        f"| {args.method} | {weighting} | {args.votes} | {args.noise:g} | "
        f"{statistics.mean(bad):.3f} | "
        f"{statistics.mean(maps):.3f} +- {statistics.pstdev(maps):.3f} | "
        f"{statistics.mean(accs):.3f} +- {statistics.pstdev(accs):.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--votes", type=int, default=3)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.3])
    parser.add_argument(
        "--weighting",
        nargs="+",
        default=["majority", "agreement", "all", "clean"],
        choices=["majority", "agreement", "all", "clean"],
    )
    parser.add_argument("--n-triplets", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-triplets", type=int, default=128)
    parser.add_argument("--method", default="loop", choices=["loop", "estimator"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"Machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; digits, "
        f"{args.n_triplets} questions, {args.epochs} epochs, {args.method}, "
        f"margin {args.margin:g} (loop), "
        f"seeds {args.seeds}\n"
    )
    print(
        "| method | training triplets | votes | P(vote wrong) | wrong training triplets "
        "| test MAP@R | test triplet acc. |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    base = args.noise
    for noise in base:
        args.noise = noise
        for weighting in args.weighting:
            print(run(args, weighting), flush=True)


if __name__ == "__main__":
    main()
