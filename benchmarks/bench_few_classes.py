"""Do the training defaults beat raw pixels when there are few training classes?

Three checks on scikit-learn's 8x8 digits (64 pixel columns, values 0-16),
each for raw pixels and for ``TripletEmbedder`` settings given as JSON:

* ``unseen``: train on digits 0-5 (``--unseen-epochs``, default 20), MAP@R of
  digits 6-9 (leave-one-out, squared Euclidean), the quickstart's open-set
  figure.
* ``openset``: train on half of each digit 0-4 (split with seed 0), 10
  epochs; the other half of 0-4 is split again into a gallery (first half)
  and known queries; digits 7-9 are unknown queries. Queries take the label
  of their nearest gallery sample (1-NN, squared Euclidean); the threshold on
  the match distance is the best one (highest recall) with a false accept
  rate of at most ``--far`` (default 0.068) on 7-9, chosen on the queries
  themselves (an oracle threshold, the same for every method). Reported: the
  fraction of known queries accepted with the right digit.
* ``closed``: the quickstart's closed set (30 % stratified test split of all
  ten digits, seed 0), 20 epochs, 5-NN accuracy.

``raw`` is the 0-16 values as they are; ``raw-std`` the values standardised
per pixel (``StandardScaler`` fitted on the training part). A setting runs
over ``--seeds`` seeds (``random_state`` 0, 1, ...); mean +- std.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_few_classes.py \
        --config defaults='{}' \
        --config policy='{"scaling": "global", "lr": 1e-4, "max_epochs": 5}'
    # a setting's "max_epochs" overrides the task's epochs; {"policy": true}
    # applies sktriplet.training.policy (scaling="auto", lr="auto") explicitly
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from bench_calibration import split_samples  # benchmarks/ is on the path of a script
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.preprocessing import StandardScaler

from sktriplet import TripletEmbedder
from sktriplet.evaluation.metrics import map_at_r
from sktriplet.evaluation.neighbors import calibrate_threshold
from sktriplet.training import policy
from sktriplet.training.sampling import MIN_BATCHES_PER_EPOCH

TASKS = ("unseen", "openset", "closed")


def _fitter(config: dict | str, seed: int, epochs: int):
    """A function ``(X, y) -> transform`` for a method."""

    def fit(X, y):
        if config == "raw":
            return lambda A: np.asarray(A, dtype=np.float64)
        if config == "raw-std":
            return StandardScaler().fit(X).transform
        params = {"max_epochs": epochs, **config}
        if params.pop("policy", False):
            params = policy_params(X, y, params)
        return TripletEmbedder(random_state=seed, device="cpu", **params).fit(X, y).transform

    return fit


def policy_params(X, y, params: dict) -> dict:
    """``params`` with ``scaling`` and ``lr`` as :mod:`sktriplet.training.policy` picks them.

    What ``TripletEmbedder(scaling="auto", lr="auto")`` will do once the
    estimator calls the policy (2-D ``X``, the default MLP); a
    ``"policy_budget"`` entry overrides the few-class ``lr * steps`` budget.
    """
    params = dict(params)
    budget = params.pop("policy_budget", policy.FEW_CLASS_LR_BUDGET)
    steps = policy.training_steps(
        len(X),
        batch_size=params.get("batch_size", 128),
        max_epochs=params["max_epochs"],
        min_batches=MIN_BATCHES_PER_EPOCH,
    )
    params.setdefault("scaling", policy.resolve_scaling("auto", X))
    few = len(np.unique(y)) < policy.FEW_CLASSES
    params.setdefault("lr", policy.few_class_lr(steps, lr=1e-3, budget=budget) if few else 1e-3)
    return params


def unseen(X, y, fit) -> float:
    """MAP@R on digits 6-9 after training on 0-5."""
    seen = y <= 5
    transform = fit(X[seen], y[seen])
    return float(map_at_r(transform(X[~seen]), y[~seen]))


def openset_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices: training (half of 0-4), gallery, known queries, unknown (7-9)."""
    # The split of bench_calibration.py (issue 29's protocol), drawn with seed 0.
    train, gallery, queries = split_samples(y, np.arange(5), seed=0)
    return train, gallery, queries, np.flatnonzero(y >= 7)


def openset(X, y, fit, far: float) -> float:
    """Known queries accepted with the right digit at the best threshold with FAR <= far."""
    train, gallery, queries, unknown = openset_split(y)
    transform = fit(X[train], y[train])
    G = transform(X[gallery])
    Q = transform(X[np.concatenate([queries, unknown])])
    dist, idx = NearestNeighbors(n_neighbors=1).fit(G).kneighbors(Q)
    truth = y[np.concatenate([queries, unknown])]
    known = np.arange(len(truth)) < len(queries)
    correct = known & (y[gallery][idx[:, 0]] == truth)
    # The measured rate on 7-9 themselves: an oracle threshold, the same for every method.
    res = calibrate_threshold(
        dist[:, 0] ** 2, correct, known, target_far=far, far_rule="empirical"
    )
    return float(res["recall"])


def closed(X, y, fit) -> float:
    """5-NN accuracy on the quickstart's 30 % test split of all ten digits."""
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    transform = fit(X_tr, y_tr)
    knn = KNeighborsClassifier().fit(transform(X_tr), y_tr)
    return float(knn.score(transform(X_te), y_te))


def run(config, task: str, seeds: int, args, X, y) -> list[float]:
    epochs = {"unseen": args.unseen_epochs, "openset": 10, "closed": 20}[task]
    out = []
    for seed in range(1 if isinstance(config, str) else seeds):
        fit = _fitter(config, seed, epochs)
        if task == "unseen":
            out.append(unseen(X, y, fit))
        elif task == "openset":
            out.append(openset(X, y, fit, args.far))
        else:
            out.append(closed(X, y, fit))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="NAME=JSON estimator parameters (repeatable); raw and raw-std always run",
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--far", type=float, default=0.068)
    parser.add_argument("--unseen-epochs", type=int, default=20)
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    configs: dict = {"raw": "raw", "raw-std": "raw-std"}
    for item in args.config:
        name, _, text = item.partition("=")
        configs[name] = json.loads(text)
    header = {
        "unseen": "0-5 -> 6-9 MAP@R",
        "openset": f"open set recall @ FAR {args.far}",
        "closed": "closed 5-NN acc",
    }
    print("| method | params | " + " | ".join(header[t] for t in args.tasks) + " | seconds |")
    print("|---|---|" + "---:|" * (len(args.tasks) + 1))
    for name, config in configs.items():
        t0 = time.perf_counter()
        cells = []
        for task in args.tasks:
            values = run(config, task, args.seeds, args, X, y)
            std = f" ± {np.std(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{np.mean(values):.3f}{std}")
        shown = "" if isinstance(config, str) else f"`{json.dumps(config)}`"
        seconds = time.perf_counter() - t0
        print(f"| {name} | {shown} | " + " | ".join(cells) + f" | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
