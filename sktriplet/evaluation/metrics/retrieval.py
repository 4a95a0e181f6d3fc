"""Retrieval metrics: precision@k, recall@k, R-precision and MAP@R.

Each ranks a *gallery* by distance to every *query* (the exact, blockwise
ranking engine is the private ``_ranking`` module beside this one) and
averages over the queries that have at least one relevant gallery sample;
the conventions are in :mod:`sktriplet.evaluation.metrics`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from sktriplet.evaluation.metrics._ranking import ArrayLike, per_query_scores

__all__ = ["map_at_r", "precision_at_k", "r_precision", "recall_at_k", "retrieval_scores"]


def _mean(values: np.ndarray) -> float:
    if len(values) == 0:
        warnings.warn(
            "Every query was skipped (no other sample shares its label); "
            "the metric is undefined and nan is returned.",
            RuntimeWarning,
            stacklevel=3,
        )
        return math.nan
    return float(values.mean())


# --------------------------------------------------------------------------
# Shared docstring sections of the retrieval metrics
# --------------------------------------------------------------------------

#: Parameter entries every retrieval metric shares, spliced into their
#: docstrings by :func:`_shared_doc` (written once, documented everywhere).
_DOC_SECTIONS = {
    "query_params": """embeddings : array-like or torch.Tensor of shape (n_queries, n_features)
        Query embeddings (NumPy array or tensor, float32 or float64).
    labels : array-like or torch.Tensor of shape (n_queries,)
        Query labels, of any type; labels are only compared for equality.""",
    "gallery_params": """gallery : array-like or torch.Tensor of shape (n_gallery, n_features), \
default=None
        Embeddings to retrieve from. ``None`` means leave-one-out: each of
        ``embeddings`` is a query against all the others.
    gallery_labels : array-like or torch.Tensor of shape (n_gallery,), \
default=None
        Labels of ``gallery``; required exactly when ``gallery`` is given.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance used to rank the gallery (see :mod:`sktriplet.triplets.distances`).
    block_size : int, default=None
        Number of queries whose distances are computed at once. ``None``
        picks it so that a block's distance matrix takes about 32 MB.""",
}


def _shared_doc(func: Callable) -> Callable:
    """Fill the ``%(query_params)s`` / ``%(gallery_params)s`` slots of a docstring."""
    if func.__doc__:
        func.__doc__ = func.__doc__ % _DOC_SECTIONS
    return func


# --------------------------------------------------------------------------
# Public retrieval metrics
# --------------------------------------------------------------------------


@_shared_doc
def precision_at_k(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = 1,
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    distance: str = "sqeuclidean",
    block_size: int | None = None,
) -> float:
    """Compute the mean fraction of the k nearest neighbours sharing the label.

    Parameters
    ----------
    %(query_params)s
    k : int, default=1
        Number of neighbours considered; at most the number of gallery samples
        each query is ranked against.
    %(gallery_params)s

    Returns
    -------
    float
        Precision@k averaged over the queries that are not skipped, or
        ``nan`` if all are.

    Raises
    ------
    ValueError
        If the inputs have the wrong shape, mismatched lengths or non-finite
        values, if ``k`` is not in ``[1, n_candidates]``, or if ``distance``
        is unknown.

    See Also
    --------
    recall_at_k : Whether any of the ``k`` nearest shares the label.
    r_precision : Precision at ``k = R``, a different ``k`` per query.
    retrieval_scores : Every retrieval metric in one pass.

    Notes
    -----
    For a query with ``R`` relevant gallery samples (same label, the query
    itself excluded in leave-one-out mode), precision@k is the number of
    relevant samples among the ``k`` nearest divided by ``k``; it cannot
    exceed ``R / k``. Queries with ``R = 0`` are skipped. Distance ties are
    ranked by gallery index.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.metrics import precision_at_k
    >>> X = np.array([[0.0], [0.1], [0.3], [1.0], [1.1]])
    >>> y = np.array([0, 0, 1, 1, 1])
    >>> precision_at_k(X, y, k=2)
    0.6
    """
    scores, _ = per_query_scores(
        embeddings,
        labels,
        gallery,
        gallery_labels,
        k=k,
        at_r=False,
        distance=distance,
        block_size=block_size,
    )
    return _mean(scores[f"precision_at_{k}"])


