"""Probe for ``freeze="auto"``: which top blocks to train on cached activations, how, how long?

Question: with EfficientNet-Lite0 at ``--image-size`` (128) and its stem and
lower blocks frozen, does training its top ``k`` blocks (plus the head
convolution after them and the projection head) on *cached* boundary
activations beat the head-only default on classes never seen in training,
and which rule (depth, epochs, learning rates, L2-SP anchor, cached views,
selection on a class-disjoint hold-out of the training classes) gains where
the frozen features are weak without losing where they are strong?

Per data set (class-disjoint split as in ``bench_transfer.py``, whose
loading code this script imports), the script

1. decodes every training photo in ``--views`` fixed views
   (:class:`sktriplet.vision.views.FixedViews`: the centre cut, its mirror,
   seeded random resized crops) and every test photo in views 0 and 1, and
   runs the network up to the boundary before block ``16 - max(k)`` once,
   in evaluation mode (:func:`sktriplet.networks.split.split_at_block`);
   the activations are kept in ``--cache`` for later runs;
2. for every run of the grid, trains with sktriplet's semi-hard
   ``triplet_loss`` on PK batches (``PKSampler``, 128 = 16 x 8) plus the
   L2-SP penalties (``regularization_loss``), Adam with two parameter
   groups (blocks ``lrb``, head ``lrh``), BatchNorm statistics frozen, one
   cached view per photo drawn each epoch. ``k=0`` is the head-only
   default (pooled features of view 0, 30 epochs, lr 2e-3, cosine with one
   warm-up epoch, ``head_anchor`` 0.01, as ``TripletEmbedder`` trains it).
   ``init=head`` starts the blocks from that trained head (two stages),
   ``init=identity`` from the identity head;
3. after every epoch embeds the unseen test photos (view 0; ``+flip``:
   the normalised sum of the embeddings of views 0 and 1) and, with
   ``--holdout``, the held-out training classes, and scores leave-one-out
   MAP@R and P@1 (``retrieval_scores``).

Rows: one per run. ``start`` is before the run's first epoch (the frozen
features for ``init=identity``, the head-only result for ``init=head``);
``sel`` is the test MAP@R at the epoch (``start`` included) with the best
hold-out MAP@R, then at the epoch the margin rule keeps: the best epoch only
if its hold-out MAP@R beats ``start``'s by ``MARGIN`` (0.005), else
``start`` (and that epoch's test MAP@R with flip averaging). Times are
wall seconds on a shared machine (note the load).

Data sets: ``cars`` (classes 001-098 train, 099-196 unseen), ``glint``
(glint_faces24, 24 people split 12 / 12 by ``--seed``), ``faces``
(faces94_subset18, saturated: a sanity check), ``coil`` (COIL-20's 20
objects, 32 x 32 grey, upscaled; 10 / 10 by ``--seed``: frozen ImageNet
features are strong there, the stand-in for object categories).

Usage: OMP_NUM_THREADS=1 python benchmarks/probe_blocks.py [--datasets glint cars coil faces]
       [--seed 0] [--views 4] [--grid k=0,1,3,5 lrb=1e-4 lrh=1e-3 ep=4 anchor=0 init=head V=4]
       [--holdout 0.25] [--image-size 128] [--cache /tmp/sktriplet-probe]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_transfer as bt  # noqa: E402

from sktriplet.evaluation.metrics import retrieval_scores  # noqa: E402
from sktriplet.networks import BackboneEmbedder, declared_standardize  # noqa: E402
from sktriplet.networks.layers import regularization_loss  # noqa: E402
from sktriplet.networks.split import split_at_block  # noqa: E402
from sktriplet.training.sampling import PKSampler  # noqa: E402
from sktriplet.training.schedules import cosine_factor  # noqa: E402
from sktriplet.triplets.losses import triplet_loss  # noqa: E402
from sktriplet.vision.views import FixedViews, draw_views  # noqa: E402

MAX_K = 5  # the deepest boundary cached: before block 11 of 16
MARGIN = 0.005  # the selection rule leaves head-only only for this much hold-out MAP@R
DEFAULTS = {"k": 0, "lrb": 1e-4, "lrh": 1e-3, "ep": 4, "anchor": 0.0, "init": "head", "V": 1}
DEFAULTS.update({"wd": 0.0, "dc": 1, "warm": 0.2, "hv": 1})


# ------------------------------------------------------------------ data
def load(name: str, args) -> bt.Split:
    return bt.load_split(
        name, argparse.Namespace(**{**vars(args), "max_classes": None, "max_train_images": None})
    )


def _bottom_pass(bottom, views: FixedViews, paths, view_ids, batch=32) -> np.ndarray:
    """Boundary activations (n, len(view_ids), D) of the photos' views, in eval, no grad."""
    out = None
    with torch.no_grad():
        for j, v in enumerate(view_ids):
            for s in range(0, len(paths), batch):
                x = np.stack([views(p, v, index=s + i) for i, p in enumerate(paths[s : s + batch])])
                a = bottom(torch.from_numpy(x)).numpy()
                if out is None:
                    out = np.empty((len(paths), len(view_ids), a.shape[1]), np.float32)
                out[s : s + len(a), j] = a
    return out


