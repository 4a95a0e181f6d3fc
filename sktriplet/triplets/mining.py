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

import numpy as np
import torch

__all__ = [
    "MINING_STRATEGIES",
    "HardTriplets",
    "SemihardTriplets",
    "check_mining",
    "hard_triplets",
    "label_masks",
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
    dist : torch.Tensor of shape (B, B)
        Pairwise distances (gradients are not used).
    table : ClassTable
        The batch's positive pairs.
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
    batch, width = dist.shape[0], table.width
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
    buffer = dist.new_full((min(rows_per_block, batch), padded), inf)
    for r0 in range(0, batch, rows_per_block):
        r1 = min(batch, r0 + rows_per_block)
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
    dist : torch.Tensor of shape (B, B)
        Pairwise distances (gradients are not used); must be ``>= 0``.
    labels : torch.Tensor of shape (B,)
        Integer class labels.
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block.

    Returns
    -------
    positive, negative : torch.Tensor of shape (B,), dtype int64
        Farthest positive and nearest negative of each anchor (lowest index
        among ties; meaningful where ``valid``).
    valid : torch.Tensor of shape (B,), dtype bool
        Anchors with at least one positive and one negative.
    """
    dist = dist.detach()
    batch = dist.shape[0]
    positive = torch.empty(batch, dtype=torch.long, device=dist.device)
    negative = torch.empty_like(positive)
    valid = torch.empty(batch, dtype=torch.bool, device=dist.device)
    step = max(1, block_elements // max(batch, 1))
    for r0 in range(0, batch, step):
        r1 = min(batch, r0 + step)
        rows = dist[r0:r1]
        same = labels[r0:r1, None] == labels[None, :]
        far = torch.where(same, rows, -1.0)
        far.diagonal(offset=r0).fill_(-1.0)  # an anchor is not its own positive
        far_value, positive[r0:r1] = far.max(dim=1)
        near_value, negative[r0:r1] = rows.masked_fill(same, math.inf).min(dim=1)
        valid[r0:r1] = (far_value >= 0) & torch.isfinite(near_value)
    return positive, negative, valid
