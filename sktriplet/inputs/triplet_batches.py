"""Explicit triplets as input: validation, batch collation and a torch Dataset.

Two forms of input carry judgements "anchor is more like positive than like
negative" without class labels:

* **index triplets** ``I`` of shape ``(n_triplets, 3)``: integer indices into
  a collection of ``samples`` (an array, or any :class:`SampleSource`, such
  as image files read on demand); cross-validation then splits the
  triplets while the samples stay whole;
* **triplet rows** ``T`` of shape ``(n_triplets, 3, *sample_shape)``: the
  three samples of each triplet themselves, as in metric-learn.

A batch of index triplets is collated into the *unique* samples it touches
(each embedded once) and the triplets remapped to positions in that list;
:class:`TripletDataset` does this with one fancy index per batch, and yields
``(X_unique, idx)`` with ``idx`` of shape ``(m, 3)``: the target
:class:`sktriplet.triplets.losses.TripletLoss` accepts. Triplet rows become
index triplets over their ``3 * n_triplets`` rows (:func:`flatten_triplet_rows`;
samples are unique by position there).

Pure NumPy and torch: nothing here imports scikit-learn or skorch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "ArraySamples",
    "DatasetSamples",
    "SampleSource",
    "TripletBatchSampler",
    "TripletDataset",
    "as_sample_source",
    "check_triplet_indices",
    "check_triplet_rows",
    "collate_triplets",
    "dedupe_triplet_rows",
    "flatten_triplet_rows",
    "unique_triplet_batch",
]

_ROLES = ("anchor", "positive", "negative")


@runtime_checkable
class SampleSource(Protocol):
    """A collection of samples that index triplets point into.

    Anything with ``len(source)`` and ``source.take(ids)``, returning the
    samples ``ids`` (a 1-D int64 array) stacked along a first axis, as a
    tensor or an array.
    """

    def __len__(self) -> int:
        """Number of samples."""
        ...

    def take(self, ids: np.ndarray) -> torch.Tensor | np.ndarray:
        """The samples ``ids``, stacked along a new first axis."""
        ...


class ArraySamples:
    """An array or tensor as a :class:`SampleSource` (rows along the first axis).

    Parameters
    ----------
    data : numpy.ndarray or torch.Tensor
        The samples.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.triplet_batches import ArraySamples
    >>> ArraySamples(np.arange(6).reshape(3, 2)).take(np.array([2, 0]))
    tensor([[4, 5],
            [0, 1]])
    """

    def __init__(self, data: np.ndarray | torch.Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.data)

    def take(self, ids: np.ndarray) -> torch.Tensor:
        """The rows ``ids`` as a tensor (one fancy index)."""
        if isinstance(self.data, torch.Tensor):
            return self.data[torch.as_tensor(ids, device=self.data.device)]
        return torch.from_numpy(np.ascontiguousarray(self.data[ids]))


class DatasetSamples:
    """A dataset indexed a batch at a time as a :class:`SampleSource`.

    ``take(ids)`` is ``dataset[ids][0]``: the samples of a dataset whose items
    are ``(sample, label)`` and which stacks a batch when given a list of
    indices (as :class:`sktriplet.inputs.loading.ArrayDataset` and
    :class:`sktriplet.inputs.files.ImageFileDataset` do). ``set_epoch`` is
    passed on, so image files read with a training augmentation draw a new
    one every epoch.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        The dataset.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.loading import ArrayDataset
    >>> from sktriplet.inputs.triplet_batches import DatasetSamples
    >>> DatasetSamples(ArrayDataset(np.arange(6).reshape(3, 2))).take(np.array([2, 0]))
    tensor([[4, 5],
            [0, 1]])
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.dataset)

    def take(self, ids: np.ndarray) -> torch.Tensor:
        """The samples ``ids``, stacked (one batch fetch)."""
        return self.dataset[np.asarray(ids, dtype=np.int64)][0]

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the dataset (when it draws augmentation per epoch)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def as_sample_source(samples: Any) -> SampleSource:
    """Wrap ``samples`` as a :class:`SampleSource`.

    Parameters
    ----------
    samples : array-like, torch.Tensor or SampleSource
        Arrays, tensors and array-likes (lists, DataFrames) index along their
        first axis; an object with ``__len__`` and ``take`` is used as it is.

    Returns
    -------
    SampleSource

    Raises
    ------
    TypeError
        If ``samples`` is none of these.
    """
    if isinstance(samples, (np.ndarray, torch.Tensor)):
        return ArraySamples(samples)
    if isinstance(samples, SampleSource) and not hasattr(samples, "__array__"):
        return samples
    if hasattr(samples, "__array__") or isinstance(samples, (list, tuple)):
        return ArraySamples(np.asarray(samples))
    raise TypeError(
        "samples (what index triplets point into) must be an array, a tensor or an object "
        f"with __len__ and take(ids); got {type(samples).__name__}."
    )