def activations(split: bt.Split, net: BackboneEmbedder, args) -> dict:
    """Cached boundary activations before block 16 - MAX_K (computed once, kept on disk)."""
    path = Path(args.cache) / f"{split.name}-s{args.seed}-{args.image_size}px-V{args.views}.npz"
    if path.exists():
        return dict(np.load(path))
    full = torch.nn.Sequential(declared_standardize(net), net)
    bottom, _ = split_at_block(full, MAX_K)
    bottom.eval()
    views = FixedViews(args.image_size, n_views=args.views, seed=args.seed)
    t0 = time.perf_counter()
    train = _bottom_pass(bottom, views, split.train_paths, range(args.views))
    t1 = time.perf_counter()
    test = _bottom_pass(bottom, views, split.test_paths, [0, 1])
    cache = {
        "train": train,
        "test": test,
        "train_y": split.train_y,
        "test_y": split.test_y,
        "seconds_per_view": np.float64((t1 - t0) / args.views),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **cache)
    return cache


# ------------------------------------------------------------------ model pieces
def derive(net: BackboneEmbedder, a: np.ndarray, k: int) -> np.ndarray:
    """Activations at the boundary before the last ``k`` blocks (k < MAX_K), or pooled (k=-1)."""
    shape = a.shape
    flat = torch.from_numpy(a.reshape(-1, shape[-1]))
    from sktriplet.networks.blocks import backbone_blocks
    from sktriplet.networks.split import boundary_shape

    parts = backbone_blocks(net.backbone)
    c_h_w = boundary_shape(net, MAX_K)
    out = []
    with torch.no_grad():
        net.eval()
        for s in range(0, len(flat), 256):
            x = flat[s : s + 256].reshape(-1, *c_h_w).contiguous(memory_format=torch.channels_last)
            x = parts.run(x, start=16 - MAX_K, stop=None if k < 0 else 16 - k)
            out.append((net.pool(x) if k < 0 else x.reshape(len(x), -1)).numpy())
    return np.concatenate(out).reshape(*shape[:-1], -1)


class PooledTop(torch.nn.Module):
    """Head-only training: the embedder's head and normalisation on pooled features."""

    def __init__(self, net: BackboneEmbedder) -> None:
        super().__init__()
        self.head, self.normalize = net.head, net.normalize

    def forward(self, f):
        return self.normalize(self.head(f))


def embed(top, a: np.ndarray) -> torch.Tensor:
    top.eval()
    with torch.no_grad():
        return torch.cat([top(torch.from_numpy(a[s : s + 256])) for s in range(0, len(a), 256)])


