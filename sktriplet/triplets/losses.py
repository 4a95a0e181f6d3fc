"""Triplet loss with online mining: a functional form and a criterion module.

The loss knows nothing of scikit-learn or skorch; :class:`TripletLoss` is the
``torch.nn.Module`` the estimator hands to skorch as its criterion (the
registered loss ``"triplet"``). With labels it consumes the mining seam's
per-anchor form (:func:`~sktriplet.triplets.mining.mine_table`), with given
triplets the index tuples themselves.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from sktriplet.triplets.base import MetricLoss, full_precision, zero_loss
from sktriplet.triplets.distances import (
    check_distance,
    gather_distances,
    paired_distances,
    pairwise_distances,
)
from sktriplet.triplets.mining import (
    DEFAULT_BLOCK_ELEMENTS,
    MINING_STRATEGIES,
    TRIPLET_MINING_STRATEGIES,
    ClassTable,
    IndexTriplets,
    MinedTriplets,
    as_index_triplets,
    check_mining,
    check_triplet_mining,
    mine_batch_negatives,
    mine_table,
)

__all__ = ["TripletLoss", "triplet_loss"]


def _hinge(x: torch.Tensor, margin: float, soft: bool) -> torch.Tensor:
    # x = d(a, p) - d(a, n)
    return F.softplus(x) if soft else F.relu(x + margin)


def triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    triplets: IndexTriplets | tuple | torch.Tensor | None = None,
    margin: float = 0.2,
    mining: str | None = None,
    distance: str = "sqeuclidean",
    soft: bool = False,
    return_stats: bool = False,
    weights: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Triplet loss of a batch of embeddings, from labels or explicit triplets.

    Give exactly one of ``labels`` (triplets are mined from the classes) and
    ``triplets`` (anchor, positive and negative indices into the batch).

    Parameters
    ----------
    embeddings : torch.Tensor of shape (B, d)
        One embedding per sample. They are used as given (the estimator's
        networks L2-normalise their output). float16 and bfloat16 inputs are
        computed in float32; float64 stays float64.
    labels : torch.Tensor of shape (B,), default=None
        Class labels (any integer dtype).
    triplets : tuple of three int tensors of shape (n_triplets,), or int \
tensor of shape (n_triplets, 3), default=None
        Explicit triplets ``(a, p, n)``: indices into ``embeddings`` of
        anchors, positives and negatives (for example the output of
        :func:`sktriplet.triplets.mining.mine_triplets`). See Notes.
    margin : float, default=0.2
        The margin ``alpha`` of ``max(d(a, p) - d(a, n) + alpha, 0)``. Its
        scale depends on ``distance``: on unit vectors ``sqeuclidean`` lies in
        ``[0, 4]``, ``euclidean`` and ``cosine`` in ``[0, 2]``. Unused when
        ``soft=True``.
    mining : {"semihard", "hard", "all", "none"}, default=None
        Which triplets enter the loss. ``None`` means ``"semihard"`` with
        ``labels`` and ``"none"`` with ``triplets``. With labels:

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

        With ``triplets``: ``"none"`` (the given triplets), ``"semihard"``
        or ``"hard"`` (each triplet's negative mined among the batch's given
        negatives; see Notes).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings (see :mod:`sktriplet.triplets.distances`).
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
    weights : torch.Tensor of shape (n_triplets,) or (B,), default=None
        Non-negative weights (``None``: all 1). With ``triplets``, one per
        given triplet: the loss is the weighted mean ``sum_i w_i h_i /
        sum_i w_i`` of the terms ``h_i`` (over the triplets kept, see
        Notes); integer weights give the loss of each triplet repeated
        ``w_i`` times. With ``labels``, one per embedding (sample weights):
        each term of the mined loss is weighted by the weight of its
        anchor, ``sum_t w[a_t] h_t / sum_t w[a_t]`` over the terms the
        unweighted loss averages (semihard: one per positive pair; hard:
        one per anchor; all: the non-zero terms, every term with
        ``soft=True``). Mining does not depend on the weights, and a sample
        of weight 0 still serves as the positive or negative of others;
        integer weights give the loss of each anchor's terms repeated.

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

    With explicit triplets ``(a_i, p_i, n_i)``, ``i = 1 .. T``, the loss is
    ``mean_i max(d(a_i, p_i) - d(a_i, n'_i) + margin, 0)`` (soft:
    ``log1p(exp(d(a_i, p_i) - d(a_i, n'_i)))``), where ``n'_i`` is

    - ``"none"``: ``n_i`` itself;
    - ``"hard"``: the candidate nearest to ``a_i``;
    - ``"semihard"``: the nearest candidate with ``d(a_i, c) > d(a_i, p_i)``,
      or the farthest candidate if there is none;

    and the candidates of triplet ``i`` are the distinct ``n_j`` of all the
    triplets, except those equal (as indices) to ``a_i`` or ``p_i``. A
    triplet left without a candidate is left out of the mean. No triplets
    give ``0`` with a zero gradient. Memory is ``O(T x d)``, plus blocks of
    at most ``2**24`` anchor-candidate distances when mining (see
    :func:`sktriplet.triplets.mining.mine_batch_negatives`).

    References
    ----------
    .. [1] Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding
       for Face Recognition and Clustering", CVPR 2015.
    .. [2] Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for
       Person Re-Identification", arXiv:1703.07737, 2017.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.losses import triplet_loss
    >>> emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> round(triplet_loss(emb, labels, margin=0.5).item(), 4)
    0.05

    The same batch with two explicit triplets, (0, 1, 2) and (2, 3, 0), each
    with ``d(a, p) = 0.4`` and ``d(a, n) = 2``:

    >>> t = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([2, 0]))
    >>> round(triplet_loss(emb, triplets=t, margin=2.0).item(), 4)
    0.4
    """
    check_distance(distance)
    if embeddings.ndim != 2:
        raise ValueError(
            f"embeddings must be 2-D (batch, dim); got shape {tuple(embeddings.shape)}."
        )
    if (labels is None) == (triplets is None):
        raise ValueError(
            "triplet_loss needs exactly one of labels (one class label per embedding) "
            "and triplets=(anchor, positive, negative) (index tensors into the "
            f"embeddings); got {'both' if triplets is not None else 'neither'}."
        )
    if triplets is not None:
        mining = check_triplet_mining("none" if mining is None else mining)
        hinge = (margin, soft, weights)
        return _explicit_loss(embeddings, triplets, hinge, mining, distance, return_stats)
    if mining == "none":
        raise ValueError(
            'mining="none" applies only to explicit triplets (triplets=...); with labels '
            f"use one of {list(MINING_STRATEGIES)}."
        )
    mining = check_mining("semihard" if mining is None else mining)
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one label per embedding; got shape "
            f"{tuple(labels.shape)} for {embeddings.shape[0]} embeddings."
        )
    weights = _sample_weights(weights, embeddings)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        emb = full_precision(embeddings)
        table = ClassTable.from_labels(labels)
        stats: dict[str, torch.Tensor] | None = {} if return_stats else None
        if not table.has_triplets:
            loss = zero_loss(embeddings)
            dist = pairwise_distances(emb.detach(), distance=distance) if return_stats else None
        elif mining == "all":
            loss, dist = _all(emb, table, (margin, soft, weights), distance, stats)
        else:
            loss, dist = _mined(emb, table, (margin, soft, weights), distance, stats, mining)
    if not return_stats:
        return loss
    return loss, _finish_stats(stats, dist)


