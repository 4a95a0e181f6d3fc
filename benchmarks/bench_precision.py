"""Does bfloat16 autocast make training and inference faster on this CPU, and at what quality?

Question (issue 30, ``precision="auto"``): on a CPU with native bfloat16
(AVX-512 BF16 or AMX), how much faster are the forward pass and the
training step under ``torch.autocast("cpu", dtype=torch.bfloat16)`` than in
float32, for the networks sktriplet trains, and does training in bfloat16
move the unseen-class MAP@R?

``--parts speed`` times, for every workload, the forward pass (``eval``,
``torch.inference_mode``) and one training step (forward under autocast as
``TripletNet.infer`` runs it, then semi-hard triplet loss in float32,
backward and Adam) in float32 and in bfloat16, with 1 and 2 torch threads.
All eight configurations of a workload run one after another in every
round (``--rounds``, after one untimed warm-up round), so they see the same
machine load; the table gives the median over rounds and the float32 /
bfloat16 ratio. Workloads:

* ``lite0``: ``BackboneEmbedder("efficientnet_lite0")`` (random weights:
  the speed does not depend on them) at 128 x 128, batch 32,
  channels-last, every layer trained.
* ``top-blocks``: EfficientNet-Lite0's blocks 11-15 and head convolution
  on cached 112 x 8 x 8 activations (what training the top blocks on
  cached activations runs at 128 px), average pooling and a 1280-wide
  identity-initialised head, batch 128.
* ``conv``: the default ``ConvEmbedder`` on 28 x 28 grey images, batch 128
  (``--conv-params`` passes other constructor arguments as JSON).
* ``mlp``: the default ``MLPEmbedder`` on 64 features (digits-sized rows),
  batch 128.

``--parts quality`` trains ``TripletEmbedder`` with ``precision="32"`` and
``precision="bf16"`` (otherwise defaults) on the open-set data sets of
``benchmarks/bench_quality.py`` (``--datasets``, ``--seeds``; one torch
thread) and prints MAP@R of each and the difference.

``--parts estimator`` fits the default pretrained-backbone
``TripletEmbedder`` (``bench_transfer.py``'s backbone, 128 px,
``module__freeze="auto"``, one torch thread) with ``precision="32"`` and
each other precision of ``--fit-precisions`` (default ``auto``; add
``bf16`` to train the blocks in bfloat16 as well) on the training classes
of the photo sets of ``benchmarks/bench_transfer.py`` (``--photo-sets``),
one after the other, then embeds the unseen classes' photos with each (and
with the float32 model under ``"auto"``, which isolates bfloat16
inference), interleaved for ``--rounds`` rounds, and prints fit and
``transform`` times (median, ratio to float32) and unseen-class MAP@R, one
row per seed (``--fit-seeds`` from ``--first-seed``: the seed of the fits,
whose block stage moves MAP@R by about 0.01 on its own).

The CPU's bfloat16 capability is printed first: ``torch.cpu.get_capabilities()``
(torch >= 2.10; cpuinfo, so the same on Linux, macOS and Windows) or the
older ``torch.cpu._is_avx512_bf16_supported()`` / ``_is_amx_tile_supported()``.

Usage::

    python benchmarks/bench_precision.py --parts speed --rounds 5
    python benchmarks/bench_precision.py --parts speed --workloads conv mlp --threads 1
    OMP_NUM_THREADS=1 python benchmarks/bench_precision.py --parts quality \\
        --datasets coil20 alphadigits glint --seeds 3 --data-dir ../shared/data
    OMP_NUM_THREADS=1 python benchmarks/bench_precision.py --parts estimator \\
        --photo-sets glint cars --rounds 3 --data-dir /work/shared/data
    OMP_NUM_THREADS=1 python benchmarks/bench_precision.py --parts estimator \\
        --photo-sets glint --fit-precisions 32 bf16 --fit-seeds 3 --rounds 1

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sktriplet.triplets.losses import TripletLoss

ROOT = Path(__file__).resolve().parent
WORKLOADS = ("lite0", "top-blocks", "conv", "mlp")


def bf16_capability() -> dict[str, bool]:
    """The CPU's bfloat16 features as torch reports them."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        caps = dict(get())
        keys = ("avx512_bf16", "amx_bf16", "amx_tile", "bf16", "sve_bf16")
        return {k: bool(caps[k]) for k in keys if k in caps}
    out = {}
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, name, None)
        if fn is not None:
            out[name.strip("_")] = bool(fn())
    return out


