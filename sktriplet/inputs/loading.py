"""torch ``Dataset`` objects for each kind of input.

A training dataset exposes ``labels`` (integer class codes, one per sample),
which the PK sampler reads. A dataset whose ``fetches_batches`` is true is
indexed a whole batch at a time (``dataset[indices]``), so a data loader
given a batch sampler fetches each batch with one fancy index; the others
are indexed one sample at a time and their samples collated.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from sktriplet.inputs.spec import InputSpec

__all__ = ["ArrayDataset", "make_dataset"]


class ArrayDataset(Dataset):
    """Samples and integer labels held as arrays, indexed a batch at a time.

    ``dataset[indices]`` returns ``(X[indices], y[indices])`` as tensors.

    Parameters
    ----------
    X : numpy.ndarray
        Samples, first axis indexing them.
    y : numpy.ndarray of shape (n_samples,), default=None
        Integer labels; zeros when ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.datasets import ArrayDataset
    >>> ds = ArrayDataset(np.arange(6.0).reshape(3, 2), np.array([0, 1, 1]))
    >>> ds[[0, 2]][1]
    tensor([0, 1])
    """

    #: Indexed with a whole batch of indices at a time.
    fetches_batches = True

    def __init__(self, X: np.ndarray, y: np.ndarray | None = None) -> None:
        self.X = X
        self.y = np.zeros(len(X), dtype=np.int64) if y is None else y

    @property
    def labels(self) -> np.ndarray:
        """The integer labels (what the PK sampler draws batches from)."""
        return self.y

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.X)

    def __getitem__(self, index):
        """Return ``(X[index], y[index])`` as tensors."""
        return torch.from_numpy(np.ascontiguousarray(self.X[index])), torch.from_numpy(
            np.asarray(self.y[index])
        )


def make_dataset(
    X,
    spec: InputSpec,
    labels: np.ndarray | None = None,
    *,
    train: bool = False,
    seed: int = 0,
    on_error: str = "raise",
) -> Dataset:
    """The torch dataset of validated input of any kind.

    Parameters
    ----------
    X : numpy.ndarray
        Validated samples (rows or images), or image file paths.
    spec : InputSpec
        What ``X`` is.
    labels : numpy.ndarray of int, default=None
        Class codes (training), or ``None`` (embedding).
    train : bool, default=False
        For image files: draw the training augmentation (random resized crop
        and flip) instead of the deterministic resize and centre crop.
    seed : int, default=0
        Seed of that augmentation.
    on_error : {"raise", "skip"}, default="raise"
        For image files: what an unreadable file does.

    Returns
    -------
    torch.utils.data.Dataset
        An :class:`ArrayDataset`, or an
        :class:`~sktriplet.inputs.files.ImageFileDataset` for files; either is
        indexed a batch at a time and exposes ``labels``.
    """
    if spec.kind != "paths":
        return ArrayDataset(X, labels)
    from sktriplet.inputs.files import ImageFileDataset

    return ImageFileDataset(
        X,
        labels,
        image_size=spec.image_size,
        channels=spec.channels,
        train=train,
        seed=seed,
        on_error=on_error if labels is not None else "raise",
    )
