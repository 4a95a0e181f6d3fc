"""Build the training criterion from the estimator's parameters: the loss seam.

``criterion`` is a name in :data:`sktriplet.triplets.registry.LOSSES` or a
loss class; :func:`build_criterion` constructs it the way
:func:`~sktriplet.training.build.build_network` constructs a module class: by
its constructor's signature, with the ``criterion__*`` parameters plus
``margin``, ``mining``, ``distance``, ``soft`` (the estimator's, ``"auto"``
resolved by :func:`~sktriplet.training.policy.resolve_loss_defaults`) and
``n_classes``, ``n_components`` (the fit's) where it takes them. The
compositions of :data:`~sktriplet.triplets.registry.WRAPPERS` then wrap it
when their parameter asks (``memory_size``, ``classification_weight > 0``).
The result is the instance skorch trains with (its learnable weights, if any, join the
optimizer and are saved with the net). :func:`call_criterion` is how the net
calls it, through the one loss interface (:mod:`sktriplet.triplets.base`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from sktriplet.training.build import routed
from sktriplet.training.policy import resolve_loss_defaults
from sktriplet.triplets.base import (
    LossWrapper,
    requires_labels,
    takes_indices_tuple,
    takes_weights,
)
from sktriplet.triplets.memory import check_memory_loss
from sktriplet.triplets.mining import IndexTriplets
from sktriplet.triplets.registry import WRAPPERS, resolve_loss

__all__ = [
    "ESTIMATOR_LOSS_ARGUMENTS",
    "build_criterion",
    "call_criterion",
    "check_criterion",
    "check_weighted_criterion",
    "update_criterion",
]

#: Estimator parameters a loss constructor receives when it takes them.
ESTIMATOR_LOSS_ARGUMENTS = ("margin", "mining", "distance", "soft")


def _offered(params: dict[str, Any], n_classes: int | None, width: int | None) -> dict:
    offered = {name: params[name] for name in ESTIMATOR_LOSS_ARGUMENTS}
    offered.update(resolve_loss_defaults(params))  # "auto" mining and margin, by mode
    offered["n_classes"] = None if n_classes is None else int(n_classes)
    offered["n_components"] = None if width is None else int(width)
    return offered


def _construct(cls: type, given: dict, offered: dict, what: str, *args) -> nn.Module:
    """``cls(*args, **given, **what its signature takes of offered)``, with clear errors."""
    parameters = inspect.signature(cls).parameters
    kwargs = dict(given)
    for name, value in offered.items():
        if name in parameters and name not in kwargs:
            if value is None:
                raise ValueError(
                    f"{what} needs {name}, which a fit without class labels does not have "
                    "(triplets=True); use another criterion, or set it to 0 / leave it out."
                )
            kwargs[name] = value
    try:
        return cls(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(
            f"could not build {what} ({cls.__name__}) with arguments {sorted(kwargs)}: {exc}. "
            "Check the criterion__* parameters against its constructor."
        ) from exc


def check_criterion(params: dict[str, Any]) -> type[nn.Module]:
    """The loss class ``criterion`` names, checked against the mode; raise if it does not fit.

    Parameters
    ----------
    params : dict
        Estimator parameters (``criterion``, ``triplets``).

    Returns
    -------
    type
        The loss class (:func:`~sktriplet.triplets.registry.resolve_loss`).

    Raises
    ------
    ValueError, TypeError
        An unknown name, a class that is not a ``torch.nn.Module``; with
        ``triplets=True``, a loss that needs labels or whose ``forward`` takes
        no ``indices_tuple``; with ``memory_size``, triplet mode or a loss
        that cannot mine against a memory.
    """
    name = params.get("criterion", "triplet")
    cls = resolve_loss(name)
    label = getattr(name, "__name__", name)
    triplet_mode = params.get("triplets", False)
    if triplet_mode and requires_labels(cls):
        raise ValueError(
            f"criterion={label!r} learns one weight vector per training class and needs class "
            "labels; triplets=True trains on given triplets without classes. Use "
            "criterion='triplet', 'contrastive' or 'multi_similarity'."
        )
    if triplet_mode and not takes_indices_tuple(cls):
        raise ValueError(
            f"criterion={label!r} takes no indices_tuple, but "
            "triplets=True trains on given triplets: the loss is called as "
            "criterion(embeddings, indices_tuple=(anchor, positive, negative)). Add an "
            "indices_tuple argument to its forward, or use criterion='triplet'."
        )
    if params.get("memory_size"):
        if triplet_mode:
            raise ValueError(
                "memory_size needs class labels (the memory keeps past embeddings with their "
                "classes); triplets=True trains on given triplets. Set memory_size=None."
            )
        check_memory_loss(cls, params.get("mining"))
    return cls


def check_weighted_criterion(params: dict[str, Any]) -> None:
    """Raise unless the fit can weight its loss (``fit(..., sample_weight=w)``).

    Weights are per given triplet in triplet mode, per sample with labels;
    either way the criterion's ``forward`` must take ``weights`` (the default
    ``"triplet"`` does), and so must every composition the parameters switch
    on (``classification_weight`` does; the cross-batch memory of
    ``memory_size`` does not).

    Parameters
    ----------
    params : dict
        Estimator parameters (``criterion``, ``triplets``, the compositions'
        parameters).
    """
    name = params.get("criterion", "triplet")
    per = "triplet" if params.get("triplets", False) else "sample"
    if not takes_weights(resolve_loss(name)):
        raise ValueError(
            f"sample_weight needs a criterion whose forward takes weights (one per "
            f"{per}); criterion={getattr(name, '__name__', name)!r} does not. Use "
            "criterion='triplet', or add a weights argument to its forward."
        )
    for wrapper in WRAPPERS:
        value = params.get(wrapper.param)
        if value and not takes_weights(wrapper.cls):
            raise ValueError(
                f"sample_weight cannot be combined with {wrapper.param}={value!r}: its "
                f"composition ({wrapper.cls.__name__}) takes no weights, so they would not "
                f"reach the loss. Switch {wrapper.param} off, or drop sample_weight."
            )


def build_criterion(
    params: dict[str, Any], n_classes: int | None = None, width: int | None = None
) -> nn.Module:
    """The criterion of a fit: the chosen loss, wrapped by the compositions asked for.

    Parameters
    ----------
    params : dict
        Estimator parameters (``criterion``, ``criterion__*``, ``margin``,
        ``mining``, ``distance``, ``soft``, ``classification_weight``, ...).
    n_classes : int, default=None
        Number of training classes (``None``: no labels, triplet mode).
    width : int, default=None
        Width of the embeddings.

    Returns
    -------
    torch.nn.Module
        The criterion (called with the one loss interface).

    Examples
    --------
    >>> from sktriplet.training.criterion import build_criterion
    >>> params = {"criterion": "triplet", "margin": 0.3, "mining": "hard",
    ...           "distance": "cosine", "soft": False, "classification_weight": 0.5}
    >>> criterion = build_criterion(params, n_classes=10, width=16)
    >>> type(criterion).__name__, type(criterion.loss).__name__, criterion.margin
    ('WithClassification', 'TripletLoss', 0.3)
    """
    name = params.get("criterion", "triplet")
    cls = check_criterion(params)
    offered = _offered(params, n_classes, width)
    what = f"criterion={getattr(name, '__name__', name)}"
    loss = _construct(cls, routed(params, "criterion__"), offered, what)
    for wrapper in WRAPPERS:
        value = params.get(wrapper.param)
        if value:
            what = f"{wrapper.param}={value}"
            loss = _construct(wrapper.cls, {wrapper.argument: value}, offered, what, loss)
    return loss


def call_criterion(criterion: nn.Module, y_pred: torch.Tensor, y_true: torch.Tensor):
    """The loss of a batch through the one loss interface.

    A target of shape ``(m, 3)`` is a batch of index triplets (triplet mode):
    the criterion gets ``labels=None`` and ``indices_tuple``. A 1-D target
    holds labels: ``criterion(y_pred, labels)``, which a user's loss with
    ``forward(embeddings, labels)`` takes as it is. A pair ``(target,
    weights)`` is either of them weighted (``fit(..., sample_weight=w)``),
    ``weights`` passed on by that name: one per triplet with index
    triplets, one per sample with labels.
    """
    weights = None
    if isinstance(y_true, tuple | list):
        y_true, weights = y_true
    given = {} if weights is None else {"weights": weights}
    if y_true.ndim == 2:
        indices = IndexTriplets(*y_true.long().unbind(1))
        return criterion(y_pred, indices_tuple=indices, **given)
    return criterion(y_pred, y_true, **given)


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _stack(criterion: nn.Module) -> list[nn.Module]:
    """The criterion's compositions, outermost first, then the loss."""
    out = [criterion]
    while isinstance(out[-1], LossWrapper):
        out.append(out[-1].loss)
    return out


