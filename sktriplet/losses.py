"""Triplet loss with online mining: a functional form and a criterion module.

The loss knows nothing of scikit-learn or skorch; :class:`TripletLoss` is the
``torch.nn.Module`` the estimator hands to skorch as its criterion.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from sktriplet.distances import check_distance, pairwise_distances
from sktriplet.mining import (
    DEFAULT_BLOCK_ELEMENTS,
    check_mining,
    hard_triplets,
    label_masks,
    semihard_triplets,
)

__all__ = ["TripletLoss", "triplet_loss"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _zero(embeddings: torch.Tensor) -> torch.Tensor:
    # A zero that stays connected to the graph (so ``backward`` works) and
    # whose gradient is exactly zero even if an embedding is not finite.
    return embeddings.narrow(0, 0, 0).sum().float()


def _hinge(x: torch.Tensor, margin: float, soft: bool) -> torch.Tensor:
    # x = d(a, p) - d(a, n)
    return F.softplus(x) if soft else F.relu(x + margin)


def triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = 0.2,
    mining: str = "semihard",
    distance: str = "sqeuclidean",
    soft: bool = False,
    return_stats: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Triplet loss of a batch of embeddings, with online mining.

    Parameters
    ----------
    embeddings : torch.Tensor of shape (B, d)
        One embedding per sample. They are used as given (the estimator's
        networks L2-normalise their output). float16 and bfloat16 inputs are
        computed in float32; float64 stays float64.
    labels : torch.Tensor of shape (B,)
        Class labels (any integer dtype).
    margin : float, default=0.2
        The margin ``alpha`` of ``max(d(a, p) - d(a, n) + alpha, 0)``. Its
        scale depends on ``distance``: on unit vectors ``sqeuclidean`` lies in
        ``[0, 4]``, ``euclidean`` and ``cosine`` in ``[0, 2]``. Unused when
        ``soft=True``.
    mining : {"semihard", "hard", "all"}, default="semihard"
        Which triplets enter the loss:

        - ``"semihard"``: for every ordered positive pair ``(a, p)``, the
          negative with the smallest ``d(a, n)`` strictly greater than
          ``d(a, p)``, or the farthest negative if none is farther. The loss is
          the sum of the hinge terms over positive pairs divided by the number
          of positive pairs. This reproduces TensorFlow Addons'
          ``triplet_semihard_loss``.
        - ``"hard"``: batch-hard (Hermans et al. 2017); per anchor the
          farthest positive and the nearest negative, averaged over the
          anchors that have at least one positive and one negative.
        - ``"all"``: batch-all; the mean of the non-zero terms over all valid
          triplets (with ``soft=True`` every term counts).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings (see :mod:`sktriplet.distances`).
    soft : bool, default=False
        Use the soft margin ``log1p(exp(d(a, p) - d(a, n)))`` in place of the
        hinge (``margin`` is then unused).
    return_stats : bool, default=False
        Also return mining statistics of the batch (detached 0-d tensors, so
        no device synchronisation): ``n_triplets`` (triplets in the loss),
        ``active`` (fraction of them with a non-zero term), ``fallback``
        (semihard: fraction of positive pairs without a negative farther than
        the positive), ``d_ap`` and ``d_an`` (mean anchor-positive and
        anchor-negative distance of the mined triplets; for ``"all"`` over all
        positive and negative pairs) and ``spread`` (mean distance between
        all pairs of the batch, near 0 when embeddings collapse).

    Returns
    -------
    loss : torch.Tensor
        A scalar. It is ``0`` with a zero gradient when the batch holds no
        valid triplet (a single class, or all labels distinct); it is never
        NaN for finite embeddings.
    stats : dict of str to torch.Tensor
        Only with ``return_stats=True``.

    Notes
    -----
    Memory is ``O(B^2)``: no ``B x B x B`` tensor is built for any mining
    strategy. Mining runs on the detached distance matrix; gradients flow
    through the distances of the chosen triplets.

    References
    ----------
    .. [1] Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding
       for Face Recognition and Clustering", CVPR 2015.
    .. [2] Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for
       Person Re-Identification", arXiv:1703.07737, 2017.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.losses import triplet_loss
    >>> emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> round(triplet_loss(emb, labels, margin=0.5).item(), 4)
    0.05
    """
    check_mining(mining)
    check_distance(distance)
    if embeddings.ndim != 2:
        raise ValueError(
            f"embeddings must be 2-D (batch, dim); got shape {tuple(embeddings.shape)}."
        )
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one label per embedding; got shape "
            f"{tuple(labels.shape)} for {embeddings.shape[0]} embeddings."
        )
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        emb = embeddings.float() if embeddings.dtype in _LOW_PRECISION else embeddings
        dist = pairwise_distances(emb, distance=distance)
        stats: dict[str, torch.Tensor] = {} if return_stats else None  # type: ignore[assignment]
        if mining == "semihard":
            loss = _semihard(dist, labels, margin, soft, embeddings, stats)
        elif mining == "hard":
            loss = _hard(dist, labels, margin, soft, embeddings, stats)
        else:
            loss = _all(dist, labels, margin, soft, embeddings, stats)
    if not return_stats:
        return loss
    d = dist.detach()
    n = d.shape[0]
    stats["spread"] = d.sum() / max(n * (n - 1), 1)
    zero = d.new_zeros(())
    for key in ("n_triplets", "active", "fallback", "d_ap", "d_an"):
        stats.setdefault(key, zero)
    return loss, stats