def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def check_triplet_indices(triplets: Any, n_samples: int, *, min_triplets: int = 1) -> np.ndarray:
    """Check index triplets against ``n_samples`` samples; never modifies them.

    Parameters
    ----------
    triplets : array-like of shape (n_triplets, 3)
        Rows ``(anchor, positive, negative)`` of integer indices into the
        samples.
    n_samples : int
        Number of samples the indices point into.
    min_triplets : int, default=1
        Fewest triplets accepted.

    Returns
    -------
    numpy.ndarray of shape (n_triplets, 3), dtype int64

    Raises
    ------
    ValueError
        On a wrong shape, non-integer indices, an index out of
        ``[0, n_samples)``, an anchor equal to its positive, a negative equal
        to its anchor or positive, or fewer than ``min_triplets`` triplets;
        the message names the first offending row.

    Examples
    --------
    >>> from sktriplet.inputs.triplet_batches import check_triplet_indices
    >>> check_triplet_indices([[0, 1, 2], [2, 3, 0]], 4).tolist()
    [[0, 1, 2], [2, 3, 0]]
    >>> check_triplet_indices([[0, 1, 4]], 4)
    Traceback (most recent call last):
    ...
    ValueError: triplet index 4 in row 0 (negative) is out of range for 4 samples: \
indices must lie in [0, 3] (1 index out of range).
    """
    arr = _as_numpy(triplets)
    if arr.ndim != 2 or arr.shape[1] != 3:
        hint = (
            " It looks like triplet rows (n_triplets, 3, *sample_shape); those are passed "
            "without samples."
            if arr.ndim >= 3 and arr.shape[1] == 3
            else ""
        )
        raise ValueError(
            "index triplets must have shape (n_triplets, 3): one row (anchor, positive, "
            f"negative) of indices into the samples; got shape {arr.shape}.{hint}"
        )
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"index triplets must hold integers (indices into the samples); got dtype "
            f"{arr.dtype}. Cast whole-number indices with .astype(int)."
        )
    _check_count(len(arr), min_triplets)
    bad = (arr < 0) | (arr >= n_samples)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        count = int(bad.sum())
        raise ValueError(
            f"triplet index {arr[row, col]} in row {row} ({_ROLES[col]}) is out of range for "
            f"{n_samples} samples: indices must lie in [0, {n_samples - 1}] ({count} "
            f"ind{'ex' if count == 1 else 'ices'} out of range)."
        )
    _check_distinct(
        arr[:, 0] == arr[:, 1],
        (arr[:, 2] == arr[:, 0]) | (arr[:, 2] == arr[:, 1]),
        lambda r: f"row {r}, {arr[r].tolist()}",
    )
    return arr.astype(np.int64, copy=False)


