"""Split the ITEMS of index triplets, for evaluation on items never trained on.

Splitting index triplets at random (``train_test_split(I)``, ``KFold``) keeps
every item on both sides: a test triplet asks about items whose place the
model has already learnt from other triplets. Even a free table of item
coordinates, fitted to the training triplets with no features at all,
agrees with most held-out triplets over the same items (``docs/triplets.md``,
"Held-out triplets or held-out items"). To measure what a model does on new
items, split the items instead: train on the triplets whose three items all
lie in one part, and test on the triplets whose three items all lie in the
other; the triplets that mix both parts are used by neither.

:func:`train_test_split_items` does one such split;
:class:`ItemShuffleSplit` is the scikit-learn cross-validation splitter
(``cv=`` of ``cross_val_score`` or ``GridSearchCV``), which yields row
numbers of the triplets ``I`` that scikit-learn passes as ``X``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state

from sktriplet.inputs.triplet_batches import check_triplet_indices

__all__ = ["ItemShuffleSplit", "train_test_split_items"]


def _check_triplets(triplets: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated index triplets and their distinct items (increasing)."""
    arr = np.asarray(triplets)
    if arr.ndim == 2 and arr.shape[1] == 3 and arr.dtype.kind in "iu" and arr.size:
        if arr.min() < 0:
            row = int(np.argwhere(arr < 0)[0, 0])
            raise ValueError(
                f"index triplets must hold item numbers >= 0; row {row} is {arr[row].tolist()}."
            )
    n_items = int(arr.max()) + 1 if arr.size and arr.dtype.kind in "iu" else 0
    arr = check_triplet_indices(arr, max(n_items, 1))
    return arr, np.unique(arr)


def _n_test_items(test_size: float | int, n_items: int) -> int:
    """Number of test items ``test_size`` asks for, checked."""
    if isinstance(test_size, numbers.Integral) and not isinstance(test_size, bool):
        n_test = int(test_size)
        if not 1 <= n_test < n_items:
            raise ValueError(
                f"test_size={test_size} items must lie in [1, {n_items - 1}] for the "
                f"{n_items} items the triplets use; or pass a fraction in (0, 1)."
            )
        return n_test
    if isinstance(test_size, numbers.Real) and 0 < test_size < 1:
        return min(max(1, round(test_size * n_items)), n_items - 1)
    raise ValueError(
        f"test_size must be a fraction of the items in (0, 1) or a number of items; got "
        f"{test_size!r}."
    )


