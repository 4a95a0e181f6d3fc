"""Learning shoe similarity from crowd judgements: 85 Zappos photos, 283,770 triplets.

Question: from human judgements alone ("shoe b looks more like shoe a than shoe
c does"), with a pretrained image network, how well does a learnt embedding
agree with judgements it was not trained on, how long does the fit take on a
CPU, and how much of that agreement carries over to shoes never trained on?

Data: ``zappos_shoes85`` (``--data``, see its ``SOURCE.txt``): 85 photos and
the "deconflicted" crowd triplets of Heim, Berger, Seversky and Hauskrecht
(arXiv 1511.02254), one answer per question, cycles removed.

Protocols, per seed (``--seeds``):

* ``triplets`` (held-out judgements): a seeded ``train_test_split`` of the
  triplets, ``--test-size`` of them held out. Every shoe is in both parts.
* ``items`` (held-out shoes): ``sktriplet.evaluation.item_split
  .train_test_split_items``: ``--test-size`` of the shoes are test shoes;
  training uses the triplets whose three shoes are training shoes, the test
  the triplets whose three shoes are test shoes (the rest are unused).

Score: triplet agreement, the fraction of test triplets with ``d(a, b) <
d(a, c)`` (squared Euclidean, strict; what ``TripletEmbedder.score`` reports
in triplet mode); "train" is the same on (at most 20,000) training triplets.

Rows (``--rows``):

* ``raw``: the decoded pixels (``--image-size``, centre cut, as the library
  reads image files), Euclidean distance. Nothing trained.
* ``frozen``: pooled EfficientNet-Lite0 features (ImageNet weights,
  ``sktriplet.networks.BackboneEmbedder``), L2-normalised. Nothing trained.
* ``free``: a free ordinal embedding: an ``(85, --free-dim)`` table of unit
  vectors fitted to the training triplets with ``triplet_loss(...,
  triplets=..., mining="none")``, Adam at 0.05, batches of 4,096, 30 epochs;
  no image at all. Protocol ``triplets`` only (test shoes have no row).
* ``head``: what ``TripletEmbedder(triplets=True)`` with a frozen backbone
  should do: the backbone's features computed once, then a linear head (the
  ``BackboneEmbedder`` head: ``AnchoredLinear`` with L2-SP strength
  ``--head-anchor``, initialised to the identity for ``--n-components 0``,
  else randomly) and L2 normalisation trained on batches of
  ``--batch-triplets`` triplets over the cached features, Adam at ``--lr``
  with a cosine decay over ``--epochs``, ``triplet_loss(emb,
  triplets=..., mining=--mining, margin=--margin)`` (``--margin soft``:
  ``soft=True``). The fit time includes
  the feature pass.
* ``blocks``: as ``head``, but the backbone's last ``--blocks`` MBConv blocks
  and its final 1x1 convolution also train (BatchNorm statistics fixed), on
  activations cached once at the block boundary; a batch runs only its
  distinct shoes through the trained blocks.
* ``estimator``: ``TripletEmbedder(triplets=True, samples=paths,
  module=BackboneEmbedder, module__backbone="efficientnet_lite0",
  image_size=--image-size, random_state=seed, **--estimator-params)``
  fitted on the training triplets and scored with ``score``: sktriplet's
  defaults (``--max-train-triplets`` caps its training set).

Every combination of the listed ``head`` / ``blocks`` settings is one row.
Timings are wall-clock seconds on the machine and load printed above the
table; they are pessimistic on a shared machine.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_zappos.py [--seeds 0 1 2]
       [--protocol triplets items] [--test-size 0.3] [--image-size 128]
       [--rows raw frozen free head blocks estimator] [--mining none]
       [--margin 0.5 soft] [--epochs 5] [--batch-triplets 1024] [--lr 1e-3]
       [--head-anchor 0.01] [--n-components 0] [--blocks 1] [--free-dim 16]
       [--estimator-params KEY=VALUE ...] [--max-train-triplets N]
       [--threads 1] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_transfer import parse_params  # the same KEY=VALUE parsing
from bench_triplets import hinge, margin_value  # numbers, or "soft"
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

from sktriplet import TripletEmbedder
from sktriplet.evaluation.item_split import train_test_split_items
from sktriplet.inputs.files import ImageFileDataset
from sktriplet.networks import BackboneEmbedder
from sktriplet.networks.layers import AnchoredLinear
from sktriplet.triplets.losses import triplet_loss

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BACKBONE = "efficientnet_lite0"
ROWS = ("raw", "frozen", "free", "head", "blocks", "estimator")
N_TRAIN_SCORED = 20_000


# ------------------------------------------------------------------ data
class Shoes:
    """The photos (decoded once), the triplets and the frozen backbone's features."""

    def __init__(self, root: Path, image_size: int) -> None:
        self.triplets = np.loadtxt(root / "triplets.csv", delimiter=",", dtype=np.int64)
        n = int(self.triplets.max()) + 1
        self.paths = [str(root / "images" / f"{i}.jpg") for i in range(n)]
        self.image_size = image_size
        start = time.perf_counter()
        self.pixels = ImageFileDataset(self.paths, image_size=image_size, channels=3)[
            list(range(n))
        ][0]
        self.decode_s = time.perf_counter() - start
        self.net = BackboneEmbedder(BACKBONE, image_size=image_size).eval()
        start = time.perf_counter()
        with torch.no_grad():
            self.features = self.net.features(self.normalised())
        self.features_s = time.perf_counter() - start + self.decode_s

    def normalised(self) -> torch.Tensor:
        """The photos as the backbone takes them: ``(x / 255 - mean) / std``."""
        mean = torch.tensor(self.net.input_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.net.input_std).view(1, 3, 1, 1)
        return (self.pixels.float() / 255 - mean) / std