def check_triplet_rows(triplets: Any, *, min_triplets: int = 1) -> np.ndarray:
    """Check triplet rows ``(n_triplets, 3, *sample_shape)``; never modifies them.

    Parameters
    ----------
    triplets : array-like of shape (n_triplets, 3) + sample_shape
        Axis 1 holds the anchor, positive and negative samples.
    min_triplets : int, default=1
        Fewest triplets accepted.

    Returns
    -------
    numpy.ndarray
        The rows as an array.

    Raises
    ------
    ValueError
        On a wrong shape, non-numeric or non-finite values, an anchor
        identical to its positive, a negative identical to its anchor or
        positive, or fewer than ``min_triplets`` triplets.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.triplet_batches import check_triplet_rows
    >>> check_triplet_rows(np.zeros((5, 2, 4)))
    Traceback (most recent call last):
    ...
    ValueError: triplet rows must have shape (n_triplets, 3, *sample_shape), axis 1 \
holding (anchor, positive, negative); got shape (5, 2, 4).
    """
    arr = _as_numpy(triplets)
    if arr.ndim < 3 or arr.shape[1] != 3:
        hint = (
            " It looks like index triplets; pass the samples they index as samples=..."
            if arr.ndim == 2 and arr.shape[1] == 3 and arr.dtype.kind in "iu"
            else ""
        )
        raise ValueError(
            "triplet rows must have shape (n_triplets, 3, *sample_shape), axis 1 holding "
            f"(anchor, positive, negative); got shape {arr.shape}.{hint}"
        )
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"triplet rows must be numeric; got dtype {arr.dtype}.")
    _check_count(len(arr), min_triplets)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))[0, 0])
        raise ValueError(f"triplet rows contain NaN or infinity (first in triplet {row}).")
    flat = arr.reshape(len(arr), 3, -1)
    same = [(flat[:, i] == flat[:, j]).all(axis=1) for i, j in ((0, 1), (2, 0), (2, 1))]
    _check_distinct(same[0], same[1] | same[2], lambda r: f"triplet {r}, identical rows")
    return arr


def _check_count(n: int, min_triplets: int) -> None:
    if n < min_triplets:
        raise ValueError(
            f"got {n} triplets; at least {min_triplets} needed."
            + (" Pass one triplet (anchor, positive, negative) per row." if n == 0 else "")
        )


def _check_distinct(same_ap: np.ndarray, same_n: np.ndarray, where) -> None:
    for bad, what in (
        (same_ap, "anchor == positive"),
        (same_n, "a negative equal to their anchor or positive"),
    ):
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} triplets have {what} (first: {where(int(np.argmax(bad)))}): "
                "a triplet needs three different samples; drop those rows."
            )


def unique_triplet_batch(triplets: np.ndarray | torch.Tensor):
    """The distinct samples of a batch of index triplets, and the triplets remapped.

    Parameters
    ----------
    triplets : numpy.ndarray or torch.Tensor of shape (n, 3)
        Integer indices into a sample collection.

    Returns
    -------
    ids : numpy.ndarray or torch.Tensor of shape (m,)
        The distinct indices, increasing (``m <= 3 n``).
    local : numpy.ndarray or torch.Tensor of shape (n, 3), int64
        ``ids[local] == triplets``: the triplets as positions in ``ids``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.triplet_batches import unique_triplet_batch
    >>> ids, local = unique_triplet_batch(np.array([[7, 3, 9], [3, 7, 5]]))
    >>> ids.tolist(), local.tolist()
    ([3, 5, 7, 9], [[2, 0, 3], [0, 2, 1]])
    """
    if isinstance(triplets, torch.Tensor):
        ids, inverse = torch.unique(triplets, return_inverse=True)
        return ids, inverse.view(triplets.shape).long()
    ids, inverse = np.unique(triplets, return_inverse=True)
    return ids, inverse.reshape(np.shape(triplets)).astype(np.int64)


