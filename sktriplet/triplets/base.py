"""The one loss interface, and the base of the compositions that wrap a loss.

Every loss :class:`sktriplet.TripletEmbedder` trains with (``criterion=``)
is a ``torch.nn.Module`` called as::

    loss = criterion(embeddings, labels)                        # labelled batches
    loss = criterion(embeddings, indices_tuple=(a, p, n))       # triplet mode
    loss = criterion(embeddings, labels, indices_tuple=(a, p, n))  # a miner's choice
    loss = criterion(embeddings, indices_tuple=(a, p, n), weights=w)  # weighted triplets
    loss = criterion(embeddings, labels, weights=w)             # weighted samples

and returns a scalar tensor. ``weights`` (``fit(..., sample_weight=w)``)
are one per triplet without labels, one per embedding with labels (each
term of the loss weighted by its anchor's weight). ``indices_tuple`` is a miner's output, index
tensors into the batch (:class:`~sktriplet.triplets.mining.IndexTriplets`, as
:func:`~sktriplet.triplets.mining.mine_triplets` or a pytorch-metric-learning
miner returns them). A user's loss needs only ``forward(embeddings,
labels)``; triplet mode needs a loss that takes ``indices_tuple``.

:class:`MetricLoss` is the base of the losses sktriplet defines: it adds the
statistics protocol the :class:`~sktriplet.training.callbacks.MiningStats`
callback reads (``record_stats`` set before training, ``last_stats`` a dict
of 0-d tensors after each batch, keys among ``active``, ``fallback``,
``d_ap``, ``d_an``, ``spread``). :class:`LossWrapper` is the base of the
compositions that wrap any loss (the classification auxiliary, the
distributed gather): it holds the wrapped loss as ``loss``, passes the
statistics protocol through and reads the wrapped loss's settings
(``margin``, ``mining``, ...) as its own.

Pure torch: nothing here imports scikit-learn or skorch.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

__all__ = [
    "LossWrapper",
    "MetricLoss",
    "check_class_codes",
    "full_precision",
    "inner_loss",
    "requires_labels",
    "takes_indices_tuple",
    "takes_weights",
    "zero_loss",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class MetricLoss(nn.Module):
    """Base of sktriplet's losses: the loss interface and its statistics.

    Subclasses implement :meth:`forward`. They may record statistics of the
    last batch in :attr:`last_stats` when :attr:`record_stats` is true.

    Parameters
    ----------
    record_stats : bool, default=False
        Keep statistics of the last batch in :attr:`last_stats`.

    Attributes
    ----------
    last_stats : dict of str to torch.Tensor
        Statistics of the last batch (empty unless ``record_stats``).
    """

    #: Whether the loss needs class labels (a classifier over the training
    #: classes): such a loss is refused with ``triplets=True``.
    requires_labels: bool = False

    def __init__(self, record_stats: bool = False) -> None:
        super().__init__()
        self.record_stats = bool(record_stats)
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: tuple | None = None,
    ) -> torch.Tensor:
        """The loss of one batch: a scalar tensor.

        Parameters
        ----------
        embeddings : torch.Tensor of shape (B, d)
            The batch's embeddings.
        labels : torch.Tensor of shape (B,), default=None
            Class labels (``None`` in triplet mode).
        indices_tuple : tuple of three index tensors, default=None
            ``(anchor, positive, negative)`` indices into the batch: the
            given triplets (triplet mode) or a miner's choice.
        """
        raise NotImplementedError


class LossWrapper(nn.Module):
    """Base of a composition that wraps a loss (any loss with the one interface).

    The wrapped loss is the submodule ``loss``. Reading an attribute the
    wrapper does not have reads the wrapped loss's (``margin``, ``soft``,
    ``mining``, ...); ``record_stats`` and ``last_stats`` are the wrapped
    loss's, so callbacks see through any stack of wrappers.

    Parameters
    ----------
    loss : torch.nn.Module
        The wrapped loss.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if name == "loss" or "loss" not in modules:
                raise
            return getattr(modules["loss"], name)

    @property
    def record_stats(self) -> bool:
        """Whether the wrapped loss records the statistics of each batch."""
        return bool(getattr(self.loss, "record_stats", False))

    @record_stats.setter
    def record_stats(self, value: bool) -> None:
        self.loss.record_stats = value

    @property
    def last_stats(self) -> dict:
        """The wrapped loss's statistics of the last batch."""
        return getattr(self.loss, "last_stats", {})


