"""Learning from explicit triplets only: how close to a label-trained embedding?

Question: with no class labels, only 6,000 random label-consistent triplets
(anchor and positive of one class, negative of another) drawn from the
training part of sklearn's digits, which mining of the batch's negatives
("none": the given triplets, "semihard", "hard") and which training settings
bring the test MAP@R to at least 90 % of an embedding trained on the labels?

Setup, per seed: a class-stratified train/test split of digits (``--test-size``
of the samples held out); the triplets are drawn from the training part with
the seed. The triplet-trained network is a plain PyTorch loop over sktriplet's
pieces: ``Standardize`` (feature means and standard deviations of the training
rows) + ``MLPEmbedder(64, n_components=64)``, Adam, ``triplet_loss(emb,
triplets=..., mining=...)``; batches come from ``TripletDataset`` and
``TripletBatchSampler`` (``--input indices``: each batch embeds its distinct
samples once; ``--input rows``: the triplets as rows ``(n, 3, 64)``, so a
sample shared by two triplets of a batch is embedded twice and is a different
index for the miner). The reference is ``TripletEmbedder(random_state=seed)
.fit(X_train, y_train)`` (labels, every default). Scores: test MAP@R
(leave-one-out among the test samples, ``sktriplet.evaluation.metrics.map_at_r``)
and the test triplet accuracy on 2,000 random label-consistent test triplets,
against the accuracy on 2,000 new random triplets of *training* samples (what a
random split of the triplets, sharing samples between train and test, would
report: the leakage that ``samples=`` + splitting the triplets invites).

``--method estimator`` trains the same configurations through the estimator
instead: ``TripletEmbedder(triplets=True, mining=..., margin=...,
max_epochs=..., batch_size=..., lr=..., lr_schedule=..., random_state=seed)``,
fitted on the triplet rows ``X_train[triplets]`` (``--input rows``) or on the
index triplets with ``samples=X_train`` (``--input indices``); its input
statistics come from the distinct samples of the triplets and its cosine
schedule is :class:`sktriplet.training.schedules.CosineLR` (half the rate in
the first epoch). ``--defaults-row`` adds ``TripletEmbedder(triplets=True,
random_state=seed)`` with every other parameter at its default (``"semihard"``
mining among the batch's negatives, margin 0.2, 30 epochs, cosine schedule) on
index triplets.

The ``ratio`` columns divide each seed's MAP@R by the same seed's reference.
metric-learn's ``SCML`` (linear, triplets only) gets its own row when it runs;
otherwise the row records the error it raises.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_triplets.py [--seeds 0 1 2]
       [--method loop estimator] [--mining none semihard hard] [--epochs 20]
       [--batch-triplets 128] [--lr 1e-3] [--schedule constant] [--input indices]
       [--margin 0.2] [--defaults-row] [--no-scml]

Every combination of the listed values is one row.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sktriplet import TripletEmbedder
from sktriplet.evaluation.metrics import map_at_r, triplet_accuracy
from sktriplet.inputs.triplet_batches import TripletBatchSampler, TripletDataset
from sktriplet.networks import MLPEmbedder, Standardize
from sktriplet.triplets.losses import triplet_loss


def random_triplets(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` triplets (a, p, n) with y[a] == y[p] != y[n] and a != p, uniformly."""
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    anchor = rng.integers(0, len(y), size=n)
    out = np.empty((n, 3), dtype=np.int64)
    for i, a in enumerate(anchor):
        same = by_class[y[a]]
        p = a
        while p == a:
            p = same[rng.integers(len(same))]
        neg = a
        while y[neg] == y[a]:
            neg = rng.integers(len(y))
        out[i] = (a, p, neg)
    return out


def split(seed: int, test_size: float):
    X, y = load_digits(return_X_y=True)
    return train_test_split(
        X.astype(np.float32), y, test_size=test_size, stratify=y, random_state=seed
    )


