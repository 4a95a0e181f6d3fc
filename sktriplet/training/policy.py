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
* :func:`resolve_loss_defaults`: ``mining="auto"`` and ``margin="auto"``
  are semi-hard mining with margin 0.2 with labels, and the given triplets
  (``"none"``) with margin 1.0 with ``triplets=True`` (``docs/triplets.md``,
  "Which mining and margin in triplet mode?").
* :func:`resolve_batch_size`: ``batch_size="auto"`` is 128 with labels and,
  with ``triplets=True``, 128 or the batch that keeps the fit within
  :data:`MAX_TRIPLET_STEPS` optimizer steps, whichever is larger: the
  training time does not grow with the number of triplets beyond that
  (``docs/triplets.md``, "Real judgements: 85 Zappos shoes").

Why, with the measurements: ``docs/defaults.md`` ("The hard case" and "The
few-class policy"). Nothing here imports scikit-learn, skorch or the
estimator.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from sktriplet.inputs.statistics import PIXEL_LIKE_MIN_FEATURES, is_pixel_like, resolve_scaling

if TYPE_CHECKING:
    from sktriplet.inputs.spec import InputSpec

__all__ = [
    "AUTO_BATCH_SIZE",
    "AUTO_LOSS",
    "AUTO_LR_IMAGES",
    "AUTO_LR_ROWS",
    "FEW_CLASSES",
    "FEW_CLASS_LR_BUDGET",
    "MAX_TRIPLET_STEPS",
    "PIXEL_LIKE_MIN_FEATURES",
    "few_class_lr",
    "resolve_batch_size",
    "is_pixel_like",
    "resolve_loss_defaults",
    "resolve_lr",
    "resolve_scaling",
    "training_steps",
]

#: ``lr="auto"``: the peak learning rate for images and for 2-D ``X``
#: (see ``docs/defaults.md``).
AUTO_LR_IMAGES = 2e-3
AUTO_LR_ROWS = 1e-3

#: ``mining="auto"`` and ``margin="auto"`` by mode: with labels (``False``)
#: and with ``triplets=True``. Measured in ``docs/triplets.md``: on digits
#: triplets, taking them as given beats mining among the batch's negatives
#: at every margin, and margin 1.0 reaches 0.96 to 1.02 of the label-trained
#: MAP@R from 2,000 to 20,000 triplets (0.5: 0.88 to 1.00, and far less with
#: wrong answers); on the Zappos crowd judgements it is within 0.01 of the
#: best margin (0.5) on both protocols, where 2.0 loses 0.02 to 0.03.
AUTO_LOSS = {False: {"mining": "semihard", "margin": 0.2}, True: {"mining": "none", "margin": 1.0}}

#: ``BackboneEmbedder(head_anchor="auto")`` built for ``triplets=True``: the
#: head's L2-SP strength (with labels it is the module's own
#: :data:`~sktriplet.networks.backbone.HEAD_ANCHOR`, 0.01, tuned for unseen
#: classes). Judgements ask the head to move further from the frozen
#: features: on the Zappos crowd judgements through the estimator (seeds 0
#: and 1, ``docs/triplets.md``) 1e-3 agreed with 0.852 of held-out
#: judgements against 0.835, and 0.787 against 0.783 on held-out shoes.
TRIPLET_HEAD_ANCHOR = 1e-3

#: ``batch_size="auto"``: samples per batch with labels, and the least
#: triplets per batch with ``triplets=True``.
AUTO_BATCH_SIZE = 128

#: ``batch_size="auto"`` with ``triplets=True``: the most optimizer steps a
#: fit takes (``max_epochs`` epochs of ``ceil(n_triplets / batch_size)``
#: batches); more triplets make larger batches, not more steps. A batch of
#: triplets embeds only the distinct samples it touches, so with a few
#: hundred items (or their cached features) a step costs about the same at
#: 128 or 3,000 triplets. Measured on the Zappos crowd judgements in
#: ``docs/triplets.md``.
MAX_TRIPLET_STEPS = 2000

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


def resolve_loss_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """``mining`` and ``margin`` with ``"auto"`` replaced by the mode's value.

    Parameters
    ----------
    params : dict
        Estimator parameters (``mining``, ``margin``, ``triplets``; a
        missing ``triplets`` means labels).

    Returns
    -------
    dict
        ``{"mining": ..., "margin": ...}``: the values given, or for
        ``"auto"`` those of :data:`AUTO_LOSS` for the mode.

    Examples
    --------
    >>> from sktriplet.training.policy import resolve_loss_defaults
    >>> resolve_loss_defaults({"mining": "auto", "margin": "auto", "triplets": True})
    {'mining': 'none', 'margin': 1.0}
    >>> resolve_loss_defaults({"mining": "hard", "margin": "auto", "triplets": False})
    {'mining': 'hard', 'margin': 0.2}
    """
    auto = AUTO_LOSS[bool(params.get("triplets", False))]
    return {key: auto[key] if params[key] == "auto" else params[key] for key in auto}


def resolve_module_defaults(module: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Mode-dependent constructor arguments for a module class left at ``"auto"``.

    Today one: a module whose ``head_anchor`` defaults to ``"auto"`` (as
    :class:`~sktriplet.networks.BackboneEmbedder`'s does) gets
    :data:`TRIPLET_HEAD_ANCHOR` with ``triplets=True``; with labels the
    module resolves ``"auto"`` itself. A ``module__head_anchor`` the user
    set is never replaced (the caller skips names already given).

    Parameters
    ----------
    module : type
        The module class.
    params : dict
        Estimator parameters (``triplets``; missing means labels).

    Returns
    -------
    dict
        Constructor arguments to add.

    Examples
    --------
    >>> from sktriplet.networks import BackboneEmbedder
    >>> from sktriplet.training.policy import resolve_module_defaults
    >>> resolve_module_defaults(BackboneEmbedder, {"triplets": True})
    {'head_anchor': 0.001}
    >>> resolve_module_defaults(BackboneEmbedder, {"triplets": False})
    {}
    """
    try:
        parameter = inspect.signature(module).parameters.get("head_anchor")
    except (TypeError, ValueError):
        return {}
    if params.get("triplets", False) and parameter is not None and parameter.default == "auto":
        return {"head_anchor": TRIPLET_HEAD_ANCHOR}
    return {}


def resolve_batch_size(params: dict[str, Any], n_triplets: int | None = None) -> int:
    """Samples (or triplets) per training batch: ``batch_size``, or what ``"auto"`` picks.

    With labels (or no ``n_triplets``) ``"auto"`` is :data:`AUTO_BATCH_SIZE`.
    With ``triplets=True`` it is the smallest batch of at least
    :data:`AUTO_BATCH_SIZE` triplets for which ``max_epochs`` epochs take at
    most :data:`MAX_TRIPLET_STEPS` optimizer steps (at least one batch per
    epoch: ``max_epochs`` above the bound gives ``max_epochs`` steps).

    Parameters
    ----------
    params : dict
        Estimator parameters (``batch_size``, ``max_epochs``, ``triplets``).
    n_triplets : int, default=None
        Training triplets of the fit (triplet mode).

    Returns
    -------
    int
        The batch size.

    Examples
    --------
    >>> from sktriplet.training.policy import resolve_batch_size
    >>> params = {"batch_size": "auto", "max_epochs": 30, "triplets": True}
    >>> resolve_batch_size(params, 6000)
    128
    >>> resolve_batch_size(params, 200_000)  # 66 batches an epoch, 1,980 steps
    3031
    >>> resolve_batch_size({**params, "batch_size": 64}, 200_000)
    64
    """
    if params["batch_size"] != "auto":
        return int(params["batch_size"])
    if not params.get("triplets", False) or n_triplets is None:
        return AUTO_BATCH_SIZE
    per_epoch = max(1, MAX_TRIPLET_STEPS // max(1, int(params["max_epochs"])))
    return max(AUTO_BATCH_SIZE, math.ceil(int(n_triplets) / per_epoch))