def _finish_stats(stats: dict[str, torch.Tensor], dist: torch.Tensor) -> dict[str, torch.Tensor]:
    # Adds the batch's spread (mean off-diagonal distance) and zeros for the
    # statistics a batch without triplets did not record.
    d = dist.detach()
    n = d.shape[0]
    stats["spread"] = d.sum() / max(n * (n - 1), 1)
    zero = d.new_zeros(())
    for key in ("n_triplets", "active", "fallback", "d_ap", "d_an"):
        stats.setdefault(key, zero)
    return stats


def _explicit_loss(
    embeddings, triplets, hinge, mining, distance, return_stats, spread_of_anchors=False
):
    """The loss of explicit index triplets (see :func:`triplet_loss`).

    ``hinge`` is ``(margin, soft, weights)``. ``spread_of_anchors``: the
    ``spread`` statistic over the anchors only (a miner's triplets into a batch
    and a memory after it), else over every embedding.
    """
    margin, soft, weights = hinge
    triplets = as_index_triplets(triplets, embeddings.shape[0], embeddings.device)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        emb = full_precision(embeddings)
        anchor, positive, negative = triplets
        valid = fallback = None
        if mining != "none":
            negative, valid, fallback = mine_batch_negatives(
                emb, triplets, mining=mining, distance=distance
            )
        # Differences of the chosen rows only: O(T x d), finite gradients
        # where embeddings coincide.
        ends = paired_distances(
            emb[anchor].repeat(2, 1), emb[torch.cat([positive, negative])], distance=distance
        )
        d_ap, d_an = ends[: anchor.numel()], ends[anchor.numel() :]
        terms = _hinge(d_ap - d_an, margin, soft)
        if valid is None:
            n_triplets = terms.new_tensor(anchor.numel())
        else:
            terms = torch.where(valid, terms, 0.0)
            n_triplets = valid.sum().to(terms.dtype)
        if weights is None:
            loss = terms.sum() / n_triplets.clamp_min(1)
        else:
            loss = _weighted_mean(terms, weights, valid)
    if not return_stats:
        return loss
    count = n_triplets.detach().clamp_min(1)
    kept = valid if valid is not None else torch.ones_like(terms, dtype=torch.bool)
    stats = {
        "n_triplets": n_triplets.detach(),
        "active": ((terms.detach() > 0) & kept).sum() / count,
        "d_ap": torch.where(kept, d_ap.detach(), 0.0).sum() / count,
        "d_an": torch.where(kept, d_an.detach(), 0.0).sum() / count,
    }
    if fallback is not None:
        stats["fallback"] = (fallback & kept).sum() / count
    rows = emb.detach()[anchor.unique()] if spread_of_anchors else emb.detach()
    return loss, _finish_stats(stats, pairwise_distances(rows, distance=distance))


