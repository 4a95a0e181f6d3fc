"""Make the skorch net that trains a network, from the estimator's parameters.

The net's policies live here: the schedule that ``lr_schedule="auto"``
resolves to (the learning rate is :func:`sktriplet.training.policy.resolve_lr`),
the augmentation of batches that ``augment`` asks for, the callbacks every
fit gets, and which net class runs (:class:`~sktriplet.training.net.TripletNet`,
or its distributed subclass inside a process group). Like
:mod:`sktriplet.training.build`, it reads an
:class:`~sktriplet.inputs.spec.InputSpec` and a plain dict of parameters, so
``fit`` and :func:`sktriplet.load` make the same net.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

from torch import nn

from sktriplet.inputs.loading import augments_on_read, loader_defaults
from sktriplet.inputs.spec import InputSpec
from sktriplet.runtime.progress import resolve_verbose
from sktriplet.training.build import routed
from sktriplet.training.callbacks import MiningStats, RetrievalValidation
from sktriplet.training.criterion import build_criterion
from sktriplet.training.net import TripletNet
from sktriplet.training.policy import resolve_batch_size, resolve_lr

__all__ = [
    "AUTO_AUGMENT_MIN_SIZE",
    "augmenter",
    "changed_training_params",
    "make_net",
    "schedule_callbacks",
    "validation_callbacks",
]

#: ``augment="auto"`` moves images at least this many pixels high and wide
#: (on 8x8 digits a 2-pixel shift is a quarter of the image and hurts).
AUTO_AUGMENT_MIN_SIZE = 16

#: History keys recorded every epoch but left out of the ``verbose=1`` table.
QUIET_HISTORY_KEYS = [
    "train_fallback",
    "train_d_ap",
    "train_d_an",
    "train_spread",
    "valid_r_precision",
    "valid_map_at_r_best",
    "valid_map_at_r_start",
    "valid_r_precision_start",
    "valid_precision_at_1_start",
]


def schedule_callbacks(params: dict[str, Any], spec: InputSpec) -> list:
    """The learning-rate schedule ``lr_schedule`` asks for, as named callbacks.

    ``"auto"`` is the cosine schedule for images and in triplet mode
    (``params["triplets"]``), constant for labelled 2-D ``X``.
    """
    schedule = params["lr_schedule"]
    auto_cosine = spec.is_image or bool(params.get("triplets", False))
    if schedule == "cosine" or (schedule == "auto" and auto_cosine):
        from sktriplet.training.schedules import CosineLR

        return [("lr_schedule", CosineLR(warmup_epochs=1))]
    return []


def augmenter(params: dict[str, Any], spec: InputSpec):
    """The training-batch augmentation ``augment`` asks for, or ``None``.

    Samples augmented as they are read (image files, see
    :func:`~sktriplet.inputs.loading.augments_on_read`) get none on batches.
    """
    augment = params["augment"]
    if callable(augment):
        return augment
    if augments_on_read(spec, augment):
        return None
    if augment is True and not spec.is_image:
        raise ValueError(
            f"augment=True needs images, but X is 2-D with {spec.n_features} "
            "features; use augment='auto' or augment=False for tabular data."
        )
    big = spec.is_image and min(spec.image_size) >= AUTO_AUGMENT_MIN_SIZE
    if augment is True or (augment == "auto" and big):
        from sktriplet.vision.augment import RandomAffine

        return RandomAffine()
    return None


def validation_callbacks(params: dict[str, Any], valid, **options: Any) -> list:
    """Retrieval validation on a held-out dataset (none when nothing is held out).

    ``options`` go to :class:`~sktriplet.training.callbacks.RetrievalValidation`
    (e.g. ``min_gain``, ``compare_input``).
    """
    if valid is None:
        return []
    validation = RetrievalValidation(
        valid,
        valid.labels,
        distance=params["distance"],
        patience=params["n_iter_no_change"],
        **options,
    )
    return [("retrieval_validation", validation)]


def _progress_callbacks(verbose: int) -> list:
    """A batch progress bar for ``verbose >= 2`` (skorch's, over tqdm)."""
    if verbose < 2:
        return []
    if importlib.util.find_spec("tqdm") is None:
        warnings.warn(
            "verbose=2 shows a progress bar over batches, which needs tqdm "
            "(pip install tqdm); showing the per-epoch table only.",
            UserWarning,
            stacklevel=5,
        )
        return []
    from skorch.callbacks import ProgressBar

    # "count": the bar's length is the number of batches the first epoch
    # drew (PK batches, with their floor for tiny data), not len(X) / batch_size.
    return [("progress_bar", ProgressBar(batches_per_epoch="count"))]


def _routed_net_params(params: dict[str, Any], spec: InputSpec) -> dict[str, Any]:
    """``optimizer__*``, ``callbacks__*`` and ``iterator_*__*`` as skorch names them."""
    out = {f"optimizer__{k}": v for k, v in routed(params, "optimizer__").items()}
    out["callbacks__print_log__keys_ignored"] = QUIET_HISTORY_KEYS
    out.update({f"callbacks__{k}": v for k, v in routed(params, "callbacks__").items()})
    for prefix in ("iterator_train__", "iterator_valid__"):
        loader = {**loader_defaults(spec), **routed(params, prefix)}
        out.update({f"{prefix}{k}": v for k, v in loader.items()})
    return out


def make_net(
    params: dict[str, Any],
    spec: InputSpec,
    module: nn.Module,
    seed: int | None,
    device: str,
    lr: float | None = None,
    n_classes: int | None = None,
    width: int | None = None,
) -> TripletNet:
    """The (uninitialised) skorch net that trains ``module``.

    Parameters
    ----------
    params : dict
        Estimator parameters (``get_params(deep=False)``).
    spec : InputSpec
        The fitted input (for ``"auto"`` policies).
    module : torch.nn.Module
        The network (see :func:`sktriplet.training.build.build_network`).
    seed : int or None
        Seed of the PK batches.
    device : str
        A resolved torch device.
    lr : float, default=None
        The learning rate (``None``:
        :func:`~sktriplet.training.policy.resolve_lr` without the fit's
        labels, as when loading a saved model).
    n_classes, width : int, default=None
        Number of classes and embedding width, for a criterion that takes
        them (:func:`~sktriplet.training.criterion.build_criterion`).

    Returns
    -------
    TripletNet
        A :class:`~sktriplet.training.net.TripletNet`, or a
        ``DistributedTripletNet`` inside a process group of several processes.
    """
    from sktriplet.training.distributed import DistributedTripletNet, is_distributed

    net_class = DistributedTripletNet if is_distributed() else TripletNet
    verbose = resolve_verbose(params["verbose"])  # a number: "auto" only when loading
    return net_class(
        module=module,
        criterion=build_criterion(params, n_classes, width),
        optimizer=params["optimizer"],
        lr=resolve_lr(params, spec) if lr is None else lr,
        max_epochs=params["max_epochs"],
        batch_size=resolve_batch_size(params),  # a fit resolves "auto" before
        samples_per_class=params["samples_per_class"],
        seed=seed,
        precision=params["precision"],
        augment=augmenter(params, spec),
        train_split=None,
        callbacks=[
            ("mining_stats", MiningStats()),
            *schedule_callbacks(params, spec),
            *_progress_callbacks(verbose),
            *list(params["callbacks"] or []),
        ],
        device=device,
        verbose=verbose,
        **_routed_net_params(params, spec),
    )


def changed_training_params(
    net: TripletNet, params: dict[str, Any], spec: InputSpec, lr: float
) -> dict:
    """Net parameters that differ from the estimator's (for ``warm_start``).

    The learning rate and batch shape follow the current parameters; the
    network and the optimizer's state carry over. skorch updates ``lr`` in
    place, so Adam's moments survive. The verbosity is that of this fit.
    (The loss's parameters are applied by
    :func:`sktriplet.training.criterion.update_criterion`.) Returned for
    ``net.set_params``.
    """
    wanted = {
        "verbose": resolve_verbose(params["verbose"]),
        "lr": lr,
        "batch_size": params["batch_size"],
        "samples_per_class": params["samples_per_class"],
    }
    return {k: v for k, v in wanted.items() if getattr(net, k, None) != v}
