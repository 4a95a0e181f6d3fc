"""Which route recognises unseen classes best: from scratch, frozen, triplet or softmax?

On photo folders with a class-disjoint split (training classes and test
classes never overlap), every row below embeds the *unseen* test photos and
is scored by leave-one-out retrieval among them (MAP@R and P@1,
:func:`sktriplet.evaluation.metrics.retrieval_scores`), beside the time its
training took ("fit"; the time to embed the test photos is reported apart).
Every row reads the same image FILES (``list_image_folder``) at the same
``--image-size`` (the shorter side scaled to fit, centre cut), without
augmentation, except the from-scratch row, which is sktriplet's own image
route at 64 px.

``raw``
    Raw pixels: the decoded images, flattened and standardised per pixel
    with the training photos' mean and std.
``frozen``
    EfficientNet-Lite0 (ImageNet weights) pooled features, L2-normalised,
    with the normalisation the backbone declares; nothing is trained.
``head``
    The head alone on cached frozen features: ``TripletEmbedder(module=
    BackboneEmbedder, module__backbone="efficientnet_lite0",
    module__freeze=True, image_size=...)`` (the defaults before
    ``freeze="auto"``).
``blocks``
    One row per ``--blocks`` depth ``k``: the head as in ``head``, then the
    top ``k`` blocks and the head for ``--block-epochs`` epochs on cached
    activations of each photo and its mirror image, with ``freeze="auto"``'s
    rates and schedule but no hold-out and no choice
    (:func:`sktriplet.training.top_blocks.train_fixed_blocks`), embedded with
    flip averaging as ``freeze="auto"`` embeds.
``sktriplet``
    ``TripletEmbedder(module=BackboneEmbedder,
    module__backbone="efficientnet_lite0", image_size=...)`` with every
    other parameter at its default (``random_state`` aside; ``max_epochs``
    is ``--epochs``, whose default is the default 30): ``freeze="auto"``
    chooses the trained blocks and epochs on held-out training classes
    (its choice is in the notes). ``--params KEY=VALUE ...`` sets other
    parameters of this row and of ``head`` (e.g. ``--params
    classification_weight=0.5``; values are Python literals).
``pml``
    What a user writes with pytorch-metric-learning: the same network
    (frozen EfficientNet-Lite0, channels_last, the square identity-initialised
    head, L2 normalisation; not the L2-SP penalty of ``head_anchor``, which
    sktriplet's training loss adds), ``MPerClassSampler`` batches of the same shape
    as sktriplet's PK batches, ``TripletMarginMiner(type_of_triplets=
    "semihard")`` + ``TripletMarginLoss`` (margin 0.2), Adam at the learning
    rate the sktriplet row used (``2e-3`` when that row is not run), constant,
    the same epochs; the files are decoded and the backbone run again in
    every epoch (no cache).
``softmax``
    The whole backbone fine-tuned with cross-entropy on a linear classifier
    over the training classes (Adam, backbone lr 1e-4, classifier 1e-3,
    shuffled batches of 32, BatchNorm statistics updated) for
    ``--softmax-epochs`` epochs, then embedded by its pooled features.
``scratch``
    sktriplet's from-scratch route: ``TripletEmbedder(image_size=64)`` (the
    default conv net, augmentation on) for ``--epochs`` epochs.

Data sets: ``cars`` is ``stanford_cars_196x8`` (classes 001-098 train,
099-196 unseen, 8 photos each); ``faces`` is ``faces94_subset18`` (18
people, split 9 / 9 at random with ``--seed``); ``glint`` is
``glint_faces24`` (aligned celebrity faces, 24 people, split 12 / 12 with
``--seed``); ``coil`` is COIL-20 (20 objects on a turntable, 72 poses each,
32 x 32 grey, written once as PNG files to ``--cache`` and upscaled; 10 / 10
objects by ``--seed``), the one set here whose frozen ImageNet features are
already strong, as on photos of everyday object categories. ``faces-hard`` is a
*synthetic* stress version of ``faces`` (same people, same split): every
photo gets its own random crop (35-80 % of the area, so parts of the face
go missing), rotation (up to 20 degrees), brightness, contrast and colour
cast, greyscale half of the time, a resolution drop to a 16-40 px shorter
side, noise and JPEG quality 20-60 (:func:`make_hard_faces`, seeded per
file, written once to ``--cache``). faces94 itself is saturated (frozen
ImageNet features already retrieve every unseen person perfectly); the
stress version is what is left of a harder face set on this machine, not a
real one. ``--max-classes`` and ``--max-train-images`` shrink the sets for
quick checks.

Every table gives each row's fit time as a ratio to the PML loop's, measured
in the same run (the machine may be shared: the ratios compare, the seconds
do not).

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_transfer.py
       [--datasets cars faces faces-hard glint coil]
       [--rows raw frozen head blocks sktriplet pml softmax scratch]
       [--blocks 1 3 5] [--block-epochs 4] [--image-size 128] [--epochs 30]
       [--softmax-epochs 2] [--params KEY=VALUE ...] [--max-classes N]
       [--max-train-images N] [--seed 0]
       [--threads 1] [--device cpu] [--data ../shared/data] [--cache /tmp/sktriplet-bench]
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sktriplet import TripletEmbedder
from sktriplet.datasets import list_image_folder
from sktriplet.evaluation.metrics import retrieval_scores
from sktriplet.networks import BackboneEmbedder
from sktriplet.training.sampling import PKSampler
from sktriplet.vision.transforms import ResizeCenterCrop

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "cars": "stanford_cars_196x8/images",
    "faces": "faces94_subset18/images",
    "faces-hard": "faces94_subset18/images",
    "glint": "glint_faces24/images",
    "coil": "coil20_32/coil20_32.npz",
}
ROWS = ("raw", "frozen", "head", "blocks", "sktriplet", "pml", "softmax", "scratch")
BACKBONE = "efficientnet_lite0"


# ------------------------------------------------------------------ data
class Split:
    """Training and unseen-class test files of one data set."""

    def __init__(self, name: str, train: tuple, test: tuple, image_size: int) -> None:
        self.name = name
        self.train_paths, self.train_y = train
        self.test_paths, self.test_y = test
        self.image_size = image_size

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.train_paths)} training photos of "
            f"{len(np.unique(self.train_y))} classes, {len(self.test_paths)} test photos of "
            f"{len(np.unique(self.test_y))} unseen classes"
        )


def _cap(paths, labels, max_classes, max_images, seed):
    classes = np.unique(labels)
    if max_classes:
        classes = classes[:max_classes]
    keep = np.isin(labels, classes)
    paths, labels = paths[keep], labels[keep]
    if max_images and len(paths) > max_images:
        per_class = max(2, max_images // len(classes))
        rng = np.random.default_rng(seed)
        idx = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
        idx = np.sort(np.concatenate(idx))
        paths, labels = paths[idx], labels[idx]
    return paths, labels


def _degrade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random crop, rotation, photometric change, resolution drop and noise."""
    w, h = image.size
    area, aspect = rng.uniform(0.35, 0.8) * w * h, np.exp(rng.uniform(-0.22, 0.22))
    cw, ch = min(w, round((area * aspect) ** 0.5)), min(h, round((area / aspect) ** 0.5))
    left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    grey = int(rng.integers(0, 256))
    image = image.crop((left, top, left + cw, top + ch))
    image = image.rotate(rng.uniform(-20, 20), Image.BILINEAR, fillcolor=(grey,) * 3)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.45, 1.6))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        image = image.convert("L").convert("RGB")
    pixels = np.asarray(image, dtype=np.float32) * rng.uniform(0.75, 1.25, size=3)
    small = rng.uniform(16, 40) / min(image.size)
    low = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize(
        (max(1, round(cw * small)), max(1, round(ch * small))), Image.BILINEAR
    )
    pixels = np.asarray(low.resize((cw, ch), Image.BILINEAR), dtype=np.float32)
    pixels += rng.normal(0, rng.uniform(0, 12), size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_hard_faces(source: Path, target: Path, seed: int = 0) -> Path:
    """Write the ``faces-hard`` stress set (see the module docstring) once; its root."""
    paths, _, _ = list_image_folder(source)
    done = target / "complete"
    if done.exists():
        return target
    for i, path in enumerate(paths):
        rng = np.random.default_rng([seed, i])
        out = target / Path(path).parent.name / (Path(path).stem + ".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            degraded = _degrade(image.convert("RGB"), rng)
        degraded.save(out, quality=int(rng.integers(20, 61)))
    done.write_text(f"{len(paths)} files from {source}, seed {seed}\n")
    return target


def write_coil(source: Path, target: Path) -> Path:
    """COIL-20's 32 x 32 grey arrays written once as PNG class folders; their root."""
    if (target / "complete").exists():
        return target
    data = np.load(source)
    for i, (x, y) in enumerate(zip(data["X"], data["y"], strict=True)):
        out = target / f"obj{int(y):02d}" / f"{i:04d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(x).reshape(32, 32)).convert("RGB").save(out)
    (target / "complete").write_text("COIL-20 32x32\n")
    return target


def load_split(name: str, args) -> Split:
    """The class-disjoint split of a data set (see the module docstring)."""
    root = Path(args.data) / SETS[name]
    if name == "faces-hard":
        root = make_hard_faces(root, Path(args.cache) / "faces94_hard")
    if name == "coil":
        root = write_coil(root, Path(args.cache) / "coil20_png")
    paths, labels, names = list_image_folder(root)
    if name == "cars":
        train_classes = [i for i, n in enumerate(names) if int(n[:3]) <= 98]
    else:
        order = np.random.default_rng(args.seed).permutation(len(names))
        train_classes = sorted(order[: len(names) // 2])
    is_train = np.isin(labels, train_classes)
    train = _cap(paths[is_train], labels[is_train], args.max_classes, args.max_train_images, 0)
    test = _cap(paths[~is_train], labels[~is_train], args.max_classes, None, 0)
    return Split(name, train, test, args.image_size)


class FileImages(Dataset):
    """What a user writes: decode one file per item (centre cut), uint8 ``(3, S, S)``."""

    def __init__(self, paths, labels, image_size: int) -> None:
        self.paths, self.labels = list(paths), np.asarray(labels)
        self.policy = ResizeCenterCrop(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.policy(self.paths[i], 3)), int(self.labels[i])


def normalise(x: torch.Tensor, net: BackboneEmbedder) -> torch.Tensor:
    """uint8 images to the input the backbone declares: ``(x / 255 - mean) / std``."""
    mean = torch.tensor(net.input_mean).reshape(1, 3, 1, 1)
    std = torch.tensor(net.input_std).reshape(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def loader(split: Split, train: bool, args, **kwargs) -> DataLoader:
    paths, y = (split.train_paths, split.train_y) if train else (split.test_paths, split.test_y)
    kwargs.setdefault("batch_size", 64)
    kwargs.setdefault("persistent_workers", train and args.workers > 0)
    return DataLoader(FileImages(paths, y, split.image_size), num_workers=args.workers, **kwargs)


def embed(fn, split: Split, args) -> tuple[np.ndarray, float]:
    """``fn`` (uint8 batch -> embeddings) over the test files; seconds taken."""
    start = time.perf_counter()
    with torch.no_grad():
        z = [fn(x.to(args.device)).cpu() for x, _ in loader(split, False, args)]
    return torch.cat(z).numpy(), time.perf_counter() - start


def backbone(split: Split, args, **kwargs) -> BackboneEmbedder:
    kwargs.setdefault("freeze", True)
    return BackboneEmbedder(BACKBONE, image_size=split.image_size, **kwargs).to(args.device)


# ------------------------------------------------------------------ rows
def row_raw(split: Split, args):
    start = time.perf_counter()
    x = torch.cat([x for x, _ in loader(split, True, args)]).flatten(1).float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-3)
    fit = time.perf_counter() - start
    z, seconds = embed(lambda b: (b.flatten(1).float().cpu() - mean) / std, split, args)
    return z, fit, seconds, f"{x.shape[1]} values per photo"


def row_frozen(split: Split, args):
    net = backbone(split, args).eval()
    z, seconds = embed(lambda b: net(normalise(b, net)), split, args)
    return z, 0.0, seconds, f"{net.n_features} pooled features, L2-normalised; nothing trained"


def parse_params(pairs: list[str]) -> dict:
    """``["a=1", "b='x'"]`` -> ``{"a": 1, "b": "x"}`` (bare words stay strings)."""
    params = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def _fit_estimator(split: Split, args, **params):
    emb = TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone=BACKBONE,
        image_size=split.image_size,
        max_epochs=args.epochs,
        random_state=args.seed,
        device=args.device,
        **params,
    )
    start = time.perf_counter()
    emb.fit(split.train_paths, split.train_y)
    fit = time.perf_counter() - start
    args.sktriplet_lr = float(emb.net_.lr)
    t0 = time.perf_counter()
    z = emb.transform(split.test_paths)
    return emb, z, fit, time.perf_counter() - t0


def row_head(split: Split, args):
    emb, z, fit, seconds = _fit_estimator(
        split, args, **{"module__freeze": True, **parse_params(args.params)}
    )
    note = f"{args.epochs} epochs, lr {emb.net_.lr:g}, n_components {emb.n_components_}"
    return z, fit, seconds, note


def row_sktriplet(split: Split, args):
    emb, z, fit, seconds = _fit_estimator(split, args, **parse_params(args.params))
    from sktriplet.training.top_blocks import describe

    note = describe(emb.freeze_report_) if hasattr(emb, "freeze_report_") else ""
    if args.params:
        note += "; " + ", ".join(args.params)
    return z, fit, seconds, note


def row_blocks(split: Split, args, depth: int):
    import sktriplet.training.fit as fit_module
    from sktriplet.training.top_blocks import train_fixed_blocks

    def fixed(module, params, data, device, width):
        return train_fixed_blocks(module, params, data, device, width, depth, args.block_epochs)

    original = fit_module.train_top_blocks
    fit_module.train_top_blocks = fixed
    try:
        emb, z, fit, seconds = _fit_estimator(split, args)
    finally:
        fit_module.train_top_blocks = original
    note = f"head, then top {depth} blocks x {args.block_epochs} epochs, 2 views, +flip"
    return z, fit, seconds, note


def pk_shape(y, batch_size: int = 128, samples_per_class: int = 8) -> tuple[int, int, int]:
    """``(P, K, batches per epoch)`` of sktriplet's default PK batches on labels ``y``."""
    n_classes = len(np.unique(y))
    p = min(batch_size // samples_per_class, n_classes)
    k = samples_per_class if p == batch_size // samples_per_class else batch_size // n_classes
    return p, k, len(PKSampler(y, batch_size=batch_size, samples_per_class=samples_per_class))


def row_pml(split: Split, args):
    from pytorch_metric_learning import losses, miners, samplers

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 (MPerClassSampler draws from the global RNG)
    model = backbone(split, args)  # frozen, channels_last, identity-initialised square head
    p, k, n_batches = pk_shape(split.train_y)
    sampler = samplers.MPerClassSampler(
        split.train_y, m=k, batch_size=p * k, length_before_new_iter=n_batches * p * k
    )
    data = loader(split, True, args, batch_size=p * k, sampler=sampler, drop_last=True)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
    loss_fn = losses.TripletMarginLoss(margin=0.2)
    lr = getattr(args, "sktriplet_lr", 2e-3)
    optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=lr)
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        for x, y in data:
            x, y = normalise(x, model).to(args.device), y.to(args.device)
            z = model(x)
            loss = loss_fn(z, y, miner(z, y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    fit = time.perf_counter() - start
    model.eval()
    z, seconds = embed(lambda b: model(normalise(b, model)), split, args)
    note = f"{args.epochs} epochs x {n_batches} batches of {p}x{k}, Adam lr {lr:g}"
    return z, fit, seconds, note


def row_softmax(split: Split, args):
    torch.manual_seed(args.seed)
    net = backbone(split, args, freeze=False, freeze_batchnorm=False)
    classes, targets = np.unique(split.train_y, return_inverse=True)
    classifier = nn.Linear(net.n_features, len(classes)).to(args.device)
    optimizer = torch.optim.Adam(
        [{"params": net.backbone.parameters(), "lr": 1e-4}, {"params": classifier.parameters()}],
        lr=1e-3,
    )
    relabelled = Split(split.name, (split.train_paths, targets), ([], []), split.image_size)
    data = loader(relabelled, True, args, batch_size=32, shuffle=True, drop_last=True)
    start = time.perf_counter()
    net.train()
    for _ in range(args.softmax_epochs):
        for x, y in data:
            logits = classifier(net.features(normalise(x, net).to(args.device)))
            loss = nn.functional.cross_entropy(logits, y.to(args.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    fit = time.perf_counter() - start
    net.eval()
    z, seconds = embed(
        lambda b: nn.functional.normalize(net.features(normalise(b, net)), dim=1), split, args
    )
    note = f"{args.softmax_epochs} epochs, whole backbone, batches of 32"
    return z, fit, seconds, note


def row_scratch(split: Split, args):
    emb = TripletEmbedder(
        image_size=64, max_epochs=args.epochs, random_state=args.seed, device=args.device
    )
    start = time.perf_counter()
    emb.fit(split.train_paths, split.train_y)
    fit = time.perf_counter() - start
    t0 = time.perf_counter()
    z = emb.transform(split.test_paths)
    return z, fit, time.perf_counter() - t0, f"default conv net, 64 px, {args.epochs} epochs"


ROW_FUNCTIONS = {
    "raw": row_raw,
    "frozen": row_frozen,
    "head": row_head,
    "sktriplet": row_sktriplet,
    "pml": row_pml,
    "softmax": row_softmax,
    "scratch": row_scratch,
}
ROW_LABELS = {
    "raw": "raw pixels",
    "frozen": "frozen pretrained features + kNN",
    "head": "sktriplet, head only (freeze=True)",
    "sktriplet": "**sktriplet defaults (freeze='auto')**",
    "pml": "hand-written PyTorch + PML semi-hard loop",
    "softmax": "softmax (cross-entropy) fine-tune",
    "scratch": "sktriplet from scratch (conv net, 64 px)",
}


def _rows(args) -> list[tuple[str, str, object]]:
    """(label, key, function) of every row asked for, the block depths expanded."""
    out = []
    for name in args.rows:
        if name == "blocks":
            for k in args.blocks:
                label = f"sktriplet, top {k} blocks, {args.block_epochs} epochs (fixed)"
                out.append((label, f"blocks{k}", lambda s, a, k=k: row_blocks(s, a, k)))
        else:
            out.append((ROW_LABELS[name], name, ROW_FUNCTIONS[name]))
    return out


def run(split: Split, args) -> None:
    print(f"\n### {split.describe()}, {split.image_size} px, seed {args.seed}\n", flush=True)
    results = []
    for label, key, function in _rows(args):
        torch.manual_seed(args.seed)
        z, fit, seconds, note = function(split, args)
        scores = retrieval_scores(np.asarray(z, dtype=np.float32), split.test_y, k=1)
        results.append((label, key, scores, fit, seconds, note))
        print(f"  {key}: MAP@R {scores['map_at_r']:.3f}, fit {fit:.0f} s", file=sys.stderr)
    pml = next((fit for _, key, _, fit, _, _ in results if key == "pml"), None)
    print(
        f"load average at the end {os.getloadavg()[0]:.1f}\n\n| route | unseen MAP@R | "
        "unseen P@1 | fit (s) | fit / PML loop | embed test (s) | notes |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, _, scores, fit, seconds, note in results:
        ratio = f"{fit / pml:.2f}" if pml else "-"
        print(
            f"| {label} | {scores['map_at_r']:.3f} | {scores['precision_at_1']:.3f} "
            f"| {fit:.0f} | {ratio} | {seconds:.0f} | {note} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--softmax-epochs", type=int, default=2)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--block-epochs", type=int, default=4)
    parser.add_argument(
        "--params", nargs="*", default=[], help="KEY=VALUE parameters of the sktriplet row"
    )
    parser.add_argument("--max-classes", type=int, default=None)
    parser.add_argument("--max-train-images", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument(
        "--cache", default="/tmp/sktriplet-bench", help="where faces-hard is written once"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {' '.join(sys.argv)}\n")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, torch {torch.__version__}, {args.threads} thread(s), "
        f"{args.workers} data-loader worker(s) in the hand-written loops, device {args.device}"
    )
    for name in args.datasets:
        run(load_split(name, args), args)


if __name__ == "__main__":
    main()
