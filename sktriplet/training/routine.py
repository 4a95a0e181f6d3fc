"""The one fit routine, and the nets it runs: shared by every route of a fit.

:func:`run_fit` is what every fit does with a net and a
:class:`~sktriplet.inputs.training_data.TrainingData`: validation callbacks,
skorch's loop, the finiteness check. :func:`fresh_net` makes the net that
trains a module (or a trained part of one) with the fit's learning rate;
:func:`train_cached_head` is the route of a frozen backbone: its features
cached once, the head trained on them, the whole network handed back.
"""

from __future__ import annotations

from typing import Any

import torch

from sktriplet.inputs.training_data import TrainingData
from sktriplet.runtime.inference import embed_dataset
from sktriplet.runtime.precision import resolve_precision
from sktriplet.runtime.progress import progress_loader
from sktriplet.training.checkpoints import attach_checkpoint
from sktriplet.training.errors import check_finite_embeddings
from sktriplet.training.factory import make_net, validation_callbacks
from sktriplet.training.feature_cache import cache_features, hand_over, split_for_caching
from sktriplet.training.net import TripletNet
from sktriplet.training.policy import resolve_lr

__all__ = ["fresh_net", "learning_rate", "run_fit", "train_cached_head"]


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


def run_fit(
    net: TripletNet,
    params: dict[str, Any],
    data: TrainingData,
    callbacks=None,
    validation: dict[str, Any] | None = None,
) -> None:
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
    validation : dict, default=None
        Options of the retrieval validation on ``data``'s held-out samples
        (:class:`~sktriplet.training.callbacks.RetrievalValidation`).

    Notes
    -----
    Inside a fit with ``checkpoint_dir``
    (:mod:`sktriplet.training.checkpoints`), every call is one training run
    of the fit: it writes its state after every epoch, and in a resumed fit
    restores the state the run had reached and trains the epochs left.
    """
    kept = list(net.callbacks) if callbacks is None else callbacks
    valid = validation_callbacks(params, data.valid_dataset(), **(validation or {}))
    net.callbacks = kept + valid
    if getattr(net, "initialized_", False):
        net.initialize_callbacks()
    else:
        net.initialize()
    resume = attach_checkpoint(net)  # with checkpoint_dir: the epochs left, if resumed
    net.partial_fit(data.train_dataset(), None, **resume)
    check_finite_embeddings(embed_dataset(net, data.probe()), net=net)


def train_cached_head(
    module: torch.nn.Module, params: dict[str, Any], data: TrainingData, device: str, width: int
) -> TripletNet:
    """Train the head of a network with a frozen backbone on its features, cached once.

    The frozen part (input layers, backbone, pooling) runs once over
    ``data.all_samples()`` (:func:`~sktriplet.training.feature_cache.cache_features`);
    the head, which shares its parameters with ``module``, trains on the
    cached features through :func:`run_fit`; the whole network is then the
    net's (:func:`~sktriplet.training.feature_cache.hand_over`).

    Parameters
    ----------
    module : torch.nn.Module
        The network, ending in a :class:`~sktriplet.networks.BackboneEmbedder`
        with a frozen backbone.
    params : dict
        Estimator parameters.
    data : TrainingData
        The fit's data.
    device : str
        A resolved torch device.
    width : int
        Width of the network's embeddings.

    Returns
    -------
    TripletNet
        The net, whose module is the whole network.
    """
    frozen, trained = split_for_caching(module)
    net = fresh_net(trained, params, data, device, width)
    net.initialize()
    features = cache_features(
        frozen,
        data.all_samples(),
        batch_size=params["batch_size"],
        device=net.device,
        loader=progress_loader(net.batch_loader, net.verbose, "caching features"),
        precision=resolve_precision(params["precision"], net.device).inference,
    )
    run_fit(net, params, data.with_samples(features))
    hand_over(net, module)
    return net
