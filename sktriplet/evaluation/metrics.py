"""Retrieval and verification metrics for embeddings.

Everything here is plain NumPy / PyTorch and knows nothing of scikit-learn
estimators or skorch.

Retrieval metrics
    :func:`precision_at_k`, :func:`recall_at_k`, :func:`r_precision`,
    :func:`map_at_r` and :func:`retrieval_scores` (all of them in one pass).
    Each ranks a *gallery* by distance to every *query*. Without a gallery
    the evaluation is leave-one-out: every sample is a query against all the
    others.

Verification metrics
    :func:`verification_scores`, :func:`tar_at_far` and
    :func:`equal_error_rate` score a distance per pair of samples against
    whether the pair is "same" or "different" (face verification).

Conventions shared by the retrieval metrics:

* For a query with label ``c``, ``R`` is the number of gallery samples
  labelled ``c``, the query itself excluded in leave-one-out mode. Queries
  with ``R = 0`` cannot be scored: they are *skipped*, and every average is
  over the other queries only. If every query is skipped the result is
  ``nan`` and a :class:`RuntimeWarning` is issued.
* Neighbours are ranked by increasing distance; equal distances are ranked
  by increasing gallery index (the order of a stable sort), so results are
  deterministic even with ties. The ranking is computed, with one matrix
  product, on a quantity that orders each query's gallery exactly like the
  distance: ``||g||^2 - 2 q.g`` for ``"sqeuclidean"`` and ``"euclidean"``
  (which therefore always give the same results) and ``-cos(q, g)`` for
  ``"cosine"``. Ties are exact ties of that quantity.
* In leave-one-out mode the query is removed from its own ranking by index,
  not by distance: an exact duplicate of the query stays in the ranking.
* Queries are processed in blocks, so memory stays bounded by a block's
  distance matrix (never the full ``n_queries x n_gallery`` one). On a
  gallery of 4096 samples or more only about ``1.5 * max(k, R)`` candidates
  per query are sorted, so the cost is dominated by the matrix product as
  long as classes are small compared with the gallery.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from sktriplet.triplets.distances import check_distance

__all__ = [
    "equal_error_rate",
    "map_at_r",
    "precision_at_k",
    "r_precision",
    "recall_at_k",
    "retrieval_scores",
    "tar_at_far",
    "verification_scores",
]

#: Arrays accepted as embeddings or labels.
ArrayLike = npt.ArrayLike | torch.Tensor

# Default size of one block's distance matrix, in bytes.
_BLOCK_BYTES = 32 * 2**20
# Rows narrower than this, or than 4 times the number of neighbours needed,
# are sorted whole; wider ones are first cut down to candidates below a
# threshold estimated on every _SAMPLE_STRIDE-th column (see _candidates).
_SORT_WIDTH = 4096
_SAMPLE_STRIDE = 32
# Whether CPU tensors take the NumPy route in _below_sample_quantile.
_NUMPY_SCAN = True


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------


@dataclass
class _Problem:
    """A validated retrieval problem (label codes shared by both sides)."""

    queries: torch.Tensor
    gallery: torch.Tensor
    query_codes: torch.Tensor
    gallery_codes: torch.Tensor
    n_relevant: torch.Tensor
    leave_one_out: bool

    @property
    def n_candidates(self) -> int:
        """Number of gallery samples ranked for each query."""
        return self.gallery.shape[0] - int(self.leave_one_out)


def _as_embeddings(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.as_tensor(np.ascontiguousarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got {t.ndim}-D.")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return t


def _as_labels(y: ArrayLike, name: str, n_samples: int) -> np.ndarray:
    labels = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got {labels.ndim}-D.")
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {labels.shape[0]} entries but there are {n_samples} "
            "embeddings; they must have the same length."
        )
    return labels


def _prepare(
    embeddings: ArrayLike,
    labels: ArrayLike,
    gallery: ArrayLike | None,
    gallery_labels: ArrayLike | None,
) -> _Problem:
    if (gallery is None) != (gallery_labels is None):
        raise ValueError("gallery and gallery_labels must be given together.")
    queries = _as_embeddings(embeddings, "embeddings")
    query_labels = _as_labels(labels, "labels", queries.shape[0])
    loo = gallery is None
    if loo:
        refs, ref_labels = queries, query_labels
    else:
        refs = _as_embeddings(gallery, "gallery")
        ref_labels = _as_labels(gallery_labels, "gallery_labels", refs.shape[0])
        if refs.shape[1] != queries.shape[1]:
            raise ValueError(
                f"embeddings have {queries.shape[1]} features but gallery has {refs.shape[1]}."
            )
        dtype = torch.promote_types(queries.dtype, refs.dtype)
        queries = queries.to(dtype)
        refs = refs.to(device=queries.device, dtype=dtype)
    # Compare labels by equality only: integer codes over both label sets.
    _, codes = np.unique(
        np.concatenate([query_labels, ref_labels]) if not loo else query_labels,
        return_inverse=True,
    )
    codes = codes.reshape(-1)
    query_codes = codes[: len(query_labels)]
    ref_codes = query_codes if loo else codes[len(query_labels) :]
    counts = np.bincount(ref_codes, minlength=int(codes.max()) + 1)
    n_relevant = counts[query_codes] - int(loo)
    device = queries.device
    return _Problem(
        queries=queries,
        gallery=refs,
        query_codes=torch.as_tensor(query_codes, device=device),
        gallery_codes=torch.as_tensor(ref_codes, device=device),
        n_relevant=torch.as_tensor(n_relevant, device=device),
        leave_one_out=loo,
    )


def _check_ks(k: int | Sequence[int], n_candidates: int) -> tuple[int, ...]:
    ks = tuple(k) if isinstance(k, Sequence | np.ndarray) else (k,)
    if not ks:
        raise ValueError("k must not be empty.")
    for value in ks:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"k must be an integer; got {value!r}.")
        if value < 1:
            raise ValueError(f"k must be >= 1; got {value}.")
        if value > n_candidates:
            raise ValueError(
                f"k={value} exceeds the {n_candidates} gallery samples that "
                "each query is ranked against."
            )
    return tuple(int(value) for value in ks)


def _block_rows(block_size: int | None, n_gallery: int, itemsize: int) -> int:
    if block_size is None:
        return max(1, _BLOCK_BYTES // (n_gallery * itemsize))
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer):
        raise ValueError(f"block_size must be an integer; got {block_size!r}.")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}.")
    return int(block_size)


# --------------------------------------------------------------------------
# Ranking core
# --------------------------------------------------------------------------


def _ranking_key(
    gallery: torch.Tensor, distance: str
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return ``key(queries, out)``, a matrix that orders each row like the distances.

    The key differs from the distance by a per-query constant or a monotone
    map (``||q||^2`` dropped, no square root, ``1 - cos`` as ``-cos``), which
    leaves every ranking unchanged and costs a single matrix product.
    """
    if distance == "cosine":
        unit = torch.nn.functional.normalize(gallery, dim=1, eps=1e-12).T

        def cosine_key(queries: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            q = torch.nn.functional.normalize(queries, dim=1, eps=1e-12)
            return torch.mm(q, unit, out=out).neg_()

        return cosine_key
    squared_norms = (gallery * gallery).sum(dim=1)

    def euclidean_key(queries: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.addmm(squared_norms, queries, gallery.T, alpha=-2.0, out=out)

    return euclidean_key


def _nearest(key: torch.Tensor, depth: int) -> torch.Tensor:
    """Return the columns of the ``depth`` smallest entries of each row.

    They are ordered by ``(key, column)``: exactly the first ``depth`` columns
    of a stable argsort of each row. Wide rows are not sorted whole: only the
    candidates kept by :func:`_candidates` are.
    """
    n_cols = key.shape[1]
    if n_cols < _SORT_WIDTH or 4 * depth > n_cols:
        return torch.sort(key, dim=1, stable=True).indices[:, :depth]
    values, cols, n_kept = _candidates(key, depth)
    # Candidates are in column order, so a stable sort breaks ties by column.
    order = torch.sort(values, dim=1, stable=True).indices[:, :depth]
    nearest = cols.gather(1, order)
    short = (n_kept < depth).nonzero().squeeze(1)
    if len(short):  # The threshold kept too few: sort those rows whole.
        nearest[short] = torch.sort(key[short], dim=1, stable=True).indices[:, :depth]
    return nearest


def _candidates(key: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep, per row, the entries at most a threshold estimated from a sample.

    The threshold is a low quantile of every ``_SAMPLE_STRIDE``-th column,
    chosen so that about ``1.5 * depth + 16 * _SAMPLE_STRIDE`` entries are
    expected to pass (rows keeping fewer than ``depth`` are very unlikely
    unless the columns are adversarially ordered). A row that keeps
    ``n_kept >= depth`` entries keeps every entry that is at most its
    ``depth``-th smallest, ties included; other rows need a full sort.

    Returns
    -------
    values, cols : torch.Tensor of shape (n_rows, max(depth, max(n_kept)))
        Kept values (padded with +inf) and their columns, in column order.
    n_kept : torch.Tensor of shape (n_rows,)
        Number of entries kept in each row.
    """
    n_rows, n_cols = key.shape
    rank = min(-(-n_cols // _SAMPLE_STRIDE), 3 * depth // (2 * _SAMPLE_STRIDE) + 16)
    flat = _below_sample_quantile(key, rank)
    rows = torch.div(flat, n_cols, rounding_mode="floor")
    n_kept = torch.bincount(rows, minlength=n_rows)
    width = max(int(n_kept.max()), depth)
    start = n_kept.cumsum(0) - n_kept
    target = rows * width + torch.arange(len(flat), device=key.device) - start[rows]
    values = key.new_full((n_rows, width), math.inf)
    values.view(-1).index_copy_(0, target, key.view(-1).index_select(0, flat))
    cols = torch.zeros((n_rows, width), dtype=torch.long, device=key.device)
    cols.view(-1).index_copy_(0, target, flat - rows * n_cols)
    return values, cols, n_kept


def _below_sample_quantile(key: torch.Tensor, rank: int) -> torch.Tensor:
    """Return the flat indices of the entries at most a per-row threshold.

    The threshold of a row is the ``rank``-th smallest value among its every
    ``_SAMPLE_STRIDE``-th column.
    """
    sample = key[:, ::_SAMPLE_STRIDE]
    if key.device.type == "cpu" and _NUMPY_SCAN:
        # NumPy does these two scans several times faster than torch on CPU.
        key_np, sample_np = key.numpy(), sample.numpy()
        threshold = np.partition(sample_np, rank - 1, axis=1)[:, rank - 1, None]
        return torch.from_numpy(np.flatnonzero(key_np <= threshold))
    threshold = torch.kthvalue(sample, rank, dim=1, keepdim=True).values
    return (key <= threshold).view(-1).nonzero().squeeze(1)


def _relevance_blocks(
    problem: _Problem,
    depth_of: Callable[[torch.Tensor], torch.Tensor],
    distance: str,
    block_size: int | None,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Yield ``(positions, relevant, R)`` per block of non-skipped queries.

    ``positions`` locates the block among the non-skipped queries;
    ``relevant[i, j]`` says whether the neighbour at rank ``j + 1`` of query
    ``i`` shares its label, for ranks up to the block's largest
    ``depth_of(R)``.
    """
    gallery = problem.gallery
    key_of = _ranking_key(gallery, distance)
    step = _block_rows(block_size, gallery.shape[0], gallery.element_size())
    evaluated = (problem.n_relevant > 0).nonzero().squeeze(1)
    # One buffer for all blocks: a fresh large matrix per block would cost a
    # page fault per 4 kB.
    buffer = gallery.new_empty((min(step, len(evaluated)), gallery.shape[0]))
    for start in range(0, len(evaluated), step):
        idx = evaluated[start : start + step]
        key = key_of(problem.queries[idx], buffer[: len(idx)])
        if problem.leave_one_out:
            # Exclude each query from its own ranking by index: +inf ranks
            # after every finite value and is never selected.
            key[torch.arange(len(idx), device=idx.device), idx] = math.inf
        n_relevant = problem.n_relevant[idx]
        cols = _nearest(key, int(depth_of(n_relevant).max()))
        relevant = problem.gallery_codes[cols] == problem.query_codes[idx, None]
        yield slice(start, start + len(idx)), relevant, n_relevant


def _block_scores(
    relevant: torch.Tensor, n_relevant: torch.Tensor, ks: tuple[int, ...], at_r: bool
) -> dict[str, torch.Tensor]:
    """Return the per-query scores of one block (see :func:`retrieval_scores`)."""
    hits = torch.cumsum(relevant, dim=1, dtype=torch.float64)
    scores = {}
    for k in ks:
        scores[f"precision_at_{k}"] = hits[:, k - 1] / k
        scores[f"recall_at_{k}"] = (hits[:, k - 1] > 0).to(torch.float64)
    if at_r:
        ranks = torch.arange(1, relevant.shape[1] + 1, device=relevant.device)
        counted = relevant & (ranks <= n_relevant[:, None])
        r = n_relevant.to(torch.float64)
        scores["r_precision"] = counted.sum(dim=1) / r
        scores["map_at_r"] = (hits / ranks * counted).sum(dim=1) / r
    return scores


def _per_query_scores(
    embeddings: ArrayLike,
    labels: ArrayLike,
    gallery: ArrayLike | None,
    gallery_labels: ArrayLike | None,
    *,
    k: int | Sequence[int] | None,
    at_r: bool,
    distance: str,
    block_size: int | None,
) -> tuple[dict[str, np.ndarray], int]:
    """Return the scores of every non-skipped query, and the number of queries."""
    check_distance(distance)
    problem = _prepare(embeddings, labels, gallery, gallery_labels)
    ks = () if k is None else _check_ks(k, problem.n_candidates)
    k_max = max(ks, default=0)

    def depth_of(n_relevant: torch.Tensor) -> torch.Tensor:
        return n_relevant.clamp_min(k_max) if at_r else torch.full_like(n_relevant, k_max)

    names = [f"{m}_at_{k}" for k in ks for m in ("precision", "recall")]
    names += ["r_precision", "map_at_r"] if at_r else []
    # Preallocated: many small per-block arrays fragment the heap badly.
    n_evaluated = int((problem.n_relevant > 0).sum())
    scores = {name: np.empty(n_evaluated) for name in names}
    blocks = _relevance_blocks(problem, depth_of, distance, block_size)
    for positions, relevant, n_relevant in blocks:
        for name, value in _block_scores(relevant, n_relevant, ks, at_r).items():
            scores[name][positions] = value.cpu().numpy()
    return scores, problem.queries.shape[0]


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
    scores, _ = _per_query_scores(
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
    scores, _ = _per_query_scores(
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
    scores, _ = _per_query_scores(
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
    scores, _ = _per_query_scores(
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
    scores, n_queries = _per_query_scores(
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


# --------------------------------------------------------------------------
# Verification metrics
# --------------------------------------------------------------------------


def _check_pairs(distances: npt.ArrayLike, is_same: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64)
    same = np.asarray(is_same)
    if d.ndim != 1 or same.ndim != 1:
        raise ValueError("distances and is_same must be 1-D.")
    if d.shape != same.shape:
        raise ValueError(f"distances has {d.shape[0]} entries but is_same has {same.shape[0]}.")
    if not np.isfinite(d).all():
        raise ValueError("distances contains NaN or infinite values.")
    if same.dtype != bool:
        if not np.isin(same, (0, 1)).all():
            raise ValueError("is_same must be boolean (or 0/1).")
        same = same.astype(bool)
    if same.all() or not same.any():
        raise ValueError("is_same must contain both same and different pairs.")
    return d, same


def _roc(distances: npt.ArrayLike, is_same: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return the false and true accept rates of "accept if distance <= t".

    One point per distinct distance t, plus the origin (accept nothing).
    """
    d, same = _check_pairs(distances, is_same)
    order = np.argsort(d, kind="stable")
    d, same = d[order], same[order]
    last_of_value = np.append(d[1:] != d[:-1], True)
    tp = np.cumsum(same)[last_of_value]
    fp = np.cumsum(~same)[last_of_value]
    fpr = np.append(0.0, fp / fp[-1])
    tpr = np.append(0.0, tp / tp[-1])
    return fpr, tpr


def _check_far(far: float) -> float:
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1]; got {far}.")
    return float(far)


def _tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    return float(tpr[fpr <= _check_far(far)].max())


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    # fpr + tpr strictly increases from 0 to 2 along the curve; the EER is
    # where it crosses 1, i.e. where FAR = FRR = 1 - TAR.
    return float(np.interp(1.0, fpr + tpr, fpr))


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def tar_at_far(distances: npt.ArrayLike, is_same: npt.ArrayLike, far: float = 1e-3) -> float:
    """Compute the true accept rate at a given false accept rate.

    Parameters
    ----------
    distances : array-like of shape (n_pairs,)
        Distance between the two samples of each pair; smaller means more
        alike.
    is_same : array-like of shape (n_pairs,)
        Whether each pair is of the same identity (bool or 0/1). Both kinds
        of pair must be present.
    far : float, default=1e-3
        Highest acceptable false accept rate, in ``[0, 1]``.

    Returns
    -------
    float
        The largest fraction of "same" pairs accepted by a threshold rule
        "accept if distance <= t" that accepts at most a fraction ``far`` of
        the "different" pairs.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``distances`` is not
        finite, ``is_same`` is not boolean or lacks one kind of pair, or
        ``far`` is outside ``[0, 1]``.

    See Also
    --------
    equal_error_rate : Where false accept and false reject rates meet.
    verification_scores : AUC, EER and TAR@FAR together.

    Notes
    -----
    No interpolation: only thresholds actually realisable on the data count
    (pairs at equal distance are accepted or rejected together), so the
    result is the highest point of the ROC curve with FAR <= ``far``.

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import tar_at_far
    >>> d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    >>> same = [True, True, False, True, False, False]
    >>> tar_at_far(d, same, far=0.0)
    0.6666666666666666
    >>> tar_at_far(d, same, far=0.5)
    1.0
    """
    fpr, tpr = _roc(distances, is_same)
    return _tar_at_far(fpr, tpr, far)


def equal_error_rate(distances: npt.ArrayLike, is_same: npt.ArrayLike) -> float:
    """Compute the equal error rate, where false accepts and rejects balance.

    Parameters
    ----------
    distances : array-like of shape (n_pairs,)
        Distance between the two samples of each pair; smaller means more
        alike.
    is_same : array-like of shape (n_pairs,)
        Whether each pair is of the same identity (bool or 0/1). Both kinds
        of pair must be present.

    Returns
    -------
    float
        The EER, in ``[0, 1]``; lower is better.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``distances`` is not
        finite, or ``is_same`` is not boolean or lacks one kind of pair.

    See Also
    --------
    tar_at_far : True accept rate at a fixed false accept rate.
    verification_scores : AUC, EER and TAR@FAR together.

    Notes
    -----
    The ROC curve of the rule "accept if distance <= t" is taken as the
    polyline through its realisable points; the EER is the false accept
    rate where that polyline crosses FAR = FRR (``FAR + TAR = 1``), found by
    linear interpolation between the two points that straddle it.

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import equal_error_rate
    >>> equal_error_rate([0.1, 0.2, 0.3, 0.4], [True, True, False, False])
    0.0
    >>> equal_error_rate([0.1, 0.2, 0.3, 0.4], [True, False, True, False])
    0.5
    """
    return _eer(*_roc(distances, is_same))


def verification_scores(
    distances: npt.ArrayLike,
    is_same: npt.ArrayLike,
    *,
    far: Sequence[float] = (1e-3, 1e-2, 1e-1),
) -> dict[str, float]:
    """Compute ROC AUC, equal error rate and TAR@FAR of pair distances.

    Parameters
    ----------
    distances : array-like of shape (n_pairs,)
        Distance between the two samples of each pair; smaller means more
        alike.
    is_same : array-like of shape (n_pairs,)
        Whether each pair is of the same identity (bool or 0/1). Both kinds
        of pair must be present.
    far : sequence of float, default=(1e-3, 1e-2, 1e-1)
        False accept rates at which to report the true accept rate.

    Returns
    -------
    dict
        ``"roc_auc"`` (the probability that a random "same" pair is closer
        than a random "different" pair, ties counting one half), ``"eer"``
        and ``f"tar_at_far_{far:g}"`` for each ``far``.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``distances`` is not
        finite, ``is_same`` is not boolean or lacks one kind of pair, or a
        ``far`` is outside ``[0, 1]``.

    See Also
    --------
    tar_at_far, equal_error_rate
        The individual metrics, whose definitions apply here unchanged.

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import verification_scores
    >>> d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    >>> same = [True, True, False, True, False, False]
    >>> verification_scores(d, same, far=(0.0, 0.5))
    ... # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
    {'roc_auc': 0.888..., 'eer': 0.333..., 'tar_at_far_0': 0.666...,
     'tar_at_far_0.5': 1.0}
    """
    fpr, tpr = _roc(distances, is_same)
    scores = {"roc_auc": _auc(fpr, tpr), "eer": _eer(fpr, tpr)}
    for rate in far:
        scores[f"tar_at_far_{rate:g}"] = _tar_at_far(fpr, tpr, rate)
    return scores