def _split_rows(
    triplets: np.ndarray, items: np.ndarray, n_test: int, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the triplets within the train items and within the test items."""
    is_test = np.zeros(int(items[-1]) + 1, dtype=bool)
    is_test[rng.permutation(items)[:n_test]] = True
    side = is_test[triplets]
    train = np.flatnonzero(~side.any(axis=1))
    test = np.flatnonzero(side.all(axis=1))
    for rows, part, size in ((train, "training", len(items) - n_test), (test, "test", n_test)):
        if len(rows) == 0:
            raise ValueError(
                f"no triplet has all three items among the {size} {part} items, so the "
                f"{part} part is empty; a part needs at least 3 items and triplets among "
                "them: change test_size, or pass more triplets."
            )
    return train, test


def train_test_split_items(
    triplets: Any, test_size: float | int = 0.3, random_state: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split index triplets by their items: training and test triplets share no item.

    The distinct items of ``triplets`` are shuffled and ``test_size`` of them
    become test items. The training triplets are those whose anchor, positive
    and negative are all training items; the test triplets those whose three
    items are all test items. Triplets that mix both are dropped.

    Parameters
    ----------
    triplets : array-like of int, shape (n_triplets, 3)
        Index triplets ``(anchor, positive, negative)``: item numbers (for
        example rows of the ``samples`` of ``TripletEmbedder(triplets=True,
        samples=...)``).
    test_size : float or int, default=0.3
        A fraction in ``(0, 1)`` of the distinct items (rounded, at least one
        item on each side), or a number of items.
    random_state : int, RandomState instance or None, default=None
        Seed of the shuffle of the items.

    Returns
    -------
    train_triplets : numpy.ndarray of shape (n_train, 3), int64
        The triplets among the training items, in their original order.
    test_triplets : numpy.ndarray of shape (n_test, 3), int64
        The triplets among the test items, in their original order.

    Raises
    ------
    ValueError
        If ``triplets`` is not an integer array of shape ``(n_triplets, 3)``
        of distinct non-negative items per row, if ``test_size`` is out of
        range, or if either side is left without a triplet.

    See Also
    --------
    ItemShuffleSplit : The same split, repeated, as a cross-validation splitter.

    Examples
    --------
    >>> import itertools
    >>> from sktriplet.evaluation.item_split import train_test_split_items
    >>> I = [t for t in itertools.permutations(range(10), 3)]  # every triplet of 10 items
    >>> train, test = train_test_split_items(I, test_size=0.3, random_state=0)
    >>> len(train), len(test)  # 7 * 6 * 5 and 3 * 2 * 1
    (210, 6)
    >>> set(train.ravel()) & set(test.ravel())
    set()
    """
    arr, items = _check_triplets(triplets)
    n_test = _n_test_items(test_size, len(items))
    train, test = _split_rows(arr, items, n_test, check_random_state(random_state))
    return arr[train], arr[test]


class ItemShuffleSplit(BaseCrossValidator):
    """Cross-validation over held-out items: random item splits of index triplets.

    Every split shuffles the distinct items of the index triplets ``X`` and
    takes ``test_size`` of them as test items; it yields the row numbers of
    the triplets whose three items are all training items, and of those whose
    three items are all test items (as :func:`train_test_split_items`).
    scikit-learn passes the index triplets ``I`` as ``X``, so with
    ``TripletEmbedder(triplets=True, samples=S)``, whose ``score`` is the
    triplet agreement, ``cross_val_score(emb, I, cv=ItemShuffleSplit())``
    measures agreement with judgements about samples never trained on.

    Parameters
    ----------
    n_splits : int, default=5
        Number of splits (each an independent shuffle of the items, as in
        :class:`sklearn.model_selection.ShuffleSplit`: an item may be a test
        item in several splits).
    test_size : float or int, default=0.3
        A fraction in ``(0, 1)`` of the distinct items, or a number of items.
    random_state : int, RandomState instance or None, default=None
        Seed of the shuffles; an int gives the same splits on every call.

    See Also
    --------
    train_test_split_items : One split, returning the triplets themselves.

    Notes
    -----
    With a fraction ``t`` of test items and triplets spread evenly over the
    items, about ``(1 - t)^3`` of the triplets train and ``t^3`` test
    (0.34 and 0.027 with ``t = 0.3``); the rest mix the two parts and are
    used by neither.

    Examples
    --------
    >>> import itertools
    >>> import numpy as np
    >>> from sktriplet.evaluation.item_split import ItemShuffleSplit
    >>> I = np.array(list(itertools.permutations(range(10), 3)))
    >>> cv = ItemShuffleSplit(n_splits=2, test_size=0.3, random_state=0)
    >>> [(len(train), len(test)) for train, test in cv.split(I)]
    [(210, 6), (210, 6)]
    """

    def __init__(
        self, n_splits: int = 5, *, test_size: float | int = 0.3, random_state: Any = None
    ) -> None:
        if not isinstance(n_splits, numbers.Integral) or isinstance(n_splits, bool):
            raise ValueError(f"n_splits must be an int >= 1; got {n_splits!r}.")
        if n_splits < 1:
            raise ValueError(f"n_splits must be an int >= 1; got {n_splits}.")
        self.n_splits = int(n_splits)
        self.test_size = test_size
        self.random_state = random_state

    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` row numbers of the index triplets ``X``.

        Parameters
        ----------
        X : array-like of int, shape (n_triplets, 3)
            Index triplets (what ``fit`` gets in triplet mode).
        y : None
            Ignored (triplets carry no labels).
        groups : None
            Ignored.

        Yields
        ------
        train : numpy.ndarray of int
            Rows of the triplets among the training items.
        test : numpy.ndarray of int
            Rows of the triplets among the test items.
        """
        arr, items = _check_triplets(X)
        n_test = _n_test_items(self.test_size, len(items))
        rng = check_random_state(self.random_state)
        for _ in range(self.n_splits):
            yield _split_rows(arr, items, n_test, rng)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of splits (``n_splits``).

        Parameters
        ----------
        X, y, groups : object
            Ignored.

        Returns
        -------
        int
        """
        return self.n_splits

    def _iter_test_indices(self, X=None, y=None, groups=None):  # pragma: no cover
        # split() is overridden; BaseCrossValidator declares this abstract.
        raise NotImplementedError
