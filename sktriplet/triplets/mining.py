"""Online triplet mining on a batch's distance matrix.

Functions here choose, for each anchor or positive pair, which negatives the
loss looks at. They take a *detached* distance matrix and integer labels and
return indices; the loss then measures the chosen triplets with gradients.
Nothing here builds a ``B x B x B`` tensor: memory is ``O(B^2)`` in the batch
size ``B``, with work split into blocks of rows of at most ``block_elements``
numbers.

The mining rules are those of :func:`sktriplet.triplets.losses.triplet_loss`:

``"semihard"``
    For every ordered positive pair ``(a, p)``, the negative ``n`` with the
    smallest ``d(a, n)`` strictly greater than ``d(a, p)``; where none is
    farther than ``d(a, p)``, the farthest negative (TensorFlow Addons'
    ``triplet_semihard_loss``).
``"hard"``
    Per anchor, the farthest positive and the nearest negative (batch-hard,
    Hermans et al. 2017).
``"all"``
    Every valid triplet (handled in :mod:`sktriplet.triplets.losses` without
    enumerating the triplets).

How semi-hard mining stays fast: positive pairs are held in a padded
*class table*: row ``a`` lists the ``W`` other members of ``a``'s class
(``W`` is the largest class in the batch minus one, so ``W = K - 1`` for PK
batches). Two kernels, both ``O(B^2)`` in memory and processed in blocks of
rows, find every pair's semi-hard negative, and ``method="auto"`` picks by
``W``:

- ``"masked"`` (narrow tables, PK batches): per table column, a subtraction
  and plain minima over chunks of the row, read as integers so that one
  minimum is the nearest farther negative (no mask, no sort); the index is
  recovered on the small chunk minima. ``O(B^2 W)``.
- ``"sorted"`` (wide tables, a few large classes): each row's negative and
  positive distances are sorted together once, as 64-bit keys that carry
  the column, and each positive distance's next negative is read off the
  order. ``O(B^2 log B)``; on CPU the sort is numpy's vectorised integer
  sort.

The farthest negative (the fallback) is computed only for rows that need it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from sktriplet.triplets.distances import paired_distances, pairwise_distances

__all__ = [
    "MINING_STRATEGIES",
    "TRIPLET_MINING_STRATEGIES",
    "BatchNegatives",
    "HardTriplets",
    "IndexTriplets",
    "MinedTriplets",
    "SemihardTriplets",
    "as_index_triplets",
    "check_indices",
    "check_mining",
    "check_triplet_mining",
    "hard_triplets",
    "label_masks",
    "mine_batch_negatives",
    "mine_table",
    "mine_triplets",
    "semihard_triplets",
]

#: The names accepted wherever a ``mining`` argument is taken.
MINING_STRATEGIES: tuple[str, ...] = ("semihard", "hard", "all")

#: Default bound on the number of elements of one temporary block.
DEFAULT_BLOCK_ELEMENTS = 1 << 24

_SEMIHARD_METHODS = ("auto", "masked", "sorted")


def check_mining(mining: str) -> str:
    """Return ``mining`` if it names a mining strategy, else raise ``ValueError``.

    Parameters
    ----------
    mining : str
        The name to check.

    Returns
    -------
    str
        ``mining`` unchanged.
    """
    if mining not in MINING_STRATEGIES:
        raise ValueError(
            f"mining={mining!r} is not supported; use one of {list(MINING_STRATEGIES)}."
        )
    return mining


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks of positive pairs and of negative pairs.

    Parameters
    ----------
    labels : torch.Tensor of shape (B,)
        Integer class labels.

    Returns
    -------
    positive : torch.Tensor of shape (B, B), dtype bool
        ``positive[i, j]`` is true when ``i != j`` and the labels match.
    negative : torch.Tensor of shape (B, B), dtype bool
        ``negative[i, j]`` is true when the labels differ.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.mining import label_masks
    >>> positive, negative = label_masks(torch.tensor([0, 0, 1]))
    >>> positive.int().tolist()
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    """
    same = labels[:, None] == labels[None, :]
    positive = same.clone()
    positive.fill_diagonal_(False)
    return positive, ~same