def scores(top, a: np.ndarray, y: np.ndarray) -> dict:
    """MAP@R and P@1 of view 0, and of the flip average (views 0 and 1) when cached."""
    z0 = embed(top, a[:, 0])
    out = {}
    s = retrieval_scores(z0.numpy(), y, k=1)
    out["map"], out["p1"] = s["map_at_r"], s["precision_at_1"]
    if a.shape[1] > 1:
        z = torch.nn.functional.normalize(z0 + embed(top, a[:, 1]), dim=1)
        out["map_flip"] = retrieval_scores(z.numpy(), y, k=1)["map_at_r"]
    return out


# ------------------------------------------------------------------ training
def train_epochs(top, data, y, cfg, groups, epochs, schedule, seed, on_epoch) -> list[float]:
    """PK batches over ``epochs``; ``data`` is (n, V, D); returns the mean loss per epoch."""
    opt = torch.optim.Adam(groups, weight_decay=cfg.get("wd", 0.0))
    base = [g["lr"] for g in opt.param_groups]
    sampler = PKSampler(y, batch_size=128, samples_per_class=8, random_state=seed)
    n_steps, step, losses = epochs * len(sampler), 0, []
    yt = torch.from_numpy(np.asarray(y))
    for epoch in range(epochs):
        views = draw_views(len(y), data.shape[1], seed, epoch)
        top.train()
        total = 0.0
        for batch in sampler:
            idx = np.asarray(batch)
            for g, lr in zip(opt.param_groups, base, strict=True):
                g["lr"] = lr * schedule(epoch, step, n_steps, epochs)
            x = torch.from_numpy(data[idx, views[idx]])
            loss = triplet_loss(top(x), yt[idx], margin=0.2)
            penalty = regularization_loss(top)
            opt.zero_grad()
            (loss + (0 if penalty is None else penalty)).backward()
            opt.step()
            total += loss.item()
            step += 1
        losses.append(total / len(sampler))
        on_epoch(epoch + 1, losses[-1])
    return losses


def head_schedule(epoch, step, n_steps, epochs):
    return cosine_factor(epoch, epochs, warmup_epochs=1)  # the estimator's "cosine"


def make_block_schedule(warm: float):
    def block_schedule(epoch, step, n_steps, epochs):
        w = max(1, round(warm * n_steps))
        if step < w:
            return (step + 1) / w
        return 0.5 * (1 + math.cos(math.pi * (step - w) / max(1, n_steps - w)))

    return block_schedule


def head_only(net, pooled, y, seed, evaluate, n_views=1, epochs=30, lr=2e-3):
    """Today's default: the head on pooled features of view 0 (or of ``n_views`` views)."""
    top = PooledTop(net)
    groups = [{"params": list(top.parameters()), "lr": lr}]
    torch.manual_seed(seed)
    no_log = lambda epoch, loss: None  # noqa: E731
    train_epochs(top, pooled[:, :n_views], y, {}, groups, epochs, head_schedule, seed, no_log)
    return evaluate(top, "pooled")


def run_blocks(net, cache, cfg, seed, evaluate, log):
    """Blocks ``16-k .. 15`` + head conv + head on the cached boundary, ``cfg["ep"]`` epochs."""
    k = cfg["k"]
    net.set_freeze(k)
    if not cfg["dc"]:
        net.backbone.model._global_params = net.backbone.model._global_params._replace(
            drop_connect_rate=None
        )
    _, top = split_at_block(net, k, check=False)
    blocks = [p for p in net.backbone.parameters() if p.requires_grad]
    groups = [
        {"params": blocks, "lr": cfg["lrb"]},
        {"params": list(net.head.parameters()), "lr": cfg["lrh"]},
    ]
    data = cache["train_k"][k][:, : cfg["V"]]
    torch.manual_seed(seed)
    train_epochs(
        top,
        data,
        cache["fit_y"],
        cfg,
        groups,
        cfg["ep"],
        make_block_schedule(cfg["warm"]),
        seed,
        lambda e, loss: log(e, loss, evaluate(top, k)),
    )


