"""Open-set embedding quality: sktriplet's defaults against the usual alternatives.

Question: trained on some classes, how well does an embedding retrieve and
recognise classes it never saw? Every data set is split by *class* (never by
sample), the models see the training classes only, and the scores are
measured on the held-out classes alone:

* ``omniglot``: train on the alphabets Balinese, Early_Aramaic, Greek, Korean
  and Latin (136 characters, 2720 images of 28x28); evaluate on
  Japanese_(katakana), Sanskrit and Tagalog (106 characters, 2120 images).
* ``coil20``: train on objects 0-9 (720 images of 32x32), evaluate on
  objects 10-19 (720 images).
* ``mnist-usps``: train on 3000 MNIST test digits (300 per class, drawn with
  seed 0); evaluate on the 2007 USPS test digits, 16x16 resized to 20x20 and
  zero-padded to 28x28 the way MNIST itself was normalised (the same labels
  under a domain shift).
* ``digits``: train on sklearn's digits 0-5 as 64 features (so the MLP
  path), evaluate on digits 6-9 (the hard case: six training classes).
* ``alphadigits``: Binary Alphadigits (20x16 binary images, 39 per class):
  train on the digits 0-9 and the letters A-M (23 classes, 897 images),
  evaluate on the letters N-Z (13 classes, 507 images). A character set the
  defaults were not tuned on, with few images per class.

Columns: MAP@R and P@1 (leave-one-out retrieval among the held-out samples,
:mod:`sktriplet.evaluation.metrics`), for Omniglot also 20-way one-shot accuracy (2000
random episodes: 20 unseen characters, one support and one query drawing each,
query labelled by its nearest support; the same episodes for every method), and
the wall time of fit + embedding. Mean +- std over the seeds.

Methods:

* ``raw``: pixels scaled to [0, 1] (digits: the 0-16 values as they are).
* ``pca``: PCA with 32 components fitted on the training classes.
* ``nca``: sklearn's NeighborhoodComponentsAnalysis, 32 components, 50
  iterations, fitted on the training classes (deterministic: one run).
* ``pml``: a hand-written PyTorch loop with pytorch-metric-learning: the
  network and initialisation of ``TripletEmbedder`` (built by it with
  ``max_epochs=0``, the same seed), Adam at the peak ``lr`` the estimator's
  defaults pick for the data (constant),
  ``MPerClassSampler`` with the default batch size and samples per class,
  ``TripletMarginMiner(margin=0.2, type_of_triplets="semihard")`` and
  ``TripletMarginLoss(margin=0.2)`` (PML's default distance: Euclidean on
  normalised embeddings), the same number of epochs.
* ``sktriplet``: ``TripletEmbedder(max_epochs=E, random_state=seed)``; every
  other parameter at its default.

All training runs on one CPU thread (``torch.set_num_threads(1)``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_quality.py            # full run
    OMP_NUM_THREADS=1 python benchmarks/bench_quality.py --datasets digits --seeds 1

``--data-dir`` points at the folder holding ``omniglot_small/``,
``coil20_32/``, ``mnist_test/``, ``usps_test/`` and ``binary_alphadigits/``
(default: ``../shared/data`` relative to the repository root).
``--params '{"lr": 3e-4}'`` passes extra ``TripletEmbedder`` parameters to
the ``sktriplet`` column (for sweeps; the published table uses none).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from sktriplet import TripletEmbedder
from sktriplet.evaluation.metrics import retrieval_scores

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
METHODS = ("raw", "pca", "nca", "pml", "sktriplet")
DATASETS = ("omniglot", "coil20", "mnist-usps", "digits", "alphadigits")
#: Training epochs per data set (the same for ``pml`` and ``sktriplet``).
EPOCHS = {"omniglot": 10, "coil20": 10, "mnist-usps": 10, "digits": 20, "alphadigits": 30}
N_EPISODES = 2000


@dataclass
class Split:
    """Training classes and held-out classes of one data set."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    one_shot: bool = False


