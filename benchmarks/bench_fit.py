"""What does the scikit-learn API cost over a hand-written PyTorch loop?

Times ``TripletEmbedder.fit`` per epoch against a plain PyTorch training loop
that uses the same network (a copy of the estimator's ``net_.module_``), the
same PK batches (:class:`sktriplet.training.sampling.PKSampler` with the same seed),
the same loss (:class:`sktriplet.triplets.losses.TripletLoss`) and the same optimizer
(Adam), and ``transform`` throughput against the raw module's forward pass
under ``torch.inference_mode`` in batches of the same size, outputs
concatenated into one numpy array. Two workloads:
the default MLP on tabular data (synthetic Gaussian classes) and the default
CNN on 28x28 images (``--data path/to/mnist_test.npz`` with arrays ``X`` and
``y``, else synthetic images). Fit and plain loop alternate in rounds, and
epoch times are medians over all epochs but the first of each round, so both
see the same machine load.

A third workload is face-sized photos: ``--faces`` (default
``../shared/data/faces94_subset18/images``, 18 people, 292 JPEGs) read with
Pillow, converted to grey and resized to ``--face-height`` rows (100: 100x90).

Usage: python benchmarks/bench_fit.py [--device cpu] [--workloads mlp cnn faces] [--rounds 3]
       [--data ../shared/data/mnist_test/mnist_test.npz] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
from skorch.callbacks import Callback

from sktriplet import TripletEmbedder
from sktriplet.training.sampling import PKSampler
from sktriplet.triplets.losses import TripletLoss


def tabular_data(n: int, n_features: int = 64, n_classes: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, n_features)) * 2
    y = rng.integers(0, n_classes, size=n)
    X = (centers[y] + rng.normal(size=(n, n_features))).astype(np.float32)
    return X, y


def image_data(path: str | None, n: int, seed: int = 0):
    if path and os.path.exists(path):
        data = np.load(path)
        return (
            np.ascontiguousarray(data["X"][:n]),
            np.asarray(data["y"][:n]),
            os.path.basename(path),
        )
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    X = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    X[np.arange(n), y * 2 + 3, :] = 255  # a class-dependent stripe
    return X, y, "synthetic 28x28"


def face_data(root: str, height: int):
    """Grey face photos from ``root/<person>/*.jpg``, resized to ``height`` rows (Pillow)."""
    from pathlib import Path

    from PIL import Image

    X, y = [], []
    for label, folder in enumerate(sorted(p for p in Path(root).iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.jpg")):
            with Image.open(path) as image:
                grey = image.convert("L")
                width = round(grey.width * height / grey.height)
                X.append(np.asarray(grey.resize((width, height), Image.BILINEAR)))
            y.append(label)
    return np.stack(X), np.asarray(y)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class PlainLoop:
    """Hand-written loop: same module, PK batches, loss and optimizer."""

    def __init__(self, module, X, codes, est, seed: int, device: str, lr: float) -> None:
        self.module = module.to(device).train()
        self.criterion = TripletLoss(margin=est.margin, mining=est.mining, distance=est.distance)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=lr)
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(codes)
        self.codes, self.est, self.seed, self.device = codes, est, seed, device

    def epoch(self, epoch: int) -> float:
        """Run one epoch; return its seconds."""
        sampler = PKSampler(
            self.codes,
            batch_size=self.est.batch_size,
            samples_per_class=self.est.samples_per_class,
            random_state=self.seed,
            epoch=epoch,
        )
        module, criterion, optimizer = self.module, self.criterion, self.optimizer
        t0 = time.perf_counter()
        for batch in sampler:
            index = torch.as_tensor(batch)
            xb = self.X[index].to(self.device, non_blocking=True)
            yb = self.y[index].to(self.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(module(xb), yb)
            loss.backward()
            optimizer.step()
        _sync(self.device)
        return time.perf_counter() - t0


class Paired(Callback):
    """Times each ``fit`` epoch and, right after it, one plain-loop epoch.

    An epoch of ``fit`` is everything from one ``on_epoch_begin`` to the
    next (all callbacks included), less the plain epoch run in between; the
    two halves of each pair see the same machine load.
    """

    def __init__(self, make_plain) -> None:
        self.make_plain = make_plain

    def initialize(self):  # noqa: D102
        self.begins, self.plain, self.loop = [], [], None
        return self

    def on_train_begin(self, net, **kwargs):  # noqa: D102
        # The network as fit built it, before any step.
        self.loop = self.make_plain(net, copy.deepcopy(net.module_))

    def on_epoch_begin(self, net, **kwargs):  # noqa: D102
        self.begins.append(time.perf_counter())

    def on_epoch_end(self, net, **kwargs):  # noqa: D102
        self.plain.append(self.loop.epoch(len(self.plain)))

    def on_train_end(self, net, **kwargs):  # noqa: D102
        self.end = time.perf_counter()

    def fit_epochs(self) -> list[float]:
        """Seconds of each fit epoch, plain epochs excluded."""
        ends = self.begins[1:] + [self.end]
        return [e - b - p for b, e, p in zip(self.begins, ends, self.plain, strict=True)]


def raw_forward(module, X, batch_size: int, device: str) -> float:
    """Seconds to embed ``X`` with the bare module: batches, concatenated to numpy."""
    module.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        outs = [
            module(torch.from_numpy(X[start : start + batch_size]).to(device))
            for start in range(0, len(X), batch_size)
        ]
        torch.cat(outs).float().cpu().numpy()
    return time.perf_counter() - t0


def run_workload(name, X, y, args, est_kwargs) -> dict:
    fit_epochs, plain, ratios, tr, raw = [], [], [], [], []
    X_in = np.ascontiguousarray(X if X.ndim != 3 else X[:, None])
    codes = np.unique(y, return_inverse=True)[1].astype(np.int64)
    for r in range(args.rounds):
        paired = Paired(None)
        est = TripletEmbedder(
            max_epochs=args.epochs,
            random_state=r,
            device=args.device,
            augment=False,
            callbacks=[("paired", paired)],
            **est_kwargs,
        )

        def make_plain(net, module, est=est):
            # A copy of the network as fit built it, the same PK batches
            # (seed and class codes), loss and optimizer settings.
            return PlainLoop(module, X_in, codes, est, net.seed, args.device, net.lr)

        paired.make_plain = make_plain
        est.fit(X, y)
        f, p = paired.fit_epochs()[1:], paired.plain[1:]  # the first epoch warms up
        fit_epochs += f
        plain += p
        ratios += [a / b for a, b in zip(f, p, strict=True)]
        for i in range(args.transform_pairs):
            # Alternate which of the two goes first (caches warmed by the other).
            if i % 2:
                raw.append(raw_forward(est.net_.module_, X_in, 1024, args.device))
            t0 = time.perf_counter()
            est.transform(X)
            _sync(args.device)
            tr.append(time.perf_counter() - t0)
            if not i % 2:
                raw.append(raw_forward(est.net_.module_, X_in, 1024, args.device))
        print(f"# {name} round {r}: fit {f} plain {p}", file=sys.stderr)
    return {
        "fit": statistics.median(fit_epochs),
        "plain": statistics.median(plain),
        "ratio": statistics.median(ratios),
        "transform": len(X) / statistics.median(tr),
        "raw": len(X) / statistics.median(raw),
        "transform_ratio": statistics.median(r / t for t, r in zip(tr, raw, strict=True)),
        "n": len(X),
        "batches": len(PKSampler(codes, batch_size=est_kwargs.get("batch_size", 128))),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="../shared/data/mnist_test/mnist_test.npz")
    parser.add_argument(
        "--workloads", nargs="+", default=["mlp", "cnn", "faces"], choices=["mlp", "cnn", "faces"]
    )
    parser.add_argument("--faces", default="../shared/data/faces94_subset18/images")
    parser.add_argument("--face-height", type=int, default=100)
    parser.add_argument("--n-tabular", type=int, default=8192)
    parser.add_argument("--n-images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per round (first is warm-up)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--transform-pairs", type=int, default=10, help="transform/raw pairs per round"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    if "mlp" in args.workloads:
        X, y = tabular_data(args.n_tabular)
        label = f"MLP, synthetic tabular {X.shape[0]}x{X.shape[1]}"
        rows.append((label, run_workload("mlp", X, y, args, {"batch_size": 128})))
    if "cnn" in args.workloads:
        X, y, source = image_data(args.data, args.n_images)
        label = f"CNN, {source} {X.shape[0]} images"
        rows.append((label, run_workload("cnn", X, y, args, {"batch_size": 128})))
    if "faces" in args.workloads and os.path.isdir(args.faces):
        X, y = face_data(args.faces, args.face_height)
        label = (
            f"CNN, grey faces {X.shape[1]}x{X.shape[2]}, {len(X)} images, "
            f"{len(np.unique(y))} people"
        )
        rows.append((label, run_workload("faces", X, y, args, {"batch_size": 128})))
    print(
        f"\nMachine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"device {args.device}, {args.threads} thread(s), load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    print(
        "| workload | batches/epoch | fit s/epoch | plain loop s/epoch | fit / plain, paired "
        "| transform samples/s | raw forward samples/s | transform / raw, paired |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        print(
            f"| {label} | {r['batches']} | {r['fit']:.3f} | {r['plain']:.3f} | "
            f"{r['ratio']:.3f} | {r['transform']:.0f} | {r['raw']:.0f} | "
            f"{r['transform_ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()
