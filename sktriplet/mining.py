"""Online triplet mining on a batch's distance matrix.

Functions here choose, for each anchor or positive pair, which negatives the
loss looks at. They take a *detached* distance matrix and integer labels and
return indices; the loss then measures the chosen triplets with gradients.
Nothing here builds a ``B x B x B`` tensor: memory is ``O(B^2)`` in the batch
size ``B``, with work split into blocks of rows of at most ``block_elements``
numbers.

The mining rules are those of :func:`sktriplet.losses.triplet_loss`:

``"semihard"``
    For every ordered positive pair ``(a, p)``, the negative ``n`` with the
    smallest ``d(a, n)`` strictly greater than ``d(a, p)``; where none is
    farther than ``d(a, p)``, the farthest negative (TensorFlow Addons'
    ``triplet_semihard_loss``).
``"hard"``
    Per anchor, the farthest positive and the nearest negative (batch-hard,
    Hermans et al. 2017).
``"all"``
    Every valid triplet (handled in :mod:`sktriplet.losses` without
    enumerating the triplets).

How semi-hard mining stays fast: positive pairs are held in a padded
*class table*: row ``a`` lists the ``W`` other members of ``a``'s class
(``W`` is the largest class in the batch minus one, so ``W = K - 1`` for PK
batches). Three kernels, all
``O(B^2)`` in memory and processed in blocks of rows, then find every pair's
semi-hard negative, and ``method="auto"`` picks by ``W``:

- ``"masked"`` (narrow tables, PK batches): one pass over each anchor's row
  per table column, two vectorised operations each (a subtraction and an
  integer minimum that needs no mask), ``O(B^2 W)``, no sort;
- ``"bucket"`` (medium): every negative distance is placed between the
  anchor's sorted positive distances and segmented minima give each pair's
  answer, ``O(B^2 log W)``;
- ``"sorted"`` (wide tables, a few large classes): each anchor's negatives
  are sorted once and every positive distance is binary-searched,
  ``O(B^2 log B)``.

The farthest negative (the fallback) is computed only for rows that need it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

_SEMIHARD_METHODS = ("auto", "bucket", "masked", "sorted")


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
    >>> from sktriplet.mining import label_masks
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
    method : {"auto", "bucket", "masked", "sorted"}, default="auto"
        ``"bucket"`` places each negative distance between the sorted
        positive distances of its anchor and takes segmented minima
        (``O(B^2 log W)`` for a largest class of ``W``, see the module
        docstring); ``"masked"`` takes a masked minimum over each pair's
        negatives (``O(B^2 W)``, no sort); ``"sorted"`` sorts each anchor's
        negative distances and binary-searches them (``O(B^2 log B)``).
        ``"auto"`` picks the cheapest for the batch's widest class. All give
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
    >>> from sktriplet.mining import semihard_triplets
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
    method : {"auto", "bucket", "masked", "sorted"}, default="auto"
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
    if method == "masked":
        # Blocks small enough to stay in cache across the table's columns.
        block_elements = min(block_elements, _CACHE_ELEMENTS)
    rows_per_block = max(1, block_elements // batch)
    codes = table.codes
    kernel = {"bucket": _bucket, "masked": _masked, "sorted": _sorted}[method]
    for r0 in range(0, batch, rows_per_block):
        r1 = min(batch, r0 + rows_per_block)
        rows = dist[r0:r1]
        same = codes[r0:r1, None] == codes[None, :]
        neg, ok = kernel(rows, same, thresholds[r0:r1])
        # The fallback, the farthest negative, only for the rows that need it.
        need = (~ok & table.valid[r0:r1]).any(dim=1).nonzero().squeeze(1)
        if need.numel():
            farthest = torch.where(same[need], -1.0, rows[need]).max(dim=1).indices
            neg[need] = torch.where(ok[need], neg[need], farthest[:, None])
        negative[r0:r1] = neg
        found[r0:r1] = ok
    return negative, found


#: Distances per block of the masked kernel (about half a MiB of float32).
_CACHE_ELEMENTS = 1 << 17

#: Table widths (largest class minus one) up to which one masked pass per
#: column is the cheapest kernel, then bucketing, then sorting each row.
_MASKED_MAX_WIDTH = 24
_BUCKET_MAX_WIDTH = 64


def _choose_semihard_method(batch: int, width: int) -> str:
    # Work per row of B distances: the masked kernel makes two vectorised
    # passes per column of the class table; bucketing costs a binary search
    # per distance (branchy: on CPU about as slow as ~25 masked columns) and
    # grows with log(width) and its scatters; sorting each row of negatives
    # costs about as much but does not grow with the width. Crossovers
    # measured with benchmarks/bench_mining.py (B = 256 and 1024).
    del batch
    if width <= _MASKED_MAX_WIDTH:
        return "masked"
    return "bucket" if width <= _BUCKET_MAX_WIDTH else "sorted"


def _bucket(
    rows: torch.Tensor, same: torch.Tensor, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    near = rows.masked_fill(same, math.inf)  # negatives only
    # near: (r, B) negative distances (+inf elsewhere); thresholds: (r, W)
    # positive distances (+inf for empty slots).
    r, batch = near.shape
    width = thresholds.shape[1]
    ordered, perm = thresholds.sort(dim=1)
    # bucket[a, n] = number of positive distances of a strictly below d(a, n):
    # n is farther than the i-th nearest positive exactly when bucket > i.
    bucket = torch.searchsorted(ordered, near)
    bucket += torch.arange(0, r * (width + 1), width + 1, device=near.device)[:, None]
    flat = bucket.view(-1)
    n_slots = r * (width + 1)
    values = near.new_full((n_slots,), math.inf)
    values.scatter_reduce_(0, flat, near.view(-1), "amin")
    # Lowest column index attaining each bucket's minimum.
    hit = near.view(-1) == values.index_select(0, flat)
    cols = torch.arange(batch, device=near.device, dtype=torch.int32)
    cand = torch.where(hit.view(r, batch), cols, batch).view(-1)
    index = cand.new_full((n_slots,), batch).scatter_reduce_(0, flat, cand, "amin")
    values, index = values.view(r, width + 1)[:, 1:], index.view(r, width + 1)[:, 1:]
    # Suffix minimum over buckets i+1 .. W for the i-th nearest positive.
    best, where = values.flip(1).cummin(dim=1)
    best = best.flip(1)
    where = (width - 1) - where.flip(1)
    # Empty buckets hold index B: clamp so that unused slots stay in range.
    chosen = index.gather(1, where).long().clamp_max_(batch - 1)
    ok = torch.isfinite(best)
    # Back from sorted order to the table's slot order.
    return (
        torch.empty_like(chosen).scatter_(1, perm, chosen),
        torch.empty_like(ok).scatter_(1, perm, ok),
    )


def _masked(
    rows: torch.Tensor, same: torch.Tensor, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # One pass per column of the class table, two vectorised operations
    # each. For the slot's positive distance t, g = t - d(a, n) is negative
    # exactly for the negatives farther than t (non-negatives hold +inf, so
    # g = -inf). Read as a signed integer of the same width, a negative float
    # orders by its magnitude and above every non-negative one: the smallest
    # integer is the farther negative nearest to t, with the lowest index
    # among ties. A minimum equal to -inf's pattern means that no finite
    # negative is farther (the fallback case). The subtraction is exact
    # whenever d(a, n) <= 2 t (Sterbenz) and monotone otherwise, so the
    # choice can differ from the exact rule only between distances equal to
    # the last bit.
    near = rows.masked_fill(same, math.inf)  # negatives only
    itype = _SAME_WIDTH_INT[near.dtype]
    no_candidate = torch.tensor(-math.inf, dtype=near.dtype).view(itype).item()
    r, width = thresholds.shape
    chosen = torch.empty(r, width, dtype=torch.long, device=near.device)
    ok = torch.empty(r, width, dtype=torch.bool, device=near.device)
    gap = torch.empty_like(near)
    columns = thresholds.T.contiguous()
    for j in range(width):
        torch.sub(columns[j][:, None], near, out=gap)
        best, chosen[:, j] = gap.view(itype).min(dim=1)
        ok[:, j] = best < no_candidate
    return chosen, ok


_SAME_WIDTH_INT = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def _sorted(
    rows: torch.Tensor, same: torch.Tensor, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    near = rows.masked_fill(same, math.inf)  # negatives only
    values, order = near.sort(dim=1, stable=True)
    # First position whose distance is strictly greater than d(a, p).
    where = torch.searchsorted(values, thresholds, right=True).clamp_max_(near.shape[1] - 1)
    best = values.gather(1, where)
    ok = torch.isfinite(best) & (best > thresholds)
    return order.gather(1, where), ok


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
    >>> from sktriplet.mining import hard_triplets
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