def _mined_stats(stats, d_ap, d_an, terms, fallback=None):
    if stats is None:
        return
    d_ap, d_an, terms = d_ap.detach(), d_an.detach(), terms.detach()
    stats["n_triplets"] = d_ap.new_tensor(float(d_ap.numel()))
    stats["active"] = (terms > 0).to(d_ap.dtype).mean()
    stats["d_ap"] = d_ap.mean()
    stats["d_an"] = d_an.mean()
    if fallback is not None:
        stats["fallback"] = fallback.to(d_ap.dtype).mean()


def _semihard(dist, labels, margin, soft, embeddings, stats):
    t = semihard_triplets(dist, labels)
    if t.anchor.numel() == 0:
        return _zero(embeddings)
    d_ap, d_an = dist[t.anchor, t.positive], dist[t.anchor, t.negative]
    terms = _hinge(d_ap - d_an, margin, soft)
    _mined_stats(stats, d_ap, d_an, terms, t.fallback)
    return terms.sum() / t.anchor.numel()


def _hard(dist, labels, margin, soft, embeddings, stats):
    t = hard_triplets(dist, labels)
    if t.anchor.numel() == 0:
        return _zero(embeddings)
    d_ap, d_an = dist[t.anchor, t.positive], dist[t.anchor, t.negative]
    terms = _hinge(d_ap - d_an, margin, soft)
    _mined_stats(stats, d_ap, d_an, terms)
    return terms.mean()


def _all(dist, labels, margin, soft, embeddings, stats):
    positive, negative = label_masks(labels)
    n_triplets = (positive.sum(1) * negative.sum(1)).sum()
    if n_triplets.item() == 0:
        return _zero(embeddings)
    if soft:
        total = _all_soft_sum(dist, positive, negative)
        count = n_triplets
    else:
        total, count = _all_hinge_sum(dist, positive, negative, margin)
    if stats is not None:
        d = dist.detach()
        stats["n_triplets"] = n_triplets.to(d.dtype)
        stats["active"] = count.to(d.dtype) / n_triplets
        stats["d_ap"] = d[positive].mean()
        stats["d_an"] = d[negative].mean()
    if count.item() == 0:
        return _zero(embeddings)
    return total / count