def inner_loss(criterion: nn.Module) -> nn.Module:
    """The loss inside any stack of :class:`LossWrapper` compositions.

    Parameters
    ----------
    criterion : torch.nn.Module
        A loss, or a wrapper of one.

    Returns
    -------
    torch.nn.Module
        The innermost wrapped loss (``criterion`` itself if it wraps none).
    """
    while isinstance(criterion, LossWrapper):
        criterion = criterion.loss
    return criterion


def takes_indices_tuple(loss: nn.Module | type) -> bool:
    """Whether a loss's ``forward`` accepts ``indices_tuple`` (or any keyword).

    Parameters
    ----------
    loss : torch.nn.Module or type
        A loss, a wrapper of one, or a loss class.

    Returns
    -------
    bool
    """
    return _forward_takes(loss, "indices_tuple")


def takes_weights(loss: nn.Module | type) -> bool:
    """Whether a loss's ``forward`` accepts ``weights`` (per given triplet, or per sample).

    Parameters
    ----------
    loss : torch.nn.Module or type
        A loss, a wrapper of one, or a loss class.

    Returns
    -------
    bool
    """
    return _forward_takes(loss, "weights")


def _forward_takes(loss: nn.Module | type, name: str) -> bool:
    if isinstance(loss, nn.Module):
        loss = type(inner_loss(loss))
    parameters = inspect.signature(loss.forward).parameters.values()
    return any(p.name == name or p.kind == p.VAR_KEYWORD for p in parameters)


def requires_labels(loss: nn.Module | type) -> bool:
    """Whether a loss (class, instance or wrapper) needs class labels.

    Parameters
    ----------
    loss : torch.nn.Module or type
        A loss, a wrapper of one, or a loss class.

    Returns
    -------
    bool
        The loss's ``requires_labels`` (``False`` when it has none).
    """
    if isinstance(loss, nn.Module):
        loss = inner_loss(loss)
    return bool(getattr(loss, "requires_labels", False))


def zero_loss(embeddings: torch.Tensor) -> torch.Tensor:
    """A zero loss that stays connected to the graph, with an exactly zero gradient.

    ``backward`` works on it, and the gradient is zero even where an
    embedding is not finite.

    Parameters
    ----------
    embeddings : torch.Tensor
        The batch the loss is of.

    Returns
    -------
    torch.Tensor
        A float32 scalar ``0``.
    """
    return embeddings.narrow(0, 0, 0).sum().float()


def full_precision(embeddings: torch.Tensor) -> torch.Tensor:
    """float16 and bfloat16 embeddings as float32 (losses compute in float32).

    Parameters
    ----------
    embeddings : torch.Tensor
        The batch.

    Returns
    -------
    torch.Tensor
        ``embeddings`` itself unless it is float16 or bfloat16.
    """
    return embeddings.float() if embeddings.dtype in _LOW_PRECISION else embeddings


def check_class_codes(labels, n_embeddings: int, n_classes: int, what: str) -> torch.Tensor:
    """Labels as class codes from 0 to ``n_classes - 1``, one per embedding; raise if not.

    Parameters
    ----------
    labels : array-like of shape (n_embeddings,)
        Integer class codes (what :class:`sktriplet.TripletEmbedder` gives
        its net).
    n_embeddings : int
        Size of the batch.
    n_classes : int
        Number of training classes.
    what : str
        The loss, for the error messages.

    Returns
    -------
    torch.Tensor of shape (n_embeddings,), dtype int64
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != n_embeddings:
        raise ValueError(
            f"labels must be 1-D with one label per embedding; got shape "
            f"{tuple(labels.shape)} for {n_embeddings} embeddings."
        )
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must be class codes in [0, {n_classes - 1}] for {what}; got values in "
            f"[{int(labels.min())}, {int(labels.max())}]. Set n_classes to the number of "
            "training classes."
        )
    return labels