# ------------------------------------------------------------------ one data set
def prepare(split: bt.Split, net: BackboneEmbedder, args, grid: list[dict]) -> dict:
    """The cache, the boundaries every run needs, and the fit / hold-out division."""
    cache = activations(split, net, args)
    n_views = max(max(c["V"] for c in grid), 2)
    train = cache["train"][:, :n_views]
    ks = sorted({c["k"] for c in grid if c["k"] > 0})
    cache["train_k"] = {k: train if k == MAX_K else derive(net, train, k) for k in ks}
    cache["test_k"] = {
        k: cache["test"] if k == MAX_K else derive(net, cache["test"], k) for k in ks
    }
    cache["train_k"]["pooled"] = derive(net, train, -1)
    cache["test_k"]["pooled"] = derive(net, cache["test"], -1)
    y = cache["train_y"]
    classes = np.unique(y)
    n_val = max(2, round(args.holdout * len(classes))) if args.holdout else 0
    val_classes = np.random.default_rng([args.seed, 99]).permutation(classes)[:n_val]
    val = np.isin(y, val_classes)
    cache["fit"], cache["val"] = np.flatnonzero(~val), np.flatnonzero(val)
    cache["fit_y"] = y[~val]
    for key in ("train_k",):
        cache[key + "_full"] = cache[key]
        cache[key] = {k: v[cache["fit"]] for k, v in cache[key].items()}
    return cache


def make_evaluate(cache):
    def evaluate(top, k):
        out = {"test": scores(top, cache["test_k"][k], cache["test_y"])}
        if len(cache["val"]):
            val = cache["train_k_full"][k][cache["val"]][:, :2]
            out["val"] = scores(top, val, cache["train_y"][cache["val"]])
        return out

    return evaluate


def one_run(pristine, cache, cfg, seed) -> dict:
    net = copy.deepcopy(pristine)
    net.anchor.strength = float(cfg["anchor"])
    evaluate = make_evaluate(cache)
    t0 = time.perf_counter()
    if cfg["init"] == "head" or cfg["k"] == 0:
        views = cfg["V"] if cfg["k"] == 0 else cfg["hv"]
        pooled = cache["train_k"]["pooled"]
        start = head_only(net, pooled, cache["fit_y"], seed, evaluate, n_views=views)
    else:
        start = evaluate(PooledTop(net), "pooled")
    head_s = time.perf_counter() - t0
    record = {"cfg": cfg, "start": start, "epochs": [], "head_s": head_s, "epoch_s": []}
    if cfg["k"] == 0:
        return record
    clock = [time.perf_counter()]

    def log(epoch, loss, result):
        record["epoch_s"].append(time.perf_counter() - clock[0] - result.pop("_eval_s", 0.0))
        record["epochs"].append({**result, "loss": loss})
        clock[0] = time.perf_counter()

    def timed_evaluate(top, k):
        t = time.perf_counter()
        out = evaluate(top, k)
        out["_eval_s"] = time.perf_counter() - t
        return out

    run_blocks(net, cache, cfg, seed, timed_evaluate, log)
    return record


def _fmt(cfg: dict) -> str:
    keys = [
        k
        for k in ("k", "lrb", "lrh", "ep", "anchor", "init", "V", "wd", "dc", "warm", "hv")
        if k in ("k", "ep") or cfg[k] != DEFAULTS[k] or k in ("lrb", "V")
    ]
    return " ".join(
        f"{k}={cfg[k]:g}" if isinstance(cfg[k], float) else f"{k}={cfg[k]}" for k in keys
    )