def _all_hinge_sum(dist, positive, negative, margin):
    """Sum and count of the positive hinge terms over all valid triplets.

    For a pair ``(a, p)`` the active negatives are those with
    ``d(a, n) < d(a, p) + margin``; with the negatives of ``a`` sorted, their
    count comes from a binary search and their sum from a prefix sum, so the
    sum of hinges is ``count * (d(a, p) + margin) - prefix``. ``O(B^2 log B)``
    work and ``O(B^2)`` memory, exact, and differentiable through ``sort`` and
    ``cumsum``.
    """
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    values, _ = torch.where(negative, dist, inf).sort(dim=1)
    finite = torch.isfinite(values)
    prefix = torch.cumsum(torch.where(finite, values, 0.0), dim=1)
    prefix = F.pad(prefix, (1, 0))  # prefix[:, c] = sum of the c smallest
    threshold = dist + margin
    count = torch.searchsorted(values.detach(), threshold.detach(), right=False)
    count = torch.minimum(count, negative.sum(dim=1, keepdim=True))
    count = count * positive
    sums = count * threshold - prefix.gather(1, count)
    return (sums * positive).sum(), count.sum()


def _all_soft_sum(dist, positive, negative, block_elements=DEFAULT_BLOCK_ELEMENTS):
    """Sum of ``softplus(d(a, p) - d(a, n))`` over all valid triplets.

    Anchors are processed in blocks whose ``(anchors, positives, B)`` tensor
    stays under ``block_elements``; each block is recomputed in the backward
    pass (activation checkpointing) so memory stays bounded.
    """
    batch = dist.shape[0]
    n_pos = positive.sum(dim=1)
    width = int(n_pos.max().item())
    # Compact each anchor's positives into the first n_pos columns.
    order = positive.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :width]
    valid_p = torch.arange(width, device=dist.device)[None, :] < n_pos[:, None]
    step = max(1, DEFAULT_BLOCK_ELEMENTS // max(1, width * batch))
    total = dist.new_zeros(())
    for a0 in range(0, batch, step):
        sl = slice(a0, a0 + step)
        total = total + checkpoint(
            _soft_block, dist[sl], order[sl], valid_p[sl], negative[sl], use_reentrant=False
        )
    return total


def _soft_block(rows, order, valid_p, negative):
    d_ap = rows.gather(1, order)
    terms = F.softplus(d_ap[:, :, None] - rows[:, None, :])
    mask = valid_p[:, :, None] & negative[:, None, :]
    return torch.where(mask, terms, 0.0).sum()


class TripletLoss(nn.Module):
    """Triplet loss with online mining, as a criterion module.

    Calling it as ``criterion(embeddings, labels)`` returns
    :func:`triplet_loss` with the parameters given here. skorch uses it as the
    criterion of the network that :class:`sktriplet.TripletEmbedder` trains.

    Parameters
    ----------
    margin : float, default=0.2
        Margin of the hinge (see :func:`triplet_loss`).
    mining : {"semihard", "hard", "all"}, default="semihard"
        Mining strategy.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings.
    soft : bool, default=False
        Soft margin in place of the hinge.
    record_stats : bool, default=False
        Keep the mining statistics of the last batch (see ``return_stats`` of
        :func:`triplet_loss`) in :attr:`last_stats`.

    Attributes
    ----------
    last_stats : dict of str to torch.Tensor
        Statistics of the last batch (empty unless ``record_stats=True``).

    Examples
    --------
    >>> import torch
    >>> from sktriplet.losses import TripletLoss
    >>> criterion = TripletLoss(margin=0.2, mining="hard")
    >>> emb = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    >>> criterion(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
    0
    """

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "semihard",
        distance: str = "sqeuclidean",
        soft: bool = False,
        record_stats: bool = False,
    ) -> None:
        super().__init__()
        self.margin = float(margin)
        self.mining = check_mining(mining)
        self.distance = check_distance(distance)
        self.soft = bool(soft)
        self.record_stats = bool(record_stats)
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of one batch (see :func:`triplet_loss`)."""
        out = triplet_loss(
            embeddings,
            labels,
            margin=self.margin,
            mining=self.mining,
            distance=self.distance,
            soft=self.soft,
            return_stats=self.record_stats,
        )
        if self.record_stats:
            out, self.last_stats = out
        return out

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"margin={self.margin}, mining={self.mining!r}, "
            f"distance={self.distance!r}, soft={self.soft}"
        )
