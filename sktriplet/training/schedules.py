"""Learning-rate schedules over the epochs of one ``fit`` (skorch callbacks).

:class:`CosineLR` sets the optimizer's learning rate at the start of every
epoch to ``lr * 0.5 * (1 + cos(pi * e / max_epochs))`` for the epoch's index
``e`` (0, 1, ...) within the current ``fit`` call, after an optional linear
warm-up. :class:`sktriplet.TripletEmbedder` adds it (with one warm-up epoch)
for ``lr_schedule="cosine"``, and for images with the default
``lr_schedule="auto"``; it is a plain skorch callback and works with any
skorch net.
"""

from __future__ import annotations

import math
from typing import Any

from skorch.callbacks import Callback

__all__ = ["CosineLR", "cosine_factor"]


def cosine_factor(epoch: int, max_epochs: int, warmup_epochs: int = 0) -> float:
    """Fraction of the base learning rate used in epoch ``epoch`` (0-based).

    Parameters
    ----------
    epoch : int
        Index of the epoch within the current fit, from 0.
    max_epochs : int
        Epochs of the fit: the cosine reaches zero at ``epoch == max_epochs``
        (one epoch after the last), so every epoch trains.
    warmup_epochs : int, default=0
        Epochs of linear warm-up first: epoch ``e < warmup_epochs`` uses
        ``(e + 1) / (warmup_epochs + 1)``; the cosine then runs over the
        remaining epochs.

    Returns
    -------
    float
        A factor in ``(0, 1]``.

    Examples
    --------
    >>> from sktriplet.training.schedules import cosine_factor
    >>> [round(cosine_factor(e, 4), 3) for e in range(4)]
    [1.0, 0.854, 0.5, 0.146]
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    span = max(1, max_epochs - warmup_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * min(epoch - warmup_epochs, span) / span))


class CosineLR(Callback):
    """Cosine decay of the learning rate over the epochs of each ``fit`` call.

    At the start of every epoch each parameter group's learning rate is set to
    its rate at the start of training times ``cosine_factor(e, net.max_epochs,
    warmup_epochs)``, where ``e`` counts the epochs of the current ``fit`` (a
    warm-started fit runs the schedule again over its own ``max_epochs``);
    ``net.lr`` times the factor is recorded as ``lr`` in ``net.history``.
    Groups keep their ratios, so a backbone given a lower rate through
    ``optimizer__param_groups`` stays lower. At the end of training the
    groups get their starting rates back, so a later fit without the
    callback starts where it expects.

    Parameters
    ----------
    warmup_epochs : int, default=0
        Epochs of linear warm-up before the decay (see :func:`cosine_factor`).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktriplet import TripletEmbedder
    >>> from sktriplet.training.schedules import CosineLR
    >>> X, y = load_digits(return_X_y=True)
    >>> emb = TripletEmbedder(max_epochs=3, lr=0.01, lr_schedule=None,
    ...                       callbacks=[CosineLR()], random_state=0).fit(X[:300], y[:300])
    >>> [round(lr, 4) for lr in emb.net_.history[:, "lr"]]
    [0.01, 0.0075, 0.0025]
    """

    def __init__(self, warmup_epochs: int = 0) -> None:
        self.warmup_epochs = warmup_epochs

    def initialize(self) -> CosineLR:
        """Reset the epoch counter."""
        self.first_epoch_ = 0
        return self

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Remember how many epochs earlier fits ran and each group's starting rate."""
        self.first_epoch_ = len(net.history)
        self.base_lrs_ = [group["lr"] for group in net.optimizer_.param_groups]

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        """Set and record this epoch's learning rate."""
        epoch = len(net.history) - 1 - self.first_epoch_
        factor = cosine_factor(epoch, net.max_epochs, self.warmup_epochs)
        for group, base in zip(net.optimizer_.param_groups, self.base_lrs_, strict=True):
            group["lr"] = base * factor
        net.history.record("lr", net.lr * factor)

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Give the parameter groups their starting learning rates back."""
        for group, base in zip(net.optimizer_.param_groups, self.base_lrs_, strict=True):
            group["lr"] = base
