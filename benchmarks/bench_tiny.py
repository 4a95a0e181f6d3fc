"""Does a floor on the batches per epoch help a fit on 40 samples?

A fit on a tiny data set draws one PK batch per epoch unless
:class:`sktriplet.training.sampling.PKSampler`'s ``min_batches`` floor raises
it. Two synthetic sets of 40 samples (class signal in a few columns, noise in
the rest): 8 classes x 5 in 64 columns (8 informative, centres spread 1.0)
and 4 classes x 10 in 16 columns (2 informative, spread 1.5). For floors
(``iterator_train__min_batches``) 1 (none), 2 (the default), 4 and 8, and
``max_epochs`` 3, 10 and 30, the table gives the final training loss and
1-NN accuracy on 50 fresh samples per class (mean over seeds 0-2),
``TripletEmbedder`` defaults otherwise except ``lr``: ``--params`` defaults to
``{"lr": 0.001}``, because with ``lr="auto"`` the few-class policy of
``docs/defaults.md`` spreads one learning-rate budget over however many
steps the fit takes, which is not the floor's own effect.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_tiny.py [--epochs 3 10 30] [--floors 1 2 4 8]
        [--params '{"lr": 0.001}']
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from sktriplet import TripletEmbedder

SETS = {"8x5, 64 cols": (8, 64, 8, 1.0), "4x10, 16 cols": (4, 16, 2, 1.5)}


def data(
    n_per: int,
    seed: int,
    n_classes: int,
    dim: int,
    informative: int,
    spread: float,
    centres_seed: int,
):
    centres = np.random.default_rng(centres_seed).normal(size=(n_classes, informative)) * spread
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    X = rng.normal(size=(len(y), dim))
    X[:, :informative] = centres[y] + rng.normal(size=(len(y), informative))
    return X.astype(np.float32), y


def run(spec, floor: int, epochs: int, seeds: int, params: dict) -> tuple[float, float, int]:
    n_classes = spec[0]
    losses, accs, steps = [], [], []
    for seed in range(seeds):
        X, y = data(40 // n_classes, seed, *spec, seed + 7)
        X_test, y_test = data(50, seed + 100, *spec, seed + 7)
        est = TripletEmbedder(
            max_epochs=epochs,
            random_state=seed,
            device="cpu",
            iterator_train__min_batches=floor,
            **params,
        ).fit(X, y)
        losses.append(est.net_.history[-1, "train_loss"])
        steps.append(sum(len(row["batches"]) for row in est.net_.history))
        knn = KNeighborsClassifier(1).fit(est.transform(X), y)
        accs.append(knn.score(est.transform(X_test), y_test))
    return float(np.mean(losses)), float(np.mean(accs)), int(np.mean(steps))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--floors", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--params", type=json.loads, default={"lr": 0.001})
    args = parser.parse_args(argv)
    print(f"TripletEmbedder parameters: {json.dumps(args.params)}\n")
    print("| data | max_epochs | min_batches | steps | final train loss | 1-NN accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, spec in SETS.items():
        for epochs in args.epochs:
            for floor in args.floors:
                loss, acc, steps = run(spec, floor, epochs, args.seeds, args.params)
                print(
                    f"| {name} | {epochs} | {floor} | {steps} | {loss:.3f} | {acc:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
