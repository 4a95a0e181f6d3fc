"""Training policy: the defaults that depend on the data.

Pure functions of summary facts about the training data (its values, number
of classes, optimizer steps) that choose what ``"auto"`` parameters mean:

* :func:`is_pixel_like` and :func:`resolve_scaling`: ``scaling="auto"`` is
  ``"global"`` (one common scale) for rows whose columns are values of one
  kind, such as flattened grey-level images, and ``"feature"`` (per-feature
  standardisation) otherwise.
* :func:`resolve_lr`: ``lr="auto"`` is the usual peak rate when there are
  enough training classes and, with few classes, a small rate that bounds
  how far the whole fit may move the weights (:func:`few_class_lr`).

Why, with the measurements: ``docs/defaults.md`` ("The hard case" and "The
few-class policy"). Nothing here imports scikit-learn, skorch or the
estimator.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FEW_CLASSES",
    "FEW_CLASS_LR_BUDGET",
    "PIXEL_LIKE_MIN_FEATURES",
    "few_class_lr",
    "is_pixel_like",
    "resolve_lr",
    "resolve_scaling",
    "training_steps",
]

#: Rows need at least this many columns to count as pixel-like (an 8x8 image).
PIXEL_LIKE_MIN_FEATURES = 16

#: With fewer training classes than this, ``lr="auto"`` bounds the fit's
#: movement (:func:`few_class_lr`). Ten classes is where training helps
#: unseen classes in the benchmarks (COIL-20's 10 objects, MNIST's 10
#: digits); six (digits 0-5) and five (0-4) are where it hurt.
FEW_CLASSES = 10

#: ``lr * optimizer steps`` allowed for a fit with few classes. Adam moves
#: every weight by about ``lr`` per step, so this bounds the distance from
#: the network training starts at (``docs/defaults.md``).
FEW_CLASS_LR_BUDGET = 5e-3


def is_pixel_like(X: np.ndarray, *, min_features: int = PIXEL_LIKE_MIN_FEATURES) -> bool:
    """Whether 2-D rows look like flattened images: values of one kind in one range.

    True when ``X`` has at least ``min_features`` columns, no negative value,
    and either only whole numbers or only values in ``[0, 1]``, and when the
    columns share their range: at least half of the columns that vary reach
    half of the largest value in ``X``. Grey levels (0-255, 0-16, 0-1) pass;
    measurements in different units, centred or signed data and counts whose
    columns have very different ranges do not.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training rows (finite values).
    min_features : int, default=PIXEL_LIKE_MIN_FEATURES
        Fewest columns that count as an image.

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.training.policy import is_pixel_like
    >>> rng = np.random.default_rng(0)
    >>> is_pixel_like(rng.integers(0, 256, size=(50, 64)))
    True
    >>> is_pixel_like(rng.normal(size=(50, 64)))
    False
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] < min_features or X.size == 0:
        return False
    low = X.min(axis=0)
    high = X.max(axis=0)
    if low.min() < 0:
        return False
    top = float(high.max())
    if top <= 0:
        return False
    whole = bool(np.all(np.mod(X, 1) == 0))
    if not whole and top > 1:
        return False
    varying = high > low
    if not varying.any():
        return False
    return bool(np.mean(high[varying] >= top / 2) >= 0.5)


def resolve_scaling(scaling: str | None, X: np.ndarray) -> str | None:
    """The input scaling that ``scaling`` asks for, with ``"auto"`` resolved.

    Parameters
    ----------
    scaling : {"auto", "feature", "global"} or None
        The estimator's parameter.
    X : ndarray
        Training samples: rows ``(n_samples, n_features)`` or images
        ``(n_samples, C, H, W)``.

    Returns
    -------
    {"feature", "global"} or None
        ``"auto"`` gives ``"global"`` for pixel-like rows
        (:func:`is_pixel_like`) and ``"feature"`` for other rows and for
        images (whose ``"feature"`` scaling is already per channel); any
        other value is returned as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.training.policy import resolve_scaling
    >>> grey = np.random.default_rng(0).integers(0, 17, size=(10, 64))
    >>> resolve_scaling("auto", grey)
    'global'
    >>> resolve_scaling("auto", np.array([[1.5, -2.0], [0.5, 3.0]]))
    'feature'
    """
    if scaling != "auto":
        return scaling
    X = np.asarray(X)
    return "global" if X.ndim == 2 and is_pixel_like(X) else "feature"


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


def resolve_lr(
    lr: float,
    *,
    n_classes: int,
    n_steps: int,
    rows: bool,
    few_classes: int = FEW_CLASSES,
    budget: float = FEW_CLASS_LR_BUDGET,
) -> float:
    """The peak learning rate of ``lr="auto"`` for a fit.

    With fewer than ``few_classes`` training classes, training the default
    MLP on rows moves the embedding away from the input's geometry (where
    its skip path starts) without learning anything that carries over to
    unseen classes (digits 0-5 -> 6-9, and a tabular set in
    ``docs/defaults.md``), so the fit gets a budget: :func:`few_class_lr`.
    Images (a convolutional network that starts from random features) and
    enough classes keep ``lr``.

    Parameters
    ----------
    lr : float
        The usual ``"auto"`` rate for the data (``1e-3`` for rows).
    n_classes : int
        Training classes with at least two samples (after any hold-out).
    n_steps : int
        Optimizer steps of the fit (:func:`training_steps`).
    rows : bool
        Whether the network is the default MLP on 2-D ``X``, whose skip path
        makes the untrained network rank by the (scaled) input's geometry.
    few_classes : int, default=FEW_CLASSES
        Fewest classes that get ``lr`` unchanged.
    budget : float, default=FEW_CLASS_LR_BUDGET
        ``lr * steps`` bound for few classes.

    Returns
    -------
    float

    Examples
    --------
    >>> from sktriplet.training.policy import resolve_lr
    >>> resolve_lr(1e-3, n_classes=6, n_steps=270, rows=True)  # doctest: +ELLIPSIS
    1.85...e-05
    >>> resolve_lr(1e-3, n_classes=10, n_steps=270, rows=True)
    0.001
    """
    if n_classes < few_classes and rows:
        return few_class_lr(n_steps, lr=lr, budget=budget)
    return float(lr)
