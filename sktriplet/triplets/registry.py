"""The losses and loss compositions ``TripletEmbedder`` knows: the one registry.

:data:`LOSSES` maps the names ``criterion=`` accepts to loss classes; the
estimator's parameter constraints, its docstring and the command line read
the names from here (:func:`loss_names`). :data:`WRAPPERS` lists the
compositions that wrap whichever loss is chosen when an estimator parameter
asks for them (``memory_size`` mines against a cross-batch memory,
``classification_weight > 0`` adds a classifier's cross-entropy).

Adding a loss is one class with the one interface
(:mod:`sktriplet.triplets.base`) and one line in :data:`LOSSES`; the
estimator builds it by its constructor's signature (it receives ``margin``,
``mining``, ``distance``, ``soft``, ``n_classes`` and ``n_components`` where
it takes them, and any ``criterion__*`` parameter). Adding a composition is
one :class:`~sktriplet.triplets.base.LossWrapper` subclass, one line in
:data:`WRAPPERS` and the estimator parameter it names. See
``docs/architecture.md`` ("Where to add a loss").

Pure torch: nothing here imports scikit-learn or skorch.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from sktriplet.triplets.classification import WithClassification
from sktriplet.triplets.losses import TripletLoss
from sktriplet.triplets.memory import CrossBatchMemory
from sktriplet.triplets.pair_losses import ContrastiveLoss, MultiSimilarityLoss
from sktriplet.triplets.proxy_losses import ArcFaceLoss, NormalizedSoftmaxLoss

__all__ = ["LOSSES", "WRAPPERS", "Wrapper", "loss_names", "resolve_loss"]

#: The losses ``criterion=`` accepts by name.
LOSSES: dict[str, type[nn.Module]] = {
    "triplet": TripletLoss,
    "contrastive": ContrastiveLoss,
    "multi_similarity": MultiSimilarityLoss,
    "normalized_softmax": NormalizedSoftmaxLoss,
    "arcface": ArcFaceLoss,
}


class Wrapper(NamedTuple):
    """A composition the estimator applies to its loss when a parameter asks for it.

    Attributes
    ----------
    param : str
        The estimator parameter; the wrapper applies when it is truthy
        (non-zero, non-empty).
    cls : type
        The :class:`~sktriplet.triplets.base.LossWrapper` subclass, called as
        ``cls(loss, **arguments)``.
    argument : str
        The constructor argument that receives the parameter's value.
    """

    param: str
    cls: type[nn.Module]
    argument: str


#: Compositions, applied in this order (the first wraps the loss itself): the
#: cross-batch memory around the loss, the classifier's cross-entropy (of the
#: batch only) around that.
WRAPPERS: tuple[Wrapper, ...] = (
    Wrapper("memory_size", CrossBatchMemory, "memory_size"),
    Wrapper("classification_weight", WithClassification, "weight"),
)


def loss_names() -> tuple[str, ...]:
    """The registered loss names, sorted.

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> from sktriplet.triplets.registry import loss_names
    >>> "triplet" in loss_names()
    True
    """
    return tuple(sorted(LOSSES))


def resolve_loss(criterion: str | type) -> type[nn.Module]:
    """The loss class that ``criterion`` names (a registered name, or a class).

    Parameters
    ----------
    criterion : str or type
        A name in :data:`LOSSES`, or a ``torch.nn.Module`` subclass whose
        ``forward(embeddings, labels)`` returns a scalar.

    Returns
    -------
    type
        The loss class.

    Raises
    ------
    ValueError
        For a name that is not registered (listing those that are).
    TypeError
        For anything but a name or an ``nn.Module`` subclass.

    Examples
    --------
    >>> from sktriplet.triplets.registry import resolve_loss
    >>> resolve_loss("triplet").__name__
    'TripletLoss'
    """
    if isinstance(criterion, str):
        if criterion not in LOSSES:
            raise ValueError(
                f"criterion={criterion!r} is not a registered loss; use one of "
                f"{list(loss_names())} or a torch.nn.Module subclass."
            )
        return LOSSES[criterion]
    if isinstance(criterion, type) and issubclass(criterion, nn.Module):
        return criterion
    raise TypeError(
        f"criterion must be a registered loss name ({', '.join(loss_names())}) or a "
        f"torch.nn.Module subclass; got {criterion!r}."
    )
