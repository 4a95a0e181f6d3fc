"""How validated samples of every kind are read: torch datasets and their loading.

:func:`make_dataset` is the one entry point from validated input (rows,
images, image files, crop boxes of image files) to a torch ``Dataset``;
training, validation, the checks after training and ``transform`` all read
their samples through it (:class:`sktriplet.inputs.training_data.TrainingData`
for ``fit``). What only the kind of input decides lives here too: whether
samples are augmented as they are read (:func:`augments_on_read`) and the
data-loader settings a kind needs (:func:`loader_defaults`).

A training dataset exposes ``labels`` (integer class codes, one per sample),
which the PK sampler reads. A dataset whose ``fetches_batches`` is true is
indexed a whole batch at a time (``dataset[indices]``), so a data loader
given a batch sampler fetches each batch with one fancy index; the others
are indexed one sample at a time and their samples collated. A dataset whose
``array`` is not ``None`` holds its samples as one in-memory array, which the
inference loop slices directly (:func:`sktriplet.runtime.inference.embed_dataset`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from sktriplet.inputs.spec import InputSpec

__all__ = ["ArrayDataset", "augments_on_read", "loader_defaults", "make_dataset"]


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
    >>> from sktriplet.inputs.loading import ArrayDataset
    >>> ds = ArrayDataset(np.arange(6.0).reshape(3, 2), np.array([0, 1, 1]))
    >>> ds[[0, 2]][1]
    tensor([0, 1])
    """

    #: Indexed with a whole batch of indices at a time.
    fetches_batches = True

    def __init__(self, X: np.ndarray, y: np.ndarray | None = None) -> None:
        self.X = X
        self._y = y  # None: zeros, made only where asked (transform needs none)

    @property
    def array(self) -> np.ndarray:
        """The samples as one in-memory array (the inference loop slices it)."""
        return self.X

    @property
    def labels(self) -> np.ndarray:
        """The integer labels (what the PK sampler draws batches from)."""
        return np.zeros(len(self.X), dtype=np.int64) if self._y is None else self._y

    y = labels

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.X)

    def __getitem__(self, index):
        """Return ``(X[index], y[index])`` as tensors."""
        X = np.ascontiguousarray(self.X[index])
        if self._y is not None:
            y = np.asarray(self._y[index])
        else:
            y = np.zeros(X.shape[:1] if X.ndim == self.X.ndim else (), dtype=np.int64)
        return torch.from_numpy(X), torch.from_numpy(y)


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
    X : numpy.ndarray or BoxTable
        Validated samples (rows or images), image file paths, or a
        :class:`~sktriplet.inputs.boxes.BoxTable` of files and crop boxes.
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
        :class:`~sktriplet.inputs.files.ImageFileDataset` for files (of crop
        boxes, for a ``BoxTable``); either is indexed a batch at a time and
        exposes ``labels``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.loading import make_dataset
    >>> from sktriplet.inputs.spec import InputSpec
    >>> ds = make_dataset(np.zeros((3, 2), np.float32), InputSpec("rows", (2,)))
    >>> len(ds), ds.array.shape
    (3, (3, 2))
    """
    if not spec.reads_files:
        return ArrayDataset(X, labels)
    from sktriplet.inputs.boxes import BoxTable
    from sktriplet.inputs.files import ImageFileDataset

    boxes = X.boxes if isinstance(X, BoxTable) else None
    return ImageFileDataset(
        X.paths if isinstance(X, BoxTable) else X,
        labels,
        image_size=spec.image_size,
        channels=spec.channels,
        train=train,
        seed=seed,
        on_error=on_error if labels is not None else "raise",
        boxes=boxes,
    )


def augments_on_read(spec: InputSpec, augment) -> bool:
    """Whether training samples are augmented as they are read (``augment`` asks for it).

    Image files (and crop boxes of them) are: ``augment="auto"`` and
    ``True`` draw a random resized crop with a horizontal flip per sample as
    it is decoded (see :mod:`sktriplet.vision.transforms`); ``False`` and a
    callable read them as ``transform`` does (a callable then runs on each
    batch). Samples in arrays never are (their augmentation, if any, runs on
    batches).

    Parameters
    ----------
    spec : InputSpec
        The fitted input.
    augment : "auto", bool or callable
        The estimator's parameter.

    Returns
    -------
    bool
    """
    return spec.reads_files and not callable(augment) and augment in ("auto", True)


def loader_defaults(spec: InputSpec) -> dict:
    """Data-loader settings the kind of input needs unless the user set them.

    Image files are decoded in :func:`~sktriplet.inputs.files.default_workers`
    worker processes (``num_workers``); arrays need nothing.

    Parameters
    ----------
    spec : InputSpec
        The fitted input.

    Returns
    -------
    dict
        Settings for skorch's ``iterator_train__*`` / ``iterator_valid__*``.
    """
    if not spec.reads_files:
        return {}
    from sktriplet.inputs.files import default_workers

    return {"num_workers": default_workers()}