def split(shoes: Shoes, protocol: str, seed: int, test_size: float):
    """Training and test triplets of one protocol and seed."""
    if protocol == "triplets":
        return train_test_split(shoes.triplets, test_size=test_size, random_state=seed)
    return train_test_split_items(shoes.triplets, test_size=test_size, random_state=seed)


def agreement(Z: torch.Tensor | np.ndarray, triplets: np.ndarray) -> float:
    """Fraction of triplets with ``d(a, p) < d(a, n)`` (squared Euclidean, float64)."""
    Z = torch.as_tensor(np.asarray(Z), dtype=torch.float64)
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1).numpy()
    a, p, n = triplets.T
    return float(np.mean(D[a, p] < D[a, n]))


# ------------------------------------------------------------------ training
def _cosine(opt, lr: float, step: int, steps: int) -> None:
    for group in opt.param_groups:
        group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))


def train_triplets(embed, params, triplets: np.ndarray, cfg: dict, seed: int) -> None:
    """Adam over shuffled batches of triplets; ``embed(ids)`` embeds distinct shoes."""
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    order = torch.Generator().manual_seed(seed)
    index = torch.from_numpy(triplets)
    bs = cfg["batch"]
    steps, step = cfg["epochs"] * math.ceil(len(triplets) / bs), 0
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(len(index), generator=order)
        for start in range(0, len(index), bs):
            batch = index[perm[start : start + bs]]
            ids, local = torch.unique(batch, return_inverse=True)
            z, penalty = embed(ids)
            loss = triplet_loss(
                z, triplets=local.view(-1, 3), mining=cfg["mining"], **hinge(cfg["margin"])
            )
            _cosine(opt, cfg["lr"], step, steps)
            opt.zero_grad()
            (loss + penalty).backward()
            opt.step()
            step += 1


def make_head(width_in: int, n_components: int, anchor: float) -> AnchoredLinear:
    """The ``BackboneEmbedder`` head: identity start for ``n_components=0``."""
    if n_components:
        return AnchoredLinear(width_in, n_components, strength=anchor)
    head = AnchoredLinear(width_in, width_in, strength=anchor)
    with torch.no_grad():
        head.weight.copy_(torch.eye(width_in))
        head.bias.zero_()
    return head.reset_anchor()


def row_head(shoes: Shoes, train: np.ndarray, cfg: dict, seed: int) -> torch.Tensor:
    """A head trained on the cached features; the embeddings of all shoes."""
    torch.manual_seed(seed)
    feats = shoes.features
    head = make_head(feats.shape[1], cfg["n_components"], cfg["anchor"])

    def embed(ids):
        return F.normalize(head(feats[ids]), dim=1), head.regularization_loss()

    train_triplets(embed, head.parameters(), train, cfg, seed)
    with torch.no_grad():
        return embed(torch.arange(len(feats)))[0]


