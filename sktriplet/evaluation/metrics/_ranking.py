"""The exact ranking engine under the retrieval metrics.

:func:`per_query_scores` ranks a gallery for every query and returns the
per-query precision@k, recall@k, R-precision and AP@R that
:mod:`sktriplet.evaluation.metrics.retrieval` averages. How it ranks (the
user-facing conventions are in :mod:`sktriplet.evaluation.metrics`):

* Neighbours are ranked by increasing distance; equal distances are ranked
  by increasing gallery index (the order of a stable sort). The ranking is
  computed, with one matrix product, on a quantity that orders each query's
  gallery exactly like the distance: ``||g||^2 - 2 q.g`` for
  ``"sqeuclidean"`` and ``"euclidean"`` and ``-cos(q, g)`` for ``"cosine"``.
* In leave-one-out mode the query is removed from its own ranking by index.
* Queries are processed in blocks of about 32 MB of distances; on a gallery
  of 4096 samples or more only about ``1.5 * max(k, R)`` candidates per
  query, found by a sampled threshold, are sorted.

Plain NumPy / PyTorch: no scikit-learn, no skorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from sktriplet.triplets.distances import check_distance

__all__ = ["ArrayLike", "per_query_scores"]

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


def per_query_scores(
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
