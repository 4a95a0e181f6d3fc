"""Learning-rate schedules over the epochs (or steps) of one ``fit`` (skorch callbacks).

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

__all__ = ["CosineLR", "StepCosineLR", "cosine_factor", "step_cosine_factor"]


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


def step_cosine_factor(step: int, n_steps: int, warmup: float = 0.2) -> float:
    """Fraction of the base learning rate at optimizer step ``step`` (0-based).

    A linear warm-up over the first ``warmup`` fraction of the ``n_steps``
    steps (at least one step), then a cosine decay to zero at ``n_steps``.

    Parameters
    ----------
    step : int
        The step, from 0.
    n_steps : int
        Steps of the whole schedule.
    warmup : float, default=0.2
        Fraction of the steps spent warming up.

    Returns
    -------
    float
        A factor in ``[0, 1]``.

    Examples
    --------
    >>> [round(step_cosine_factor(s, 10), 3) for s in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    n_warm = max(1, round(warmup * n_steps))
    if step < n_warm:
        return (step + 1) / n_warm
    span = max(1, n_steps - n_warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - n_warm, span) / span))


class StepCosineLR(Callback):
    """Warm-up then cosine decay of the learning rate, set before every training step.

    Every parameter group's rate is its rate at the start of training times
    :func:`step_cosine_factor` of the step (counted from the start of each
    ``fit`` call), so groups keep their ratios (e.g. trained blocks slower
    than the head); ``net.lr`` times the factor at the start of each epoch
    is recorded as ``lr`` in ``net.history``. At the end of training the
    groups get their starting rates back.

    Parameters
    ----------
    n_steps : int
        Steps of the schedule (epochs times batches per epoch); steps past
        it train at rate 0.
    warmup : float, default=0.2
        Fraction of the steps spent warming up linearly.

    Examples
    --------
    >>> StepCosineLR(n_steps=40).n_steps
    40
    """

    def __init__(self, n_steps: int, warmup: float = 0.2) -> None:
        self.n_steps = n_steps
        self.warmup = warmup

    def initialize(self) -> StepCosineLR:
        """Reset the step counter."""
        self.step_ = 0
        return self

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Remember each group's starting rate."""
        self.step_ = 0
        self.base_lrs_ = [group["lr"] for group in net.optimizer_.param_groups]

    def _factor(self) -> float:
        return step_cosine_factor(self.step_, self.n_steps, self.warmup)

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        """Record the rate the epoch starts with."""
        net.history.record("lr", net.lr * self._factor())

    def on_batch_begin(self, net: Any, batch: Any = None, training: bool = False, **kwargs):
        """Set the rates of this step."""
        if not training:
            return
        factor = self._factor()
        for group, base in zip(net.optimizer_.param_groups, self.base_lrs_, strict=True):
            group["lr"] = base * factor
        self.step_ += 1

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Give the parameter groups their starting learning rates back."""
        for group, base in zip(net.optimizer_.param_groups, self.base_lrs_, strict=True):
            group["lr"] = base
