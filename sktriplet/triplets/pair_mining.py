"""Index pairs: what pair-based losses look at, and the pair miners that choose them.

A pair-based loss (:mod:`sktriplet.triplets.pair_losses`) scores positive
pairs ``(anchor1, positive)`` (same class) and negative pairs ``(anchor2,
negative)`` (different classes). A miner's choice is an index tuple
``(anchor1, positive, anchor2, negative)`` into the batch, as
pytorch-metric-learning's pair miners return it (:class:`IndexPairs`); a
triplet tuple ``(a, p, n)`` reads as the pairs ``(a, p)`` and ``(a, n)``
(:func:`as_index_pairs`).

Pairs may be *anchored*: only the first ``n_anchors`` samples are anchors,
every sample is a candidate positive or negative. That is how a batch meets a
cross-batch memory (:mod:`sktriplet.triplets.memory`): the batch comes first,
the remembered embeddings after it. Everything here works on ``(A, B)``
masks, ``O(A B)`` memory, never on enumerated triplets.

Pure torch: nothing here imports scikit-learn or skorch.
"""

from __future__ import annotations

import math

import torch

from sktriplet.triplets.mining import check_indices

__all__ = [
    "PAIR_MINING",
    "IndexPairs",
    "as_index_pairs",
    "masks_from_pairs",
    "miner_weights",
    "multi_similarity_masks",
    "pair_masks",
    "pairs_from_masks",
]

#: The pair miners of :func:`sktriplet.triplets.pair_losses.MultiSimilarityLoss.mine`.
PAIR_MINING = ("all", "multi_similarity")


class IndexPairs(tuple):
    """Positive and negative pairs as four index tensors into a batch.

    ``a1, p, a2, n = pairs`` unpacks it like the 4-tuples of
    pytorch-metric-learning's pair miners: ``(a1[i], p[i])`` are positive
    pairs, ``(a2[j], n[j])`` negative pairs.

    Parameters
    ----------
    anchor1, positive, anchor2, negative : torch.Tensor of shape (n_pairs,)
        Indices into the batch.
    n_anchors : int or None, default=None
        When set, only the first ``n_anchors`` samples are anchors (a batch
        followed by a memory), and per-anchor losses average over them;
        ``None``: every sample of the batch.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.pair_mining import IndexPairs
    >>> a1, p, a2, n = IndexPairs(*torch.tensor([[0, 2], [1, 3], [0, 1], [2, 2]]))
    >>> a1.tolist(), n.tolist()
    ([0, 2], [2, 2])
    """

    n_anchors: int | None

    def __new__(cls, anchor1, positive, anchor2, negative, n_anchors: int | None = None):  # noqa: D102
        self = super().__new__(cls, (anchor1, positive, anchor2, negative))
        self.n_anchors = None if n_anchors is None else int(n_anchors)
        return self

    def __getnewargs__(self):  # noqa: D105  (pickling)
        return (*self, self.n_anchors)

    @property
    def anchor1(self) -> torch.Tensor:
        """Anchors of the positive pairs."""
        return self[0]

    @property
    def positive(self) -> torch.Tensor:
        """Positives."""
        return self[1]

    @property
    def anchor2(self) -> torch.Tensor:
        """Anchors of the negative pairs."""
        return self[2]

    @property
    def negative(self) -> torch.Tensor:
        """Negatives."""
        return self[3]


def as_index_pairs(indices_tuple, n_embeddings: int, device: torch.device) -> IndexPairs:
    """Check a pair or triplet index tuple and return it as pairs.

    Parameters
    ----------
    indices_tuple : tuple of four or three 1-D integer tensors
        ``(anchor1, positive, anchor2, negative)`` pairs, or ``(anchor,
        positive, negative)`` triplets, read as the pairs ``(anchor,
        positive)`` and ``(anchor, negative)`` (as pytorch-metric-learning's
        ``convert_to_pairs`` does).
    n_embeddings : int
        Size of the batch.
    device : torch.device
        Device of the result.

    Returns
    -------
    IndexPairs
        int64 tensors; ``n_anchors`` kept from an :class:`IndexPairs`.

    Raises
    ------
    ValueError
        For anything but three or four index tensors, or indices out of range.
    """
    n_anchors = getattr(indices_tuple, "n_anchors", None)
    if isinstance(indices_tuple, torch.Tensor) and indices_tuple.ndim == 2:
        indices_tuple = tuple(indices_tuple.unbind(1))
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
        raise ValueError(
            "indices_tuple must be (anchor1, positive, anchor2, negative) pairs or (anchor, "
            "positive, negative) triplets of 1-D index tensors; got "
            f"{type(indices_tuple).__name__} {getattr(indices_tuple, 'shape', '')}."
        )
    parts = tuple(indices_tuple)
    if len(parts) == 3:
        a, p, n = check_indices(parts, n_embeddings, device).unbind(0)
        return IndexPairs(a, p, a, n, n_anchors)
    a1, p = check_indices(parts[:2], n_embeddings, device, "positive pair").unbind(0)
    a2, n = check_indices(parts[2:], n_embeddings, device, "negative pair").unbind(0)
    pairs = IndexPairs(a1, p, a2, n, n_anchors)
    if n_anchors is not None and any(t.numel() and int(t.max()) >= n_anchors for t in (a1, a2)):
        raise ValueError(f"pair anchors must lie among the first n_anchors={n_anchors} samples.")
    return pairs


