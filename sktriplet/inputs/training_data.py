"""What one fit trains on, as torch datasets: the seam between inputs and training.

:class:`TrainingData` is built from validated input (an
:class:`~sktriplet.inputs.spec.InputSpec`, the samples, their class codes or
index triplets), the estimator's parameters and the fit's seed. It holds out
the validation samples (:func:`split_validation`) and hands training
everything it needs as datasets and numbers: the training dataset (PK-batched
samples, or batches of index triplets), the held-out dataset, the probe (the
first training samples, on which the network's output width and, after
training, its finiteness are checked), the input statistics and whether
samples are augmented as they are read. Training never sees the samples
themselves, and never asks what kind of input they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from sktriplet.inputs.cached_views import CachedViews
from sktriplet.inputs.loading import augments_on_read, make_dataset
from sktriplet.inputs.sample_weights import WeightedSamples
from sktriplet.inputs.spec import InputSpec
from sktriplet.inputs.statistics import input_statistics
from sktriplet.inputs.triplet_batches import ArraySamples, DatasetSamples, TripletDataset

__all__ = ["PROBE_SIZES", "TrainingData", "split_validation"]

#: Training samples a probe holds, by kind: the check after training embeds
#: them (images cost a convolutional forward pass, files also decoding: fewer).
PROBE_SIZES = {"rows": 1024, "images": 256, "paths": 64, "boxes": 64}


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

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.training_data import split_validation
    >>> held = split_validation(np.repeat(np.arange(10), 3), 0.2, "class", seed=0)
    >>> int(held.sum()), len(np.unique(np.repeat(np.arange(10), 3)[held]))
    (6, 2)
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


class TrainingData:
    """The datasets, statistics and facts one fit trains on.

    Parameters
    ----------
    spec : InputSpec
        What the samples are.
    X : numpy.ndarray or BoxTable
        Validated samples (as :func:`~sktriplet.inputs.validation.validate_fit`
        returns them): rows, images, image file paths or crop boxes.
    codes : numpy.ndarray of int or None, default=None
        Class codes, one per sample; ``None`` with ``triplets``.
    triplets : numpy.ndarray of shape (n_triplets, 3), default=None
        Index triplets into ``X`` (triplet mode: no labels, no hold-out).
    weights : numpy.ndarray of shape (n_triplets,) or (n_samples,), default=None
        ``fit(..., sample_weight=w)`` (``None``: all 1): a weight per
        triplet with ``triplets``, else a weight per sample of ``X`` (the
        training samples' weights go with their labels to the mined loss;
        held-out samples are validated unweighted).
    params : dict, default=None
        Estimator parameters: ``augment``, ``on_error``, ``scaling``,
        ``validation_fraction`` and ``validation_split`` are read.
    seed : int, default=0
        The fit's seed (hold-out draw, augmentation as files are read).
    held : numpy.ndarray of bool or "split", default="split"
        Held-out samples; ``"split"`` draws them with
        :func:`split_validation` from ``params`` (none in triplet mode).
    views : bool, default=False
        ``X`` is an array ``(n_samples, n_views, width)`` of cached views
        (see :meth:`with_samples`): training draws one view per sample and
        epoch, everything else reads view 0.

    Attributes
    ----------
    held : numpy.ndarray of bool or None
        ``True`` for the samples held out for validation.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.spec import InputSpec
    >>> from sktriplet.inputs.training_data import TrainingData
    >>> X = np.arange(24, dtype=np.float32).reshape(12, 2)
    >>> data = TrainingData(InputSpec("rows", (2,)), X, np.repeat(np.arange(4), 3),
    ...                     params={"validation_fraction": 0.5}, seed=0)
    >>> len(data.train_dataset()), len(data.valid_dataset()), data.n_classes
    (6, 6, 4)
    """

    def __init__(
        self,
        spec: InputSpec,
        X: Any,
        codes: np.ndarray | None = None,
        *,
        triplets: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        held: np.ndarray | None | str = "split",
        views: bool = False,
    ) -> None:
        if views and triplets is not None:
            raise ValueError("cached views need labelled samples, not triplets.")
        self.spec = spec
        self.views = bool(views)
        self._X = X
        self.codes = codes
        self.triplets = triplets
        self.weights = weights
        if weights is not None:
            per, n = ("triplet", len(triplets)) if triplets is not None else ("sample", len(X))
            if np.shape(weights) != (n,):
                raise ValueError(
                    f"weights must hold one weight per {per}, shape ({n},); got shape "
                    f"{np.shape(weights)}."
                )
        self.params = dict(params or {})
        self.seed = int(seed)
        if isinstance(held, str):
            held = None
            if triplets is None:
                held = split_validation(
                    codes,
                    self.params.get("validation_fraction"),
                    self.params.get("validation_split", "class"),
                    self.seed,
                )
        self.held = held

    # ------------------------------------------------------------------ facts
    @property
    def labelled(self) -> bool:
        """Whether samples have class labels (``False`` in triplet mode)."""
        return self.codes is not None

    @property
    def n_classes(self) -> int | None:
        """Number of classes (codes ``0 .. n_classes - 1``), ``None`` without labels."""
        return None if self.codes is None else int(self.codes.max()) + 1

    @property
    def train_codes(self) -> np.ndarray | None:
        """Class codes of the training samples (after the hold-out)."""
        if self.codes is None:
            return None
        return self.codes if self.held is None else self.codes[~self.held]

    @property
    def augments_on_read(self) -> bool:
        """Whether training samples are augmented as they are read (image files)."""
        return augments_on_read(self.spec, self.params.get("augment", "auto"))

    def _train_samples(self):
        return self._X if self.held is None else self._X[~self.held]

    def _train_rows(self) -> np.ndarray:
        n = len(self.codes)
        return np.arange(n) if self.held is None else np.flatnonzero(~self.held)

    # --------------------------------------------------------------- datasets
    def train_dataset(self) -> Dataset:
        """The training dataset: labelled samples for PK batches, or index triplets.

        Image files are read with the training augmentation when
        :attr:`augments_on_read`. With :attr:`weights`, each batch's target
        is the pair ``(labels or triplets, weights)``
        (:class:`~sktriplet.inputs.sample_weights.WeightedSamples`,
        :class:`~sktriplet.inputs.triplet_batches.TripletDataset`).
        """
        train = self.augments_on_read
        if self.triplets is not None:
            if self.spec.reads_files:
                dataset = make_dataset(self._X, self.spec, train=train, seed=self.seed)
                samples = DatasetSamples(dataset)
            else:
                samples = ArraySamples(self._X)
            return TripletDataset(self.triplets, samples, weights=self.weights)
        if self.views:
            dataset = CachedViews(
                self._X, self._train_rows(), self.train_codes, view=None, seed=self.seed
            )
        else:
            dataset = make_dataset(
                self._train_samples(),
                self.spec,
                self.train_codes,
                train=train,
                seed=self.seed,
                on_error=self.params.get("on_error", "raise"),
            )
        if self.weights is None:
            return dataset
        return WeightedSamples(dataset, self.weights[self._train_rows()])

    def valid_dataset(self) -> Dataset | None:
        """The held-out samples (their codes as ``labels``), read as ``transform`` reads them."""
        if self.held is None:
            return None
        if self.views:
            return CachedViews(self._X, np.flatnonzero(self.held), self.codes[self.held])
        return make_dataset(self._X[self.held], self.spec, self.codes[self.held])

    def probe(self) -> Dataset:
        """The first training samples (:data:`PROBE_SIZES`), read as ``transform`` reads them."""
        n = PROBE_SIZES[self.spec.kind]
        if self.views:
            return CachedViews(self._X, self._train_rows()[:n])
        return make_dataset(self._train_samples()[:n], self.spec)

    def all_samples(self) -> Dataset:
        """Every sample, in order, read as ``transform`` reads them (for feature caching)."""
        if self.views:
            return CachedViews(self._X)
        return make_dataset(self._X, self.spec)

    # -------------------------------------------------------------- statistics
    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """The data-fitted input standardisation (``scaling="auto"`` resolved).

        Of all samples (held-out ones included), or in triplet mode of the
        distinct samples the triplets use.
        """
        X = self._X if self.triplets is None else self._X[np.unique(self.triplets)]
        return input_statistics(X, self.spec, self.params.get("scaling", "auto"))

    def with_samples(self, samples: np.ndarray) -> TrainingData:
        """The same fit (codes, hold-out, triplets, seed) over other samples.

        Parameters
        ----------
        samples : numpy.ndarray
            One entry per sample, in the order of these samples: e.g. the
            features a frozen part of the network computed for
            :meth:`all_samples`, as rows (2-D) or images (4-D); or cached
            views of them, ``(n_samples, n_views, width)`` (3-D): training
            then draws one view per sample and epoch
            (:class:`~sktriplet.inputs.cached_views.CachedViews`). They are
            not augmented otherwise.

        Returns
        -------
        TrainingData
            Over ``samples``.
        """
        views = samples.ndim == 3
        shape = samples.shape[2:] if views else samples.shape[1:]
        kind = "rows" if len(shape) == 1 else "images"
        spec = InputSpec(kind, shape, dtype=str(samples.dtype))
        params = {**self.params, "augment": False}
        return TrainingData(
            spec,
            samples,
            self.codes,
            triplets=self.triplets,
            weights=self.weights,
            params=params,
            seed=self.seed,
            held=self.held,
            views=views,
        )

    def holding_out_classes(self, fraction: float) -> TrainingData:
        """The same fit with a class-disjoint hold-out of ``fraction`` of the classes.

        Drawn by :func:`split_validation` (``"class"``) from the fit's seed,
        as ``validation_fraction`` would draw it.

        Parameters
        ----------
        fraction : float
            Fraction of the classes to hold out (at least 2 classes).

        Returns
        -------
        TrainingData

        Raises
        ------
        ValueError
            With fewer than 4 classes of 2 or more samples, or in triplet mode.
        """
        if self.codes is None:
            raise ValueError("a class-disjoint hold-out needs labelled samples.")
        held = split_validation(self.codes, fraction, "class", self.seed)
        return TrainingData(
            self.spec,
            self._X,
            self.codes,
            weights=self.weights,
            params=self.params,
            seed=self.seed,
            held=held,
            views=self.views,
        )
