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
from sktriplet.runtime.inference import embed_dataset
from sktriplet.runtime.progress import progress_loader
from sktriplet.training.build import build_network, check_network_output
from sktriplet.training.criterion import update_criterion
from sktriplet.training.errors import check_finite_embeddings
from sktriplet.training.factory import (
    changed_training_params,
    make_net,
    schedule_callbacks,
    validation_callbacks,
)
from sktriplet.training.feature_cache import (
    cache_features,
    can_cache_features,
    hand_over,
    split_for_caching,
)
from sktriplet.training.net import TripletNet
from sktriplet.training.policy import resolve_lr

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
    """

    net: TripletNet
    n_components: int
    held: np.ndarray | None = None
    best_epoch: int | None = None
    best_score: float | None = None


def draw_seed(random_state: Any) -> int:
    """The seed of a fit, drawn from ``random_state`` (the same on every process)."""
    from sklearn.utils import check_random_state

    from sktriplet.training.distributed import broadcast_seed

    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    return broadcast_seed(seed)


def learning_rate(params: dict[str, Any], data: TrainingData) -> float:
    """The fit's peak learning rate (:func:`~sktriplet.training.policy.resolve_lr`)."""
    return resolve_lr(params, data.spec, data.train_codes)


def fresh_net(
    module: torch.nn.Module, params: dict[str, Any], data: TrainingData, device: str, width: int
) -> TripletNet:
    """The (uninitialised) net that trains ``module`` on ``data``.

    ``width`` is the width of the whole network's embeddings (it sizes a
    criterion that needs ``n_components``, e.g. ``classification_weight``).
    """
    return make_net(
        params,
        data.spec,
        module,
        data.seed,
        device,
        lr=learning_rate(params, data),
        n_classes=data.n_classes,
        width=width,
    )


def run_fit(net: TripletNet, params: dict[str, Any], data: TrainingData, callbacks=None) -> None:
    """The one fit routine: validation callbacks, skorch's loop, the finiteness check.

    Parameters
    ----------
    net : TripletNet
        A net, initialised or not (a warm-started one keeps its module,
        optimizer and history).
    params : dict
        Estimator parameters.
    data : TrainingData
        What to train on (for a cached head: the cached features).
    callbacks : list, default=None
        The net's callbacks before validation is added (``None``: its own).
    """
    kept = list(net.callbacks) if callbacks is None else callbacks
    net.callbacks = kept + validation_callbacks(params, data.valid_dataset())
    if getattr(net, "initialized_", False):
        net.initialize_callbacks()
    else:
        net.initialize()
    net.partial_fit(data.train_dataset(), None)
    check_finite_embeddings(embed_dataset(net, data.probe()), net=net)


def _fresh(params: dict[str, Any], data: TrainingData, device: str) -> tuple[TripletNet, int]:
    module = build_network(data.spec, params, data.statistics)
    cached = data.labelled and can_cache_features(module, params)
    if cached:
        params = {**params, "augment": False}  # cached features cannot be augmented
    sample = data.probe()[[0, 1]][0]
    width = check_network_output(module, sample, params["n_components"])
    if not cached:
        net = fresh_net(module, params, data, device, width)
        run_fit(net, params, data)
        return net, width
    # A frozen part run once, a trained part trained on its cached output
    # with the same routine; the whole network is the net's afterwards.
    frozen, trained = split_for_caching(module)
    net = fresh_net(trained, params, data, device, width)
    net.initialize()
    features = cache_features(
        frozen,
        data.all_samples(),
        batch_size=params["batch_size"],
        device=net.device,
        loader=progress_loader(net.batch_loader, net.verbose, "caching features"),
    )
    run_fit(net, params, data.with_samples(features))
    hand_over(net, module)
    return net, width


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
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    snapshot = warm[0].snapshot() if warm is not None else None
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(data.seed)
            if warm is None:
                net, width = _fresh(params, data, device)
            else:
                net, width = warm
                _continue(net, width, params, data)
    except BaseException:
        if snapshot is not None:
            warm[0].restore(snapshot)
        raise
    result = FitResult(net, width, data.held)
    validation = dict(net.callbacks_).get("retrieval_validation")
    if validation is not None and validation.best_score_ > -np.inf:
        result.best_epoch, result.best_score = validation.best_epoch_, validation.best_score_
    return result