def _sample_weights(weights, embeddings: torch.Tensor) -> torch.Tensor | None:
    """Labelled batches: one weight per embedding, as a float tensor (or ``None``)."""
    if weights is None:
        return None
    w = torch.as_tensor(weights, device=embeddings.device)
    if w.shape != embeddings.shape[:1]:
        raise ValueError(
            f"with labels, weights must hold one weight per embedding (sample weights), "
            f"shape ({embeddings.shape[0]},); got {tuple(w.shape)}."
        )
    return w.to(torch.float64 if embeddings.dtype == torch.float64 else torch.float32)


def _weighted_mean(terms: torch.Tensor, weights, valid) -> torch.Tensor:
    """``sum(w * terms) / sum(w)`` over the kept triplets (``0`` when no weight is left)."""
    w = torch.as_tensor(weights, device=terms.device).to(terms.dtype)
    if w.shape != terms.shape:
        raise ValueError(
            f"weights must hold one weight per triplet: shape {tuple(terms.shape)}; got "
            f"{tuple(w.shape)}."
        )
    if valid is not None:
        w = torch.where(valid, w, 0.0)
    return (w * terms).sum() / w.sum().clamp_min(torch.finfo(terms.dtype).tiny)


def _mined_loss(emb, dist, mined: MinedTriplets, hinge, distance, stats):
    """Mean hinge (or soft) term over the mined triplets where ``mined.valid``.

    ``mined`` indexes the batch per anchor row (the layout of
    :class:`~sktriplet.triplets.mining.MinedTriplets`); ``hinge`` is
    ``(margin, soft, weights)``, ``weights`` one per anchor row (or
    ``None``) making the mean the weighted one. With ``stats``, records
    ``n_triplets``, ``active``, ``d_ap`` and ``d_an`` (and ``fallback``, the
    share of pairs where ``mined.found`` is false), unweighted.
    """
    margin, soft, weights = hinge
    pos, neg, valid, found = mined
    if pos.ndim == 1:
        pos, neg, valid = pos[:, None], neg[:, None], valid[:, None]
    # One gather for both ends: the backward builds one matrix of gradients.
    pairs = gather_distances(emb, dist, torch.cat([pos, neg], dim=1), distance=distance)
    d_ap, d_an = pairs.split(pos.shape[1], dim=1)
    terms = torch.where(valid, _hinge(d_ap - d_an, margin, soft), 0.0)
    n_triplets = valid.sum()
    count = n_triplets.clamp_min(1).to(terms.dtype)
    if stats is not None:
        # All means in one masked reduction (a few ops per batch, no sync).
        d = dist.dtype
        parts = [(terms.detach() > 0).to(d), d_ap.detach(), d_an.detach()]
        if found is not None:
            parts.append((~found).to(d))
        means = torch.where(valid, torch.stack(parts), 0.0).sum(dim=(1, 2)) / count
        stats["n_triplets"] = n_triplets.to(d)
        for key, value in zip(("active", "d_ap", "d_an", "fallback"), means, strict=False):
            stats[key] = value
    if weights is None:
        return terms.sum() / count
    return _weighted_mean(terms, weights[: terms.shape[0], None].expand_as(terms), valid)


