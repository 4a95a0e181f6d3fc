"""Cross-batch memory (XBM): pair-based losses mine against past batches too.

:class:`CrossBatchMemory` wraps a pair-based loss (triplet, contrastive,
multi-similarity: a loss with a ``mine(embeddings, labels, n_anchors)``
method) and keeps a FIFO of the last ``memory_size`` embeddings and labels
it has seen, detached (Wang, Zhang, Huang and Scott, CVPR 2020). Each batch
is followed by the memory; the loss mines pairs or triplets whose anchors are
in the batch and whose other ends are in the batch or the memory, and scores
them; then the batch is enqueued. Gradients flow through the batch's
embeddings only (the memory is a constant), so pairs inside the batch train
both ends and pairs with the memory train the batch's end, as in the paper
(its in-batch plus cross-batch loss) and in pytorch-metric-learning's
``CrossBatchMemory``. ``memory_size`` counts past embeddings only: the
paper's and pytorch-metric-learning's memory also holds the current batch
(enqueued before the loss), so theirs of size ``memory_size + batch_size``
pairs a batch with the same samples as ours.

The memory is the criterion's state: fixed-size buffers (``memory_embeddings``,
``memory_labels``), the write position ``memory_pointer`` and the fill count
``memory_filled``, so it moves with the criterion's device and is in its
``state_dict`` (saved with the model, and in checkpoints). It is written only
in training mode, never while a net evaluates.

:class:`sktriplet.TripletEmbedder` wraps its loss in it when ``memory_size``
is set (the registry's :data:`~sktriplet.triplets.registry.WRAPPERS`).

Pure torch: nothing here imports scikit-learn or skorch.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from sktriplet.triplets.base import LossWrapper, full_precision, inner_loss

__all__ = ["CrossBatchMemory", "check_memory_loss"]


def check_memory_loss(loss: nn.Module | type, mining: str | None = None) -> None:
    """Raise unless a cross-batch memory can wrap ``loss``.

    Parameters
    ----------
    loss : torch.nn.Module or type
        A loss (or wrapper of one), or a loss class.
    mining : str, default=None
        The estimator's ``mining`` (checked for a loss class that takes it);
        an instance's own ``mining`` is checked where it has one.

    Raises
    ------
    ValueError
        For a loss without ``mine`` (the classifier losses, which compare
        samples with class weights, or a user's loss) or with ``mining="all"``.
    """
    if isinstance(loss, nn.Module):
        loss = inner_loss(loss)
        mining = getattr(loss, "mining", None)
        cls = type(loss)
    else:
        cls = loss
        if "mining" not in inspect.signature(cls).parameters:
            mining = None
    if not callable(getattr(loss, "mine", None)):
        raise ValueError(
            f"memory_size needs a pair-based loss that mines pairs or triplets (criterion="
            f"'triplet', 'contrastive' or 'multi_similarity'); {cls.__name__} has no "
            "mine(embeddings, labels, n_anchors) method (the classifier losses compare "
            "samples with class weights, not with other samples). Set memory_size=None."
        )
    if mining == "all":
        raise ValueError(
            "memory_size with mining='all' would enumerate every triplet of the batch and the "
            "memory; use mining='semihard' (the default) or 'hard'."
        )


class CrossBatchMemory(LossWrapper):
    """A pair-based loss mined against the batch and a FIFO of past embeddings.

    Parameters
    ----------
    loss : torch.nn.Module
        The wrapped loss: it must have ``mine(embeddings, labels,
        n_anchors)`` (:class:`~sktriplet.triplets.losses.TripletLoss` with
        ``mining`` ``"semihard"`` or ``"hard"``,
        :class:`~sktriplet.triplets.pair_losses.ContrastiveLoss`,
        :class:`~sktriplet.triplets.pair_losses.MultiSimilarityLoss`).
    n_components : int
        Width of the embeddings (given by the fit).
    memory_size : int, default=1024
        How many past embeddings to keep. Setting it later resizes the
        memory and keeps the newest entries.

    Attributes
    ----------
    memory_embeddings : torch.Tensor of shape (memory_size, n_components)
        The ring buffer of past embeddings (float32).
    memory_labels : torch.Tensor of shape (memory_size,)
        Their labels (``-1`` where empty).
    memory_pointer : torch.Tensor, 0-d int64
        Where the next embedding is written.
    memory_filled : torch.Tensor, 0-d int64
        How many entries hold embeddings.

    References
    ----------
    .. [1] Wang, Zhang, Huang and Scott, "Cross-Batch Memory for Embedding
       Learning", CVPR 2020.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.losses import TripletLoss
    >>> from sktriplet.triplets.memory import CrossBatchMemory
    >>> criterion = CrossBatchMemory(TripletLoss(), n_components=4, memory_size=16)
    >>> z = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    >>> criterion(z, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim
    0
    >>> int(criterion.memory_filled)
    8
    """

    def __init__(self, loss: nn.Module, n_components: int, memory_size: int = 1024) -> None:
        super().__init__(loss)
        check_memory_loss(loss)
        if int(memory_size) < 1 or int(n_components) < 1:
            raise ValueError(
                f"memory_size and n_components must be >= 1; got memory_size={memory_size}, "
                f"n_components={n_components}."
            )
        size, width = int(memory_size), int(n_components)
        self.register_buffer("memory_embeddings", torch.zeros(size, width))
        self.register_buffer("memory_labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("memory_pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("memory_filled", torch.zeros((), dtype=torch.long))

    @property
    def memory_size(self) -> int:
        """How many past embeddings the memory keeps."""
        return int(self.memory_embeddings.shape[0])

    @memory_size.setter
    def memory_size(self, value: int) -> None:
        value = int(value)
        if value < 1:
            raise ValueError(f"memory_size must be >= 1; got {value}.")
        if value == self.memory_size:
            return
        embeddings, labels = self.memory()  # oldest first
        keep = min(value, labels.shape[0])
        start = labels.shape[0] - keep
        new_embeddings = self.memory_embeddings.new_zeros(value, self.memory_embeddings.shape[1])
        new_labels = self.memory_labels.new_full((value,), -1)
        new_embeddings[:keep] = embeddings[start:]
        new_labels[:keep] = labels[start:]
        self.memory_embeddings = new_embeddings
        self.memory_labels = new_labels
        self.memory_pointer.fill_(keep % value)
        self.memory_filled.fill_(keep)

    def memory(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The remembered embeddings and labels, oldest first.

        Returns
        -------
        embeddings : torch.Tensor of shape (memory_filled, n_components)
        labels : torch.Tensor of shape (memory_filled,)
        """
        filled, pointer = int(self.memory_filled), int(self.memory_pointer)
        if filled < self.memory_size:
            return self.memory_embeddings[:filled], self.memory_labels[:filled]
        order = torch.arange(pointer, pointer + filled, device=self.memory_labels.device)
        order %= self.memory_size
        return self.memory_embeddings[order], self.memory_labels[order]

    def reset_memory(self) -> None:
        """Forget every remembered embedding."""
        self.memory_embeddings.zero_()
        self.memory_labels.fill_(-1)
        self.memory_pointer.zero_()
        self.memory_filled.zero_()

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Write a batch into the memory (the oldest entries make room).

        Parameters
        ----------
        embeddings : torch.Tensor of shape (B, n_components)
            Embeddings (stored detached, as float32).
        labels : torch.Tensor of shape (B,)
            Their labels.
        """
        size = self.memory_size
        embeddings, labels = embeddings[-size:], labels[-size:]
        n = embeddings.shape[0]
        pointer = int(self.memory_pointer)
        slots = torch.arange(pointer, pointer + n, device=self.memory_labels.device) % size
        self.memory_embeddings[slots] = embeddings.detach().to(self.memory_embeddings.dtype)
        self.memory_labels[slots] = labels.to(self.memory_labels.device, torch.long)
        self.memory_pointer.fill_((pointer + n) % size)
        self.memory_filled.fill_(min(size, int(self.memory_filled) + n))

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: tuple | None = None,
    ) -> torch.Tensor:
        """The wrapped loss of the batch mined against the batch and the memory."""
        if labels is None:
            raise ValueError(
                "the cross-batch memory (memory_size) needs class labels: it mines the batch "
                "against past embeddings of the same and other classes. With triplets=True "
                "set memory_size=None."
            )
        if indices_tuple is not None:
            raise ValueError(
                "the cross-batch memory (memory_size) mines its own pairs or triplets; call it "
                "with labels only."
            )
        labels = torch.as_tensor(labels, device=embeddings.device).long()
        emb = full_precision(embeddings)
        remembered, remembered_labels = self.memory()
        n_anchors = emb.shape[0]
        if remembered.shape[0]:
            everything = torch.cat([emb, remembered.to(emb.dtype)])
            all_labels = torch.cat([labels, remembered_labels])
        else:
            everything, all_labels = emb, labels
        mined = self.loss.mine(everything, all_labels, n_anchors=n_anchors)
        loss = self.loss(everything, all_labels, indices_tuple=mined)
        if self.training:
            self.enqueue(emb, labels)
        return loss

    def extra_repr(self) -> str:  # noqa: D102
        return f"memory_size={self.memory_size}, filled={int(self.memory_filled)}"
