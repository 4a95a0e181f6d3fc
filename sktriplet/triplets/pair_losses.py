"""Pair-based losses: contrastive and multi-similarity.

Each is a criterion module with the one loss interface
(:mod:`sktriplet.triplets.base`): ``loss(embeddings, labels)`` scores the
pairs of a labelled batch, ``loss(embeddings, indices_tuple=pairs)`` the
pairs a miner chose (``(anchor1, positive, anchor2, negative)``, or triplets
``(a, p, n)`` read as the pairs ``(a, p)`` and ``(a, n)``; see
:mod:`sktriplet.triplets.pair_mining`). ``mine(embeddings, labels, n_anchors)``
returns the pairs a loss would score on a labelled batch, anchored on its
first ``n_anchors`` samples: that is how a cross-batch memory
(:mod:`sktriplet.triplets.memory`) pairs the batch with past embeddings.

Memory is ``O(A B)`` for ``A`` anchors and ``B`` samples: losses work on the
anchors' rows of the distance (or similarity) matrix, never on enumerated
triplets. A batch with no pair to score gives ``0`` with a zero gradient,
never NaN.

Pure torch: nothing here imports scikit-learn or skorch.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from sktriplet.triplets.base import MetricLoss, full_precision
from sktriplet.triplets.distances import check_distance, pairwise_distances
from sktriplet.triplets.pair_mining import (
    IndexPairs,
    as_index_pairs,
    masks_from_pairs,
    multi_similarity_masks,
    pair_masks,
    pairs_from_masks,
)

__all__ = ["NEG_MARGINS", "ContrastiveLoss", "MultiSimilarityLoss"]

#: The default ``neg_margin`` of :class:`ContrastiveLoss` per distance: the
#: distance of two unit vectors 1 apart (60 degrees), pytorch-metric-learning's
#: default margin of 1 on normalised Euclidean distances, in each distance's units.
NEG_MARGINS = {"euclidean": 1.0, "sqeuclidean": 1.0, "cosine": 0.5}


def _labels(labels, embeddings: torch.Tensor, what: str) -> torch.Tensor:
    if labels is None:
        raise ValueError(
            f"{what} needs labels (one class label per embedding) or an indices_tuple "
            "(pairs or triplets of indices into the batch); got neither."
        )
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one label per embedding; got shape "
            f"{tuple(labels.shape)} for {embeddings.shape[0]} embeddings."
        )
    return labels


def _check_embeddings(embeddings: torch.Tensor) -> None:
    if embeddings.ndim != 2:
        raise ValueError(
            f"embeddings must be 2-D (batch, dim); got shape {tuple(embeddings.shape)}."
        )


def _anchor_rows(values: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Mean of the off-diagonal entries of the anchors' square block (the batch's spread)."""
    block = values[:, :n_rows].detach()
    return (block.sum() - block.diagonal().sum()) / max(n_rows * (n_rows - 1), 1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values.detach(), 0.0).sum() / mask.sum().clamp_min(1)