def pair_masks(labels: torch.Tensor, n_anchors: int | None = None) -> tuple[torch.Tensor, ...]:
    """Every positive and negative pair of a labelled batch, as masks.

    Parameters
    ----------
    labels : torch.Tensor of shape (B,)
        Integer class labels.
    n_anchors : int, default=None
        Anchors are the first ``n_anchors`` samples (``None``: all ``B``).

    Returns
    -------
    positive, negative : torch.Tensor of shape (A, B), dtype bool
        ``positive[a, j]``: ``j != a`` has ``a``'s label; ``negative[a, j]``:
        ``j`` has another label.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.pair_mining import pair_masks
    >>> pos, neg = pair_masks(torch.tensor([0, 0, 1]), n_anchors=2)
    >>> pos.int().tolist(), neg.int().tolist()
    ([[0, 1, 0], [1, 0, 0]], [[0, 0, 1], [0, 0, 1]])
    """
    n_anchors = labels.shape[0] if n_anchors is None else int(n_anchors)
    same = labels[:n_anchors, None] == labels[None, :]
    positive = same.clone()
    positive[:, :n_anchors].fill_diagonal_(False)
    return positive, ~same


def multi_similarity_masks(
    similarity: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The multi-similarity miner's pairs (Wang et al. 2019, eqs. 7 and 8).

    For anchor ``a``, a negative pair ``(a, n)`` is kept when ``S(a, n) +
    epsilon > min over positives S(a, p)``, a positive pair ``(a, p)`` when
    ``S(a, p) - epsilon < max over negatives S(a, n)``. An anchor without
    positives keeps no negative, one without negatives keeps no positive
    (pytorch-metric-learning's ``MultiSimilarityMiner``).

    Parameters
    ----------
    similarity : torch.Tensor of shape (A, B)
        Cosine similarities of the anchors to every sample.
    positive, negative : torch.Tensor of shape (A, B), dtype bool
        The candidate pairs (:func:`pair_masks`).
    epsilon : float
        The mining margin.

    Returns
    -------
    positive, negative : torch.Tensor of shape (A, B), dtype bool
        The kept pairs.
    """
    s = similarity.detach()
    if s.numel() == 0:
        return positive, negative
    hardest_positive = torch.where(positive, s, math.inf).amin(dim=1, keepdim=True)
    hardest_negative = torch.where(negative, s, -math.inf).amax(dim=1, keepdim=True)
    return positive & (s - epsilon < hardest_negative), negative & (s + epsilon > hardest_positive)


def pairs_from_masks(
    positive: torch.Tensor, negative: torch.Tensor, n_anchors: int | None = None
) -> IndexPairs:
    """The pairs of two ``(A, B)`` masks, ordered by anchor, then index.

    Parameters
    ----------
    positive, negative : torch.Tensor of shape (A, B), dtype bool
        Positive and negative pairs.
    n_anchors : int, default=None
        Recorded in the result (see :class:`IndexPairs`).

    Returns
    -------
    IndexPairs
    """
    a1, p = positive.nonzero(as_tuple=True)
    a2, n = negative.nonzero(as_tuple=True)
    return IndexPairs(a1, p, a2, n, n_anchors)


def masks_from_pairs(pairs: IndexPairs, n_rows: int, n_cols: int) -> tuple[torch.Tensor, ...]:
    """``(n_rows, n_cols)`` masks of the positive and the negative pairs.

    Parameters
    ----------
    pairs : IndexPairs
        The pairs; every anchor below ``n_rows``.
    n_rows, n_cols : int
        Shape of the masks.

    Returns
    -------
    positive, negative : torch.Tensor of shape (n_rows, n_cols), dtype bool
    """
    a1, p, a2, n = pairs
    positive = torch.zeros(n_rows, n_cols, dtype=torch.bool, device=a1.device)
    negative = torch.zeros_like(positive)
    positive[a1, p] = True
    negative[a2, n] = True
    return positive, negative


def miner_weights(indices_tuple, n_embeddings: int, device: torch.device) -> torch.Tensor:
    """Per-sample weights from a miner's choice, for losses that score samples one by one.

    A sample's weight is the number of times it appears in the tuple (any
    position) divided by the largest such count; no tuple, or an empty one,
    weighs every sample 1 (pytorch-metric-learning's ``convert_to_weights``,
    which its classifier losses apply to each sample's loss).

    Parameters
    ----------
    indices_tuple : tuple of 1-D integer tensors or None
        Pairs or triplets into the batch.
    n_embeddings : int
        Size of the batch.
    device : torch.device
        Device of the result.

    Returns
    -------
    torch.Tensor of shape (n_embeddings,), float32

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.pair_mining import miner_weights
    >>> t = (torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([3, 3]))
    >>> miner_weights(t, 5, torch.device("cpu")).tolist()
    [1.0, 0.5, 0.5, 1.0, 0.0]
    """
    weights = torch.ones(n_embeddings, device=device)
    if indices_tuple is None:
        return weights
    parts = tuple(indices_tuple)
    if len(parts) not in (3, 4):
        raise ValueError(
            f"indices_tuple must hold three (triplets) or four (pairs) index tensors; got "
            f"{len(parts)}."
        )
    flat = torch.cat([check_indices((t,), n_embeddings, device, "index")[0] for t in parts])
    if flat.numel() == 0:
        return weights
    counts = torch.bincount(flat, minlength=n_embeddings).float()
    return counts / counts.max()