def _mined(emb, table, hinge, distance, stats, mining):
    """Semi-hard or batch-hard: mine (the mining seam's table form), then the hinge."""
    with torch.no_grad():
        dist = pairwise_distances(emb.detach(), distance=distance)
    mined = mine_table(dist, table, mining=mining)
    return _mined_loss(emb, dist, mined, hinge, distance, stats), dist


def _all(emb, table, hinge, distance, stats):
    margin, soft, weights = hinge
    batch = emb.shape[0]
    dist = pairwise_distances(emb, distance=distance)
    valid = table.valid
    n_pos = valid.sum(dim=1)
    # With two classes or more, a sample's class is its positives plus itself.
    n_neg = batch - 1 - n_pos
    n_triplets = (n_pos * n_neg).sum().to(dist.dtype)
    if soft:
        total = _all_soft_sum(dist, table, weights)
        count = n_triplets if weights is None else (weights * (n_pos * n_neg)).sum()
        active = n_triplets
    else:
        total, count, active = _all_hinge_sum(dist, table, margin, weights)
    if stats is not None:
        d = dist.detach()
        n_pairs = n_pos.sum().to(d.dtype)
        pos_sum = torch.where(valid, d.gather(1, table.members), 0.0).sum()
        stats["n_triplets"] = n_triplets
        stats["active"] = active.to(d.dtype) / n_triplets.clamp_min(1)
        stats["d_ap"] = pos_sum / n_pairs.clamp_min(1)
        stats["d_an"] = (d.sum() - pos_sum) / n_neg.sum().clamp_min(1).to(d.dtype)
    if weights is None:
        return total / count.clamp_min(1).to(total.dtype), dist
    return total / count.clamp_min(torch.finfo(total.dtype).tiny), dist