def _describe(stack: list[nn.Module]) -> str:
    return " around ".join(type(m).__name__ for m in stack)


def update_criterion(net, params: dict[str, Any], n_classes: int | None, width: int) -> None:
    """Apply changed loss parameters to a warm-started net's criterion.

    A loss without learnable state is built again from the current
    parameters and replaces the old one (skorch would re-create the optimizer
    if a ``criterion__*`` net parameter were set; nothing is lost). A loss
    with learnable state keeps it: its constructor arguments that it stores
    under their own names are updated in place. The compositions keep their
    weights (and a cross-batch memory its contents); the argument their
    estimator parameter sets (``classification_weight``, ``memory_size``,
    which resizes the memory) is updated. Changing the loss class, or
    switching a composition on or off, needs a fresh fit.

    Parameters
    ----------
    net : TripletNet
        The fitted net.
    params : dict
        The estimator's current parameters.
    n_classes, width : int or None
        As for :func:`build_criterion`.

    Raises
    ------
    ValueError
        When the criterion's class or its compositions changed.
    """
    with torch.random.fork_rng(devices=[]):  # the training random stream stays as it is
        wanted = _stack(build_criterion(params, n_classes, width))
    current = _stack(net.criterion_)
    if [type(m) for m in wanted] != [type(m) for m in current]:
        raise ValueError(
            f"warm_start=True cannot change the criterion from {_describe(current)} to "
            f"{_describe(wanted)} (another criterion, or classification_weight or memory_size "
            "switched on or off); fit with warm_start=False."
        )
    arguments = {w.cls: w.argument for w in WRAPPERS}
    for new, old in zip(wanted[:-1], current[:-1], strict=True):
        name = arguments.get(type(old))
        if name is not None:
            setattr(old, name, getattr(new, name))
    new, old = wanted[-1], current[-1]
    if _has_state(old):
        for name in inspect.signature(type(old)).parameters:
            if name in vars(old) and name in vars(new):
                setattr(old, name, getattr(new, name))
    elif len(current) > 1:
        current[-2].loss = new
    else:
        net.criterion = net.criterion_ = new
