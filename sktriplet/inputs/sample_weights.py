"""``fit(..., sample_weight=w)``: the weights, checked, and carried with the training samples.

In triplet mode a weight belongs to a given triplet; with class labels to a
sample, and it weights the terms of the mined loss that the sample anchors
(see :func:`sktriplet.triplets.losses.triplet_loss`). Either way the weights
travel the same path: :class:`~sktriplet.inputs.training_data.TrainingData`
keeps them, the training dataset hands each batch's target on as the pair
``(target, weights)`` (index triplets:
:class:`~sktriplet.inputs.triplet_batches.TripletDataset`; labelled samples:
:class:`WeightedSamples` around any labelled dataset), and
:func:`sktriplet.training.criterion.call_criterion` passes them to the loss
as ``weights``. Like the rest of validation, nothing here modifies the
estimator or the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["WeightedSamples", "check_sample_weight"]


def check_sample_weight(
    sample_weight: Any, n: int, *, per: str = "triplet", kept: np.ndarray | None = None
) -> np.ndarray | None:
    """``fit(..., sample_weight=w)``, checked: one non-negative finite weight per triplet or sample.

    Parameters
    ----------
    sample_weight : array-like of shape (n,) or None
        Non-negative finite weights, not all zero (``None``: every one 1).
    n : int
        Number of triplets, or of samples given to ``fit``.
    per : {"triplet", "sample"}, default="triplet"
        What a weight belongs to (for the messages).
    kept : numpy.ndarray of int, default=None
        The positions of the samples ``fit`` kept (image files that
        ``on_error="skip"`` did not leave out): their weights are returned.

    Returns
    -------
    numpy.ndarray of float32, or None
        The weights (of the kept samples), or ``None`` when none were given.

    Raises
    ------
    ValueError
        A wrong length or shape, a negative or non-finite weight, or weights
        that are all zero (over the kept samples).

    Examples
    --------
    >>> from sktriplet.inputs.sample_weights import check_sample_weight
    >>> check_sample_weight([3, 0, 2], 3, per="sample")
    array([3., 0., 2.], dtype=float32)
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, torch.Tensor):
        sample_weight = sample_weight.detach().cpu().numpy()
    aligned = "the rows of the triplets" if per == "triplet" else "X and y"
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight must be numbers, one per {per}: {exc}") from exc
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight must hold one weight per {per}, shape ({n},); got shape "
            f"{w.shape}. Pass a 1-D array aligned with {aligned}."
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(
            "sample_weight must be finite and non-negative (e.g. vote counts, or how much "
            f"each {per} should count); it holds negative, NaN or infinite values."
        )
    if not w.any():
        raise ValueError(f"sample_weight is all zero: no {per} would train the network.")
    if kept is not None:
        w = w[kept]
        if not w.any():
            raise ValueError(
                "sample_weight is zero for every image file fit kept (on_error='skip' left "
                "the others out): no sample would train the network."
            )
    return w.astype(np.float32)


class WeightedSamples(Dataset):
    """A labelled training dataset whose targets carry the samples' weights.

    ``dataset[index]`` is ``(X, (labels, w))``: what the wrapped dataset
    returns for ``index``, with the weights of those samples (float32). The
    PK sampler reads :attr:`labels` as it reads the wrapped dataset's, and
    :meth:`set_epoch` reaches the wrapped dataset (image files augmented per
    epoch, cached views drawn per epoch).

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A labelled dataset (:func:`~sktriplet.inputs.loading.make_dataset`
        or :class:`~sktriplet.inputs.cached_views.CachedViews`): ``labels``
        and ``dataset[index] -> (X, labels)``.
    weights : array-like of shape (len(dataset),)
        A weight per sample.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.loading import ArrayDataset
    >>> from sktriplet.inputs.sample_weights import WeightedSamples
    >>> inner = ArrayDataset(np.arange(6.0).reshape(3, 2), np.array([0, 1, 1]))
    >>> x, (y, w) = WeightedSamples(inner, [2.0, 1.0, 0.5])[[0, 2]]
    >>> y.tolist(), w.tolist()
    ([0, 1], [2.0, 0.5])
    """

    def __init__(self, dataset: Dataset, weights: Any) -> None:
        self.dataset = dataset
        self.weights = np.asarray(weights, dtype=np.float32)
        if self.weights.shape != (len(dataset),):
            raise ValueError(
                f"weights must hold one weight per sample, shape ({len(dataset)},); got "
                f"shape {self.weights.shape}."
            )

    @property
    def fetches_batches(self) -> bool:
        """Whether it is indexed a whole batch at a time (as the wrapped dataset is)."""
        return bool(getattr(self.dataset, "fetches_batches", False))

    @property
    def labels(self) -> np.ndarray:
        """The wrapped dataset's integer labels (what the PK sampler draws batches from)."""
        return self.dataset.labels

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the wrapped dataset."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.dataset)

    def __getitem__(self, index):
        """``(X, (labels, weights))`` of the samples ``index``."""
        x, y = self.dataset[index]
        return x, (y, torch.from_numpy(np.asarray(self.weights[index])))