# ------------------------------------------------------------------ workloads
class Workload:
    """A network, a batch and labels; forward and training step in one precision."""

    def __init__(self, name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.name, self.module, self.x, self.y = name, module, x, y
        params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=1e-4)
        self.loss = TripletLoss()

    def forward(self, bf16: bool) -> None:
        self.module.eval()
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            self.module(self.x)

    def step(self, bf16: bool) -> None:
        self.module.train()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            z = self.module(self.x)
        loss = self.loss(z, self.y)  # upcasts, mines and computes distances in float32
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def pk_labels(batch: int, k: int = 8) -> torch.Tensor:
    return torch.arange(batch // k).repeat_interleave(k)


def make_lite0() -> Workload:
    from sktriplet.networks import BackboneEmbedder

    module = BackboneEmbedder("efficientnet_lite0", weights="random", freeze=False)
    return Workload("lite0 128px b32", module, torch.rand(32, 3, 128, 128), pk_labels(32, 4))


class TopBlocks(nn.Module):
    """EfficientNet-Lite0's blocks 11-15 and head on 112-channel activations, pooled."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        self.blocks = nn.ModuleList(model._blocks[11:])
        self.head = nn.Sequential(model._conv_head, model._bn1, model._swish)
        self.proj = nn.Linear(1280, 1280)
        nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        for block in self.blocks:
            x = block(x)
        f = self.head(x).mean(dim=(2, 3))
        return nn.functional.normalize(self.proj(f), dim=1)


def make_top_blocks() -> Workload:
    x = torch.randn(128, 112, 8, 8)
    return Workload("top blocks 11-15 on 112x8x8 b128", TopBlocks(), x, pk_labels(128))


def make_conv(params: dict) -> Workload:
    from sktriplet.networks import ConvEmbedder

    module = ConvEmbedder(1, image_size=(28, 28), **params)
    name = "ConvEmbedder 28px b128" + (f" {json.dumps(params)}" if params else "")
    return Workload(name, module, torch.randn(128, 1, 28, 28), pk_labels(128))


def make_mlp() -> Workload:
    from sktriplet.networks import MLPEmbedder

    return Workload(
        "MLPEmbedder 64 feat b128", MLPEmbedder(64), torch.randn(128, 64), pk_labels(128)
    )


def time_workload(w: Workload, threads: list[int], rounds: int) -> list[dict]:
    configs = [(n, kind, bf16) for n in threads for kind in ("forward", "step") for bf16 in (0, 1)]
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    for r in range(rounds + 1):  # round 0 warms up
        for n, kind, bf16 in configs:
            torch.set_num_threads(n)
            fn: Callable[[bool], None] = w.forward if kind == "forward" else w.step
            start = time.perf_counter()
            fn(bool(bf16))
            if r:
                times[(n, kind, bf16)].append(time.perf_counter() - start)
    rows = []
    for n in threads:
        for kind in ("forward", "step"):
            f32 = statistics.median(times[(n, kind, 0)])
            bf = statistics.median(times[(n, kind, 1)])
            rows.append(
                {
                    "workload": w.name,
                    "threads": n,
                    "pass": kind,
                    "float32 ms": f"{1000 * f32:.1f}",
                    "bf16 ms": f"{1000 * bf:.1f}",
                    "speed-up": f"{f32 / bf:.2f}x",
                }
            )
    return rows


def speed(args) -> list[dict]:
    makers = {
        "lite0": make_lite0,
        "top-blocks": make_top_blocks,
        "conv": lambda: make_conv(args.conv_params),
        "mlp": make_mlp,
    }
    rows = []
    for name in args.workloads:
        torch.manual_seed(0)
        rows += time_workload(makers[name](), args.threads, args.rounds)
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# -------------------------------------------------------------------- quality
def quality(args) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    import bench_quality as bq

    torch.set_num_threads(1)
    rows = []
    for name in args.datasets:
        split = bq.LOADERS[name](args.data_dir)
        epochs = bq.EPOCHS[name]
        scores: dict[str, list[float]] = {"32": [], "bf16": []}
        seconds: dict[str, list[float]] = {"32": [], "bf16": []}
        for seed in range(args.seeds):
            for precision in ("32", "bf16"):
                start = time.perf_counter()
                Z = bq.fit_sktriplet(split, seed, epochs, {"precision": precision})
                seconds[precision].append(time.perf_counter() - start)
                scores[precision].append(bq.evaluate(Z, split)["map_at_r"])
        diff = np.subtract(scores["bf16"], scores["32"])
        rows.append(
            {
                "dataset": name,
                "epochs": epochs,
                "seeds": args.seeds,
                "MAP@R float32": bq.fmt(scores["32"]),
                "MAP@R bf16": bq.fmt(scores["bf16"]),
                "bf16 - float32": f"{diff.mean():+.3f} ± {diff.std():.3f}",
                "fit s float32": f"{np.mean(seconds['32']):.1f}",
                "fit s bf16": f"{np.mean(seconds['bf16']):.1f}",
            }
        )
        print(json.dumps(rows[-1], ensure_ascii=False), file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------ estimator
def _photo_split(name: str, args):
    sys.path.insert(0, str(ROOT))
    import bench_transfer as bt

    options = argparse.Namespace(
        data=str(args.data_dir),
        seed=0,
        max_classes=None,
        max_train_images=args.max_train_images,
        image_size=128,
        cache="/tmp/sktriplet-bench",
    )
    return bt, bt.load_split(name, options)


def estimator(args) -> list[dict]:
    """Default backbone fits, then ``transform``, with each of ``--fit-precisions``."""
    from sktriplet.evaluation.metrics import map_at_r

    torch.set_num_threads(1)
    rows = []
    for name in args.photo_sets:
        bt, split = _photo_split(name, args)
        print(split.describe(), file=sys.stderr, flush=True)
        for seed in range(args.first_seed, args.first_seed + args.fit_seeds):
            fitted, fit_s = _fit_each(bt, split, args.fit_precisions, seed)
            # The float32-trained network embedding under "auto": bfloat16 inference alone.
            both = {**fitted, "32+auto": clone_fitted(fitted["32"], precision="auto")}
            seconds: dict[str, list[float]] = {key: [] for key in both}
            scores = {}
            for _ in range(args.rounds):
                for key, emb in both.items():
                    start = time.perf_counter()
                    Z = emb.transform(split.test_paths)
                    seconds[key].append(time.perf_counter() - start)
                    scores[key] = map_at_r(Z, split.test_y)
            t32 = statistics.median(seconds["32"])
            row = {"photos": split.describe(), "seed": seed}
            for key in fitted:
                row[f"resolved {key}"] = "/".join(
                    (fitted[key].precision_, fitted[key].inference_precision_)
                )
            for key in fitted:
                row[f"fit {key}"] = f"{fit_s[key]:.0f} s ({fit_s['32'] / fit_s[key]:.2f}x)"
            for key in fitted:
                t = statistics.median(seconds[key])
                row[f"transform {key}"] = f"{t:.1f} s ({t32 / t:.2f}x)"
            for key in both:
                label = "32-trained, auto transform" if key == "32+auto" else key
                row[f"MAP@R {label}"] = f"{scores[key]:.3f}"
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
    return rows


def _fit_each(bt, split, precisions: list[str], seed: int) -> tuple[dict, dict]:
    """The default backbone ``TripletEmbedder`` fitted once per precision, and each fit's time."""
    from sktriplet import TripletEmbedder
    from sktriplet.networks import BackboneEmbedder

    fitted, fit_s = {}, {}
    for precision in precisions:
        emb = TripletEmbedder(
            module=BackboneEmbedder,
            module__backbone=bt.BACKBONE,
            image_size=split.image_size,
            precision=precision,
            random_state=seed,
            verbose=0,
        )
        start = time.perf_counter()
        fitted[precision] = emb.fit(split.train_paths, split.train_y)
        fit_s[precision] = time.perf_counter() - start
    return fitted, fit_s


def clone_fitted(emb, **params):
    """A copy of a fitted estimator with other parameters (the same network)."""
    import copy

    return copy.deepcopy(emb).set_params(**params)


def table(rows: list[dict]) -> None:
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    print()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", nargs="+", choices=("speed", "quality", "estimator"), default=["speed"]
    )
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conv-params", type=json.loads, default={})
    parser.add_argument("--datasets", nargs="+", default=["coil20", "alphadigits", "glint"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--photo-sets", nargs="+", default=["glint", "cars"])
    parser.add_argument("--max-train-images", type=int, default=None)
    parser.add_argument(
        "--fit-precisions",
        nargs="+",
        choices=("32", "auto", "bf16"),
        default=["32", "auto"],
        help="estimator part: the precisions fitted (32 always first)",
    )
    parser.add_argument("--fit-seeds", type=int, default=1, help="estimator part: seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="estimator part: first seed")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent.parent / "shared" / "data")
    args = parser.parse_args(argv)
    args.fit_precisions = ["32"] + [p for p in args.fit_precisions if p != "32"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {os.cpu_count()} logical CPUs, "
        f"bf16 capability {bf16_capability()}, load average {load:.1f} at start\n"
    )
    if "speed" in args.parts:
        table(speed(args))
    if "quality" in args.parts:
        table(quality(args))
    if "estimator" in args.parts:
        table(estimator(args))


if __name__ == "__main__":
    main()
