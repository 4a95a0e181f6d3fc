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
* ``glint``: glint_faces24 (aligned celebrity faces, 112x112 colour PNG)
  read as grey arrays of 32x32 (Pillow, bilinear): train on the first 12
  people in alphabetical order (480 images), evaluate on the other 12 (462
  images). Faces, not characters: the kind of photo issue 30 timed.
  ``glint64``: the same at 64x64.

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
* ``pml-cnn``: the loop a pytorch-metric-learning user writes with a small
  CNN of their own: three ``Conv3x3 -> BatchNorm -> ReLU`` layers of 32, 64
  and 128 channels (max-pooling after the first two), global average
  pooling and a linear layer to 64 (about 100k parameters), pixels / 255
  standardised by the training set's mean and std,
  ``MPerClassSampler(y, m, batch_size, length_before_new_iter=len(y))``
  (``len(y) // batch_size`` batches per epoch), the semi-hard miner and
  loss of ``pml``, Adam at 1e-3, no augmentation; embeddings
  L2-normalised (PML's distance normalises them). Batch size and ``m`` are
  the estimator's ``batch_size`` and ``samples_per_class``.
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
``--max-per-class N`` keeps the first N training images of every training
class (the test classes stay whole): a smaller training set, e.g. 240
glint photos with ``--datasets glint --max-per-class 20``.
``--config NAME='{"module__convs": 1}'`` (repeatable) adds a row ``NAME``:
``sktriplet`` with those parameters (``max_epochs`` among them overrides
the data set's epochs for that row: ``--config 'e4={"max_epochs": 4}'``).
The methods and configs run one after another for every seed, so their
``seconds`` see the same machine load.
``--first-seed S`` runs seeds ``S, S+1, ...`` (``--seeds`` of them) to add
seeds to an earlier run.
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
from sktriplet.training.policy import resolve_batch_size

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
METHODS = ("raw", "pca", "nca", "pml", "pml-cnn", "sktriplet")
DATASETS = ("omniglot", "coil20", "mnist-usps", "digits", "alphadigits", "glint", "glint64")
#: Training epochs per data set (the same for ``pml`` and ``sktriplet``).
EPOCHS = {
    "omniglot": 10,
    "coil20": 10,
    "mnist-usps": 10,
    "digits": 20,
    "alphadigits": 30,
    "glint": 15,
    "glint64": 15,
}
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


def load_glint(data_dir: Path, size: int = 32) -> Split:
    """glint_faces24 as grey ``size`` x ``size`` uint8 arrays; people 0-11 train, 12-23 test."""
    from PIL import Image

    root = data_dir / "glint_faces24" / "images"
    X, y = [], []
    for label, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.png")):
            with Image.open(path) as image:
                X.append(np.asarray(image.convert("L").resize((size, size), Image.BILINEAR)))
            y.append(label)
    X, y = np.stack(X), np.asarray(y)
    train = y < 12
    return Split(X[train], y[train], X[~train], y[~train])


LOADERS: dict[str, Callable[[Path], Split]] = {
    "omniglot": load_omniglot,
    "coil20": load_coil20,
    "mnist-usps": load_mnist_usps,
    "digits": load_digits_open_set,
    "alphadigits": load_alphadigits,
    "glint": load_glint,
    "glint64": lambda data_dir: load_glint(data_dir, size=64),
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


def pml_loop(
    model: torch.nn.Module, X: torch.Tensor, split: Split, seed: int, epochs: int, lr: float
) -> None:
    """Train ``model`` on ``X`` as a pytorch-metric-learning user does (``pml``, ``pml-cnn``)."""
    from pytorch_metric_learning import losses, miners, samplers
    from torch.utils.data import DataLoader, TensorDataset

    defaults = TripletEmbedder().get_params()
    batch_size, k = resolve_batch_size(defaults), defaults["samples_per_class"]
    n_classes = len(np.unique(split.y_train))
    m = max(k, batch_size // n_classes)  # as PKSampler: fill the batch
    batch_size = m * min(n_classes, batch_size // m)
    y = torch.from_numpy(split.y_train)
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (MPerClassSampler draws from the global RNG)
    sampler = samplers.MPerClassSampler(
        split.y_train, m=m, batch_size=batch_size, length_before_new_iter=len(y)
    )
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, sampler=sampler)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
    loss_fn = losses.TripletMarginLoss(margin=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            out = model(xb)
            loss = loss_fn(out, yb, miner(out, yb))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def fit_pml(split: Split, seed: int, epochs: int, params: dict) -> np.ndarray:
    # The same network and initialisation as TripletEmbedder's (untrained).
    emb = TripletEmbedder(max_epochs=0, random_state=seed, device="cpu")
    emb.fit(split.X_train, split.y_train)
    X = torch.from_numpy(np.ascontiguousarray(split.X_train))
    if X.ndim == 3:
        X = X[:, None]
    pml_loop(emb.net_.module_, X, split, seed, epochs, lr=emb.net_.lr)  # lr="auto" resolved
    return emb.transform(split.X_test)


def small_cnn(in_channels: int, n_components: int = 64) -> torch.nn.Module:
    """The small CNN a user writes for ``pml-cnn`` (about 100k parameters)."""
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(in_channels, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        nn.MaxPool2d(2),
        *block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, n_components),
    )


def fit_pml_cnn(split: Split, seed: int, epochs: int, params: dict) -> np.ndarray:
    def tensor(X: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(X)).float() / 255.0
        return t[:, None] if t.ndim == 3 else t

    X = tensor(split.X_train)
    mean, std = X.mean(), X.std()
    torch.manual_seed(seed)
    model = small_cnn(X.shape[1])
    pml_loop(model, (X - mean) / std, split, seed, epochs, lr=1e-3)
    with torch.no_grad():
        Z = torch.cat([model((xb - mean) / std) for xb in tensor(split.X_test).split(256)])
    return F.normalize(Z, dim=1).numpy()


def fit_sktriplet(split: Split, seed: int, epochs: int, params: dict) -> np.ndarray:
    emb = TripletEmbedder(**{"max_epochs": epochs, "random_state": seed, **params})
    return emb.fit(split.X_train, split.y_train).transform(split.X_test)


FITTERS = {
    "raw": fit_raw,
    "pca": fit_pca,
    "nca": fit_nca,
    "pml": fit_pml,
    "pml-cnn": fit_pml_cnn,
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


def first_per_class(split: Split, n: int) -> Split:
    """The split with only the first ``n`` training samples of every class."""
    y = split.y_train
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c in np.unique(y)])
    return Split(split.X_train[keep], y[keep], split.X_test, split.y_test, split.one_shot)


def run_dataset(name: str, split: Split, epochs: int, columns: list, seeds: range) -> list[dict]:
    """The rows of one data set: every column, seed by seed (interleaved)."""
    results: dict[str, dict[str, list[float]]] = {label: {} for label, _, _ in columns}
    for seed in seeds:
        for label, method, params in columns:
            # raw, PCA and NCA (initialised by LDA or PCA) are deterministic.
            if seed > seeds[0] and method in ("raw", "pca", "nca"):
                continue
            start = time.perf_counter()
            Z = FITTERS[method](split, seed, epochs, params)
            seconds = time.perf_counter() - start
            scores = {**evaluate(Z, split), "seconds": seconds}
            for key, value in scores.items():
                results[label].setdefault(key, []).append(value)
            print(f"# {name} {label} seed {seed}: " + json.dumps(scores), flush=True)
    rows = []
    for label, method, params in columns:
        res = results[label]
        seconds = float(np.mean(res["seconds"]))
        row = {
            "dataset": name,
            "method": label,
            "epochs": params.get("max_epochs", epochs)
            if method in ("pml", "pml-cnn", "sktriplet")
            else "",
            "MAP@R": fmt(res["map_at_r"]),
            "P@1": fmt(res["p_at_1"]),
            "1-shot 20-way %": fmt(res["one_shot_20"], pct=True) if "one_shot_20" in res else "",
            "seconds": f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}",
        }
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS[:5]))
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds start here")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs for every data set (default: per set)"
    )
    parser.add_argument(
        "--params", type=json.loads, default={}, help="extra TripletEmbedder params (JSON)"
    )
    parser.add_argument(
        "--max-per-class", type=int, default=None, help="training images kept per class"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="NAME=JSON: a further sktriplet row with these parameters (repeatable)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    columns = [(m, m, args.params if m == "sktriplet" else {}) for m in args.methods]
    for item in args.config:
        label, _, text = item.partition("=")
        columns.append((label, "sktriplet", json.loads(text)))

    rows = []
    for name in args.datasets:
        split = LOADERS[name](args.data_dir)
        if args.max_per_class is not None:
            split = first_per_class(split, args.max_per_class)
        epochs = args.epochs if args.epochs is not None else EPOCHS[name]
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        rows += run_dataset(name, split, epochs, columns, seeds)

    header = list(rows[0])
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")


if __name__ == "__main__":
    main()