def train_on_triplets(
    X, triplets, *, mining, epochs, batch_triplets, lr, schedule, rows, seed, margin
):
    """The plain PyTorch loop; returns the trained network (eval mode)."""
    torch.manual_seed(seed)
    scale = X.std(axis=0)
    net = torch.nn.Sequential(
        Standardize(X.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)),
        MLPEmbedder(X.shape[1], n_components=64),
    )
    data = TripletDataset.from_rows(X[triplets]) if rows else TripletDataset(triplets, X)
    sampler = TripletBatchSampler(len(data), batch_triplets, random_state=seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for epoch in range(epochs):
        if schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        for ids in sampler:
            Xb, idx = data[ids]
            loss = triplet_loss(net(Xb), triplets=idx, mining=mining, margin=margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def train_estimator(
    X, triplets, *, mining, epochs, batch_triplets, lr, schedule, rows, seed, margin
):
    """The same configuration through ``TripletEmbedder(triplets=True)``; its transform."""
    emb = TripletEmbedder(
        triplets=True,
        samples=None if rows else X,
        mining=mining,
        margin=margin,
        max_epochs=epochs,
        batch_size=batch_triplets,
        lr=lr,
        lr_schedule=schedule,
        random_state=seed,
        device="cpu",
    )
    return emb.fit(X[triplets] if rows else triplets).transform


def scores(embed, X_test, y_test, test_triplets) -> tuple[float, float]:
    Z = np.asarray(embed(X_test), dtype=np.float64)
    return map_at_r(Z, y_test), triplet_accuracy(
        Z[test_triplets[:, 0]], Z[test_triplets[:, 1]], Z[test_triplets[:, 2]]
    )


def seen_accuracy(embed, X_train, triplets) -> float:
    """Triplet accuracy of new triplets over the *training* samples (leakage)."""
    Z = np.asarray(embed(X_train), dtype=np.float64)
    return triplet_accuracy(Z[triplets[:, 0]], Z[triplets[:, 1]], Z[triplets[:, 2]])


def torch_embed(net):
    def embed(X):
        with torch.no_grad():
            return net(torch.from_numpy(X)).numpy()

    return embed


def scml_row(args, data):
    """SCML on triplet rows, or the error it raises."""
    try:
        from metric_learn import SCML
    except ImportError as exc:
        return f"not installed ({exc})"
    results = []
    for seed, (X_train, X_test, _, y_test, trip, test_trip, _) in data.items():
        scale = X_train.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        mean = X_train.mean(axis=0)
        try:
            model = SCML(random_state=seed).fit((X_train[trip] - mean) / scale)
        except Exception as exc:  # noqa: BLE001 - the error is the result
            return f"{type(exc).__name__}: {exc}"
        results.append(
            scores(
                lambda X, m=model, mu=mean, s=scale: m.transform((X - mu) / s),
                X_test,
                y_test,
                test_trip,
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--method", nargs="+", default=["loop", "estimator"], choices=["loop", "estimator"]
    )
    parser.add_argument("--defaults-row", action="store_true")
    parser.add_argument("--mining", nargs="+", default=["none", "semihard", "hard"])
    parser.add_argument("--epochs", type=int, nargs="+", default=[20])
    parser.add_argument("--batch-triplets", type=int, nargs="+", default=[128])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3])
    parser.add_argument(
        "--schedule", nargs="+", default=["constant"], choices=["constant", "cosine"]
    )
    parser.add_argument("--input", nargs="+", default=["indices"], choices=["indices", "rows"])
    parser.add_argument("--margin", type=float, nargs="+", default=[0.2])
    parser.add_argument("--n-triplets", type=int, default=6000)
    parser.add_argument("--test-size", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-scml", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data, reference = prepare(args)
    print(
        f"Machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} thread(s), load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"digits, test_size={args.test_size}, {args.n_triplets} training triplets, "
        f"seeds {args.seeds}, sqeuclidean, mean +- std over the seeds\n"
    )
    print(
        "| method | input | mining | epochs | triplets/batch | lr | schedule | margin "
        "| test MAP@R | ratio to labels (mean, min) | test triplet acc. "
        "| acc. on new triplets of training samples | fit s |"
    )
    print("|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    ref = [reference[s] for s in args.seeds]
    print(
        f"| TripletEmbedder on labels | labels | semihard (PK) | 30 | | auto | | 0.2 | "
        f"{_fmt([r[0] for r in ref])} | 1 | {_fmt([r[1] for r in ref])} | "
        f"{_fmt([r[3] for r in ref])} | {statistics.mean(r[2] for r in ref):.1f} |"
    )
    if args.defaults_row:
        print(defaults_line(args.seeds, data, reference), flush=True)
    grid = itertools.product(
        args.method,
        args.input,
        args.mining,
        args.epochs,
        args.batch_triplets,
        args.lr,
        args.schedule,
        args.margin,
    )
    for config in grid:
        print(run_config(config, args.seeds, data, reference), flush=True)
    if not args.no_scml:
        print(scml_line(args, data, reference))


def _fmt(values) -> str:
    return f"{statistics.mean(values):.3f} +- {statistics.pstdev(values):.3f}"


def prepare(args):
    """Per seed: the split, the triplets and the label-trained reference."""
    data, reference = {}, {}
    for seed in args.seeds:
        X_train, X_test, y_train, y_test = split(seed, args.test_size)
        rng = np.random.default_rng(seed)
        trip = random_triplets(y_train, args.n_triplets, rng)
        test_trip = random_triplets(y_test, 2000, rng)
        seen_trip = random_triplets(y_train, 2000, rng)
        data[seed] = (X_train, X_test, y_train, y_test, trip, test_trip, seen_trip)
        t0 = time.perf_counter()
        emb = TripletEmbedder(random_state=seed).fit(X_train, y_train)
        reference[seed] = (
            *scores(emb.transform, X_test, y_test, test_trip),
            time.perf_counter() - t0,
            seen_accuracy(emb.transform, X_train, seen_trip),
        )
    return data, reference


def defaults_line(seeds, data, reference) -> str:
    """``TripletEmbedder(triplets=True)`` with every other default, on index triplets."""
    maps, accs, ratios, times, seen = [], [], [], [], []
    for seed in seeds:
        X_train, X_test, _, y_test, trip, test_trip, seen_trip = data[seed]
        t0 = time.perf_counter()
        emb = TripletEmbedder(triplets=True, samples=X_train, random_state=seed).fit(trip)
        times.append(time.perf_counter() - t0)
        m, acc = scores(emb.transform, X_test, y_test, test_trip)
        seen.append(seen_accuracy(emb.transform, X_train, seen_trip))
        maps.append(m)
        accs.append(acc)
        ratios.append(m / reference[seed][0])
    return (
        f"| TripletEmbedder(triplets=True), defaults | indices | semihard | 30 | 128 | auto "
        f"| auto (cosine) | 0.2 | {_fmt(maps)} | {statistics.mean(ratios):.3f}, "
        f"{min(ratios):.3f} | {_fmt(accs)} | {_fmt(seen)} | {statistics.mean(times):.1f} |"
    )


def run_config(config, seeds, data, reference) -> str:
    """Train one configuration on every seed; its table row."""
    method, inp, mining, epochs, bt, lr, schedule, margin = config
    trainer = train_estimator if method == "estimator" else train_on_triplets
    maps, accs, ratios, times, seen = [], [], [], [], []
    for seed in seeds:
        X_train, X_test, _, y_test, trip, test_trip, seen_trip = data[seed]
        t0 = time.perf_counter()
        net = trainer(
            X_train,
            trip,
            mining=mining,
            epochs=epochs,
            batch_triplets=bt,
            lr=lr,
            schedule=schedule,
            rows=inp == "rows",
            seed=seed,
            margin=margin,
        )
        times.append(time.perf_counter() - t0)
        embed = net if method == "estimator" else torch_embed(net)
        m, acc = scores(embed, X_test, y_test, test_trip)
        seen.append(seen_accuracy(embed, X_train, seen_trip))
        maps.append(m)
        accs.append(acc)
        ratios.append(m / reference[seed][0])
    name = "TripletEmbedder(triplets=True)" if method == "estimator" else "triplet loop"
    return (
        f"| {name} | {inp} | {mining} | {epochs} | {bt} | {lr:g} | {schedule} | {margin:g} "
        f"| {_fmt(maps)} | {statistics.mean(ratios):.3f}, {min(ratios):.3f} | {_fmt(accs)} | "
        f"{_fmt(seen)} | {statistics.mean(times):.1f} |"
    )


def scml_line(args, data, reference) -> str:
    res = scml_row(args, data)
    if isinstance(res, str):
        return f"| metric-learn SCML | rows | | | | | | | failed: {res} | | | | |"
    ratios = [r[0] / reference[s][0] for r, s in zip(res, args.seeds, strict=True)]
    return (
        f"| metric-learn SCML | rows | | | | | | | {_fmt([r[0] for r in res])} | "
        f"{statistics.mean(ratios):.3f}, {min(ratios):.3f} | {_fmt([r[1] for r in res])} | | |"
    )


if __name__ == "__main__":
    main()