class ContrastiveLoss(MetricLoss):
    """Contrastive loss: positive pairs within ``pos_margin``, negatives past ``neg_margin``.

    For positive pairs ``(a, p)`` and negative pairs ``(a, n)`` at distance
    ``d``, the terms are ``max(d(a, p) - pos_margin, 0)`` and ``max(neg_margin
    - d(a, n), 0)``; the loss is the mean of the non-zero positive terms
    plus the mean of the non-zero negative terms (Hadsell, Chopra and LeCun
    2006, as pytorch-metric-learning's ``ContrastiveLoss`` with its default
    ``AvgNonZeroReducer``). With labels, every ordered pair of the batch
    counts.

    The registered loss ``"contrastive"``; the estimator's ``distance`` is
    its distance (``margin``, ``mining`` and ``soft`` are the triplet loss's
    and do not apply). The margins are in units of the distance: on the unit
    vectors the default networks output, ``"sqeuclidean"`` lies in ``[0,
    4]``, ``"euclidean"`` and ``"cosine"`` in ``[0, 2]``.

    Parameters
    ----------
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings.
    pos_margin : float, default=0.0
        Positive pairs closer than this cost nothing.
    neg_margin : float or None, default=None
        Negative pairs farther than this cost nothing. ``None``: the distance
        of two unit vectors at Euclidean distance 1 (:data:`NEG_MARGINS`:
        1.0 for ``"sqeuclidean"`` and ``"euclidean"``, 0.5 for
        ``"cosine"``), pytorch-metric-learning's default.
    record_stats : bool, default=False
        Keep statistics of the last batch in ``last_stats``: ``active``
        (fraction of pairs with a non-zero term), ``d_ap`` and ``d_an``
        (mean distance of the positive and of the negative pairs) and
        ``spread`` (mean distance between the batch's samples).

    References
    ----------
    .. [1] Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning
       an Invariant Mapping", CVPR 2006.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.pair_losses import ContrastiveLoss
    >>> emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> loss = ContrastiveLoss(distance="euclidean", pos_margin=0.1)
    >>> round(loss(emb, torch.tensor([0, 0, 1])).item(), 4)  # (0.6325 - 0.1) + (1 - 0.8944)
    0.638
    """

    def __init__(
        self,
        distance: str = "sqeuclidean",
        pos_margin: float = 0.0,
        neg_margin: float | None = None,
        record_stats: bool = False,
    ) -> None:
        super().__init__(record_stats=record_stats)
        self.distance = check_distance(distance)
        self.pos_margin = float(pos_margin)
        self.neg_margin = NEG_MARGINS[distance] if neg_margin is None else float(neg_margin)
        if not (math.isfinite(self.pos_margin) and math.isfinite(self.neg_margin)):
            raise ValueError(
                f"pos_margin and neg_margin must be finite; got {pos_margin}, {neg_margin}."
            )

    def mine(
        self, embeddings: torch.Tensor, labels: torch.Tensor, n_anchors: int | None = None
    ) -> IndexPairs:
        """Every positive and negative pair whose anchor is one of the first ``n_anchors``.

        Parameters
        ----------
        embeddings : torch.Tensor of shape (B, d)
            The samples (unused: every pair counts).
        labels : torch.Tensor of shape (B,)
            Their class labels.
        n_anchors : int, default=None
            Anchors are the first ``n_anchors`` samples (``None``: all).

        Returns
        -------
        IndexPairs
        """
        labels = _labels(labels, embeddings, "the contrastive loss")
        return pairs_from_masks(*pair_masks(labels, n_anchors), n_anchors=n_anchors)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: tuple | None = None,
    ) -> torch.Tensor:
        """The loss of every pair of a labelled batch, or of the given pairs."""
        _check_embeddings(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            emb = full_precision(embeddings)
            if indices_tuple is None:
                pairs = self.mine(emb, labels)
            else:
                pairs = as_index_pairs(indices_tuple, emb.shape[0], emb.device)
            n_rows = emb.shape[0] if pairs.n_anchors is None else pairs.n_anchors
            if n_rows == emb.shape[0]:
                dist = pairwise_distances(emb, distance=self.distance)
            else:
                dist = pairwise_distances(emb[:n_rows], emb, distance=self.distance)
            a1, p, a2, n = pairs
            d_ap, d_an = dist[a1, p], dist[a2, n]
            pos = F.relu(d_ap - self.pos_margin)
            neg = F.relu(self.neg_margin - d_an)
            n_pos, n_neg = (pos > 0).sum(), (neg > 0).sum()
            loss = pos.sum() / n_pos.clamp_min(1) + neg.sum() / n_neg.clamp_min(1)
        if self.record_stats:
            n_pairs = max(a1.numel() + a2.numel(), 1)
            self.last_stats = {
                "active": (n_pos + n_neg).to(dist.dtype) / n_pairs,
                "d_ap": d_ap.detach().sum() / max(a1.numel(), 1),
                "d_an": d_an.detach().sum() / max(a2.numel(), 1),
                "spread": _anchor_rows(dist, n_rows),
            }
        return loss

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"distance={self.distance!r}, pos_margin={self.pos_margin}, "
            f"neg_margin={self.neg_margin}"
        )


