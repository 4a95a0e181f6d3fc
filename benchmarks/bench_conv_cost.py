"""What does one training step of the default image network cost, against cheaper variants?

Question (issue 30, item 3): where does the time of a default image fit go,
and how much cheaper are a narrower or shallower ``ConvEmbedder``,
channels-last memory, bfloat16 autocast, and the small CNN a
pytorch-metric-learning user writes (``benchmarks/bench_quality.py``'s
``pml-cnn``)? For every image size, each network takes one training step
on a batch of 128 grey images (forward, semi-hard ``TripletLoss``,
backward, Adam), all networks one after another in each round (``--rounds``
after a warm-up round), so they see the same machine load; the table gives
the median step time and the ratio to the first network (by default the
default network). The last row per size times ``RandomAffine`` (the
default augmentation) on the same batch.

Networks (``--nets``): ``default`` (32-64-128 channels, two 3x3
convolutions per block, channels-first), ``channels-last`` (the same with
``channels_last=True``), ``convs122`` (one convolution in the first block),
``convs221``, ``convs111``, ``convs112``, ``convs121``, ``c24-122``
(24-48-96 channels, one convolution in the first block), ``c16``
(16-64-128 channels), ``narrow`` (16-32-64), ``pml-cnn``.
``--channels-last`` builds every ``ConvEmbedder`` variant in channels-last;
``--bf16`` runs every forward under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_conv_cost.py --sizes 28 64 --rounds 7
    OMP_NUM_THREADS=1 python benchmarks/bench_conv_cost.py --sizes 32 --bf16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from sktriplet.networks import ConvEmbedder
from sktriplet.triplets.losses import TripletLoss
from sktriplet.vision.augment import RandomAffine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import small_cnn  # noqa: E402

NETS = {
    "default": {},
    "channels-last": {"channels_last": True},
    "convs122": {"convs": [1, 2, 2]},
    "convs221": {"convs": [2, 2, 1]},
    "convs111": {"convs": 1},
    "convs112": {"convs": [1, 1, 2]},
    "convs121": {"convs": [1, 2, 1]},
    "c24-122": {"channels": [24, 48, 96], "convs": [1, 2, 2]},
    "c16": {"channels": [16, 64, 128]},
    "narrow": {"channels": [16, 32, 64]},
    "pml-cnn": None,
}


def build(name: str, size: int, channels_last: bool) -> torch.nn.Module:
    if NETS[name] is None:
        return small_cnn(1)
    params = {"channels_last": channels_last, **NETS[name]}
    return ConvEmbedder(1, image_size=(size, size), **params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[28, 64])
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), bf16={args.bf16}, "
        f"channels_last={args.channels_last}, "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
    )
    print("| size | network | parameters | step ms (median) | x first |")
    print("|---|---|---:|---:|---:|")
    loss_fn = TripletLoss()
    y = torch.arange(16).repeat_interleave(8)
    for size in args.sizes:
        torch.manual_seed(0)
        x = torch.rand(128, 1, size, size) * 255
        nets = {name: build(name, size, args.channels_last) for name in args.nets}
        optims = {name: torch.optim.Adam(net.parameters(), 1e-3) for name, net in nets.items()}
        times: dict[str, list[float]] = {name: [] for name in nets}
        for r in range(args.rounds + 1):
            for name, net in nets.items():
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                    z = net((x - 128) / 64)
                loss = loss_fn(F.normalize(z.float(), dim=1), y)
                optims[name].zero_grad()
                loss.backward()
                optims[name].step()
                if r:
                    times[name].append(time.perf_counter() - start)
        first = statistics.median(times[args.nets[0]])
        for name, net in nets.items():
            ms = statistics.median(times[name])
            n_params = sum(p.numel() for p in net.parameters())
            print(f"| {size} | {name} | {n_params} | {1000 * ms:.1f} | {ms / first:.2f} |")
        augment = RandomAffine()
        aug = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            augment(x)
            aug.append(time.perf_counter() - start)
        ms = statistics.median(aug)
        print(f"| {size} | RandomAffine on the batch | 0 | {1000 * ms:.1f} | {ms / first:.3f} |")


if __name__ == "__main__":
    main()