@_shared_doc
def recall_at_k(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = 1,
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    distance: str = "sqeuclidean",
    block_size: int | None = None,
) -> float:
    """Compute the fraction of queries with a same-label sample in the k nearest.

    Parameters
    ----------
    %(query_params)s
    k : int, default=1
        Number of neighbours considered; at most the number of gallery samples
        each query is ranked against.
    %(gallery_params)s

    Returns
    -------
    float
        Recall@k averaged over the queries that are not skipped, or ``nan``
        if all are.

    Raises
    ------
    ValueError
        If the inputs have the wrong shape, mismatched lengths or non-finite
        values, if ``k`` is not in ``[1, n_candidates]``, or if ``distance``
        is unknown.

    See Also
    --------
    precision_at_k : Fraction of the ``k`` nearest sharing the label.
    retrieval_scores : Every retrieval metric in one pass.

    Notes
    -----
    This is the "Recall@K" of the deep metric learning literature (Oh Song
    et al., 2016; pytorch-metric-learning): a query scores 1 if at least one
    of its ``k`` nearest neighbours shares its label, else 0. It is *not* the
    information-retrieval recall (fraction of the ``R`` relevant samples that
    are retrieved). Recall@1 equals precision@1. Queries with ``R = 0`` are
    skipped. Distance ties are ranked by gallery index.

    References
    ----------
    .. [1] H. Oh Song, Y. Xiang, S. Jegelka and S. Savarese, "Deep Metric
       Learning via Lifted Structured Feature Embedding", CVPR 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.metrics import recall_at_k
    >>> X = np.array([[0.0], [0.1], [0.3], [1.0], [1.1]])
    >>> y = np.array([0, 0, 1, 1, 1])
    >>> recall_at_k(X, y, k=1)
    0.8
    >>> recall_at_k(X, y, k=3)
    1.0
    """
    scores, _ = per_query_scores(
        embeddings,
        labels,
        gallery,
        gallery_labels,
        k=k,
        at_r=False,
        distance=distance,
        block_size=block_size,
    )
    return _mean(scores[f"recall_at_{k}"])


@_shared_doc
def r_precision(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    distance: str = "sqeuclidean",
    block_size: int | None = None,
) -> float:
    """Compute the mean precision at R, the number of samples sharing the label.

    Parameters
    ----------
    %(query_params)s
    %(gallery_params)s

    Returns
    -------
    float
        R-precision averaged over the queries that are not skipped, or
        ``nan`` if all are.

    Raises
    ------
    ValueError
        If the inputs have the wrong shape, mismatched lengths or non-finite
        values, or if ``distance`` is unknown.

    See Also
    --------
    map_at_r : Also rewards the order within the first ``R``.
    retrieval_scores : Every retrieval metric in one pass.

    Notes
    -----
    For a query with ``R`` relevant gallery samples (same label, the query
    itself excluded in leave-one-out mode), R-precision is the number of
    relevant samples among its ``R`` nearest neighbours divided by ``R``.
    Queries with ``R = 0`` are skipped. Distance ties are ranked by gallery
    index.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.metrics import r_precision
    >>> X = np.array([[0.0], [0.1], [0.3], [1.0], [1.1]])
    >>> y = np.array([0, 0, 1, 1, 1])
    >>> r_precision(X, y)
    0.8

    One query whose two nearest gallery samples are, in order, a wrong and a
    right one (``R = 2``):

    >>> r_precision([[0.0]], ["a"], gallery=[[0.1], [0.2], [0.3], [0.4]],
    ...             gallery_labels=["b", "a", "a", "b"])
    0.5
    """
    scores, _ = per_query_scores(
        embeddings,
        labels,
        gallery,
        gallery_labels,
        k=None,
        at_r=True,
        distance=distance,
        block_size=block_size,
    )
    return _mean(scores["r_precision"])


