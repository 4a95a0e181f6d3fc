"""Train a network on validated data: split, build or continue, train, check.

:func:`train` is everything ``TripletEmbedder.fit`` does between validating
its input and storing the result: it draws the seed, holds out validation
data, builds a fresh network (or continues a warm-started one), runs skorch's
loop and checks the trained network's output. It returns a :class:`FitResult`
and assigns nothing to the estimator, so a failed fit leaves the estimator as
it was; a warm-started net that fails is rolled back to its state before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sktriplet.inputs.datasets import make_dataset
from sktriplet.inputs.spec import InputSpec
from sktriplet.inputs.triplets import ArraySamples, DatasetSamples, TripletDataset
from sktriplet.runtime.inference import TRANSFORM_BATCH_SIZE, embed, embed_dataset
from sktriplet.training.build import build_network, check_network_output, input_statistics
from sktriplet.training.cached import can_cache_features, train_on_cached_features
from sktriplet.training.errors import check_finite_embeddings
from sktriplet.training.factory import (
    changed_training_params,
    dataset_augments,
    make_net,
    schedule_callbacks,
    validation_callbacks,
)
from sktriplet.training.net import TripletNet
from sktriplet.training.policy import resolve_lr, resolve_scaling

__all__ = ["FitResult", "draw_seed", "split_validation", "train", "triplet_dataset"]

#: Callbacks a warm-started fit replaces with its own.
_PER_FIT_CALLBACKS = ("retrieval_validation", "lr_schedule")


@dataclass
class FitResult:
    """What :func:`train` produced.

    Attributes
    ----------
    net : TripletNet
        The trained skorch net.
    n_components : int
        Width of the embedding.
    held : numpy.ndarray of bool or None
        Which samples were held out for validation.
    best_epoch, best_score : int or None, float or None
        With validation: the epoch whose weights were kept and its MAP@R.
    """

    net: TripletNet
    n_components: int
    held: np.ndarray | None = None
    best_epoch: int | None = None
    best_score: float | None = None


def draw_seed(random_state: Any) -> int:
    """The seed of a fit, drawn from ``random_state`` (the same on every process)."""
    from sklearn.utils import check_random_state

    from sktriplet.training.distributed import broadcast_seed

    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    return broadcast_seed(seed)


def split_validation(
    codes: np.ndarray, fraction: float | None, split: str, seed: int
) -> np.ndarray | None:
    """Boolean mask of the samples held out for validation (or ``None``).

    Parameters
    ----------
    codes : numpy.ndarray of int
        Class codes of the training samples.
    fraction : float or None
        ``validation_fraction``.
    split : {"class", "sample"}
        Hold out whole classes, or a stratified fraction of each class.
    seed : int
        Seed of the draw.

    Returns
    -------
    numpy.ndarray of bool or None
        ``True`` for held-out samples.
    """
    if fraction is None:
        return None
    rng = np.random.default_rng([seed, 1])
    counts = np.bincount(codes)
    if split == "class":
        candidates = rng.permutation(np.flatnonzero(counts >= 2))
        n_valid = min(max(int(round(fraction * len(counts))), 2), len(candidates) - 2)
        if n_valid < 2:
            raise ValueError(
                f"validation_split='class' needs at least 4 classes with 2 or more "
                f"samples (2 to validate, 2 to train); y has {len(candidates)}. Use "
                "validation_split='sample' or validation_fraction=None."
            )
        return np.isin(codes, candidates[:n_valid])
    held = np.zeros(len(codes), dtype=bool)
    for c in np.flatnonzero(counts >= 4):
        members = rng.permutation(np.flatnonzero(codes == c))
        take = min(max(int(round(fraction * len(members))), 2), len(members) - 2)
        held[members[:take]] = True
    if not held.any():
        raise ValueError(
            "validation_split='sample' needs classes with at least 4 samples "
            "(2 to validate, 2 to train); use validation_fraction=None."
        )
    return held


#: Training samples embedded after training to check the output is finite
#: (images cost a convolutional forward pass, files also decoding: fewer).
_CHECKED_ROWS, _CHECKED_IMAGES, _CHECKED_FILES = TRANSFORM_BATCH_SIZE, 256, 64


def _check_finite_output(net: TripletNet, X, spec: InputSpec) -> None:
    """Raise if the trained network embeds training samples to non-finite values."""
    if spec.kind == "paths":
        out = embed_dataset(net, make_dataset(X[:_CHECKED_FILES], spec))
    else:
        n = _CHECKED_IMAGES if spec.is_image else _CHECKED_ROWS
        out = embed(net.module_, X[:n], device=net.device)
    check_finite_embeddings(out, net=net)


def triplet_dataset(
    samples, spec: InputSpec, triplets: np.ndarray, *, train: bool = False, seed: int = 0
) -> TripletDataset:
    """The training dataset of index triplets over validated samples.

    Parameters
    ----------
    samples : numpy.ndarray
        Validated samples (rows, images, or image file paths).
    spec : InputSpec
        What they are.
    triplets : numpy.ndarray of shape (n_triplets, 3)
        Index triplets into ``samples``.
    train : bool, default=False
        For image files: read them with the training augmentation.
    seed : int, default=0
        Seed of that augmentation.

    Returns
    -------
    TripletDataset
        Batches ``(distinct samples, (m, 3) triplets into them)``.
    """
    if spec.kind == "paths":
        source = DatasetSamples(make_dataset(samples, spec, train=train, seed=seed))
    else:
        source = ArraySamples(samples)
    return TripletDataset(triplets, source)


def _check_triplet_mode(params: dict[str, Any], triplets) -> None:
    from sktriplet.training.distributed import is_distributed

    if triplets is not None and is_distributed():
        raise ValueError(
            "triplets=True does not train inside a torch.distributed process group yet "
            "(batches of triplets are not sharded across processes); fit on one process."
        )


@dataclass
class _Fit:
    """What one fit trains on: parameters, data, split, seed, device, learning rate."""

    params: dict[str, Any]
    spec: InputSpec
    X: Any
    codes: np.ndarray | None
    held: np.ndarray | None
    seed: int
    device: str
    triplets: np.ndarray | None = None

    @property
    def train_mask(self):
        return slice(None) if self.held is None else ~self.held

    @property
    def n_classes(self) -> int | None:
        return None if self.codes is None else int(self.codes.max()) + 1

    @property
    def lr(self) -> float:
        codes = None if self.codes is None else self.codes[self.train_mask]
        return resolve_lr(self.params, self.spec, codes)

    def training_dataset(self):
        train = dataset_augments(self.params, self.spec)
        if self.triplets is not None:
            return triplet_dataset(self.X, self.spec, self.triplets, train=train, seed=self.seed)
        return make_dataset(
            self.X[self.train_mask],
            self.spec,
            self.codes[self.train_mask],
            train=train,
            seed=self.seed,
            on_error=self.params.get("on_error", "raise"),
        )

    def valid(self) -> tuple:
        """Held-out samples for validation: an array, or a dataset of files."""
        if self.held is None:
            return None, None
        if self.spec.kind == "paths":
            return make_dataset(self.X[self.held], self.spec), self.codes[self.held]
        return self.X[self.held], self.codes[self.held]

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """The data-fitted input standardisation (``scaling="auto"`` resolved).

        In triplet mode, of the distinct samples the triplets use.
        """
        X = self.X if self.triplets is None else self.X[np.unique(self.triplets)]
        scaling = self.params["scaling"]
        if scaling == "auto":
            scaling = "feature" if self.spec.kind == "paths" else resolve_scaling(scaling, X)
        return input_statistics(X, self.spec, scaling)


def _fresh(fit: _Fit) -> tuple[TripletNet, int]:
    params, spec = fit.params, fit.spec
    module = build_network(spec, params, fit.statistics)
    sample = make_dataset(fit.X[:2], spec)[[0, 1]][0]
    width = check_network_output(module, sample, params["n_components"])
    if fit.triplets is None and can_cache_features(module, params):
        return train_on_cached_features(fit, module, width)
    net = make_net(
        params, spec, module, fit.seed, fit.device, lr=fit.lr, n_classes=fit.n_classes, width=width
    )
    net.callbacks = list(net.callbacks) + validation_callbacks(params, *fit.valid())
    net.initialize()
    net.partial_fit(fit.training_dataset(), None)
    _check_finite_output(net, fit.X[fit.train_mask], spec)
    return net, width


def _continue(net: TripletNet, fit: _Fit) -> None:
    params, spec = fit.params, fit.spec
    if getattr(net, "rng_state_", None) is not None:
        # Continue the torch random stream (dropout) where the last epoch
        # ended: a resumed fit then equals an uninterrupted one.
        torch.set_rng_state(net.rng_state_)
    net.set_params(
        seed=fit.seed,
        max_epochs=params["max_epochs"],
        precision=params["precision"],
        **changed_training_params(net, params, spec, fit.lr),
    )
    kept = [
        cb for cb in net.callbacks if not (isinstance(cb, tuple) and cb[0] in _PER_FIT_CALLBACKS)
    ]
    valid = validation_callbacks(params, *fit.valid())
    net.callbacks = kept + schedule_callbacks(params, spec) + valid
    net.initialize_callbacks()
    net.partial_fit(fit.training_dataset(), None)
    _check_finite_output(net, fit.X[fit.train_mask], spec)


def train(
    params: dict[str, Any],
    spec: InputSpec,
    X: np.ndarray,
    codes: np.ndarray | None,
    *,
    device: str,
    warm: tuple[TripletNet, int] | None = None,
    triplets: np.ndarray | None = None,
) -> FitResult:
    """Train a network on validated samples and integer class codes, or on triplets.

    Parameters
    ----------
    params : dict
        Estimator parameters (``get_params(deep=False)``).
    spec : InputSpec
        What ``X`` is.
    X : numpy.ndarray
        Validated samples (or image file paths).
    codes : numpy.ndarray of int or None
        Class codes, one per sample (``None`` with ``triplets``).
    device : str
        A resolved torch device.
    warm : tuple of (TripletNet, int), default=None
        A fitted net to continue training and its embedding width
        (``warm_start``); on failure it is restored to its state before.
    triplets : numpy.ndarray of shape (n_triplets, 3), default=None
        Index triplets into ``X`` (triplet mode): batches of
        ``batch_size`` triplets, each embedding its distinct samples once,
        and no validation split.

    Returns
    -------
    FitResult
        The trained net and what the estimator records from it.
    """
    _check_triplet_mode(params, triplets)
    seed = draw_seed(params["random_state"])
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    snapshot = warm[0].snapshot() if warm is not None else None
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            held = None
            if triplets is None:
                held = split_validation(
                    codes, params["validation_fraction"], params["validation_split"], seed
                )
            fit = _Fit(params, spec, X, codes, held, seed, device, triplets)
            if warm is None:
                net, width = _fresh(fit)
            else:
                net, width = warm
                _continue(net, fit)
    except BaseException:
        if snapshot is not None:
            warm[0].restore(snapshot)
        raise
    result = FitResult(net, width, held)
    validation = dict(net.callbacks_).get("retrieval_validation")
    if validation is not None and validation.best_score_ > -np.inf:
        result.best_epoch, result.best_score = validation.best_epoch_, validation.best_score_
    return result