def flatten_triplet_rows(triplets: np.ndarray | torch.Tensor):
    """Triplet rows as ``3 n`` samples and index triplets into them.

    Parameters
    ----------
    triplets : numpy.ndarray or torch.Tensor of shape (n, 3) + sample_shape
        Triplet rows.

    Returns
    -------
    samples : numpy.ndarray or torch.Tensor of shape (3 n,) + sample_shape
        Anchor, positive and negative of triplet 0, then of triplet 1, ...
        (a view where possible).
    indices : numpy.ndarray of shape (n, 3), int64
        ``[[0, 1, 2], [3, 4, 5], ...]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.triplet_batches import flatten_triplet_rows
    >>> X, idx = flatten_triplet_rows(np.zeros((2, 3, 4)))
    >>> X.shape, idx.tolist()
    ((6, 4), [[0, 1, 2], [3, 4, 5]])
    """
    n = triplets.shape[0]
    samples = triplets.reshape(3 * n, *triplets.shape[2:])
    return samples, np.arange(3 * n, dtype=np.int64).reshape(n, 3)


def dedupe_triplet_rows(samples: np.ndarray, triplets: np.ndarray):
    """Merge identical samples: distinct samples and the triplets remapped to them.

    Triplet rows repeat a sample wherever it takes part in several
    triplets; merging the copies lets a batch embed it once and lets the
    miners see that it is one sample (a candidate negative equal to the
    anchor is the anchor).

    Parameters
    ----------
    samples : numpy.ndarray of shape (n,) + sample_shape
        Samples, possibly with repeats (e.g. from :func:`flatten_triplet_rows`).
    triplets : numpy.ndarray of shape (n_triplets, 3)
        Index triplets into ``samples``.

    Returns
    -------
    distinct : numpy.ndarray of shape (m,) + sample_shape
        Each distinct sample once, in the order of first appearance.
    triplets : numpy.ndarray of shape (n_triplets, 3), int64
        ``distinct[triplets] == samples[old triplets]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.triplet_batches import dedupe_triplet_rows, flatten_triplet_rows
    >>> rows = np.array([[[0.0], [1.0], [2.0]], [[1.0], [0.0], [3.0]]])
    >>> distinct, idx = dedupe_triplet_rows(*flatten_triplet_rows(rows))
    >>> distinct.ravel().tolist(), idx.tolist()
    ([0.0, 1.0, 2.0, 3.0], [[0, 1, 2], [1, 0, 3]])
    """
    n = len(samples)
    flat = np.ascontiguousarray(samples.reshape(n, -1))
    # One opaque key per sample: a sort of byte strings, no float comparison.
    keys = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    remap = rank[inverse.ravel()]
    return samples[np.sort(first)], remap[triplets].astype(np.int64)


