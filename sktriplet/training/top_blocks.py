"""``freeze="auto"``: train a pretrained backbone's top blocks on cached activations, if they help.

A :class:`~sktriplet.networks.BackboneEmbedder` built with ``freeze="auto"``
(the default) is trained by :func:`train_top_blocks`:

1. **Hold out classes.** A class-disjoint fraction of the training classes
   (:func:`holdout_fraction`: :data:`AUTO_HOLDOUT`, at least
   :data:`AUTO_MIN_HELD_CLASSES` classes; or the ``validation_fraction``
   hold-out when the user set one) judges every choice below, as unseen
   classes would.
2. **Cache.** The network is cut before its last :func:`auto_depth` blocks
   (:func:`~sktriplet.networks.split.split_at_block`); the bottom runs
   once, in evaluation mode, on every photo and its mirror image
   (:func:`~sktriplet.training.feature_cache.cache_views`, spilling to a
   memory-mapped file past its RAM budget), and the frozen top gives the
   pooled features.
3. **The floor.** The head trains on the pooled features exactly as with
   ``freeze=True``; its held-out MAP@R is the score to beat.
4. **The top blocks.** The top blocks, the layers after them and the head
   train on the cached activations (one of the two views per photo and
   epoch) for up to :data:`AUTO_EPOCHS` epochs, the blocks at a lower rate
   than the head, with a per-step warm-up and cosine schedule, BatchNorm
   statistics frozen. After every epoch the held-out classes are scored;
   the best epoch is kept unless it scores below the head alone by more
   than the hold-out's noise (:data:`AUTO_MIN_GAIN` is negative), in which
   case the head alone is.
5. **Refit** (when nothing was held out by the user and the blocks won):
   the head, then the blocks, train again on all the classes for the epochs
   chosen (:data:`AUTO_REFIT`).

The time of the whole fit is bounded by :data:`AUTO_BUDGET` forward passes
over the training photos, measured while caching, and the epochs of step 4
are chosen to fit after timing a training step. What was chosen is returned
as a report (``TripletEmbedder.freeze_report_``). The numbers behind the
constants: ``docs/benchmarks.md``, "Training top blocks".
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sktriplet.inputs.training_data import TrainingData
from sktriplet.networks.backbone import BackboneEmbedder
from sktriplet.networks.blocks import backbone_blocks
from sktriplet.networks.split import BlockTop, split_at_block, unwrap_embedder
from sktriplet.runtime.precision import autocast, resolve_precision
from sktriplet.runtime.progress import progress_loader
from sktriplet.training.feature_cache import FeatureHead, cache_features, cache_views
from sktriplet.training.net import TripletNet
from sktriplet.training.routine import fresh_net, learning_rate, run_fit, train_cached_head
from sktriplet.training.sampling import MIN_BATCHES_PER_EPOCH, PKSampler
from sktriplet.training.schedules import StepCosineLR

__all__ = [
    "AUTO_BLOCK_FRACTION",
    "AUTO_BLOCK_LR",
    "AUTO_BUDGET",
    "AUTO_EPOCHS",
    "AUTO_HEAD_LR",
    "AUTO_HOLDOUT",
    "AUTO_MIN_BUDGET_SECONDS",
    "AUTO_MIN_GAIN",
    "AUTO_MIN_HELD_CLASSES",
    "AUTO_REFIT",
    "AUTO_VIEWS",
    "AUTO_WARMUP",
    "TopBlocksResult",
    "auto_depth",
    "describe",
    "head_only_report",
    "holdout_fraction",
    "stage_params",
    "train_blocks",
    "train_fixed_blocks",
    "train_top_blocks",
    "wants_top_blocks",
]

#: Blocks trained, as a fraction of the backbone's blocks (5 of EfficientNet-Lite0's 16).
AUTO_BLOCK_FRACTION = 5 / 16
#: Views cached per photo: the photo as ``transform`` reads it and its mirror image.
AUTO_VIEWS = 2
#: Fraction of the training classes held out to choose ...
AUTO_HOLDOUT = 0.25
#: ... but at least this many classes, and at most half of them: on
#: glint_faces24 (12 training people) 3 held-out people judged the blocks
#: worse while they gained on unseen people, and 5 on the same random numbers
#: kept them; elsewhere the choice did not change, and what was kept was never
#: below the head alone (``docs/benchmarks.md``, "How many classes ``"auto"``
#: holds out").
AUTO_MIN_HELD_CLASSES = 5
#: Held-out MAP@R the blocks must gain over the head alone to be kept:
#: negative, so they are kept unless the hold-out sees them lose more than
#: its own noise. Wherever the unseen classes were scored, every block epoch
#: beat the head alone on them (glint +0.007 to +0.016, COIL-20 +0.017 to
#: +0.021, cars +0.006), while a hold-out of 5 classes moved by about 0.01
#: with the block stage's random numbers alone and scored the blocks level
#: with or below the head (``docs/benchmarks.md``, "How many classes
#: ``"auto"`` holds out"). A clear loss (more than 0.01) still keeps the head.
AUTO_MIN_GAIN = -0.01
#: Most epochs of the top blocks (the probe's best held-out epoch came
#: within 4; longer runs at higher rates wore away unseen object classes).
AUTO_EPOCHS = 4
#: Learning rates of the head and of the blocks, as fractions of the fit's
#: ``lr`` (with the default 2e-3: 1e-3 and 1e-4, the probe's safe rates).
AUTO_HEAD_LR = 0.5
AUTO_BLOCK_LR = 0.05
#: Fraction of the steps spent warming the learning rate up.
AUTO_WARMUP = 0.2
#: The fit's time, in units of the head-only route measured in the fit (one
#: forward pass over the training photos, the time of caching one view, plus
#: the head's training on the hold-out split). On glint_faces24 that is about
#: a third of the hand-written PML loop's time (``docs/benchmarks.md``).
AUTO_BUDGET = 10.0
#: ... but never less than this many seconds (small data: fixed overheads
#: dominate the measured times, and a fit stays reproducible).
AUTO_MIN_BUDGET_SECONDS = 60.0
#: Train again on all the classes with the chosen epochs (when the user held
#: out nothing).
AUTO_REFIT = True

_VALIDATION = {"compare_input": False}


@dataclass
class TopBlocksResult:
    """What :func:`train_top_blocks` produced: the net, the report, the kept validation."""

    net: TripletNet
    report: dict = field(default_factory=dict)
    best_epoch: int | None = None
    best_score: float | None = None


def wants_top_blocks(module: nn.Module) -> bool:
    """Whether ``module`` ends in a :class:`BackboneEmbedder` built with ``freeze="auto"``."""
    body = module[-1] if isinstance(module, nn.Sequential) and len(module) else module
    return isinstance(body, BackboneEmbedder) and isinstance(body.freeze, str)


def auto_depth(n_blocks: int) -> int:
    """How many top blocks ``freeze="auto"`` trains for a backbone of ``n_blocks`` blocks.

    Examples
    --------
    >>> auto_depth(16), auto_depth(4), auto_depth(1)
    (5, 1, 1)
    """
    return max(1, min(n_blocks, round(AUTO_BLOCK_FRACTION * n_blocks)))


def holdout_fraction(n_classes: int) -> float:
    """Fraction of ``n_classes`` training classes that ``"auto"`` holds out to choose.

    :data:`AUTO_HOLDOUT` of them, but at least :data:`AUTO_MIN_HELD_CLASSES`
    and at most half (rounded down).

    Examples
    --------
    >>> from sktriplet.training.top_blocks import holdout_fraction
    >>> [round(holdout_fraction(n) * n) for n in (8, 9, 12, 20, 98)]
    [4, 4, 5, 5, 24]
    """
    n_held = max(round(AUTO_HOLDOUT * n_classes), min(AUTO_MIN_HELD_CLASSES, n_classes // 2))
    return n_held / max(n_classes, 1)


def stage_params(params: dict[str, Any], lr: float, epochs: int, n_steps: int) -> dict:
    """The parameters of the block stage: rates, schedule, epochs.

    The head trains at ``AUTO_HEAD_LR * lr``, the backbone's parameters at
    ``AUTO_BLOCK_LR * lr`` (``optimizer__param_groups``), both under a
    :class:`~sktriplet.training.schedules.StepCosineLR` over ``n_steps``.
    Parameter groups of the user's (``optimizer__param_groups``) come
    first, so they win where their patterns match.
    """
    schedule = ("lr_schedule", StepCosineLR(n_steps=n_steps, warmup=AUTO_WARMUP))
    return {
        **params,
        "lr": AUTO_HEAD_LR * lr,
        "lr_schedule": None,
        "max_epochs": int(epochs),
        "optimizer__param_groups": [
            *(params.get("optimizer__param_groups") or []),  # the user's come first
            ("*backbone.*", {"lr": AUTO_BLOCK_LR * lr}),
        ],
        "callbacks": [*(params.get("callbacks") or []), schedule],
    }


def _head_only_reason(module: nn.Module, params: dict, data: TrainingData):
    """Why the blocks cannot train here (``None``: they can), with the depth and hold-out."""
    from sktriplet.training.distributed import is_distributed

    embedder, _ = unwrap_embedder(module)
    parts = backbone_blocks(embedder.backbone)
    if parts is None or not len(parts):
        return (
            (
                f"the backbone {type(embedder.backbone).__name__} has no known blocks (declare "
                "them: blocks(), forward_stem(x), forward_end(x); see sktriplet.networks.blocks)"
            ),
            0,
            None,
        )
    depth = auto_depth(len(parts))
    if is_distributed():
        return "training top blocks inside a torch.distributed process group", depth, None
    if params["max_epochs"] < 1:
        return "max_epochs=0", depth, None
    try:
        split_at_block(module, depth)
    except ValueError as exc:
        return str(exc), depth, None
    if data.held is not None:
        return None, depth, data
    try:
        return None, depth, data.holding_out_classes(holdout_fraction(data.n_classes or 0))
    except ValueError:
        return "too few classes for a class-disjoint hold-out (4 with 2 samples)", depth, None


def _batches_per_epoch(params: dict, labels: np.ndarray) -> int:
    floor = params.get("iterator_train__min_batches", MIN_BATCHES_PER_EPOCH)
    sampler = PKSampler(
        labels,
        batch_size=params["batch_size"],
        samples_per_class=params["samples_per_class"],
        min_batches=int(floor),
    )
    return len(sampler)


def _seconds_per_step(top: BlockTop, dataset, params: dict, device) -> float:
    """Seconds of one training step of ``top`` on a PK batch (a copy; no state changes)."""
    from sktriplet.triplets.losses import triplet_loss

    sampler = PKSampler(
        dataset.labels,
        batch_size=params["batch_size"],
        samples_per_class=params["samples_per_class"],
        random_state=0,
    )
    x, y = dataset[list(next(iter(sampler)))]
    if isinstance(y, tuple):  # (labels, sample weights): weighting costs next to nothing
        y = y[0]
    model = copy.deepcopy(top).to(device).train()
    x, y = x.to(device), y.to(device)
    fit = resolve_precision(params["precision"], device, pretrained=True).fit
    times = []
    with torch.random.fork_rng(devices=[]):
        for _ in range(2):
            start = time.perf_counter()
            with autocast(fit, device):  # as the training passes run
                z = model(x)
            triplet_loss(z.float(), y, margin=params["margin"]).backward()
            times.append(time.perf_counter() - start)
    return min(times) * 1.1  # the step's update and the loop's overhead


def _validation(net: TripletNet):
    return dict(net.callbacks_).get("retrieval_validation")


def _curve(net: TripletNet) -> list[float]:
    return [round(float(v), 4) for v in net.history[:, "valid_map_at_r"]]


class _Clock:
    """The fit's clock: stage times, and the budget in units of the head-only route."""

    def __init__(self, budget: float) -> None:
        self.start = time.perf_counter()
        self.budget = budget
        self.pass_seconds = 0.0
        self.marks: dict[str, float] = {}

    def mark(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.marks[name] = round(now - since, 2)
        return now

    def seconds(self) -> float:
        """The budget in seconds: ``budget`` times (one view's pass + the head stage)."""
        unit = self.pass_seconds + self.marks.get("head", math.inf)
        return max(self.budget * unit, AUTO_MIN_BUDGET_SECONDS)

    def left(self) -> float:
        return self.seconds() - (time.perf_counter() - self.start)


def _cache(module, depth, params, data, head_net, clock):
    """Boundary activations of both views, and the pooled features of view 0."""
    bottom, top = split_at_block(module, depth, check=False)
    start = time.perf_counter()
    precision = resolve_precision(params["precision"], head_net.device).inference
    views = cache_views(
        bottom,
        data.all_samples(),
        n_views=AUTO_VIEWS,
        batch_size=params["batch_size"],
        device=head_net.device,
        loader=progress_loader(head_net.batch_loader, head_net.verbose, "caching activations"),
        precision=precision,
    )
    now = clock.mark("cache", start)
    clock.pass_seconds = (now - start) / AUTO_VIEWS
    pooled = cache_features(
        _Pooled(top),
        data.with_samples(views).all_samples(),
        batch_size=params["batch_size"],
        device=head_net.device,
        precision=precision,
    )
    clock.mark("pool", now)
    return views, pooled, top


class _Pooled(nn.Module):
    """The frozen top's pooled features of boundary activations."""

    def __init__(self, top: BlockTop) -> None:
        super().__init__()
        self.top = top

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.top.features(a)


def train_blocks(top, params, data, views, device, width, lr, epochs, n_run) -> TripletNet:
    """Train the top blocks and the head on cached views for ``n_run`` of ``epochs`` epochs.

    Parameters
    ----------
    top : torch.nn.Module
        The trained part (a :class:`~sktriplet.networks.split.BlockTop`), or
        any module that takes what ``views`` serves.
    params : dict
        Estimator parameters (see :func:`stage_params`).
    data : TrainingData
        The fit's data (its spec and seed make the net).
    views : TrainingData
        What to train on: ``data.with_samples(cached views)``.
    device : str
        A resolved torch device.
    width : int
        Width of the embeddings.
    lr : float
        The fit's learning rate.
    epochs : int
        Epochs the schedule spans.
    n_run : int
        Epochs run (at most ``epochs``: a refit stops where the held-out
        classes peaked).

    Returns
    -------
    TripletNet
        The net, after :func:`~sktriplet.training.routine.run_fit` (with
        held-out samples in ``views``, the best epoch is kept, the start
        replaced unless the epochs score below it by more than
        ``-AUTO_MIN_GAIN``).
    """
    n_steps = epochs * _batches_per_epoch(params, views.train_codes)
    stage = stage_params(params, lr, n_run, n_steps)
    net = fresh_net(top, stage, data, device, width)
    run_fit(net, stage, views, validation={**_VALIDATION, "min_gain": AUTO_MIN_GAIN})
    return net


def _head_stage(embedder, params, data, pooled, device, width, net=None) -> TripletNet:
    """Train the head alone on cached pooled features (the ``freeze=True`` route)."""
    if net is None:
        net = fresh_net(FeatureHead(embedder), params, data, device, width)
    run_fit(net, params, pooled, validation=_VALIDATION)
    return net


def _handed_over(stage, module, params, data, device, width) -> TripletNet:
    """A net of the estimator's settings for the whole network, with a stage's history.

    The stage's optimizer state (Adam's moments) carries over, so the net
    is the one :func:`sktriplet.load` rebuilds and ``warm_start`` continues.
    """
    net = fresh_net(module, params, data, device, width)
    net.initialize()
    net.history = stage.history
    net.rng_state_ = getattr(stage, "rng_state_", None)
    for group in stage.optimizer_.param_groups:
        for param in group["params"]:
            if param in stage.optimizer_.state:
                net.optimizer_.state[param] = stage.optimizer_.state[param]
    return net


def _head_then_blocks(embedder, cached, params, data, device, width, epochs, n_run, net=None):
    """The head on all the pooled features, then the blocks for ``n_run`` of ``epochs`` epochs."""
    views, pooled, top, depth = cached
    embedder.set_freeze(True)
    kept = _head_stage(embedder, params, data, data.with_samples(pooled), device, width, net)
    if n_run:
        embedder.set_freeze(depth)
        lr = learning_rate(params, data)
        kept = train_blocks(
            top, params, data, data.with_samples(views), device, width, lr, epochs, n_run
        )
    return kept


def train_fixed_blocks(
    module: nn.Module,
    params: dict[str, Any],
    data: TrainingData,
    device: str,
    width: int,
    depth: int,
    epochs: int,
) -> TopBlocksResult:
    """The head, then the top ``depth`` blocks for ``epochs`` epochs: no hold-out, no choice.

    What ``freeze="auto"`` does once it has chosen (its refit), for a given
    depth and number of epochs: the benchmarks' fixed rows.

    Parameters
    ----------
    module, params, data, device, width
        As for :func:`train_top_blocks`.
    depth : int
        Top blocks trained (``0``: the head alone).
    epochs : int
        Epochs of the blocks.

    Returns
    -------
    TopBlocksResult
    """
    embedder, _ = unwrap_embedder(module)
    clock = _Clock(math.inf)
    net = fresh_net(FeatureHead(embedder), params, data, device, width)
    net.initialize()
    views, pooled, top = _cache(module, max(depth, 1), params, data, net, clock)
    start = time.perf_counter()
    cached = (views, pooled, top, depth)
    n_run = epochs if depth else 0
    kept = _head_then_blocks(embedder, cached, params, data, device, width, epochs, n_run, net)
    clock.mark("blocks", start)
    embedder.set_freeze(True)
    report = _report(depth, views)
    report.update(trained_blocks=depth, epochs=epochs if depth else 0, seconds=clock.marks)
    net = _handed_over(kept, module, params, data, device, width)
    return _result(net, report, data, params, validated=kept)


def _plan_epochs(clock, params, sel, data, step: float, refit: bool) -> int:
    """The most block epochs (up to AUTO_EPOCHS) that fit the time left, refit included."""
    per_epoch = step * _batches_per_epoch(params, sel.train_codes)
    if refit:
        per_epoch += step * _batches_per_epoch(params, data.codes)
    trained = len(sel.train_codes) / len(data.codes)  # the head's share of the photos
    left = clock.left() - (clock.marks.get("head", 0.0) / trained if refit else 0.0)
    return int(min(AUTO_EPOCHS, max(0.0, left) // per_epoch)) if per_epoch > 0 else AUTO_EPOCHS


def train_top_blocks(
    module: nn.Module, params: dict[str, Any], data: TrainingData, device: str, width: int
) -> TopBlocksResult:
    """Train ``module`` as ``freeze="auto"`` does (see the module notes).

    Parameters
    ----------
    module : torch.nn.Module
        The network, ending in a :class:`BackboneEmbedder` with
        ``freeze="auto"`` (its backbone frozen).
    params : dict
        Estimator parameters.
    data : TrainingData
        The fit's data (labelled).
    device : str
        A resolved torch device.
    width : int
        Width of the embeddings.

    Returns
    -------
    TopBlocksResult
        The net (its module is ``module``, the backbone frozen again), and the
        report of what was chosen.
    """
    reason, depth, sel = _head_only_reason(module, params, data)
    if reason is not None:
        net = train_cached_head(module, params, data, device, width)
        return _result(net, _report(depth, note=f"head only: {reason}"), data, params)
    embedder, _ = unwrap_embedder(module)
    clock = _Clock(AUTO_BUDGET)
    head_start = copy.deepcopy(embedder.head.state_dict())
    head_net = fresh_net(FeatureHead(embedder), params, data, device, width)
    head_net.initialize()
    views, pooled, top = _cache(module, depth, params, data, head_net, clock)
    start = time.perf_counter()
    _head_stage(embedder, params, data, sel.with_samples(pooled), device, width, head_net)
    clock.mark("head", start)
    report = _report(depth, views, sel, floor=_validation(head_net).best_score_)
    refit = AUTO_REFIT and data.held is None
    step = _seconds_per_step(top, sel.with_samples(views).train_dataset(), params, device)
    epochs = _plan_epochs(clock, params, sel, data, step, refit)
    kept, chosen = head_net, 0
    if epochs >= 1:
        lr = learning_rate(params, data)
        backbone_start = copy.deepcopy(embedder.backbone.state_dict())
        embedder.set_freeze(depth)
        start = time.perf_counter()
        block_net = train_blocks(
            top, params, data, sel.with_samples(views), device, width, lr, epochs, epochs
        )
        clock.mark("blocks", start)
        chosen = int(_validation(block_net).best_epoch_)
        report.update(
            block_scores=_curve(block_net), max_epochs=epochs, block_lr=AUTO_BLOCK_LR * lr
        )
        kept = block_net if chosen else head_net
    else:
        report["note"] = "head only: no block epoch fits the time budget"
    if refit:
        start = time.perf_counter()
        embedder.head.load_state_dict(head_start)
        if epochs >= 1:
            embedder.backbone.load_state_dict(backbone_start)
        cached = (views, pooled, top, depth)
        kept = _head_then_blocks(embedder, cached, params, data, device, width, epochs, chosen)
        clock.mark("refit", start)
    embedder.set_freeze(True)
    report.update(trained_blocks=depth if chosen else 0, epochs=chosen, refit=refit)
    report["seconds"] = {**clock.marks, "budget": round(clock.seconds(), 2)}
    net = _handed_over(kept, module, params, data, device, width)
    return _result(net, report, data, params, validated=None if refit else kept)


def _report(depth: int, views=None, sel=None, floor=None, note=None) -> dict:
    report = {
        "trained_blocks": 0,
        "epochs": 0,
        "depth": depth,
        "views": AUTO_VIEWS if views is not None else 0,
        "max_epochs": 0,
        "block_lr": None,
        "held_out_classes": 0,
        "head_only_score": None if floor is None else round(float(floor), 4),
        "block_scores": [],
        "min_gain": AUTO_MIN_GAIN,
        "refit": False,
        "cache_bytes_per_sample": 0,
        "seconds": {},
        "note": note,
    }
    if views is not None:
        report["cache_bytes_per_sample"] = int(views.shape[1] * views.shape[2] * 4)
    if sel is not None and sel.held is not None:
        report["held_out_classes"] = int(len(np.unique(sel.codes[sel.held])))
    return report


def head_only_report(note: str) -> dict:
    """The report of a ``freeze="auto"`` fit that trained the head alone, and why."""
    return _report(0, note=note)


def _result(net, report, data, params, validated=None) -> TopBlocksResult:
    if net.verbose:
        print(describe(report))
    result = TopBlocksResult(net, report)
    source = net if validated is None and data.held is not None else validated
    validation = None if source is None else _validation(source)
    if validation is not None and validation.best_score_ > -math.inf:
        result.best_epoch, result.best_score = validation.best_epoch_, validation.best_score_
    return result


def describe(report: dict) -> str:
    """One paragraph saying what ``freeze="auto"`` chose and why (for ``verbose``).

    Parameters
    ----------
    report : dict
        ``TripletEmbedder.freeze_report_``.

    Returns
    -------
    str
    """
    if report["note"] and not report["block_scores"]:
        return f"freeze='auto': {report['note'].rstrip('.')}."
    scores = " ".join(f"{s:.3f}" for s in report["block_scores"])
    kept = (
        f"kept the top {report['trained_blocks']} blocks after {report['epochs']} epoch(s)"
        if report["trained_blocks"]
        else "kept the head alone"
    )
    refit = "; then trained again on all the classes" if report["refit"] else ""
    return (
        f"freeze='auto': held-out MAP@R ({report['held_out_classes']} classes) of the head "
        f"alone {report['head_only_score']:.3f}, of the top {report['depth']} blocks per epoch "
        f"{scores or '-'}; {kept} (margin {report['min_gain']}){refit}. "
        f"Seconds: {report['seconds']}."
    )
