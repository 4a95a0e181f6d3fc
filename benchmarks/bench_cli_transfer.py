"""Does the shell reach the Python route? ``sktriplet fit --backbone`` against docs/transfer.md.

Stanford Cars (``stanford_cars_196x8``), the usual class-disjoint split:
classes 001-098 train, 099-196 are never seen in training. The split is made
of two folders of symbolic links to the class folders, so the command reads
it as any photo folder. Each row fits on the training folder and is scored
by leave-one-out retrieval among the unseen photos (MAP@R and P@1):

``cli-backbone``
    ``sktriplet fit TRAIN -o m.sktriplet --backbone efficientnet_lite0``,
    then ``sktriplet evaluate m.sktriplet UNSEEN`` (the command's own
    defaults: ``--image-size`` 128 with a backbone, ``--random-state 0``).
``python-backbone``
    The Python route of docs/transfer.md with the same seed:
    ``TripletEmbedder(module=BackboneEmbedder, module__backbone=
    "efficientnet_lite0", image_size=128, random_state=0)``, scored with
    ``retrieval_scores`` on ``transform`` of the unseen photos. The table also
    gives the largest difference between its embeddings and the command's
    model's (0: the same model).
``cli-scratch``
    ``sktriplet fit TRAIN -o m.sktriplet`` without a backbone (the
    from-scratch conv net at 64 px): what shell users got before
    ``--backbone``. Slow on a CPU (minutes).

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_cli_transfer.py
       [--rows cli-backbone python-backbone cli-scratch] [--data ../shared/data]
       [--image-size 128] [--max-epochs 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = ("cli-backbone", "python-backbone", "cli-scratch")


def make_split(source: Path, root: Path) -> tuple[Path, Path]:
    """``root/train`` (classes 001-098) and ``root/unseen`` (099-196), as symbolic links."""
    train, unseen = root / "train", root / "unseen"
    for folder in (train, unseen):
        folder.mkdir(parents=True)
    for cls in sorted(p for p in source.iterdir() if p.is_dir()):
        target = train if int(cls.name[:3]) <= 98 else unseen
        (target / cls.name).symlink_to(cls.resolve())
    return train, unseen


def sktriplet(*argv: str) -> tuple[float, str]:
    """Run ``python -m sktriplet ARGV``; its seconds and standard output."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sktriplet", *argv], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"sktriplet {' '.join(argv)} failed:\n{done.stderr}")
    return time.perf_counter() - start, done.stdout


def scores_from_table(text: str) -> dict[str, float]:
    rows = [line.split() for line in text.splitlines()[2:] if line.strip()]
    return {name: float(value) for name, value in rows}


def run_cli(train: Path, unseen: Path, work: Path, name: str, flags: list[str]) -> dict:
    model = work / f"{name}.sktriplet"
    seconds, _ = sktriplet("fit", str(train), "-o", str(model), "--verbose", "0", *flags)
    _, table = sktriplet("evaluate", str(model), str(unseen), "--k", "1")
    scores = scores_from_table(table)
    return {"map_at_r": scores["map_at_r"], "p1": scores["precision_at_1"], "fit": seconds,
            "model": model}  # fmt: skip


def run_python(train: Path, unseen: Path, args, cli_model: Path | None) -> dict:
    from sktriplet import TripletEmbedder, load
    from sktriplet.datasets import list_image_folder
    from sktriplet.evaluation.metrics import retrieval_scores
    from sktriplet.networks import BackboneEmbedder

    paths, labels, _ = list_image_folder(train)
    test, test_labels, _ = list_image_folder(unseen)
    emb = TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone="efficientnet_lite0",
        image_size=args.image_size,
        max_epochs=args.max_epochs,
        random_state=0,
        device=args.device,
    )
    start = time.perf_counter()
    emb.fit(paths, labels)
    seconds = time.perf_counter() - start
    Z = emb.transform(test)
    scores = retrieval_scores(Z, test_labels, k=[1])
    diff = float("nan")
    if cli_model is not None:
        diff = float(np.abs(load(cli_model).transform(test) - Z).max())
    return {"map_at_r": scores["map_at_r"], "p1": scores["precision_at_1"], "fit": seconds,
            "diff": diff}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS[:2]))
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    source = Path(args.data) / "stanford_cars_196x8" / "images"
    common = ["--max-epochs", str(args.max_epochs), "--device", args.device]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        train, unseen = make_split(source, Path(tmp) / "cars")
        if "cli-backbone" in args.rows:
            flags = ["--backbone", "efficientnet_lite0", *common]
            if args.image_size != 128:
                flags += ["--image-size", str(args.image_size)]
            results["cli-backbone"] = run_cli(train, unseen, Path(tmp), "backbone", flags)
        if "python-backbone" in args.rows:
            cli = results.get("cli-backbone", {}).get("model")
            results["python-backbone"] = run_python(train, unseen, args, cli)
        if "cli-scratch" in args.rows:
            results["cli-scratch"] = run_cli(train, unseen, Path(tmp), "scratch", common)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    machine = platform.processor() or platform.machine()
    print(
        f"# {machine}, {args.device}, OMP_NUM_THREADS={threads}, cars 98 train / 98 unseen "
        f"classes, image size {args.image_size} with a backbone, {args.max_epochs} epochs"
    )
    print("| route | unseen MAP@R | unseen P@1 | fit (s, with start-up) | max diff to CLI |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        diff = r.get("diff", float("nan"))
        shown = "" if np.isnan(diff) else f"{diff:.1e}"
        print(f"| {name} | {r['map_at_r']:.4f} | {r['p1']:.4f} | {r['fit']:.0f} | {shown} |")


if __name__ == "__main__":
    main()
