"""Training policy: the defaults that depend on the data.

Pure functions of summary facts about the training data (its values, number
of classes, optimizer steps) that choose what ``"auto"`` parameters mean:

* :func:`is_pixel_like` and :func:`resolve_scaling` (defined with the input
  statistics in :mod:`sktriplet.inputs.statistics`): ``scaling="auto"`` is
  ``"global"`` (one common scale) for rows whose columns are values of one
  kind, such as flattened grey-level images, and ``"feature"`` (per-feature
  standardisation) otherwise.
* :func:`resolve_lr`, the one learning-rate policy: ``lr="auto"`` is the
  usual peak rate for the data when there are enough training classes and,
  with few classes, a small rate that bounds how far the whole fit may move
  the weights (:func:`few_class_lr`).

Why, with the measurements: ``docs/defaults.md`` ("The hard case" and "The
few-class policy"). Nothing here imports scikit-learn, skorch or the
estimator.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from sktriplet.inputs.statistics import PIXEL_LIKE_MIN_FEATURES, is_pixel_like, resolve_scaling

if TYPE_CHECKING:
    from sktriplet.inputs.spec import InputSpec

__all__ = [
    "AUTO_LR_IMAGES",
    "AUTO_LR_ROWS",
    "FEW_CLASSES",
    "FEW_CLASS_LR_BUDGET",
    "PIXEL_LIKE_MIN_FEATURES",
    "few_class_lr",
    "is_pixel_like",
    "resolve_lr",
    "resolve_scaling",
    "training_steps",
]

#: ``lr="auto"``: the peak learning rate for images and for 2-D ``X``
#: (see ``docs/defaults.md``).
AUTO_LR_IMAGES = 2e-3
AUTO_LR_ROWS = 1e-3

#: With fewer training classes than this, ``lr="auto"`` bounds the fit's
#: movement (:func:`few_class_lr`). Ten classes is where training helps
#: unseen classes in the benchmarks (COIL-20's 10 objects, MNIST's 10
#: digits); six (digits 0-5) and five (0-4) are where it hurt.
FEW_CLASSES = 10

#: ``lr * optimizer steps`` allowed for a fit with few classes. Adam moves
#: every weight by about ``lr`` per step, so this bounds the distance from
#: the network training starts at (``docs/defaults.md``).
FEW_CLASS_LR_BUDGET = 5e-3


def training_steps(
    n_samples: int, *, batch_size: int, max_epochs: int, min_batches: int = 1
) -> int:
    """Optimizer steps of a fit: epochs times PK batches per epoch.

    Parameters
    ----------
    n_samples : int
        Training samples (after any validation hold-out).
    batch_size : int
        Samples per batch.
    max_epochs : int
        Epochs of the fit.
    min_batches : int, default=1
        The sampler's floor on batches per epoch
        (:class:`sktriplet.training.sampling.PKSampler`).

    Returns
    -------
    int
        ``max_epochs * max(min_batches, ceil(n_samples / batch_size))``.

    Examples
    --------
    >>> from sktriplet.training.policy import training_steps
    >>> training_steps(1078, batch_size=128, max_epochs=20)
    180
    """
    return int(max_epochs) * max(int(min_batches), math.ceil(n_samples / batch_size))


def few_class_lr(n_steps: int, *, lr: float, budget: float = FEW_CLASS_LR_BUDGET) -> float:
    """The learning rate that spends at most ``budget`` over ``n_steps`` steps.

    Parameters
    ----------
    n_steps : int
        Optimizer steps of the fit (:func:`training_steps`).
    lr : float
        The rate used with enough classes; the result never exceeds it.
    budget : float, default=FEW_CLASS_LR_BUDGET
        Bound on ``lr * n_steps``.

    Returns
    -------
    float
        ``min(lr, budget / n_steps)`` (``lr`` when ``n_steps`` is 0).

    Examples
    --------
    >>> from sktriplet.training.policy import few_class_lr
    >>> few_class_lr(200, lr=1e-3)
    2.5e-05
    """
    if n_steps <= 0:
        return float(lr)
    return float(min(lr, budget / n_steps))


def resolve_lr(params: dict[str, Any], spec: InputSpec, codes: np.ndarray | None = None) -> float:
    """The peak learning rate: ``lr``, or what ``lr="auto"`` picks for the fit.

    ``"auto"`` is :data:`AUTO_LR_IMAGES` for images and :data:`AUTO_LR_ROWS`
    for rows. With fewer than :data:`FEW_CLASSES` training classes, training
    the default MLP on rows moves the embedding away from the input's
    geometry (where its skip path starts) without learning anything that
    carries over to unseen classes (digits 0-5 -> 6-9, and a tabular set in
    ``docs/defaults.md``), so the fit gets a budget: :func:`few_class_lr`
    over its optimizer steps (:func:`training_steps`). Images (a
    convolutional network that starts from random features), module classes
    and enough classes keep the usual rate.

    Parameters
    ----------
    params : dict
        Estimator parameters (``lr``, ``module``, ``batch_size``,
        ``max_epochs``).
    spec : InputSpec
        The fitted input.
    codes : numpy.ndarray of int, default=None
        Class codes of the training samples (after any hold-out); ``None``
        (loading a saved model, triplet mode) skips the few-class budget.

    Returns
    -------
    float
        The learning rate.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.spec import InputSpec
    >>> from sktriplet.training.policy import resolve_lr
    >>> params = {"lr": "auto", "module": None, "batch_size": 128, "max_epochs": 30}
    >>> rows = InputSpec("rows", (64,))
    >>> resolve_lr(params, rows, np.repeat(np.arange(10), 50))
    0.001
    >>> resolve_lr(params, rows, np.repeat(np.arange(6), 50))  # doctest: +ELLIPSIS
    5.5555...e-05
    """
    if params["lr"] != "auto":
        return float(params["lr"])
    if spec.is_image:
        return AUTO_LR_IMAGES
    if codes is None:
        return AUTO_LR_ROWS
    from sktriplet.training.sampling import MIN_BATCHES_PER_EPOCH

    n_classes = int((np.bincount(codes) >= 2).sum())
    if n_classes >= FEW_CLASSES or params["module"] is not None:
        return AUTO_LR_ROWS
    steps = training_steps(
        len(codes),
        batch_size=params["batch_size"],
        max_epochs=params["max_epochs"],
        min_batches=MIN_BATCHES_PER_EPOCH,
    )
    return few_class_lr(steps, lr=AUTO_LR_ROWS)
