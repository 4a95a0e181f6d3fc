"""Online triplet mining on a batch's distance matrix.

Functions here choose, for each anchor or positive pair, which negatives the
loss looks at. They take a *detached* distance matrix and integer labels and
return indices; the loss then gathers the chosen distances from the matrix
that carries gradients. Nothing here builds a ``B x B x B`` tensor: memory is
``O(B^2)`` in the batch size ``B``, with work split into blocks of at most
``block_elements`` numbers.

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
    """
    same = labels[:, None] == labels[None, :]
    positive = same.clone()
    positive.fill_diagonal_(False)
    return positive, ~same


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
        ``"masked"`` takes a masked minimum over each pair's negatives
        (``O(B^2 K)`` work for ``K`` samples per class, no sort); ``"sorted"``
        sorts each anchor's negative distances once and binary-searches them
        (``O(B^2 log B)``). ``"auto"`` picks the cheaper for the batch. Both
        give the same triplets up to ties between equal distances.
    block_elements : int, default=2**24
        Upper bound on the elements of one temporary block.

    Returns
    -------
    SemihardTriplets
        The chosen triplets. Pairs whose anchor has no negative (a batch of
        one class) are left out.

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
    dist = dist.detach()
    positive, negative = label_masks(labels)
    has_negative = negative.any(dim=1)
    positive &= has_negative[:, None]
    anchor, pos = positive.nonzero(as_tuple=True)
    n_pairs = anchor.numel()
    empty = anchor.new_empty(0)
    if n_pairs == 0:
        return SemihardTriplets(empty, empty, empty, empty.bool())
    batch = dist.shape[0]
    # Farthest negative per anchor: the fallback.
    far = dist.masked_fill(~negative, -math.inf).argmax(dim=1)
    if method == "auto":
        # masked: n_pairs * B comparisons; sorted: ~ B^2 log2 B with a larger
        # constant. Measured crossover on CPU near 3 * log2(B) positives/anchor.
        method = "masked" if n_pairs <= 3 * batch * math.log2(max(batch, 2)) else "sorted"
    if method == "masked":
        neg, found = _semihard_masked(dist, negative, anchor, pos, block_elements)
    elif method == "sorted":
        neg, found = _semihard_sorted(dist, negative, anchor, pos, block_elements)
    else:
        raise ValueError(f"method={method!r}; use 'auto', 'masked' or 'sorted'.")
    neg = torch.where(found, neg, far[anchor])
    return SemihardTriplets(anchor, pos, neg, ~found)


def _semihard_masked(
    dist: torch.Tensor,
    negative: torch.Tensor,
    anchor: torch.Tensor,
    pos: torch.Tensor,
    block_elements: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = dist.shape[0]
    d_ap = dist[anchor, pos]
    step = max(1, block_elements // batch)
    neg = torch.empty_like(anchor)
    found = torch.empty(anchor.shape, dtype=torch.bool, device=dist.device)
    for start in range(0, anchor.numel(), step):
        sl = slice(start, start + step)
        rows = dist[anchor[sl]]
        ok = negative[anchor[sl]] & (rows > d_ap[sl, None])
        val, idx = rows.masked_fill(~ok, math.inf).min(dim=1)
        neg[sl] = idx
        found[sl] = torch.isfinite(val)
    return neg, found


def _semihard_sorted(
    dist: torch.Tensor,
    negative: torch.Tensor,
    anchor: torch.Tensor,
    pos: torch.Tensor,
    block_elements: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = dist.shape[0]
    n_neg = negative.sum(dim=1)
    neg = torch.empty_like(anchor)
    found = torch.empty(anchor.shape, dtype=torch.bool, device=dist.device)
    # Each anchor's negative distances, ascending; non-negatives go last.
    step = max(1, block_elements // batch)
    # Pairs are ordered by anchor, so each block of anchors maps to a
    # contiguous run of pairs.
    bounds = torch.searchsorted(
        anchor, torch.arange(0, batch + step, step, device=anchor.device)
    ).tolist()
    for block, a0 in enumerate(range(0, batch, step)):
        lo, hi = bounds[block], bounds[block + 1]
        if lo == hi:
            continue
        rows = dist[a0 : a0 + step].masked_fill(~negative[a0 : a0 + step], math.inf)
        values, order = rows.sort(dim=1)
        local = anchor[lo:hi] - a0
        d_ap = dist[anchor[lo:hi], pos[lo:hi]]
        # First position whose value is strictly greater than d(a, p).
        where = torch.searchsorted(values[local], d_ap[:, None], right=True).squeeze(1)
        ok = where < n_neg[anchor[lo:hi]]
        where = where.clamp_max(batch - 1)
        neg[lo:hi] = order[local, where]
        found[lo:hi] = ok
    return neg, found


def hard_triplets(dist: torch.Tensor, labels: torch.Tensor) -> HardTriplets:
    """Choose the farthest positive and the nearest negative of every anchor.

    Parameters
    ----------
    dist : torch.Tensor of shape (B, B)
        Pairwise distances (gradients are not used).
    labels : torch.Tensor of shape (B,)
        Integer class labels.

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
    dist = dist.detach()
    positive, negative = label_masks(labels)
    valid = positive.any(dim=1) & negative.any(dim=1)
    anchor = valid.nonzero(as_tuple=True)[0]
    pos = dist.masked_fill(~positive, -math.inf).argmax(dim=1)
    neg = dist.masked_fill(~negative, math.inf).argmin(dim=1)
    return HardTriplets(anchor, pos[anchor], neg[anchor])
