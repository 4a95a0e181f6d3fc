"""Does the GPU path give the CPU's results, and how fast is it?

On a CUDA machine: (1) computes every mining strategy's loss and gradient on
the CPU and on the GPU, in float32 and with the embeddings produced under
bf16 autocast, and checks they agree (float32: same loss to 1e-4 relative;
bf16: the loss of the bf16-rounded embeddings, which the loss computes in
float32); (2) fits a small ``TripletEmbedder`` on the CPU and on the GPU from
the same seed and compares the training losses; (3) runs
``bench_mining.py`` and ``bench_fit.py`` with ``--device cuda`` and prints
their tables. Without CUDA it says so and exits 0. Nothing here is a test:
the test suite never needs a GPU.

Usage: python benchmarks/gpu_check.py [--sizes 1024 4096 16384] [--skip-bench]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def check_losses(sizes: list[int]) -> list[str]:
    from sktriplet.triplets.losses import triplet_loss

    failures = []
    print("| B | labels | mining | precision | CPU loss | GPU loss | max abs grad diff | ok |")
    print("|---:|---|---|---|---:|---:|---:|---|")
    # PK batches (the masked semi-hard kernel) and 4 large classes (the
    # sorted kernel: numpy's sort on the CPU, torch's on the GPU).
    cases = [(b, labels) for b in sizes for labels in ("pk", "few")]
    for batch, labels in cases:
        gen = torch.Generator().manual_seed(batch)
        x = torch.nn.functional.normalize(torch.randn(batch, 64, generator=gen), dim=1)
        if labels == "pk":
            y = torch.arange(batch // 8).repeat_interleave(8)
        else:
            y = torch.randint(0, 4, (batch,), generator=gen)
        for mining in ("semihard", "hard", "all"):
            for precision in ("fp32", "bf16"):
                # bf16: the network's output under autocast is bf16; the loss
                # upcasts to float32, so compare with the CPU on the same values.
                xin = x.bfloat16().float() if precision == "bf16" else x
                e_cpu = xin.clone().requires_grad_()
                l_cpu = triplet_loss(e_cpu, y, mining=mining)
                l_cpu.backward()
                e_gpu = xin.cuda().requires_grad_()
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    l_gpu = triplet_loss(e_gpu, y.cuda(), mining=mining)
                l_gpu.backward()
                diff = (e_gpu.grad.cpu() - e_cpu.grad).abs().max().item()
                scale = e_cpu.grad.abs().max().item() or 1.0
                ok = abs(l_gpu.item() - l_cpu.item()) <= 1e-4 * max(1.0, abs(l_cpu.item())) and (
                    diff <= 1e-3 * scale
                )
                if not ok:
                    failures.append(f"B={batch} {labels} {mining} {precision}")
                print(
                    f"| {batch} | {labels} | {mining} | {precision} | {l_cpu.item():.6f} | "
                    f"{l_gpu.item():.6f} | {diff:.2e} | {'yes' if ok else 'NO'} |"
                )
    return failures


def check_fit() -> list[str]:
    from sktriplet import TripletEmbedder

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 32)) * 2
    y = rng.integers(0, 20, size=2000)
    X = (centers[y] + rng.normal(size=(2000, 32))).astype(np.float32)
    losses = {}
    for device in ("cpu", "cuda"):
        for precision in ("32", "bf16") if device == "cuda" else ("32",):
            est = TripletEmbedder(
                max_epochs=3, random_state=0, device=device, precision=precision, augment=False
            ).fit(X, y)
            losses[device, precision] = list(est.net_.history[:, "train_loss"])
            print(f"fit {device} precision={precision}: train_loss {losses[device, precision]}")
    cpu, gpu = np.array(losses["cpu", "32"]), np.array(losses["cuda", "32"])
    # Same seed, same batches; float32 kernels differ in summation order only.
    if not np.allclose(cpu, gpu, rtol=0.05, atol=1e-3):
        return ["fit: CPU and GPU training losses differ by more than 5 %"]
    return []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available (torch.cuda.is_available() is False); ")
        print("nothing to check. Run this script on a machine with an NVIDIA GPU.")
        return 0
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    failures = check_losses(args.sizes)
    print()
    failures += check_fit()
    if not args.skip_bench:
        for script, extra in (
            ("bench_mining.py", ["--sizes", *map(str, [64, 256, 1024, 4096, 16384])]),
            ("bench_fit.py", []),
        ):
            cmd = [sys.executable, os.path.join(HERE, script), "--device", "cuda", *extra]
            print(f"\n$ {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, check=False)
    print("\nall GPU results match the CPU" if not failures else f"\nMISMATCHES: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