class TripletDataset(Dataset):
    """Index triplets over a sample collection; a batch is one fancy index.

    ``dataset[ids]`` (``ids`` a list or array of triplet numbers, as a batch
    sampler yields them) returns ``(X, idx)``: ``X`` the distinct samples
    of those triplets, each once, and ``idx`` of shape ``(len(ids), 3)``
    their triplets as positions in ``X``. ``dataset[i]`` is the batch of one
    triplet. With a :class:`torch.utils.data.DataLoader`, pass a batch
    sampler as ``sampler`` and ``batch_size=None`` (or use the default
    collation with :func:`collate_triplets`).

    Parameters
    ----------
    triplets : array-like of shape (n_triplets, 3)
        Index triplets (validated with :func:`check_triplet_indices`).
    samples : array-like, torch.Tensor or SampleSource
        What the indices point into (see :func:`as_sample_source`).

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.triplet_batches import TripletDataset
    >>> X = np.arange(10.0).reshape(5, 2)
    >>> data = TripletDataset([[0, 1, 2], [1, 0, 4]], X)
    >>> Xb, idx = data[[0, 1]]
    >>> Xb.tolist(), idx.tolist()
    ([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [8.0, 9.0]], [[0, 1, 2], [1, 0, 3]])
    """

    #: Indexed with a whole batch of triplet numbers at a time (no collation).
    fetches_batches = True

    def __init__(self, triplets: Any, samples: Any) -> None:
        self.samples = as_sample_source(samples)
        self.triplets = check_triplet_indices(triplets, len(self.samples), min_triplets=0)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the samples (image files augmented per epoch)."""
        if hasattr(self.samples, "set_epoch"):
            self.samples.set_epoch(epoch)

    @classmethod
    def from_rows(cls, rows: Any) -> TripletDataset:
        """A dataset over triplet rows ``(n_triplets, 3, *sample_shape)``.

        Parameters
        ----------
        rows : array-like of shape (n_triplets, 3) + sample_shape
            Checked with :func:`check_triplet_rows` (no minimum count).

        Returns
        -------
        TripletDataset
            Over the ``3 * n_triplets`` rows (unique by position).
        """
        samples, indices = flatten_triplet_rows(check_triplet_rows(rows, min_triplets=0))
        return cls(indices, samples)

    def __len__(self) -> int:
        """Number of triplets."""
        return len(self.triplets)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        """``(X_unique, idx)`` of triplet ``index`` (an int, a slice or several)."""
        chosen = np.atleast_1d(np.arange(len(self.triplets))[index])
        ids, local = unique_triplet_batch(self.triplets[chosen])
        return _as_tensor(self.samples.take(ids)), torch.from_numpy(local)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``indices`` in one fetch (torch's batched-fetch hook)."""
        return self[list(indices)]


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def collate_triplets(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Collation for :class:`TripletDataset` under a DataLoader's auto-batching.

    Parameters
    ----------
    batch : tuple or list
        Either one ``(X, idx)`` batch (from ``__getitems__``), returned as it
        is, or a list of such items fetched one by one, concatenated with
        their indices offset (samples shared between items then appear
        once per item).

    Returns
    -------
    X : torch.Tensor
        The batch's samples.
    idx : torch.Tensor of shape (n, 3)
        Triplets as positions in ``X``.
    """
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[1], torch.Tensor):
        return batch
    xs, idxs, offset = [], [], 0
    for x, idx in batch:
        xs.append(x)
        idxs.append(idx + offset)
        offset += len(x)
    return torch.cat(xs), torch.cat(idxs)


class TripletBatchSampler:
    """Shuffled batches of triplet numbers, reproducible per epoch.

    Parameters
    ----------
    n_triplets : int
        Number of triplets to batch.
    batch_size : int, default=128
        Triplets per batch (the last batch may be smaller).
    shuffle : bool, default=True
        Draw a new order every epoch; ``False`` keeps ``0, 1, ...``.
    random_state : int, numpy.random.Generator or None, default=None
        With an int, epoch ``e`` is shuffled with the seed
        ``(random_state, e)``, as :class:`sktriplet.training.sampling.PKSampler` does.
    epoch : int, default=0
        Number of the first epoch; it advances by one on every pass.

    Examples
    --------
    >>> from sktriplet.inputs.triplet_batches import TripletBatchSampler
    >>> [len(b) for b in TripletBatchSampler(10, batch_size=4, random_state=0)]
    [4, 4, 2]
    """

    def __init__(
        self,
        n_triplets: int,
        batch_size: int = 128,
        *,
        shuffle: bool = True,
        random_state: int | np.random.Generator | None = None,
        epoch: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1 triplet.")
        self.n_triplets = int(n_triplets)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.random_state = random_state
        self.epoch = epoch

    def __len__(self) -> int:
        """Number of batches per epoch."""
        return math.ceil(self.n_triplets / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the batches of one epoch as lists of triplet numbers."""
        if not self.shuffle:
            order = np.arange(self.n_triplets)
        elif isinstance(self.random_state, (int, np.integer)):
            order = np.random.default_rng([int(self.random_state), self.epoch]).permutation(
                self.n_triplets
            )
        else:
            order = np.random.default_rng(self.random_state).permutation(self.n_triplets)
        self.epoch += 1
        for start in range(0, self.n_triplets, self.batch_size):
            yield order[start : start + self.batch_size].tolist()