def row(record: dict, frozen: float) -> str:
    start, epochs = record["start"], record["epochs"]
    curve = [start] + epochs
    tests = " ".join(f"{r['test']['map']:.3f}" for r in curve)
    flips = " ".join(f"{r['test'].get('map_flip', float('nan')):.3f}" for r in curve)
    sel = ""
    if "val" in start:
        vals = [r["val"]["map"] for r in curve]
        best = int(np.argmax(vals))
        kept = best if vals[best] >= vals[0] + MARGIN else 0
        sel = f"{curve[best]['test']['map']:.3f} (e{best}); {curve[kept]['test']['map']:.3f} " + (
            f"(e{kept}), flip {curve[kept]['test'].get('map_flip', float('nan')):.3f}"
        )
        tests += " / val " + " ".join(f"{v:.3f}" for v in vals)
    loss = f"{epochs[-1]['loss']:.3f}" if epochs else ""
    per_epoch = f"{np.mean(record['epoch_s']):.1f}" if record["epoch_s"] else ""
    return (
        f"| {_fmt(record['cfg'])} | {frozen:.3f} | {tests} | {flips} | {sel} | "
        f"{curve[-1]['test']['p1']:.3f} | {loss} | {record['head_s']:.0f} | {per_epoch} |"
    )


def run_dataset(name: str, args, grid: list[dict]) -> None:
    split = load(name, args)
    torch.manual_seed(args.seed)
    pristine = BackboneEmbedder("efficientnet_lite0", image_size=args.image_size).eval()
    t0 = time.perf_counter()
    cache = prepare(split, pristine, args, grid)
    frozen = scores(PooledTop(pristine), cache["test_k"]["pooled"], cache["test_y"])
    seen = scores(PooledTop(pristine), cache["train_k_full"]["pooled"][:, :1], cache["train_y"])
    print(
        f"\n### {split.describe()}, {args.image_size} px, seed {args.seed}, hold-out "
        f"{len(np.unique(cache['train_y'][cache['val']]))} classes\n"
    )
    print(
        f"cache: {float(cache['seconds_per_view']):.0f} s per view of the training photos "
        f"(when first computed); prepared in {time.perf_counter() - t0:.0f} s; frozen "
        f"MAP@R {frozen['map']:.3f} (flip {frozen['map_flip']:.3f}), P@1 {frozen['p1']:.3f}; "
        f"frozen MAP@R among the training photos {seen['map']:.3f}\n"
    )
    print(
        "| run | frozen | test MAP@R: start, then each epoch | with flip | sel: best val; margin "
        "| P@1 last | loss last | stage-1 s | s/epoch |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|---:|", flush=True)
    for cfg in grid:
        print(row(one_run(pristine, cache, cfg, args.seed), frozen["map"]), flush=True)


def parse_grid(pairs: list[str]) -> list[dict]:
    """``["k=1,3", "lrb=1e-4"]`` -> the cartesian product of the values, over DEFAULTS."""
    axes = {}
    for pair in pairs:
        key, _, values = pair.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"unknown grid key {key!r}; known: {', '.join(DEFAULTS)}")
        kind = type(DEFAULTS[key])
        axes[key] = [v if kind is str else kind(float(v)) for v in values.split(",")]
    keys = list(axes)
    grid = [
        {**DEFAULTS, **dict(zip(keys, combo, strict=True))}
        for combo in itertools.product(*axes.values())
    ]
    seen, unique = set(), []
    for cfg in grid:  # k=0 runs ignore the block settings: keep one
        key = ("k0", cfg["V"]) if cfg["k"] == 0 else tuple(sorted(cfg.items()))
        if key not in seen:
            seen.add(key)
            unique.append(cfg)
    return unique


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", default=["glint"], choices=["cars", "glint", "faces", "coil"]
    )
    parser.add_argument("--grid", nargs="*", default=["k=0,1,3,5"])
    parser.add_argument("--views", type=int, default=4, help="views cached per training photo")
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="fraction of training classes held out for selection",
    )
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(bt.DATA))
    parser.add_argument("--cache", default="/tmp/sktriplet-probe")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grid = parse_grid(args.grid)
    print(f"# {' '.join(sys.argv)}\n")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch "
        f"{torch.__version__}, {args.threads} thread(s)"
    )
    for name in args.datasets:
        run_dataset(name, args, grid)


if __name__ == "__main__":
    main()