@dataclass(frozen=True)
class ClassTable:
    """The positive pairs of a batch, one padded row per anchor.

    Attributes
    ----------
    codes : torch.Tensor of shape (B,), dtype int64
        Class of each sample, numbered ``0 .. n_classes - 1``.
    members : torch.Tensor of shape (B, width), dtype int64
        ``members[a]`` lists the other samples of ``a``'s class (its
        positives) in increasing order, padded with repeats.
    valid : torch.Tensor of shape (B, width), dtype bool
        True where ``members[a, j]`` is a positive of ``a`` (not padding)
        and the batch has another class (so ``a`` has a negative).
    n_classes : int
        Number of distinct labels.
    """

    codes: torch.Tensor
    members: torch.Tensor
    valid: torch.Tensor
    n_classes: int

    @property
    def width(self) -> int:
        """Columns of the table: the size of the largest class, minus one."""
        return self.members.shape[1]

    @property
    def has_triplets(self) -> bool:
        """Whether the batch holds any valid triplet (known without a sync)."""
        return self.n_classes >= 2 and self.width >= 1

    def anchors(self, n_anchors: int) -> ClassTable:
        """The table of the first ``n_anchors`` samples as anchors.

        Their positives stay indices into all the samples (e.g. a batch
        followed by a cross-batch memory); ``codes`` keeps every sample's.

        Parameters
        ----------
        n_anchors : int
            How many leading samples are anchors.

        Returns
        -------
        ClassTable
        """
        return ClassTable(
            self.codes, self.members[:n_anchors], self.valid[:n_anchors], self.n_classes
        )

    @classmethod
    def from_labels(cls, labels: torch.Tensor) -> ClassTable:
        """Build the table of a batch's labels (``O(B log B + B width)``).

        Parameters
        ----------
        labels : torch.Tensor of shape (B,)
            Integer class labels.

        Returns
        -------
        ClassTable
            The table. Finding ``width`` synchronises with the device once.
        """
        batch = labels.shape[0]
        device = labels.device
        _, codes, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        n_classes = counts.numel()
        width = int(counts.max()) - 1 if batch else 0
        order = torch.argsort(codes, stable=True)
        starts = counts.cumsum(0) - counts
        # Position of each sample within its class (in ``order``).
        rank = torch.empty_like(order)
        rank[order] = torch.arange(batch, device=device) - starts[codes[order]]
        cols = torch.arange(width, device=device)
        n_pos = counts[codes][:, None] - 1
        # Skip the anchor itself: column j holds class member j, or j + 1 from
        # the anchor's own position on.
        index = torch.minimum(cols + (cols >= rank[:, None]), n_pos)
        members = order[starts[codes][:, None] + index]
        valid = cols < n_pos
        if n_classes < 2:
            valid = torch.zeros_like(valid)
        return cls(codes, members, valid, n_classes)


@dataclass(frozen=True)
class SemihardTriplets:
    """Triplets chosen by the semi-hard rule, one per positive pair.

    Attributes
    ----------
    anchor, positive, negative : torch.Tensor of shape (n_pairs,)
        Indices into the batch.
    fallback : torch.Tensor of shape (n_pairs,), dtype bool
        True where no negative was farther than the positive, so the farthest
        negative was taken.
    """

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    fallback: torch.Tensor


@dataclass(frozen=True)
class HardTriplets:
    """Triplets chosen by the batch-hard rule, one per anchor.

    Attributes
    ----------
    anchor, positive, negative : torch.Tensor of shape (n_anchors,)
        Indices into the batch, for the anchors that have at least one
        positive and one negative.
    """

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