@_shared_doc
def map_at_r(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    distance: str = "sqeuclidean",
    block_size: int | None = None,
) -> float:
    r"""Compute the mean average precision at R (MAP@R) of Musgrave et al.

    Parameters
    ----------
    %(query_params)s
    %(gallery_params)s

    Returns
    -------
    float
        MAP@R averaged over the queries that are not skipped, or ``nan`` if
        all are.

    Raises
    ------
    ValueError
        If the inputs have the wrong shape, mismatched lengths or non-finite
        values, or if ``distance`` is unknown.

    See Also
    --------
    r_precision : Precision at ``R``, blind to the order within the first ``R``.
    retrieval_scores : Every retrieval metric in one pass.

    Notes
    -----
    For a query with ``R`` relevant gallery samples (same label, the query
    itself excluded in leave-one-out mode),

    .. math:: \mathrm{MAP@R} = \frac{1}{R} \sum_{i=1}^{R} P(i)\,\mathrm{rel}(i)

    where ``rel(i)`` is 1 if the neighbour at rank ``i`` is relevant and
    ``P(i)`` is the precision over the first ``i`` ranks. It is 1 exactly
    when the ``R`` nearest neighbours are all relevant. Queries with
    ``R = 0`` are skipped. Distance ties are ranked by gallery index. Each
    query needs its ``R`` nearest neighbours sorted, so very large classes
    (``R`` a sizeable fraction of the gallery) make it slower.

    References
    ----------
    .. [1] K. Musgrave, S. Belongie and S.-N. Lim, "A Metric Learning Reality
       Check", ECCV 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.metrics import map_at_r
    >>> X = np.array([[0.0], [0.1], [0.3], [1.0], [1.1]])
    >>> y = np.array([0, 0, 1, 1, 1])
    >>> map_at_r(X, y)
    0.8

    One query whose two nearest gallery samples are, in order, a wrong and a
    right one (``R = 2``): ``(P(1) * 0 + P(2) * 1) / 2 = (1/2) / 2``:

    >>> map_at_r([[0.0]], ["a"], gallery=[[0.1], [0.2], [0.3], [0.4]],
    ...          gallery_labels=["b", "a", "a", "b"])
    0.25
    """
    scores, _ = per_query_scores(
        embeddings,
        labels,
        gallery,
        gallery_labels,
        k=None,
        at_r=True,
        distance=distance,
        block_size=block_size,
    )
    return _mean(scores["map_at_r"])


@_shared_doc
def retrieval_scores(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    k: int | Sequence[int] = 1,
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    distance: str = "sqeuclidean",
    block_size: int | None = None,
) -> dict[str, float | int]:
    """Compute every retrieval metric at once, from a single ranking pass.

    Parameters
    ----------
    %(query_params)s
    k : int or sequence of int, default=1
        The ``k`` (or several) of precision@k and recall@k; each at most the
        number of gallery samples each query is ranked against.
    %(gallery_params)s

    Returns
    -------
    dict
        ``"precision_at_{k}"`` and ``"recall_at_{k}"`` for each ``k``,
        ``"r_precision"`` and ``"map_at_r"`` (floats, ``nan`` if every query
        is skipped), and the counts ``"n_queries"``, ``"n_evaluated"`` and
        ``"n_skipped"`` (queries with no relevant gallery sample).

    Raises
    ------
    ValueError
        If the inputs have the wrong shape, mismatched lengths or non-finite
        values, if a ``k`` is not in ``[1, n_candidates]``, or if
        ``distance`` is unknown.

    See Also
    --------
    precision_at_k, recall_at_k, r_precision, map_at_r
        The individual metrics, whose definitions apply here unchanged.

    Notes
    -----
    All metrics are averaged over the same queries: those with at least one
    relevant gallery sample.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.metrics import retrieval_scores
    >>> X = np.array([[0.0], [0.1], [0.3], [1.0], [1.1], [5.0]])
    >>> y = np.array([0, 0, 1, 1, 1, 2])
    >>> scores = retrieval_scores(X, y, k=(1, 2))
    >>> {name: round(value, 4) for name, value in scores.items()}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'precision_at_1': 0.8, 'recall_at_1': 0.8, 'precision_at_2': 0.6,
     'recall_at_2': 0.8, 'r_precision': 0.8, 'map_at_r': 0.8,
     'n_queries': 6, 'n_evaluated': 5, 'n_skipped': 1}
    """
    scores, n_queries = per_query_scores(
        embeddings,
        labels,
        gallery,
        gallery_labels,
        k=k,
        at_r=True,
        distance=distance,
        block_size=block_size,
    )
    n_evaluated = len(scores["map_at_r"])
    with warnings.catch_warnings():
        # Warn once below, not once per metric.
        warnings.simplefilter("ignore", RuntimeWarning)
        result: dict[str, float | int] = {name: _mean(values) for name, values in scores.items()}
    if n_evaluated == 0:
        _mean(np.empty(0))
    result["n_queries"] = n_queries
    result["n_evaluated"] = n_evaluated
    result["n_skipped"] = n_queries - n_evaluated
    return result