# ------------------------------------------------------------------ data sets
def load_omniglot(data_dir: Path) -> Split:
    d = np.load(data_dir / "omniglot_small" / "omniglot_small_28.npz")
    train = d["alphabet"] < 5
    return Split(d["X"][train], d["y"][train], d["X"][~train], d["y"][~train], one_shot=True)


def load_coil20(data_dir: Path) -> Split:
    d = np.load(data_dir / "coil20_32" / "coil20_32.npz")
    train = d["y"] < 10
    return Split(d["X"][train], d["y"][train], d["X"][~train], d["y"][~train])


def usps_as_mnist(X: np.ndarray) -> np.ndarray:
    """16x16 USPS digits resized to 20x20 and zero-padded to 28x28 (uint8)."""
    t = torch.from_numpy(X.astype(np.float32))[:, None]
    t = F.interpolate(t, size=(20, 20), mode="bilinear", align_corners=False)
    t = F.pad(t, (4, 4, 4, 4))
    return t[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def load_mnist_usps(data_dir: Path, per_class: int = 300) -> Split:
    m = np.load(data_dir / "mnist_test" / "mnist_test.npz")
    u = np.load(data_dir / "usps_test" / "usps_test.npz")
    rng = np.random.default_rng(0)
    keep = np.concatenate(
        [rng.choice(np.flatnonzero(m["y"] == c), per_class, replace=False) for c in range(10)]
    )
    return Split(m["X"][keep], m["y"][keep], usps_as_mnist(u["X"]), u["y"])


def load_digits_open_set(data_dir: Path) -> Split:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    train = y < 6
    return Split(X[train], y[train], X[~train], y[~train])


def load_alphadigits(data_dir: Path) -> Split:
    d = np.load(data_dir / "binary_alphadigits" / "binary_alphadigits.npz")
    train = d["y"] < 23  # '0'-'9' and 'A'-'M'; evaluate on 'N'-'Z'
    return Split(d["X"][train], d["y"][train], d["X"][~train], d["y"][~train])


LOADERS: dict[str, Callable[[Path], Split]] = {
    "omniglot": load_omniglot,
    "coil20": load_coil20,
    "mnist-usps": load_mnist_usps,
    "digits": load_digits_open_set,
    "alphadigits": load_alphadigits,
}


def flat(X: np.ndarray) -> np.ndarray:
    """Rows of float32 features: images scaled to [0, 1], tables as they are."""
    if X.ndim == 2:
        return X.astype(np.float32)
    return X.reshape(len(X), -1).astype(np.float32) / 255.0


# -------------------------------------------------------------------- methods
def fit_raw(split: Split, seed: int, epochs: int, params: dict) -> np.ndarray:
    return flat(split.X_test)


def fit_pca(split: Split, seed: int, epochs: int, params: dict) -> np.ndarray:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=32, random_state=seed).fit(flat(split.X_train))
    return pca.transform(flat(split.X_test)).astype(np.float32)


def fit_nca(split: Split, seed: int, epochs: int, params: dict) -> np.ndarray:
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    nca = NeighborhoodComponentsAnalysis(n_components=32, max_iter=50, random_state=seed)
    nca.fit(flat(split.X_train), split.y_train)
    return nca.transform(flat(split.X_test)).astype(np.float32)


