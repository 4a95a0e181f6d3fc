"""Open-set recognition on digits at matched false accept rates: embedding vs raw pixels.

Question: with the defaults, does a ``TripletEmbedder`` trained on digits 0-5
recognise enrolled unseen digits (6 and 7, five shots each) better than raw
pixels, at the same false accept rate on never-enrolled digits (8 and 9)?
The protocol of ``examples/plot_open_set.py``: for each method and each
target FAR, the best threshold whose held-out FAR is at most the target, and
the fraction of held-out known queries accepted with the right label.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_open_set_digits.py [--seeds 0 1 2] [--epochs 20]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator

from sktriplet import OpenSetKNeighborsClassifier, TripletEmbedder

FARS = (0.05, 0.10, 0.20)


def recall_at_fars(model, X, truth, unknown) -> list[float]:
    matched, distances = model.match(X)
    out = []
    for far in FARS:
        best = 0.0
        for threshold in np.unique(distances):
            accepted = distances <= threshold
            if np.mean(accepted[unknown]) <= far:
                right = accepted[~unknown] & (matched[~unknown] == truth[~unknown])
                best = max(best, float(np.mean(right)))
        out.append(best)
    return out


def run(seed: int, epochs: int, params: dict) -> tuple[list[float], list[float]]:
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    train, rest = np.flatnonzero(y <= 5), np.flatnonzero(y > 5)
    emb = TripletEmbedder(max_epochs=epochs, device="cpu", random_state=seed, **params)
    emb.fit(X[train], y[train])
    gallery = np.concatenate(
        [rng.choice(rest[y[rest] == c], size=5, replace=False) for c in (6, 7)]
    )
    queries = rng.permutation(np.setdiff1d(rest, gallery))
    test = queries[len(queries) // 2 :]
    truth, unknown = y[test], y[test] >= 8
    rows = []
    for model in (OpenSetKNeighborsClassifier(embedder=FrozenEstimator(emb)),
                  OpenSetKNeighborsClassifier()):
        model.fit(X[gallery], y[gallery])
        rows.append(recall_at_fars(model, X[test], truth, unknown))
    return rows[0], rows[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-components", default="auto")
    args = parser.parse_args()
    n = args.n_components if args.n_components == "auto" else int(args.n_components)
    header = " | ".join(f"FAR {f:.2f}" for f in FARS)
    print(f"| seed | method | {header} |")
    print("|---|---|" + "---|" * len(FARS))
    for seed in args.seeds:
        emb, raw = run(seed, args.epochs, {"n_components": n})
        print(f"| {seed} | TripletEmbedder | " + " | ".join(f"{v:.3f}" for v in emb) + " |")
        print(f"| {seed} | raw pixels | " + " | ".join(f"{v:.3f}" for v in raw) + " |")


if __name__ == "__main__":
    main()
