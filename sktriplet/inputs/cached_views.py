"""Cached views: rows computed once for several views of every sample, one drawn per epoch.

When the bottom of a network is frozen, its output (e.g. a backbone's
activations at a block boundary) is computed once per sample and view and
cached as an array ``(n_samples, n_views, width)``
(:func:`sktriplet.training.feature_cache.cache_views`). Augmentation then
survives caching: :class:`CachedViews` serves, in every training epoch,
one view of each sample drawn by :func:`sktriplet.vision.views.draw_views`
(seeded by the fit's seed and the epoch), and always view 0 (the sample as
``transform`` reads it) for validation, the probe and inference.

The array may be a memory map (a cache above its RAM budget): a dataset
holds the row indices it serves and reads only the batch it is asked for.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from sktriplet.vision.views import draw_views

__all__ = ["CachedViews"]


class CachedViews(Dataset):
    """Some rows of a cached ``(n_samples, n_views, width)`` array, one view each.

    Parameters
    ----------
    cache : numpy.ndarray or numpy.memmap of shape (n_samples, n_views, width)
        The cached rows of every sample and view.
    rows : numpy.ndarray of int, default=None
        The samples this dataset serves, in order (``None``: all).
    labels : numpy.ndarray of int, default=None
        Their class codes (``None``: zeros).
    view : int or None, default=0
        The view served; ``None`` draws one view per sample and epoch
        (:func:`~sktriplet.vision.views.draw_views` with ``seed`` and the
        epoch set by :meth:`set_epoch`, drawn over all ``n_samples`` so that
        a sample's view does not depend on which rows a dataset serves).
    seed : int, default=0
        The fit's seed.

    Examples
    --------
    >>> import numpy as np
    >>> cache = np.arange(12, dtype=np.float32).reshape(3, 2, 2)  # 3 samples, 2 views
    >>> ds = CachedViews(cache, rows=np.array([2, 0]), labels=np.array([1, 0]))
    >>> ds[[0, 1]][0]
    tensor([[8., 9.],
            [0., 1.]])
    >>> drawn = CachedViews(cache, view=None, seed=0)
    >>> drawn.set_epoch(1)
    >>> drawn[[0, 1, 2]][0].shape
    torch.Size([3, 2])
    """

    #: Indexed with a whole batch of indices at a time.
    fetches_batches = True

    def __init__(
        self,
        cache: np.ndarray,
        rows: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        *,
        view: int | None = 0,
        seed: int = 0,
    ) -> None:
        if cache.ndim != 3:
            raise ValueError(
                f"cached views must be an array (n_samples, n_views, width); got shape "
                f"{cache.shape}."
            )
        if view is not None and not 0 <= view < cache.shape[1]:
            raise ValueError(f"view must be in [0, {cache.shape[1]}); got {view}.")
        self.cache = cache
        self.rows = np.arange(len(cache)) if rows is None else np.asarray(rows, dtype=np.int64)
        self._y = None if labels is None else np.asarray(labels)
        self.view = view
        self.seed = int(seed)
        self.set_epoch(0)

    @property
    def n_views(self) -> int:
        """Views cached per sample."""
        return int(self.cache.shape[1])

    @property
    def labels(self) -> np.ndarray:
        """The integer labels (what the PK sampler draws batches from)."""
        return np.zeros(len(self.rows), dtype=np.int64) if self._y is None else self._y

    def set_epoch(self, epoch: int) -> None:
        """Draw the view of every sample for ``epoch`` (when ``view`` is ``None``)."""
        self.epoch = int(epoch)
        if self.view is None:
            self._views = draw_views(len(self.cache), self.n_views, self.seed, self.epoch)
        else:
            self._views = None

    def views_of(self, index) -> np.ndarray:
        """The view served for the dataset's items ``index`` in the current epoch."""
        rows = self.rows[index]
        return np.full(np.shape(rows), self.view) if self._views is None else self._views[rows]

    def __len__(self) -> int:
        """Number of samples served."""
        return len(self.rows)

    def __getitem__(self, index):
        """``(rows, labels)`` of the items ``index`` (a batch of positions or one)."""
        rows = self.rows[index]
        x = np.ascontiguousarray(self.cache[rows, self.views_of(index)], dtype=np.float32)
        y = self.labels[index]
        return torch.from_numpy(x), torch.as_tensor(np.asarray(y))
