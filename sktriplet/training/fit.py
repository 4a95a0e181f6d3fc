"""Train a network on the datasets of a fit: build or continue, train, check.

:func:`train` is everything ``TripletEmbedder.fit`` does between validating
its input and storing the result. It receives a
:class:`~sktriplet.inputs.training_data.TrainingData` (the datasets, the
hold-out, the probe, the input statistics) and the parameters, builds a
fresh network (or continues a warm-started one), runs the one fit routine
(:func:`run_fit`: validation, skorch's loop, the finiteness check) and
returns a :class:`FitResult`. It never sees raw ``X`` and never asks what
kind of input it is. It assigns nothing to the estimator, so a failed fit
leaves the estimator as it was; a warm-started net that fails is rolled
back to its state before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sktriplet.inputs.training_data import TrainingData
from sktriplet.networks.backbone import BackboneEmbedder
from sktriplet.training.build import build_network, check_network_output
from sktriplet.training.criterion import update_criterion
from sktriplet.training.factory import changed_training_params, schedule_callbacks
from sktriplet.training.feature_cache import can_cache_features
from sktriplet.training.net import TripletNet
from sktriplet.training.policy import resolve_batch_size, resolve_loss_defaults
from sktriplet.training.routine import fresh_net, learning_rate, run_fit, train_cached_head
from sktriplet.training.top_blocks import (
    describe,
    head_only_report,
    train_top_blocks,
    wants_top_blocks,
)

__all__ = ["FitResult", "draw_seed", "fresh_net", "run_fit", "train"]

#: Callbacks a warm-started fit replaces with its own.
_PER_FIT_CALLBACKS = ("retrieval_validation", "lr_schedule")


@dataclass
class FitResult:
    """What :func:`train` produced.

    Attributes
    ----------
    net : TripletNet
        The trained skorch net.
    n_components : int
        Width of the embedding.
    held : numpy.ndarray of bool or None
        Which samples were held out for validation.
    best_epoch, best_score : int or None, float or None
        With validation: the epoch whose weights were kept and its MAP@R.
    freeze : bool, int or None
        For a :class:`~sktriplet.networks.BackboneEmbedder` (fresh fits):
        what trained of its backbone, ``True`` (nothing), ``False`` (all) or
        the number of top blocks (``freeze="auto"`` resolved).
    freeze_report : dict or None
        With ``freeze="auto"``: what was chosen and why
        (:func:`~sktriplet.training.top_blocks.train_top_blocks`).
    """

    net: TripletNet
    n_components: int
    held: np.ndarray | None = None
    best_epoch: int | None = None
    best_score: float | None = None
    freeze: bool | int | None = None
    freeze_report: dict | None = None


def draw_seed(random_state: Any) -> int:
    """The seed of a fit, drawn from ``random_state`` (the same on every process)."""
    from sklearn.utils import check_random_state

    from sktriplet.training.distributed import broadcast_seed

    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    return broadcast_seed(seed)


def _uncached_reason(params: dict[str, Any], data: TrainingData) -> str:
    if params["augment"] not in ("auto", False):
        return "head only: augment trains through the backbone on augmented images"
    return "head only: a callback changes which parameters train"


def _fresh(params: dict[str, Any], data: TrainingData, device: str) -> FitResult:
    module = build_network(data.spec, params, data.statistics)
    cached = can_cache_features(module, params)  # with labels or triplets
    if cached:
        params = {**params, "augment": False}  # cached features cannot be augmented
    sample = data.probe()[[0, 1]][0]
    width = check_network_output(module, sample, params["n_components"])
    body = module[-1] if isinstance(module, torch.nn.Sequential) else module
    freeze = getattr(body, "freeze", None) if isinstance(body, BackboneEmbedder) else None
    if not cached:
        net = fresh_net(module, params, data, device, width)
        run_fit(net, params, data)
        if not wants_top_blocks(module):
            return _result(net, width, data, freeze)
        report = head_only_report(_uncached_reason(params, data))
        if net.verbose:
            print(describe(report))
        return _result(net, width, data, True, report)
    if wants_top_blocks(module) and data.labelled:
        auto = train_top_blocks(module, params, data, device, width)
        result = FitResult(auto.net, width, data.held, auto.best_epoch, auto.best_score)
        result.freeze = auto.report["trained_blocks"] or True
        result.freeze_report = auto.report
        return result
    net = train_cached_head(module, params, data, device, width)
    if wants_top_blocks(module):  # triplets=True: top blocks need labels, the head trains
        report = head_only_report("head only: triplets=True trains the head on cached features")
        if net.verbose:
            print(describe(report))
        return _result(net, width, data, True, report)
    return _result(net, width, data, freeze)


def _result(net, width, data, freeze=None, report=None) -> FitResult:
    result = FitResult(net, width, data.held, freeze=freeze, freeze_report=report)
    validation = dict(net.callbacks_).get("retrieval_validation")
    if validation is not None and validation.best_score_ > -np.inf:
        result.best_epoch, result.best_score = validation.best_epoch_, validation.best_score_
    return result


def _continue(net: TripletNet, width: int, params: dict[str, Any], data: TrainingData) -> None:
    if getattr(net, "rng_state_", None) is not None:
        # Continue the torch random stream (dropout) where the last epoch
        # ended: a resumed fit then equals an uninterrupted one.
        torch.set_rng_state(net.rng_state_)
    update_criterion(net, params, data.n_classes, width)
    net.set_params(
        seed=data.seed,
        max_epochs=params["max_epochs"],
        precision=params["precision"],
        **changed_training_params(net, params, data.spec, learning_rate(params, data)),
    )
    kept = [
        cb for cb in net.callbacks if not (isinstance(cb, tuple) and cb[0] in _PER_FIT_CALLBACKS)
    ]
    run_fit(net, params, data, kept + schedule_callbacks(params, data.spec))


def _check_triplet_mode(data: TrainingData) -> None:
    from sktriplet.training.distributed import is_distributed

    if not data.labelled and is_distributed():
        raise ValueError(
            "triplets=True does not train inside a torch.distributed process group yet "
            "(batches of triplets are not sharded across processes); fit on one process."
        )


def train(
    params: dict[str, Any],
    data: TrainingData,
    *,
    device: str,
    warm: tuple[TripletNet, int] | None = None,
) -> FitResult:
    """Train a network on the datasets of a fit.

    Parameters
    ----------
    params : dict
        Estimator parameters (``get_params(deep=False)``).
    data : TrainingData
        The datasets, hold-out, probe and statistics of the fit, and its
        seed (:func:`draw_seed`).
    device : str
        A resolved torch device.
    warm : tuple of (TripletNet, int), default=None
        A fitted net to continue training and its embedding width
        (``warm_start``); on failure it is restored to its state before.

    Returns
    -------
    FitResult
        The trained net and what the estimator records from it.
    """
    _check_triplet_mode(data)
    params = {**params, **resolve_loss_defaults(params)}  # "auto" mining and margin, by mode
    n_triplets = None if data.triplets is None else len(data.triplets)
    params["batch_size"] = resolve_batch_size(params, n_triplets)
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    snapshot = warm[0].snapshot() if warm is not None else None
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(data.seed)
            if warm is None:
                return _fresh(params, data, device)
            net, width = warm
            _continue(net, width, params, data)
    except BaseException:
        if snapshot is not None:
            warm[0].restore(snapshot)
        raise
    return _result(net, width, data)