class TopBlocks(nn.Module):
    """EfficientNet-Lite0's last ``k`` MBConv blocks, final 1x1 convolution and pooling.

    Copies of the pretrained modules (the shared backbone stays untouched);
    BatchNorm layers stay in evaluation mode (statistics fixed).
    """

    def __init__(self, backbone: nn.Module, k: int) -> None:
        super().__init__()
        backbone = backbone.model  # the package's EfficientNet inside the wrapper
        self.blocks = copy.deepcopy(backbone._blocks[len(backbone._blocks) - k :])
        self.conv_head = copy.deepcopy(backbone._conv_head)
        self.bn1 = copy.deepcopy(backbone._bn1)
        self.swish = backbone._swish
        self.requires_grad_(True)  # the copies of a frozen backbone's modules train
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.swish(self.bn1(self.conv_head(x))).mean(dim=(2, 3))


def block_input(shoes: Shoes, k: int) -> torch.Tensor:
    """The activations entering the last ``k`` blocks, for every shoe (cached once)."""
    bb = shoes.net.backbone.model  # the package's EfficientNet inside the wrapper
    with torch.no_grad():
        x = bb._swish(bb._bn0(bb._conv_stem(shoes.normalised())))
        for block in bb._blocks[: len(bb._blocks) - k]:
            x = block(x)
    return x


def row_blocks(shoes: Shoes, train: np.ndarray, cfg: dict, seed: int) -> torch.Tensor:
    """The last ``cfg["blocks"]`` blocks and a head trained on cached activations."""
    torch.manual_seed(seed)
    cached = block_input(shoes, cfg["blocks"])
    top = TopBlocks(shoes.net.backbone, cfg["blocks"])
    head = make_head(shoes.features.shape[1], cfg["n_components"], cfg["anchor"])

    def embed(ids):
        return F.normalize(head(top(cached[ids])), dim=1), head.regularization_loss()

    params = [*top.parameters(), *head.parameters()]
    train_triplets(embed, params, train, cfg, seed)
    with torch.no_grad():
        return embed(torch.arange(len(cached)))[0]


def row_free(n_items: int, train: np.ndarray, dim: int, seed: int) -> torch.Tensor:
    """A free table of unit vectors fitted to the training triplets (no images)."""
    torch.manual_seed(seed)
    table = nn.Parameter(0.1 * torch.randn(n_items, dim))
    cfg = {"lr": 0.05, "batch": 4096, "epochs": 30, "mining": "none", "margin": 0.2}

    def embed(ids):
        return F.normalize(table[ids], dim=1), table.new_zeros(())

    train_triplets(embed, [table], train, cfg, seed)
    return F.normalize(table.detach(), dim=1)


def row_estimator(shoes: Shoes, train: np.ndarray, test: np.ndarray, args, seed: int):
    """sktriplet's estimator in triplet mode on the image files: (agreement, train, fit s)."""
    emb = TripletEmbedder(
        triplets=True,
        samples=shoes.paths,
        module=BackboneEmbedder,
        module__backbone=BACKBONE,
        image_size=shoes.image_size,
        random_state=seed,
        device="cpu",
        **parse_params(args.estimator_params),
    )
    start = time.perf_counter()
    emb.fit(train)
    seconds = time.perf_counter() - start
    return emb.score(test), emb.score(train[:N_TRAIN_SCORED]), seconds


# ------------------------------------------------------------------ table
def _fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} +- {statistics.pstdev(values):.3f}"


def settings(args) -> list[dict]:
    """Every combination of the ``head`` / ``blocks`` settings."""
    grid = itertools.product(
        args.mining,
        args.margin,
        args.epochs,
        args.batch_triplets,
        args.lr,
        args.head_anchor,
        args.n_components,
    )
    keys = ("mining", "margin", "epochs", "batch", "lr", "anchor", "n_components")
    return [dict(zip(keys, values, strict=True)) for values in grid]