def _all_hinge_sum(dist, table, margin, weights=None, block_elements=DEFAULT_BLOCK_ELEMENTS):
    """Sum of the positive hinge terms over all valid triplets, the mean's denominator, their count.

    Without ``weights`` the denominator is the count of positive terms; with
    ``weights`` (one per anchor row) the sum and the denominator are those of
    the terms weighted by their anchor's weight.

    With ``t = d(a, p) + margin``, a triplet is active when ``d(a, n) < t``
    and contributes ``t - d(a, n)``. So the sum is linear in the distances,
    with integer weights that mining fixes: ``d(a, p)`` counts once per
    active negative of the pair, ``d(a, n)`` once per positive ``p`` of
    ``a`` with ``d(a, n) < t``. Both counts come from bucketing each negative
    distance between the anchor's sorted thresholds (``O(B^2 log W)``, no
    triplet enumerated); the sum is then ``O(B^2)`` and exact, and autograd
    sees only a gather and a dot product.
    """
    d = dist.detach()
    batch, width = d.shape[0], table.width
    valid, codes = table.valid, table.codes
    thresholds = (d.gather(1, table.members) + margin).masked_fill_(~valid, math.inf)
    ordered, perm = thresholds.sort(dim=1)
    n_pos = valid.sum(dim=1)
    weight = torch.empty_like(d)
    active = torch.empty_like(table.members)
    step = max(1, block_elements // batch)
    for r0 in range(0, batch, step):
        r1 = min(batch, r0 + step)
        rows = d[r0:r1]
        same = codes[r0:r1, None] == codes[None, :]
        # bucket = number of thresholds <= d(a, n): n is active for the
        # sorted thresholds at positions >= bucket.
        bucket = torch.searchsorted(ordered[r0:r1], rows.masked_fill(same, math.inf), right=True)
        weight[r0:r1] = torch.where(same, 0, n_pos[r0:r1, None] - bucket)
        r = r1 - r0
        bucket += torch.arange(0, r * (width + 1), width + 1, device=d.device)[:, None]
        per_bucket = torch.bincount(bucket.view(-1), minlength=r * (width + 1))
        active[r0:r1] = per_bucket.view(r, width + 1)[:, :width].cumsum(dim=1)
    active = torch.empty_like(active).scatter_(1, perm, active) * valid
    d_ap = dist.gather(1, table.members)
    n_active = active.sum()
    active = active.to(dist.dtype)
    if weights is not None:
        rows = weights[:, None].to(dist.dtype)
        active, weight = active * rows, weight * rows
    total = (active * (d_ap + margin)).sum() - torch.dot(weight.view(-1), dist.reshape(-1))
    return total, (n_active if weights is None else active.sum()), n_active


def _all_soft_sum(dist, table, weights=None, block_elements=DEFAULT_BLOCK_ELEMENTS):
    """Sum of ``softplus(d(a, p) - d(a, n))`` over all valid triplets.

    Anchors are processed in blocks whose ``(anchors, width, B)`` tensor
    stays under ``block_elements``; each block is recomputed in the backward
    pass (activation checkpointing) so memory stays bounded. With
    ``weights`` (one per anchor row), each term is weighted by its anchor's.
    """
    batch, width = dist.shape[0], table.width
    step = max(1, block_elements // max(1, width * batch))
    total = dist.new_zeros(())
    for a0 in range(0, batch, step):
        sl = slice(a0, a0 + step)
        total = total + checkpoint(
            _soft_block,
            dist[sl],
            table.members[sl],
            table.valid[sl],
            table.codes[sl],
            table.codes,
            None if weights is None else weights[sl],
            use_reentrant=False,
        )
    return total


def _soft_block(rows, members, valid, codes, all_codes, weights=None):
    d_ap = rows.gather(1, members)
    terms = F.softplus(d_ap[:, :, None] - rows[:, None, :])
    mask = valid[:, :, None] & (codes[:, None, None] != all_codes[None, None, :])
    terms = torch.where(mask, terms, 0.0)
    if weights is not None:
        terms = terms * weights[:, None, None].to(terms.dtype)
    return terms.sum()


class TripletLoss(MetricLoss):
    """Triplet loss with online mining, as a criterion module.

    The registered loss ``"triplet"`` (:mod:`sktriplet.triplets.registry`),
    the default ``criterion`` of :class:`sktriplet.TripletEmbedder`. Called
    with the one loss interface (:mod:`sktriplet.triplets.base`):

    - ``criterion(embeddings, labels)``: :func:`triplet_loss` with the labels,
      mined by ``mining``;
    - ``criterion(embeddings, indices_tuple=(a, p, n))`` (triplet mode, no
      labels): the given triplets, their negatives mined among the batch's
      given negatives unless ``mining="none"``;
    - ``criterion(embeddings, labels, indices_tuple=(a, p, n))``: the
      triplets a miner chose (e.g. :func:`~sktriplet.triplets.mining.mine_triplets`),
      taken as they are.

    For compatibility, a 2-D ``labels`` of shape ``(n_triplets, 3)`` is read
    as ``indices_tuple``.

    Parameters
    ----------
    margin : float, default=0.2
        Margin of the hinge (see :func:`triplet_loss`).
    mining : {"semihard", "hard", "all", "none"}, default="semihard"
        Mining strategy. With triplet targets ``"semihard"`` and ``"hard"``
        mine among the batch's given negatives and ``"none"`` takes the
        triplets as given; ``"all"`` needs labels, ``"none"`` triplets.
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
    >>> from sktriplet.triplets.losses import TripletLoss
    >>> criterion = TripletLoss(margin=0.2, mining="hard")
    >>> emb = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    >>> criterion(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
    0
    >>> a, p, n = torch.tensor([0, 4]), torch.tensor([1, 5]), torch.tensor([2, 6])
    >>> criterion(emb, indices_tuple=(a, p, n)).ndim
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
        super().__init__(record_stats=record_stats)
        self.margin = float(margin)
        if mining not in MINING_STRATEGIES + TRIPLET_MINING_STRATEGIES:
            raise ValueError(
                f"mining={mining!r} is not supported; use one of {list(MINING_STRATEGIES)} "
                f'with labels, or "none" with explicit triplets.'
            )
        self.mining = mining
        self.distance = check_distance(distance)
        self.soft = bool(soft)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: IndexTriplets | tuple | torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of one batch, from labels, given triplets, or both (see the class).

        ``weights`` make the loss a weighted mean (see :func:`triplet_loss`):
        without labels one per triplet of ``indices_tuple``; with labels one
        per embedding, each triplet weighted by its anchor's weight (also
        for a miner's triplets, so that ``loss(z, y, indices_tuple=
        loss.mine(z, y), weights=w) == loss(z, y, weights=w)``).
        """
        if labels is not None:
            labels = torch.as_tensor(labels, device=embeddings.device)
            if indices_tuple is None and labels.ndim == 2:
                labels, indices_tuple = None, labels  # a (n, 3) triplet target
        if indices_tuple is not None and labels is not None:  # a miner chose them
            if embeddings.ndim != 2:
                raise ValueError(
                    f"embeddings must be 2-D (batch, dim); got shape {tuple(embeddings.shape)}."
                )
            if weights is not None:
                anchors = as_index_triplets(
                    indices_tuple, embeddings.shape[0], embeddings.device
                ).anchor
                weights = _sample_weights(weights, embeddings)[anchors]
            hinge = (self.margin, self.soft, weights)
            args = ("none", self.distance, self.record_stats)
            out = _explicit_loss(embeddings, indices_tuple, hinge, *args, spread_of_anchors=True)
        else:
            out = triplet_loss(
                embeddings,
                labels,
                triplets=indices_tuple,
                margin=self.margin,
                mining=self.mining,
                distance=self.distance,
                soft=self.soft,
                return_stats=self.record_stats,
                weights=weights,
            )
        if self.record_stats:
            out, self.last_stats = out
        return out

    def mine(
        self, embeddings: torch.Tensor, labels: torch.Tensor, n_anchors: int | None = None
    ) -> IndexTriplets:
        """The triplets ``mining`` chooses, anchored on the first ``n_anchors`` samples.

        The rule of the labelled loss (``"semihard"`` or ``"hard"``), with
        only the first ``n_anchors`` samples as anchors and every sample as a
        candidate positive or negative: a batch followed by a cross-batch
        memory. ``loss(embeddings, labels, indices_tuple=loss.mine(embeddings,
        labels))`` equals ``loss(embeddings, labels)``.

        Parameters
        ----------
        embeddings : torch.Tensor of shape (B, d)
            The samples (gradients are not used).
        labels : torch.Tensor of shape (B,)
            Their class labels.
        n_anchors : int, default=None
            Anchors are the first ``n_anchors`` samples (``None``: all).

        Returns
        -------
        IndexTriplets

        Raises
        ------
        ValueError
            For ``mining="all"`` (every triplet against a memory is far too
            many) or ``"none"``.
        """
        if self.mining not in ("semihard", "hard"):
            raise ValueError(
                f"mining={self.mining!r} cannot mine against a memory (memory_size): 'all' "
                "would enumerate every triplet of the batch and the memory. Use "
                "mining='semihard' or 'hard'."
            )
        labels = torch.as_tensor(labels, device=embeddings.device)
        emb = full_precision(embeddings.detach())
        n_rows = emb.shape[0] if n_anchors is None else int(n_anchors)
        with torch.no_grad(), torch.autocast(device_type=emb.device.type, enabled=False):
            if n_rows == emb.shape[0]:
                dist = pairwise_distances(emb, distance=self.distance)
            else:
                dist = pairwise_distances(emb[:n_rows], emb, distance=self.distance)
            return mine_table(dist, labels, mining=self.mining).index_triplets()

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"margin={self.margin}, mining={self.mining!r}, "
            f"distance={self.distance!r}, soft={self.soft}"
        )