def fit_pml(split: Split, seed: int, epochs: int, params: dict) -> np.ndarray:
    from pytorch_metric_learning import losses, miners, samplers
    from torch.utils.data import DataLoader, TensorDataset

    # The same network and initialisation as TripletEmbedder's (untrained).
    emb = TripletEmbedder(max_epochs=0, random_state=seed, device="cpu")
    emb.fit(split.X_train, split.y_train)
    model = emb.net_.module_
    defaults = emb.get_params()
    batch_size, k = defaults["batch_size"], defaults["samples_per_class"]
    n_classes = len(np.unique(split.y_train))
    m = max(k, batch_size // n_classes)  # as PKSampler: fill the batch
    batch_size = m * min(n_classes, batch_size // m)
    X = torch.from_numpy(np.ascontiguousarray(split.X_train))
    if X.ndim == 3:
        X = X[:, None]
    y = torch.from_numpy(split.y_train)
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (MPerClassSampler draws from the global RNG)
    sampler = samplers.MPerClassSampler(
        split.y_train, m=m, batch_size=batch_size, length_before_new_iter=len(y)
    )
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, sampler=sampler)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
    loss_fn = losses.TripletMarginLoss(margin=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=emb.net_.lr)  # lr="auto" resolved
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            out = model(xb)
            loss = loss_fn(out, yb, miner(out, yb))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return emb.transform(split.X_test)


def fit_sktriplet(split: Split, seed: int, epochs: int, params: dict) -> np.ndarray:
    emb = TripletEmbedder(max_epochs=epochs, random_state=seed, **params)
    return emb.fit(split.X_train, split.y_train).transform(split.X_test)


FITTERS = {
    "raw": fit_raw,
    "pca": fit_pca,
    "nca": fit_nca,
    "pml": fit_pml,
    "sktriplet": fit_sktriplet,
}


# ----------------------------------------------------------------- evaluation
def one_shot_accuracy(
    Z: np.ndarray, y: np.ndarray, *, n_way: int = 20, n_episodes: int = N_EPISODES
) -> float:
    """Mean accuracy of ``n_way`` one-shot episodes (fixed episodes, seed 0)."""
    rng = np.random.default_rng(0)
    classes = np.unique(y)
    by_class = {c: np.flatnonzero(y == c) for c in classes}
    Z = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))
    correct = 0
    for _ in range(n_episodes):
        chosen = rng.choice(classes, n_way, replace=False)
        pairs = np.array([rng.choice(by_class[c], 2, replace=False) for c in chosen])
        d = torch.cdist(Z[pairs[:, 1]], Z[pairs[:, 0]])
        correct += int((d.argmin(dim=1) == torch.arange(n_way)).sum())
    return correct / (n_way * n_episodes)


def evaluate(Z: np.ndarray, split: Split) -> dict[str, float]:
    scores = retrieval_scores(Z, split.y_test, k=1)
    out = {"map_at_r": float(scores["map_at_r"]), "p_at_1": float(scores["precision_at_1"])}
    if split.one_shot:
        out["one_shot_20"] = one_shot_accuracy(Z, split.y_test)
    return out


def fmt(values: list[float], pct: bool = False) -> str:
    scale = 100.0 if pct else 1.0
    mean, std = scale * np.mean(values), scale * np.std(values)
    return f"{mean:.1f} ± {std:.1f}" if pct else f"{mean:.3f} ± {std:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs for every data set (default: per set)"
    )
    parser.add_argument(
        "--params", type=json.loads, default={}, help="extra TripletEmbedder params (JSON)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    for name in args.datasets:
        split = LOADERS[name](args.data_dir)
        epochs = args.epochs if args.epochs is not None else EPOCHS[name]
        for method in args.methods:
            results: dict[str, list[float]] = {}
            # raw, PCA and NCA (initialised by LDA or PCA) are deterministic.
            seeds = range(1 if method in ("raw", "pca", "nca") else args.seeds)
            for seed in seeds:
                start = time.perf_counter()
                Z = FITTERS[method](split, seed, epochs, args.params)
                seconds = time.perf_counter() - start
                for key, value in {**evaluate(Z, split), "seconds": seconds}.items():
                    results.setdefault(key, []).append(value)
            row = {
                "dataset": name,
                "method": method,
                "epochs": epochs if method in ("pml", "sktriplet") else "",
                "MAP@R": fmt(results["map_at_r"]),
                "P@1": fmt(results["p_at_1"]),
                "1-shot 20-way %": fmt(results["one_shot_20"], pct=True)
                if "one_shot_20" in results
                else "",
                "seconds": f"{np.mean(results['seconds']):.0f}",
            }
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)

    header = list(rows[0])
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")


if __name__ == "__main__":
    main()