def describe(row: str, cfg: dict | None, args) -> str:
    if row == "raw":
        return f"{args.image_size} px, {3 * args.image_size**2} values"
    if row == "frozen":
        return f"{BACKBONE} at {args.image_size} px, 1280 pooled features"
    if row == "free":
        return f"{args.free_dim}-d table, margin 0.2, 30 epochs"
    if row == "estimator":
        return ", ".join(args.estimator_params) or "defaults"
    width = cfg["n_components"] or "1280 (identity start)"
    margin = cfg["margin"] if isinstance(cfg["margin"], str) else f"{cfg['margin']:g}"
    text = (
        f"mining {cfg['mining']}, margin {margin}, {cfg['epochs']} epochs of "
        f"{cfg['batch']} triplets, lr {cfg['lr']:g}, anchor {cfg['anchor']:g}, width {width}"
    )
    return f"last {cfg['blocks']} block(s) + head, {text}" if row == "blocks" else text


def measure(shoes: Shoes, row: str, cfg: dict | None, train, test, args, seed: int):
    """(test agreement, train agreement, fit seconds) of one row on one split."""
    scored = train[:N_TRAIN_SCORED]
    if row == "estimator":
        return row_estimator(shoes, train, test, args, seed)
    start = time.perf_counter()
    if row == "raw":
        Z, seconds = shoes.pixels.flatten(1).float(), shoes.decode_s
    elif row == "frozen":
        Z, seconds = F.normalize(shoes.features, dim=1), shoes.features_s
    elif row == "free":
        Z = row_free(len(shoes.paths), train, args.free_dim, seed)
        seconds = time.perf_counter() - start
    else:
        trainer = row_head if row == "head" else row_blocks
        Z = trainer(shoes, train, cfg, seed)
        seconds = time.perf_counter() - start + shoes.features_s
    return agreement(Z, test), agreement(Z, scored), seconds


def configurations(args) -> list[tuple[str, dict | None]]:
    out: list[tuple[str, dict | None]] = []
    for row in args.rows:
        if row == "head":
            out += [("head", cfg) for cfg in settings(args)]
        elif row == "blocks":
            out += [("blocks", {**cfg, "blocks": k}) for cfg in settings(args) for k in args.blocks]
        else:
            out.append((row, None))
    return out


def run(shoes: Shoes, args) -> None:
    print(
        "| protocol | row | settings | train triplets | test triplets | test agreement "
        "| train agreement | fit s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for protocol in args.protocol:
        splits = {s: split(shoes, protocol, s, args.test_size) for s in args.seeds}
        if args.max_train_triplets:
            splits = {s: (tr[: args.max_train_triplets], te) for s, (tr, te) in splits.items()}
        for row, cfg in configurations(args):
            if row == "free" and protocol == "items":
                continue  # held-out shoes have no row in a free table
            results = [measure(shoes, row, cfg, *splits[s], args, s) for s in args.seeds]
            n_train = statistics.mean(len(splits[s][0]) for s in args.seeds)
            n_test = statistics.mean(len(splits[s][1]) for s in args.seeds)
            print(
                f"| {protocol} | {row} | {describe(row, cfg, args)} | {n_train:,.0f} | "
                f"{n_test:,.0f} | {_fmt([r[0] for r in results])} | "
                f"{_fmt([r[1] for r in results])} | "
                f"{statistics.mean(r[2] for r in results):.1f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--protocol", nargs="+", default=["triplets", "items"], choices=["triplets", "items"]
    )
    parser.add_argument("--test-size", type=float, default=0.3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--rows", nargs="+", default=["raw", "frozen", "free", "head"], choices=ROWS
    )
    parser.add_argument("--mining", nargs="+", default=["none"])
    parser.add_argument("--margin", type=margin_value, nargs="+", default=[0.5])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5])
    parser.add_argument("--batch-triplets", type=int, nargs="+", default=[1024])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3])
    parser.add_argument("--head-anchor", type=float, nargs="+", default=[0.01])
    parser.add_argument("--n-components", type=int, nargs="+", default=[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1])
    parser.add_argument("--free-dim", type=int, default=16)
    parser.add_argument("--estimator-params", nargs="*", default=[])
    parser.add_argument("--max-train-triplets", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(DATA))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shoes = Shoes(Path(args.data) / "zappos_shoes85", args.image_size)
    print(f"# {' '.join(sys.argv)}\n")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, torch {torch.__version__}, "
        f"{args.threads} thread(s); {len(shoes.paths)} shoes, {len(shoes.triplets):,} "
        f"triplets, test_size {args.test_size}, seeds {args.seeds}, mean +- std over the "
        f"seeds\n"
    )
    run(shoes, args)


if __name__ == "__main__":
    main()