def _log1p_sum_exp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum over mask of exp(x))`` per row; ``0`` for an empty row."""
    x = x.masked_fill(~mask, -math.inf)
    return torch.logsumexp(torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1), dim=1)


class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity loss with its pair mining (Wang et al., CVPR 2019).

    With cosine similarities ``S`` and, for each anchor ``i``, its mined
    positive pairs ``P_i`` and negative pairs ``N_i``::

        L = 1/m sum_i [ 1/alpha log(1 + sum_{k in P_i} exp(-alpha (S_ik - base)))
                      + 1/beta  log(1 + sum_{k in N_i} exp( beta (S_ik - base))) ]

    over the ``m`` anchors of the batch (an anchor without pairs adds 0).
    With labels, the pairs are mined as the paper does (its eqs. 7 and 8,
    :func:`~sktriplet.triplets.pair_mining.multi_similarity_masks`): a negative is
    kept when it is more similar than the least similar positive minus
    ``epsilon``, a positive when it is less similar than the most similar
    negative plus ``epsilon``. Given pairs (``indices_tuple``) are taken as
    they are. This is pytorch-metric-learning's ``MultiSimilarityLoss``
    with its ``MultiSimilarityMiner``.

    The registered loss ``"multi_similarity"``. It works on cosine
    similarity whatever the estimator's ``distance`` (on the unit vectors of
    the default networks all three distances rank neighbours alike).

    Parameters
    ----------
    alpha : float, default=2.0
        Weight of the positive pairs' exponent.
    beta : float, default=50.0
        Weight of the negative pairs' exponent.
    base : float, default=0.5
        The similarity ``lambda`` that both exponents are measured from.
    epsilon : float or None, default=0.1
        Margin of the pair mining; ``None`` scores every pair.
    record_stats : bool, default=False
        Keep statistics of the last batch in ``last_stats``: ``d_ap`` and
        ``d_an`` (mean cosine distance ``1 - S`` of the scored positive and
        negative pairs) and ``spread`` (mean cosine distance between the
        batch's samples).

    References
    ----------
    .. [1] Wang, Han, Huang, Dong and Scott, "Multi-Similarity Loss with
       General Pair Weighting for Deep Metric Learning", CVPR 2019.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.pair_losses import MultiSimilarityLoss
    >>> emb = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    >>> loss = MultiSimilarityLoss()(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    >>> bool(loss >= 0)
    True
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float | None = 0.1,
        record_stats: bool = False,
    ) -> None:
        super().__init__(record_stats=record_stats)
        if not (alpha > 0 and beta > 0 and math.isfinite(base)):
            raise ValueError(
                f"alpha and beta must be > 0 and base finite; got alpha={alpha}, "
                f"beta={beta}, base={base}."
            )
        if epsilon is not None and not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0 or None; got {epsilon}.")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = float(base)
        self.epsilon = None if epsilon is None else float(epsilon)

    @staticmethod
    def _similarity(emb: torch.Tensor, n_rows: int) -> torch.Tensor:
        z = F.normalize(emb, dim=1, eps=1e-12)
        return z[:n_rows] @ z.T

    def _mined_masks(self, similarity, labels, n_rows):
        positive, negative = pair_masks(labels, n_rows)
        if self.epsilon is None:
            return positive, negative
        return multi_similarity_masks(similarity, positive, negative, self.epsilon)

    def mine(
        self, embeddings: torch.Tensor, labels: torch.Tensor, n_anchors: int | None = None
    ) -> IndexPairs:
        """The pairs the loss scores on a labelled batch, anchored on the first ``n_anchors``.

        Parameters
        ----------
        embeddings : torch.Tensor of shape (B, d)
            The samples.
        labels : torch.Tensor of shape (B,)
            Their class labels.
        n_anchors : int, default=None
            Anchors are the first ``n_anchors`` samples (``None``: all).

        Returns
        -------
        IndexPairs
            The mined pairs (every pair with ``epsilon=None``).
        """
        labels = _labels(labels, embeddings, "the multi-similarity loss")
        n_rows = embeddings.shape[0] if n_anchors is None else int(n_anchors)
        with torch.no_grad():
            similarity = self._similarity(full_precision(embeddings.detach()), n_rows)
            masks = self._mined_masks(similarity, labels, n_rows)
        return pairs_from_masks(*masks, n_anchors=n_anchors)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: tuple | None = None,
    ) -> torch.Tensor:
        """The loss of a labelled batch (pairs mined), or of the given pairs."""
        _check_embeddings(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            emb = full_precision(embeddings)
            n_samples = emb.shape[0]
            if indices_tuple is None:
                labels = _labels(labels, emb, "the multi-similarity loss")
                n_rows = n_samples
                similarity = self._similarity(emb, n_rows)
                positive, negative = self._mined_masks(similarity, labels, n_rows)
            else:
                pairs = as_index_pairs(indices_tuple, n_samples, emb.device)
                n_rows = n_samples if pairs.n_anchors is None else pairs.n_anchors
                similarity = self._similarity(emb, n_rows)
                positive, negative = masks_from_pairs(pairs, n_rows, n_samples)
            pos = _log1p_sum_exp(self.alpha * (self.base - similarity), positive) / self.alpha
            neg = _log1p_sum_exp(self.beta * (similarity - self.base), negative) / self.beta
            loss = (pos + neg).sum() / max(n_rows, 1)
        if self.record_stats:
            distance = 1.0 - similarity.detach()
            self.last_stats = {
                "d_ap": _masked_mean(distance, positive),
                "d_an": _masked_mean(distance, negative),
                "spread": _anchor_rows(distance, n_rows),
            }
        return loss

    def extra_repr(self) -> str:  # noqa: D102
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, epsilon={self.epsilon}"
