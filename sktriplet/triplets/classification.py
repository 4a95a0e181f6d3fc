"""The classification auxiliary: any loss plus the cross-entropy of a classifier head.

:class:`WithClassification` wraps a loss (any loss with the one interface,
:mod:`sktriplet.triplets.base`) and adds ``weight`` times the cross-entropy
of a classifier over the training classes, as re-identification practice
does ("BNNeck"-style joint training). The classifier sees the embeddings; its
weights are learnable parameters of the criterion, which skorch puts in the
optimizer with the network's and :func:`sktriplet.save` stores with the net.
:class:`sktriplet.TripletEmbedder` wraps its loss in it when
``classification_weight > 0`` (the registry's wrapper table,
:data:`sktriplet.triplets.registry.WRAPPERS`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from sktriplet.triplets.base import LossWrapper, check_class_codes

__all__ = ["CLASSIFIERS", "WithClassification"]

#: Classifier heads that :class:`WithClassification` offers.
CLASSIFIERS = ("cosine", "linear")


class WithClassification(LossWrapper):
    """A loss plus ``weight`` times the cross-entropy of a classifier head.

    ``loss(z, y) + weight * cross_entropy(logits(z), y)`` with, for
    embeddings ``z`` and class weight vectors ``w_c``:

    * ``"cosine"``: ``logits_c = scale * cos(z, w_c)`` (normalised softmax;
      on unit embeddings only the direction of ``w_c`` matters);
    * ``"linear"``: ``logits_c = z . w_c + b_c``.

    Labels must be the integer codes ``0 .. n_classes - 1`` (what
    :class:`sktriplet.TripletEmbedder` gives its net). The classifier is used
    only for training; the embeddings stay what the network outputs.

    Parameters
    ----------
    loss : torch.nn.Module
        The wrapped loss (e.g. :class:`~sktriplet.triplets.losses.TripletLoss`).
    n_classes : int
        Number of training classes.
    n_components : int
        Width of the embeddings.
    weight : float, default=1.0
        Weight of the cross-entropy term; 0 gives the wrapped loss alone.
    classifier : {"cosine", "linear"}, default="cosine"
        The classifier head.
    scale : float, default=16.0
        Logit scale of the cosine classifier (a temperature: cosines lie in
        ``[-1, 1]``, too flat for a softmax over many classes unscaled).

    Attributes
    ----------
    classifier_weight : torch.nn.Parameter of shape (n_classes, n_components)
        The class weight vectors.
    classifier_bias : torch.nn.Parameter of shape (n_classes,) or None
        Biases of the linear classifier.
    last_terms : dict of str to float
        ``"loss"`` (the wrapped loss) and ``"classification"`` terms of the
        last batch.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.classification import WithClassification
    >>> from sktriplet.triplets.losses import TripletLoss
    >>> criterion = WithClassification(TripletLoss(), n_classes=3, n_components=4, weight=0.5)
    >>> z = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    >>> criterion(z, torch.tensor([0, 0, 1, 1, 2, 2])).ndim
    0
    """

    def __init__(
        self,
        loss: nn.Module,
        n_classes: int,
        n_components: int,
        weight: float = 1.0,
        classifier: str = "cosine",
        scale: float = 16.0,
    ) -> None:
        super().__init__(loss)
        if classifier not in CLASSIFIERS:
            raise ValueError(
                f"classifier must be one of {', '.join(map(repr, CLASSIFIERS))}; "
                f"got {classifier!r}."
            )
        if n_classes < 2 or n_components < 1:
            raise ValueError(
                "the classification loss needs n_classes >= 2 and n_components >= 1; got "
                f"n_classes={n_classes}, n_components={n_components}."
            )
        if not (math.isfinite(weight) and weight >= 0) or not scale > 0:
            raise ValueError(
                f"weight must be finite and >= 0 and scale > 0; got weight={weight}, scale={scale}."
            )
        self.n_classes = int(n_classes)
        self.weight = float(weight)
        self.classifier = classifier
        self.scale = float(scale)
        self.classifier_weight = nn.Parameter(torch.empty(n_classes, n_components))
        nn.init.kaiming_uniform_(self.classifier_weight, a=math.sqrt(5))
        self.classifier_bias = (
            nn.Parameter(torch.zeros(n_classes)) if classifier == "linear" else None
        )
        self.last_terms: dict[str, float] = {}

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, n_classes)`` of a batch of embeddings."""
        if self.classifier == "cosine":
            w = F.normalize(self.classifier_weight, dim=1)
            return self.scale * F.normalize(embeddings, dim=1) @ w.T
        return F.linear(embeddings, self.classifier_weight, self.classifier_bias)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: tuple | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The wrapped loss plus the weighted cross-entropy of one labelled batch.

        ``weights`` (one per embedding: sample weights) go to the wrapped
        loss, and make the cross-entropy their weighted mean over the
        samples, ``sum_i w_i ce_i / sum_i w_i``.
        """
        if labels is None:
            raise ValueError(
                "the classification loss needs class labels; with triplets=True set "
                "classification_weight=0."
            )
        labels = torch.as_tensor(labels, device=embeddings.device)
        given = {} if indices_tuple is None else {"indices_tuple": indices_tuple}
        if weights is not None:
            given["weights"] = weights
        base = self.loss(embeddings, labels, **given)
        labels = check_class_codes(
            labels, embeddings.shape[0], self.n_classes, "the classification loss"
        )
        logits = self.logits(embeddings.float())
        if weights is None:
            ce = F.cross_entropy(logits, labels)
        else:
            w = torch.as_tensor(weights, device=logits.device).to(logits.dtype)
            terms = F.cross_entropy(logits, labels, reduction="none")
            ce = (w * terms).sum() / w.sum().clamp_min(torch.finfo(logits.dtype).tiny)
        self.last_terms = {"loss": float(base.detach()), "classification": float(ce.detach())}
        return base + self.weight * ce

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"n_classes={self.n_classes}, weight={self.weight}, "
            f"classifier={self.classifier!r}, scale={self.scale}"
        )