def semihard_triplets(
    dist: torch.Tensor,
    labels: torch.Tensor,
    *,
    method: str = "auto",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> SemihardTriplets:
    """Choose the semi-hard negative of every positive pair.

    Parameters
    ----------
    dist : torch.Tensor of shape (B, B)
        Pairwise distances (gradients are not used).
    labels : torch.Tensor of shape (B,)
        Integer class labels.
    method : {"auto", "masked", "sorted"}, default="auto"
        ``"masked"`` takes a minimum over each pair's negatives
        (``O(B^2 W)`` for a largest class of ``W + 1``, no sort);
        ``"sorted"`` sorts each anchor's negative and positive distances
        together and reads each pair's answer off the order
        (``O(B^2 log B)``); see the module docstring. ``"auto"`` picks the
        cheaper for the batch's widest class. All give
        the same triplets (``"masked"`` up to distances that differ only in
        the last bit); among equal distances the lowest index wins.
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block.

    Returns
    -------
    SemihardTriplets
        The chosen triplets, ordered by anchor, then positive. Pairs whose
        anchor has no negative (a batch of one class) are left out.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.mining import semihard_triplets
    >>> d = torch.tensor([[0.0, 1.0, 0.5, 2.0],
    ...                   [1.0, 0.0, 3.0, 0.2],
    ...                   [0.5, 3.0, 0.0, 1.0],
    ...                   [2.0, 0.2, 1.0, 0.0]])
    >>> t = semihard_triplets(d, torch.tensor([0, 0, 1, 1]))
    >>> t.negative.tolist()  # for pairs (0,1), (1,0), (2,3), (3,2)
    [3, 2, 1, 0]
    """
    table = ClassTable.from_labels(torch.as_tensor(labels, device=dist.device))
    neg, found = semihard_table(dist, table, method=method, block_elements=block_elements)
    anchor, slot = table.valid.nonzero(as_tuple=True)
    return SemihardTriplets(
        anchor, table.members[anchor, slot], neg[anchor, slot], ~found[anchor, slot]
    )


def semihard_table(
    dist: torch.Tensor,
    table: ClassTable,
    *,
    method: str = "auto",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Semi-hard negatives laid out like ``table.members``.

    Parameters
    ----------
    dist : torch.Tensor of shape (B, B) or (A, B)
        Pairwise distances (gradients are not used). A rectangular matrix
        holds the rows of the first ``A`` samples only: they are the
        anchors, every sample is a candidate positive or negative (as for a
        batch followed by a cross-batch memory).
    table : ClassTable
        The positive pairs, one row per row of ``dist``
        (:meth:`ClassTable.anchors` for a rectangular ``dist``).
    method : {"auto", "masked", "sorted"}, default="auto"
        As for :func:`semihard_triplets`.
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block.

    Returns
    -------
    negative : torch.Tensor of shape (B, width), dtype int64
        The chosen negative of the pair ``(a, table.members[a, j])``
        (meaningful where ``table.valid``).
    found : torch.Tensor of shape (B, width), dtype bool
        False where no negative is farther than the positive and the
        farthest negative was taken.
    """
    if method not in _SEMIHARD_METHODS:
        raise ValueError(
            f"method={method!r} is not supported; use one of {list(_SEMIHARD_METHODS)}."
        )
    dist = dist.detach()
    # Rows are the anchors, columns every sample (anchor ``r`` is column
    # ``r``): the batch itself, or a batch and a memory after it.
    n_rows, batch = dist.shape
    width = table.width
    if not table.has_triplets:
        empty = table.members.new_zeros(table.members.shape)
        return empty, empty.bool()
    if method == "auto":
        method = _choose_semihard_method(batch, width)
    inf = math.inf
    # Positive distances, +inf where the slot holds no positive.
    thresholds = dist.gather(1, table.members).masked_fill_(~table.valid, inf)
    negative = torch.empty_like(table.members)
    found = torch.empty_like(table.valid)
    kernel = {"masked": _masked, "sorted": _sorted}[method]
    on_cpu = not _is_accelerator(dist.device)
    if on_cpu:
        # Blocks of rows whose temporaries stay in cache (and are reused by
        # the allocator instead of being mapped afresh). On a GPU, large
        # blocks: fewer kernel launches.
        block_elements = min(block_elements, _CACHE_ELEMENTS)
    if method == "masked":
        # Columns padded to whole chunks (see _masked).
        padded = -(-batch // _chunk_size(batch)) * _chunk_size(batch)
    else:
        padded = batch
    rows_per_block = max(1, block_elements // batch)
    buffer = dist.new_full((min(rows_per_block, n_rows), padded), inf)
    for r0 in range(0, n_rows, rows_per_block):
        r1 = min(n_rows, r0 + rows_per_block)
        # Distances to negatives only: +inf at the anchor and its positives.
        near = buffer[: r1 - r0]
        near[:, :batch] = dist[r0:r1]
        near.scatter_(1, table.members[r0:r1], inf)
        near.diagonal(offset=r0).fill_(inf)
        neg, ok = kernel(near, batch, thresholds[r0:r1])
        # The fallback, the farthest negative: on CPU only for the rows that
        # need it; on a GPU for every row (a pass is cheaper than a sync).
        if on_cpu:
            need = (~ok & table.valid[r0:r1]).any(dim=1).nonzero().squeeze(1)
        else:
            need = slice(None)
        if not on_cpu or need.numel():
            rows = near[need, :batch]
            farthest = torch.where(rows == inf, -1.0, rows).max(dim=1).indices
            neg[need] = torch.where(ok[need], neg[need], farthest[:, None])
        negative[r0:r1] = neg
        found[r0:r1] = ok
    return negative, found


def _is_accelerator(device: torch.device) -> bool:
    # Large blocks and no host syncs (CUDA, MPS, ...); cache-sized blocks
    # and syncs that skip work on CPU.
    return device.type != "cpu"


#: Distances per block of rows (half a MiB of float32): small enough for the
#: kernels' temporaries to stay in cache.
_CACHE_ELEMENTS = 1 << 17

#: Table widths (largest class minus one) up to which one masked pass per
#: column is cheaper than sorting each row.
_MASKED_MAX_WIDTH = 32


def _choose_semihard_method(batch: int, width: int) -> str:
    # Work per row of B distances: the masked kernel makes two vectorised
    # passes per column of the class table; the sort costs about as much as
    # 30 such columns on CPU (numpy's vectorised integer sort) and does not
    # grow with the width. Crossover measured at B = 1024 (timings in
    # docs/benchmarks.md, benchmarks/bench_mining.py).
    del batch
    return "masked" if width <= _MASKED_MAX_WIDTH else "sorted"


def _masked(
    near: torch.Tensor, batch: int, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # near: (r, C * n_chunks) negative distances (+inf elsewhere and in the
    # padding past column ``batch``); thresholds: (r, W) positive distances.
    #
    # For the slot's positive distance t, g = t - d(a, n) is negative exactly
    # for the negatives farther than t (non-negatives hold +inf, so
    # g = -inf). Read as a signed integer of the same width, a negative
    # float orders by its magnitude and above every non-negative one: the
    # smallest integer is the farther negative nearest to t, with the lowest
    # index among ties. A minimum equal to -inf's pattern means that no
    # finite negative is farther (the fallback case). The subtraction is
    # exact whenever d(a, n) <= 2 t (Sterbenz) and monotone otherwise, so the
    # choice can differ from the exact rule only between distances equal to
    # the last bit.
    #
    # A minimum *with its index* is a scalar loop on CPU (~25x slower than a
    # plain minimum), so each column of the table costs two vectorised
    # passes over the block (the subtraction into a buffer that stays in
    # cache, and plain minima of chunks of C columns), and the index is found
    # afterwards on small tensors: the best chunk (of B / C), then the best
    # column within it (of C, recomputed).
    r, padded = near.shape
    width = thresholds.shape[1]
    chunk = _chunk_size(batch)
    n_chunks = padded // chunk
    itype = _SAME_WIDTH_INT[near.dtype]
    no_candidate = torch.tensor(-math.inf, dtype=near.dtype).view(itype).item()
    gap = torch.empty_like(near)
    gap_chunks = gap.view(itype).view(r, n_chunks, chunk)
    chunk_min = torch.empty(r, width, n_chunks, dtype=itype, device=near.device)
    columns = thresholds.T.contiguous()
    for j in range(width):
        torch.sub(columns[j][:, None], near, out=gap)
        torch.amin(gap_chunks, dim=2, out=chunk_min[:, j])
    best, which = _first_min(chunk_min)
    offsets = torch.arange(chunk, device=near.device)
    cols = (which[:, :, None] * chunk + offsets).view(r, width * chunk)
    inner = torch.sub(thresholds[:, :, None], near.gather(1, cols).view(r, width, chunk))
    _, within = _first_min(inner.view(itype))
    chosen = (which * chunk + within).clamp_max_(batch - 1)
    return chosen, best < no_candidate


def _first_min(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Minimum over the last dimension and the index of its first occurrence.
    # For integers of up to 32 bits, key = value * n + index is exact in
    # float64 and its plain minimum is vectorised (about 2.5x faster than
    # ``min(dim=-1)`` with indices on CPU).
    n = values.shape[-1]
    if values.dtype == torch.int64:
        return values.min(dim=-1)
    index = torch.arange(n, dtype=torch.float64, device=values.device)
    key = values.double().mul_(n).add_(index).amin(dim=-1)
    where = torch.remainder(key, n)
    return (key - where).div_(n).to(values.dtype), where.long()


def _chunk_size(batch: int) -> int:
    # About sqrt(B), a power of two of at least 8: the two searches with
    # indices then cost ~2 sqrt(B) per slot against B for the plain minima.
    return max(8, 1 << max(0, round(math.log2(max(batch, 1)) / 2)))


_SAME_WIDTH_INT = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def _sorted(
    near: torch.Tensor, batch: int, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # near: (r, batch) negative distances (+inf elsewhere); thresholds:
    # (r, W) positive distances (+inf for empty slots).
    itype = _SAME_WIDTH_INT[near.dtype]
    if near.device.type == "cpu" and itype != torch.int64:
        return _sorted_merge(near, thresholds, itype)
    values, order = near.sort(dim=1, stable=True)
    # First position whose distance is strictly greater than d(a, p).
    where = torch.searchsorted(values, thresholds, right=True).clamp_max_(near.shape[1] - 1)
    best = values.gather(1, where)
    ok = torch.isfinite(best) & (best > thresholds)
    return order.gather(1, where), ok


def _sorted_merge(
    near: torch.Tensor, thresholds: torch.Tensor, itype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    # One sort per row of the negatives and the positive distances together,
    # as 64-bit keys (value bits << 32 | tag): for non-negative floats the
    # bits order like the values, a negative's tag is its column (so equal
    # distances keep the lowest column first) and a positive's tag is
    # 2**31 + its slot (so it sorts after the negatives of equal distance).
    # The first negative after a positive distance in that order is the
    # pair's semi-hard negative. numpy's sort of integers is vectorised
    # (several times faster than torch's on CPU).
    r, batch = near.shape
    width = thresholds.shape[1]
    flag = 1 << 31
    cols = torch.arange(batch, dtype=torch.int64)
    keys = torch.empty(r, batch + width, dtype=torch.int64)
    torch.bitwise_or(near.contiguous().view(itype).long() << 32, cols, out=keys[:, :batch])
    slots = torch.arange(flag, flag + width, dtype=torch.int64)
    torch.bitwise_or(thresholds.contiguous().view(itype).long() << 32, slots, out=keys[:, batch:])
    ordered = torch.from_numpy(np.sort(keys.numpy(), axis=1))
    is_positive = (ordered & flag) != 0
    # For a positive distance at position q, the negatives before it,
    # q + 1 - (positives up to q), index the first negative after it; a
    # negative at q has that count minus one as its rank among negatives.
    rank = torch.arange(1, batch + width + 1) - is_positive.cumsum(dim=1)
    negatives = torch.empty(r, batch + 1, dtype=torch.int64)
    negatives.scatter_(1, torch.where(is_positive, batch, rank - 1), ordered)
    slot = torch.where(is_positive, ordered & (flag - 1), width)
    after = torch.empty(r, width + 1, dtype=torch.int64).scatter_(1, slot, rank)[:, :width]
    best = negatives.gather(1, after.clamp_max(batch - 1))
    # A negative (not +inf) after the positive distance: found.
    inf_bits = torch.tensor(math.inf, dtype=near.dtype).view(itype).long().item()
    found = ((best >> 32) < inf_bits) & (after < batch)
    return best & (flag - 1), found


def hard_triplets(
    dist: torch.Tensor, labels: torch.Tensor, *, block_elements: int = DEFAULT_BLOCK_ELEMENTS
) -> HardTriplets:
    """Choose the farthest positive and the nearest negative of every anchor.

    Parameters
    ----------
    dist : torch.Tensor of shape (B, B)
        Pairwise distances (gradients are not used).
    labels : torch.Tensor of shape (B,)
        Integer class labels.
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block.

    Returns
    -------
    HardTriplets
        One triplet per anchor that has a positive and a negative.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.mining import hard_triplets
    >>> d = torch.tensor([[0.0, 1.0, 0.5, 2.0],
    ...                   [1.0, 0.0, 3.0, 0.2],
    ...                   [0.5, 3.0, 0.0, 1.0],
    ...                   [2.0, 0.2, 1.0, 0.0]])
    >>> hard_triplets(d, torch.tensor([0, 0, 1, 1])).negative.tolist()
    [2, 3, 0, 1]
    """
    labels = torch.as_tensor(labels, device=dist.device)
    pos, neg, valid = hard_table(dist, labels, block_elements=block_elements)
    anchor = valid.nonzero(as_tuple=True)[0]
    return HardTriplets(anchor, pos[anchor], neg[anchor])


def hard_table(
    dist: torch.Tensor, labels: torch.Tensor, *, block_elements: int = DEFAULT_BLOCK_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-hard positive and negative of every anchor, without a sync.

    Parameters
    ----------
    dist : torch.Tensor of shape (B, B) or (A, B)
        Pairwise distances (gradients are not used); must be ``>= 0``. A
        rectangular matrix holds the rows of the first ``A`` samples (the
        anchors; every sample is a candidate).
    labels : torch.Tensor of shape (B,)
        Integer class labels of all the samples.
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block.

    Returns
    -------
    positive, negative : torch.Tensor of shape (A,), dtype int64
        Farthest positive and nearest negative of each anchor (lowest index
        among ties; meaningful where ``valid``).
    valid : torch.Tensor of shape (A,), dtype bool
        Anchors with at least one positive and one negative.
    """
    dist = dist.detach()
    n_rows, batch = dist.shape
    positive = torch.empty(n_rows, dtype=torch.long, device=dist.device)
    negative = torch.empty_like(positive)
    valid = torch.empty(n_rows, dtype=torch.bool, device=dist.device)
    step = max(1, block_elements // max(batch, 1))
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        rows = dist[r0:r1]
        same = labels[r0:r1, None] == labels[None, :]
        far = torch.where(same, rows, -1.0)
        far.diagonal(offset=r0).fill_(-1.0)  # an anchor is not its own positive
        far_value, positive[r0:r1] = far.max(dim=1)
        near_value, negative[r0:r1] = rows.masked_fill(same, math.inf).min(dim=1)
        valid[r0:r1] = (far_value >= 0) & torch.isfinite(near_value)
    return positive, negative, valid


# --------------------------------------------------------------------------
# Index triplets: the seam between the labelled miners and explicit triplets
# --------------------------------------------------------------------------


class IndexTriplets(NamedTuple):
    """Triplets as three index tensors into a batch of embeddings.

    A plain named tuple, so ``a, p, n = triplets`` works and it can be passed
    as ``triplets=`` to :func:`sktriplet.triplets.losses.triplet_loss`.

    Attributes
    ----------
    anchor, positive, negative : torch.Tensor of shape (n_triplets,), dtype int64
        Indices into the batch.
    """

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


class MinedTriplets(NamedTuple):
    """Mined triplets laid out per anchor row: the fast form of an index tuple.

    Row ``a`` holds anchor ``a``'s triplets: ``(a, positive[a, j],
    negative[a, j])`` where ``valid[a, j]`` (or, for 1-D fields, one triplet
    ``(a, positive[a], negative[a])`` where ``valid[a]``). Losses gather
    distances from this layout directly, without flattening it (which costs a
    device synchronisation); :meth:`index_triplets` flattens it.

    Attributes
    ----------
    positive, negative : torch.Tensor of shape (B, W) or (B,), dtype int64
        Indices into the batch.
    valid : torch.Tensor of the same shape, dtype bool
        Which entries are triplets.
    found : torch.Tensor of the same shape, dtype bool, or None
        Semi-hard: false where no negative was farther than the positive
        (the farthest negative was taken); ``None`` otherwise.
    """

    positive: torch.Tensor
    negative: torch.Tensor
    valid: torch.Tensor
    found: torch.Tensor | None = None

    def index_triplets(self) -> IndexTriplets:
        """The triplets as an index tuple, ordered by anchor, then positive slot."""
        if self.valid.ndim == 1:
            anchor = self.valid.nonzero(as_tuple=True)[0]
            return IndexTriplets(anchor, self.positive[anchor], self.negative[anchor])
        anchor, slot = self.valid.nonzero(as_tuple=True)
        return IndexTriplets(anchor, self.positive[anchor, slot], self.negative[anchor, slot])


def mine_table(
    dist: torch.Tensor,
    labels: torch.Tensor | ClassTable,
    *,
    mining: str = "semihard",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> MinedTriplets:
    """Mine a labelled batch's distance matrix, keeping the per-anchor layout.

    Parameters
    ----------
    dist : torch.Tensor of shape (B, B) or (A, B)
        Pairwise distances (gradients are not used). A rectangular matrix
        holds the rows of the first ``A`` samples: only they are anchors,
        while every sample is a candidate positive or negative (a batch
        followed by a cross-batch memory).
    labels : torch.Tensor of shape (B,) or ClassTable
        Integer class labels of all the samples, or their
        :class:`ClassTable` (built once by a caller that needs it too).
    mining : {"semihard", "hard"}, default="semihard"
        ``"semihard"``: one triplet per ordered positive pair, laid out like
        the class table (``(A, W)``); ``"hard"``: one per anchor (``(A,)``).
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block.

    Returns
    -------
    MinedTriplets

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.mining import mine_table
    >>> d = torch.tensor([[0.0, 1.0, 0.5, 2.0],
    ...                   [1.0, 0.0, 3.0, 0.2],
    ...                   [0.5, 3.0, 0.0, 1.0],
    ...                   [2.0, 0.2, 1.0, 0.0]])
    >>> mine_table(d, torch.tensor([0, 0, 1, 1]), mining="hard").negative.tolist()
    [2, 3, 0, 1]
    """
    if mining == "semihard":
        table = labels if isinstance(labels, ClassTable) else ClassTable.from_labels(labels)
        if table.members.shape[0] != dist.shape[0]:
            table = table.anchors(dist.shape[0])
        negative, found = semihard_table(dist, table, block_elements=block_elements)
        return MinedTriplets(table.members, negative, table.valid, found)
    if mining == "hard":
        codes = labels.codes if isinstance(labels, ClassTable) else labels
        positive, negative, valid = hard_table(dist, codes, block_elements=block_elements)
        return MinedTriplets(positive, negative, valid)
    raise ValueError(f"mine_table mines 'semihard' or 'hard' triplets; got mining={mining!r}.")


def mine_triplets(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    mining: str = "semihard",
    distance: str = "sqeuclidean",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> IndexTriplets:
    """Mine a labelled batch and return the chosen triplets as index tuples.

    The rules are those of :func:`sktriplet.triplets.losses.triplet_loss`
    with ``labels``, so ``triplet_loss(emb, triplets=mine_triplets(emb, y,
    mining=m), mining="none")`` equals ``triplet_loss(emb, y, mining=m)`` for
    ``m`` in ``"semihard"`` and ``"hard"``.

    Parameters
    ----------
    embeddings : torch.Tensor of shape (B, d), or (B, B) with distance="precomputed"
        The batch's embeddings, or its distance matrix.
    labels : torch.Tensor of shape (B,)
        Integer class labels.
    mining : {"semihard", "hard", "all"}, default="semihard"
        ``"semihard"``: one triplet per ordered positive pair; ``"hard"``:
        one per anchor that has a positive and a negative; ``"all"``: every
        valid triplet (``sum over anchors of positives x negatives`` rows, so
        up to ``B^3 / 4``: only for small batches). The loss's ``"all"``
        averages only the non-zero hinge terms; the mean of ``mining="none"``
        over these triplets counts the zeros too.
    distance : {"sqeuclidean", "euclidean", "cosine", "precomputed"}, \
default="sqeuclidean"
        Distance between embeddings; ``"precomputed"`` when ``embeddings``
        already is the distance matrix.
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block.

    Returns
    -------
    IndexTriplets
        ``(anchor, positive, negative)``, ordered by anchor, then positive.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.mining import mine_triplets
    >>> emb = torch.tensor([[0.0], [1.0], [0.4], [3.0]])
    >>> a, p, n = mine_triplets(emb, torch.tensor([0, 0, 1, 1]), mining="hard")
    >>> a.tolist(), p.tolist(), n.tolist()
    ([0, 1, 2, 3], [1, 0, 3, 2], [2, 2, 0, 1])
    """
    check_mining(mining)
    if distance == "precomputed":
        dist = embeddings.detach()
        if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
            raise ValueError(
                f'distance="precomputed" needs a square (B, B) distance matrix; got shape '
                f"{tuple(dist.shape)}."
            )
    else:
        dist = pairwise_distances(embeddings.detach(), distance=distance)
    labels = torch.as_tensor(labels, device=dist.device)
    if labels.ndim != 1 or labels.shape[0] != dist.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one label per embedding; got shape "
            f"{tuple(labels.shape)} for {dist.shape[0]} embeddings."
        )
    if mining == "all":
        return _all_triplets(labels)
    return mine_table(dist, labels, mining=mining, block_elements=block_elements).index_triplets()


def _all_triplets(labels: torch.Tensor) -> IndexTriplets:
    # Every (a, p, n) with a != p in a's class and n in another class, by
    # anchor, then positive, then negative.
    table = ClassTable.from_labels(labels)
    anchor, slot = table.valid.nonzero(as_tuple=True)
    positive = table.members[anchor, slot]
    neg_anchor, negative = (table.codes[:, None] != table.codes[None, :]).nonzero(as_tuple=True)
    n_neg = torch.bincount(neg_anchor, minlength=labels.shape[0])
    starts = n_neg.cumsum(0) - n_neg
    per_pair = n_neg[anchor]
    pair = torch.repeat_interleave(torch.arange(anchor.numel(), device=labels.device), per_pair)
    pair_starts = per_pair.cumsum(0) - per_pair
    within = torch.arange(pair.numel(), device=labels.device) - pair_starts[pair]
    return IndexTriplets(anchor[pair], positive[pair], negative[starts[anchor[pair]] + within])


#: Mining strategies for explicit triplets (``triplet_loss(..., triplets=...)``).
TRIPLET_MINING_STRATEGIES: tuple[str, ...] = ("none", "semihard", "hard")


def check_triplet_mining(mining: str) -> str:
    """Return ``mining`` if it is a strategy for explicit triplets, else raise.

    Parameters
    ----------
    mining : str
        The name to check.

    Returns
    -------
    str
        ``mining`` unchanged.
    """
    if mining not in TRIPLET_MINING_STRATEGIES:
        raise ValueError(
            f"mining={mining!r} is not supported with explicit triplets; use one of "
            f"{list(TRIPLET_MINING_STRATEGIES)}."
        )
    return mining


_COUNTS = {3: "three", 4: "four"}


def check_indices(
    parts: tuple, n_embeddings: int, device: torch.device, what: str = "triplet"
) -> torch.Tensor:
    """Check index tensors into a batch of ``n_embeddings``; return them stacked.

    The shared check of :func:`as_index_triplets` and
    :func:`sktriplet.triplets.pair_mining.as_index_pairs`.

    Parameters
    ----------
    parts : tuple of array-likes
        1-D integer index tensors of one length.
    n_embeddings : int
        Size of the batch.
    device : torch.device
        Device of the result.
    what : str, default="triplet"
        What the indices describe, for the error messages.

    Returns
    -------
    torch.Tensor of shape (len(parts), n), dtype int64

    Raises
    ------
    ValueError
        If the shapes differ, the indices are not integers or one is out of
        ``[0, n_embeddings)``.
    """
    parts = tuple(torch.as_tensor(t, device=device) for t in parts)
    sizes = [tuple(t.shape) for t in parts]
    if any(len(s) != 1 for s in sizes) or len(set(sizes)) != 1:
        raise ValueError(
            f"{what}s must be {_COUNTS.get(len(parts), len(parts))} 1-D index tensors of one "
            f"length; got shapes {sizes}."
        )
    if any(t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool for t in parts):
        raise ValueError(
            f"{what} indices must be integers; got dtypes {[str(t.dtype) for t in parts]}."
        )
    out = torch.stack(parts).to(device=device, dtype=torch.long)
    if out.numel() and bool(((out < 0) | (out >= n_embeddings)).any()):
        bad = out[(out < 0) | (out >= n_embeddings)][0].item()
        raise ValueError(
            f"{what} index {bad} is out of range for a batch of {n_embeddings} embeddings: "
            f"indices must lie in [0, {n_embeddings - 1}]."
        )
    return out


def as_index_triplets(triplets, n_embeddings: int, device: torch.device) -> IndexTriplets:
    """Check index triplets against a batch of ``n_embeddings`` and return them.

    Parameters
    ----------
    triplets : tuple of three 1-D integer tensors, or integer tensor of shape (n, 3)
        ``(anchor, positive, negative)`` indices into the batch.
    n_embeddings : int
        Size of the batch.
    device : torch.device
        Device of the returned tensors.

    Returns
    -------
    IndexTriplets
        int64 tensors on ``device``.

    Raises
    ------
    ValueError
        If the shapes differ, the indices are not integers or one is out of
        ``[0, n_embeddings)``.
    """
    if isinstance(triplets, torch.Tensor) and triplets.ndim == 2 and triplets.shape[1] == 3:
        parts = triplets.unbind(1)
    elif isinstance(triplets, (tuple, list)) and len(triplets) == 3:
        parts = tuple(triplets)
    else:
        shape = tuple(triplets.shape) if hasattr(triplets, "shape") else type(triplets).__name__
        raise ValueError(
            "triplets must be (anchor, positive, negative), three 1-D index tensors, or an "
            f"integer tensor of shape (n_triplets, 3); got {shape}."
        )
    return IndexTriplets(*check_indices(parts, n_embeddings, device).unbind(0))


class BatchNegatives(NamedTuple):
    """Negatives chosen among a batch's given negatives, one per triplet.

    Attributes
    ----------
    negative : torch.Tensor of shape (n_triplets,), dtype int64
        The chosen negative of each triplet (meaningful where ``valid``).
    valid : torch.Tensor of shape (n_triplets,), dtype bool
        False for a triplet with no candidate (every given negative equals
        its anchor or its positive).
    fallback : torch.Tensor of shape (n_triplets,), dtype bool
        Semi-hard only: true where no candidate was farther than the
        positive, so the farthest candidate was taken.
    """

    negative: torch.Tensor
    valid: torch.Tensor
    fallback: torch.Tensor


def mine_batch_negatives(
    embeddings: torch.Tensor,
    triplets: IndexTriplets,
    *,
    mining: str = "semihard",
    distance: str = "sqeuclidean",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> BatchNegatives:
    """Replace each triplet's negative by one mined among the batch's negatives.

    The candidates are the distinct negatives of all the triplets; a
    triplet never takes its own anchor or positive (by index) as negative.

    Parameters
    ----------
    embeddings : torch.Tensor of shape (B, d)
        The batch (gradients are not used).
    triplets : IndexTriplets
        ``(anchor, positive, negative)`` index tensors into the batch.
    mining : {"semihard", "hard"}, default="semihard"
        ``"hard"``: the candidate nearest to the anchor. ``"semihard"``: the
        nearest candidate strictly farther from the anchor than the
        positive, or the farthest candidate where none is farther (the rule
        of the labelled loss).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings.
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block: memory is
        ``O(block_elements)``, never ``n_triplets x n_candidates`` at once.

    Returns
    -------
    BatchNegatives
        Among equal distances the lowest index wins.

    Notes
    -----
    Anchor-candidate distances come from a matrix product
    (:func:`~sktriplet.triplets.distances.pairwise_distances`), the
    anchor-positive distance from differences
    (:func:`~sktriplet.triplets.distances.paired_distances`): a candidate
    within rounding of ``d(a, p)`` may fall on either side of it.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.mining import IndexTriplets, mine_batch_negatives
    >>> emb = torch.tensor([[0.0], [1.0], [2.0], [0.5], [5.0]])
    >>> t = IndexTriplets(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([4, 3]))
    >>> mine_batch_negatives(emb, t, mining="hard").negative.tolist()
    [3, 3]
    >>> mine_batch_negatives(emb, t, mining="semihard").negative.tolist()
    [4, 4]
    """
    check_triplet_mining(mining)
    if mining == "none":
        raise ValueError('mine_batch_negatives needs mining="semihard" or "hard".')
    emb = embeddings.detach()
    anchor, positive, given = triplets
    n = anchor.numel()
    negative = given.clone()
    valid = torch.ones(n, dtype=torch.bool, device=emb.device)
    fallback = torch.zeros_like(valid)
    candidates = torch.unique(given)
    width = candidates.numel()
    if n == 0 or width == 0:
        return BatchNegatives(negative, valid & False, fallback)
    d_ap = paired_distances(emb[anchor], emb[positive], distance=distance)
    cand_emb = emb[candidates]
    step = max(1, block_elements // width)
    for t0 in range(0, n, step):
        sl = slice(t0, t0 + step)
        d = pairwise_distances(emb[anchor[sl]], cand_emb, distance=distance)
        excluded = (candidates[None, :] == anchor[sl, None]) | (
            candidates[None, :] == positive[sl, None]
        )
        if mining == "hard":
            near, j = d.masked_fill(excluded, math.inf).min(dim=1)
            ok = torch.isfinite(near)
        else:
            farther = (d > d_ap[sl, None]) & ~excluded
            near, j = torch.where(farther, d, math.inf).min(dim=1)
            found = torch.isfinite(near)
            far, j_far = d.masked_fill(excluded, -1.0).max(dim=1)
            j = torch.where(found, j, j_far)
            ok = found | (far >= 0)
            fallback[sl] = ~found & ok
        negative[sl] = candidates[j]
        valid[sl] = ok
    return BatchNegatives(negative, valid, fallback)
