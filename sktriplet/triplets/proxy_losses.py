"""Classifier ("proxy") losses: normalised softmax and ArcFace.

Each class keeps one learnable weight vector per training class (``weight``,
``n_classes x n_components``, a parameter of the criterion: skorch trains it
with the network, :func:`sktriplet.save` stores it with the net so that
``warm_start`` continues, and it is never part of the embedding network or
of an export). A sample is scored by a softmax cross-entropy over the cosine
similarities between its embedding and every class's weight vector; the
embedding stays what the network outputs (the default networks L2-normalise
it). They need class labels: ``triplets=True`` refuses them
(``requires_labels``), and so does a cross-batch memory (they compare
samples with classes, not with other samples).

An ``indices_tuple`` (a miner's pairs or triplets) weighs each sample's
cross-entropy by how often the tuple names it, relative to the most named
sample (:func:`~sktriplet.triplets.pair_mining.miner_weights`), as
pytorch-metric-learning's classifier losses do.

Pure torch: nothing here imports scikit-learn or skorch.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from sktriplet.triplets.base import MetricLoss, check_class_codes, full_precision
from sktriplet.triplets.pair_mining import miner_weights

__all__ = ["ArcFaceLoss", "NormalizedSoftmaxLoss", "ProxyLoss"]


class ProxyLoss(MetricLoss):
    """Base of the classifier losses: class weight vectors and the cross-entropy.

    Subclasses implement :meth:`logits` from the cosine similarities.

    Parameters
    ----------
    n_classes : int
        Number of training classes (given by the fit).
    n_components : int
        Width of the embeddings (given by the fit).
    record_stats : bool, default=False
        Keep ``spread`` (mean cosine distance between the batch's samples)
        of the last batch in ``last_stats``.

    Attributes
    ----------
    weight : torch.nn.Parameter of shape (n_classes, n_components)
        The class weight vectors (only their directions matter), drawn from
        a standard normal distribution.
    """

    requires_labels = True

    def __init__(self, n_classes: int, n_components: int, record_stats: bool = False) -> None:
        super().__init__(record_stats=record_stats)
        if n_classes < 1 or n_components < 1:
            raise ValueError(
                f"{type(self).__name__} needs n_classes >= 1 and n_components >= 1; got "
                f"n_classes={n_classes}, n_components={n_components}."
            )
        self.n_classes = int(n_classes)
        self.weight = nn.Parameter(torch.empty(self.n_classes, int(n_components)))
        nn.init.normal_(self.weight)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``(B, n_classes)`` of embeddings to the class weights."""
        z = F.normalize(embeddings, dim=1, eps=1e-12)
        return z @ F.normalize(self.weight, dim=1, eps=1e-12).T

    def logits(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The softmax's logits from the cosines and the true classes."""
        raise NotImplementedError

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: tuple | None = None,
    ) -> torch.Tensor:
        """Mean (miner-weighted) cross-entropy of a labelled batch."""
        name = type(self).__name__
        if labels is None:
            raise ValueError(
                f"{name} needs class labels: it learns one weight vector per training class. "
                "With triplets=True (no classes) use criterion='triplet', 'contrastive' or "
                "'multi_similarity'."
            )
        if embeddings.ndim != 2:
            raise ValueError(
                f"embeddings must be 2-D (batch, dim); got shape {tuple(embeddings.shape)}."
            )
        labels = check_class_codes(labels, embeddings.shape[0], self.n_classes, name)
        labels = labels.to(embeddings.device)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            emb = full_precision(embeddings)
            cosines = self.cosines(emb)
            terms = F.cross_entropy(self.logits(cosines, labels), labels, reduction="none")
            if indices_tuple is not None:
                terms = terms * miner_weights(indices_tuple, emb.shape[0], emb.device)
            loss = terms.sum() / max(emb.shape[0], 1)
        if self.record_stats:
            with torch.no_grad():
                z = F.normalize(emb.detach(), dim=1, eps=1e-12)
                n = z.shape[0]
                # sum over i != j of 1 - z_i . z_j, without the n x n matrix
                total = n * (n - 1) - (z.sum(dim=0) ** 2).sum() + (z * z).sum()
                spread = total / max(n * (n - 1), 1)
            self.last_stats = {"spread": spread}
        return loss


class NormalizedSoftmaxLoss(ProxyLoss):
    """Normalised softmax: cross-entropy over cosines divided by a temperature.

    ``logits_c = cos(z, w_c) / temperature`` (Zhai and Wu 2018;
    pytorch-metric-learning's ``NormalizedSoftmaxLoss``). The registered
    loss ``"normalized_softmax"``; see :mod:`sktriplet.triplets.proxy_losses`.

    Parameters
    ----------
    n_classes, n_components : int
        Given by the fit (number of training classes, embedding width).
    temperature : float, default=0.05
        The paper's and pytorch-metric-learning's default (a logit scale of 20).
    record_stats : bool, default=False
        See :class:`ProxyLoss`.

    References
    ----------
    .. [1] Zhai and Wu, "Classification is a Strong Baseline for Deep Metric
       Learning", BMVC 2019 (arXiv:1811.12649, 2018).

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.proxy_losses import NormalizedSoftmaxLoss
    >>> loss = NormalizedSoftmaxLoss(n_classes=3, n_components=4)
    >>> z = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    >>> loss(z, torch.tensor([0, 0, 1, 1, 2, 2])).ndim
    0
    """

    def __init__(
        self,
        n_classes: int,
        n_components: int,
        temperature: float = 0.05,
        record_stats: bool = False,
    ) -> None:
        super().__init__(n_classes, n_components, record_stats=record_stats)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature}.")
        self.temperature = float(temperature)

    def logits(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``cos / temperature``."""
        return cosines / self.temperature

    def extra_repr(self) -> str:  # noqa: D102
        return f"n_classes={self.n_classes}, temperature={self.temperature}"


class ArcFaceLoss(ProxyLoss):
    """ArcFace: an additive angular margin on the true class, then a scaled softmax.

    With ``theta`` the angle between an embedding and its class's weight
    vector, the true class's logit is ``scale * cos(theta + angular_margin)``
    (``scale * (cos(theta) - angular_margin * sin(angular_margin))`` where
    ``theta > pi - angular_margin``, which keeps it decreasing in ``theta``)
    and every other class's ``scale * cos(theta_c)`` (Deng et al. 2019; their
    code and pytorch-metric-learning's ``ArcFaceLoss``). The registered loss
    ``"arcface"``; see :mod:`sktriplet.triplets.proxy_losses`.

    Parameters
    ----------
    n_classes, n_components : int
        Given by the fit (number of training classes, embedding width).
    scale : float, default=64.0
        The logit scale ``s`` (the paper's 64).
    angular_margin : float, default=0.5
        The margin ``m`` in radians (the paper's 0.5, 28.6 degrees). Not the
        estimator's ``margin``, which is the triplet loss's.
    record_stats : bool, default=False
        See :class:`ProxyLoss`.

    References
    ----------
    .. [1] Deng, Guo, Xue and Zafeiriou, "ArcFace: Additive Angular Margin
       Loss for Deep Face Recognition", CVPR 2019.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.proxy_losses import ArcFaceLoss
    >>> loss = ArcFaceLoss(n_classes=3, n_components=4)
    >>> z = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    >>> bool(loss(z, torch.tensor([0, 0, 1, 1, 2, 2])) > 0)
    True
    """

    def __init__(
        self,
        n_classes: int,
        n_components: int,
        scale: float = 64.0,
        angular_margin: float = 0.5,
        record_stats: bool = False,
    ) -> None:
        super().__init__(n_classes, n_components, record_stats=record_stats)
        if not scale > 0 or not 0 <= angular_margin < math.pi / 2:
            raise ValueError(
                f"scale must be > 0 and angular_margin in [0, pi/2) radians; got scale={scale}, "
                f"angular_margin={angular_margin}."
            )
        self.scale = float(scale)
        self.angular_margin = float(angular_margin)

    def logits(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``scale * cos(theta + m)`` for the true class, ``scale * cos(theta)`` for the others."""
        m = self.angular_margin
        cos_t = cosines.gather(1, labels[:, None])
        # sin(theta) >= 0 on [0, pi]; clamped away from 0 so the gradient stays finite
        # where an embedding points exactly at its class (theta = 0).
        sin_t = (1.0 - cos_t * cos_t).clamp_min(1e-12).sqrt()
        shifted = cos_t * math.cos(m) - sin_t * math.sin(m)
        # theta <= pi - m  <=>  cos(theta) >= -cos(m)
        shifted = torch.where(cos_t >= -math.cos(m), shifted, cos_t - m * math.sin(m))
        return self.scale * cosines.scatter(1, labels[:, None], shifted)

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"n_classes={self.n_classes}, scale={self.scale}, angular_margin={self.angular_margin}"
        )
