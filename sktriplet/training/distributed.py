"""Multi-process training with global mining, over :mod:`torch.distributed`.

With ``N`` processes (one per GPU, or CPU processes with the gloo backend),
each process embeds its own shard of a global PK batch; the embeddings and
labels are all-gathered, mining runs over the *global* batch, and gradients
flow back to each process's own embeddings. ``N`` processes then train like
one process with an ``N`` times larger batch.

:class:`~sktriplet.TripletEmbedder` switches to this mode by itself when
``fit`` runs in a process group of more than one process: launch the script
with ``torchrun`` (or ``accelerate launch``, which sets the same environment
variables) and call :func:`init_distributed` before ``fit``::

    torchrun --nproc_per_node 2 examples/distributed_fit.py

The pieces also work on their own in a hand-written loop:
:func:`all_gather_batch`, :class:`DistributedLoss` (around any loss;
:class:`DistributedTripletLoss` around the triplet loss) and
:class:`ShardedPKSampler`. Nothing here is imported by the rest of the
package unless ``fit`` runs distributed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from skorch.utils import to_tensor
from torch.nn.parallel import DistributedDataParallel

from sktriplet.training.net import TripletNet
from sktriplet.training.sampling import PKSampler
from sktriplet.triplets.base import LossWrapper
from sktriplet.triplets.losses import TripletLoss

__all__ = [
    "DistributedLoss",
    "DistributedTripletLoss",
    "DistributedTripletNet",
    "ShardedPKSampler",
    "all_gather_batch",
    "broadcast_seed",
    "init_distributed",
    "is_distributed",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def is_distributed() -> bool:
    """Whether a default process group of more than one process is running.

    Returns
    -------
    bool
        ``True`` inside ``torchrun --nproc_per_node N`` (N > 1) after
        :func:`init_distributed` (or ``torch.distributed.init_process_group``).
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` / ``accelerate launch`` set up.

    Reads the launcher's environment variables (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``) and initialises the
    default process group once; with CUDA it also makes GPU ``LOCAL_RANK``
    the current device, so ``device="cuda"`` means this process's GPU.

    Parameters
    ----------
    backend : {"nccl", "gloo"} or None, default=None
        ``None`` picks ``"nccl"`` when CUDA is available, else ``"gloo"``.

    Returns
    -------
    rank : int
        This process's rank (0 when not launched by a launcher).
    world_size : int
        Number of processes.
    """
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_seed(seed: int) -> int:
    """Rank 0's ``seed`` on every process (``seed`` itself when not distributed).

    Parameters
    ----------
    seed : int
        This process's seed.

    Returns
    -------
    int
        The seed of rank 0.
    """
    if not is_distributed():
        return seed
    t = torch.tensor([seed], dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, src=0)
    return int(t.item())


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``scale`` backward."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def all_gather_batch(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    grad_scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every process's embeddings and labels, in rank order.

    The local rows of the result are ``embeddings`` itself (times
    ``grad_scale`` in the backward pass), so gradients flow to this process's
    embeddings; the other processes' rows are constants here (each process
    computes their gradients itself). Shards may differ in size.

    Parameters
    ----------
    embeddings : torch.Tensor of shape (B_local, d)
        This process's embeddings. float16 and bfloat16 are gathered as
        float32 (the loss computes in float32 anyway).
    labels : torch.Tensor of shape (B_local,)
        Their integer labels.
    grad_scale : float or None, default=None
        Factor applied to the gradient of the local rows. ``None`` uses the
        world size: :class:`~torch.nn.parallel.DistributedDataParallel`
        *averages* the parameter gradients of the processes, so after that
        average every parameter has the gradient that one process would get
        from the loss of the concatenated batch. Use ``1.0`` when gradients
        are summed rather than averaged.

    Returns
    -------
    embeddings : torch.Tensor of shape (B_global, d)
        The global batch.
    labels : torch.Tensor of shape (B_global,)
        Its labels (int64, on the embeddings' device).

    Notes
    -----
    Without a process group of more than one process, the inputs are
    returned unchanged (labels as a tensor on the embeddings' device).
    """
    labels = torch.as_tensor(labels, device=embeddings.device)
    if not is_distributed():
        return embeddings, labels
    world, rank = dist.get_world_size(), dist.get_rank()
    if embeddings.dtype in _LOW_PRECISION:
        embeddings = embeddings.float()
    comm = _comm_device()
    size = torch.tensor([embeddings.shape[0]], dtype=torch.int64, device=comm)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    local = embeddings.detach().to(comm)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: len(local)] = local
    padded_labels = torch.zeros(longest, dtype=torch.int64, device=comm)
    padded_labels[: len(labels)] = labels.to(comm, torch.int64)
    parts = [torch.empty_like(padded) for _ in range(world)]
    label_parts = [torch.empty_like(padded_labels) for _ in range(world)]
    dist.all_gather(parts, padded)
    dist.all_gather(label_parts, padded_labels)
    scale = float(world if grad_scale is None else grad_scale)
    mine = _ScaleGrad.apply(embeddings, scale) if scale != 1.0 else embeddings
    rows = [mine if r == rank else parts[r][: sizes[r]].to(embeddings.device) for r in range(world)]
    all_labels = [label_parts[r][: sizes[r]] for r in range(world)]
    return torch.cat(rows), torch.cat(all_labels).to(embeddings.device)


class DistributedLoss(LossWrapper):
    """Any loss over the batch of all processes: a composition, not a copy.

    Each process calls it with its own shard; it all-gathers embeddings and
    labels (:func:`all_gather_batch`) and returns the wrapped loss of the
    global batch, the same value on every process, so mining sees the
    global batch. With ``grad_scale=None`` and
    :class:`~torch.nn.parallel.DistributedDataParallel`, the averaged
    parameter gradients equal those of one process on the concatenated
    batch. Like pytorch-metric-learning's ``DistributedLossWrapper``.

    Parameters
    ----------
    loss : torch.nn.Module
        The wrapped loss (with the one loss interface, called with labels).
    grad_scale : float or None, default=None
        See :func:`all_gather_batch`.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.training.distributed import DistributedLoss
    >>> from sktriplet.triplets.losses import TripletLoss
    >>> criterion = DistributedLoss(TripletLoss(mining="hard"))
    >>> emb = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    >>> criterion(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim  # one process
    0
    """

    def __init__(self, loss: torch.nn.Module, grad_scale: float | None = None) -> None:
        super().__init__(loss)
        self.grad_scale = grad_scale

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: tuple | None = None,
    ) -> torch.Tensor:
        """The wrapped loss of the global batch."""
        if labels is None or indices_tuple is not None:
            raise ValueError(
                "DistributedLoss gathers labelled batches; index triplets are not gathered "
                "across processes (triplets=True trains on one process)."
            )
        embeddings, labels = all_gather_batch(embeddings, labels, grad_scale=self.grad_scale)
        return self.loss(embeddings, labels)


class DistributedTripletLoss(DistributedLoss):
    """:class:`DistributedLoss` around a :class:`~sktriplet.triplets.losses.TripletLoss`.

    Parameters
    ----------
    margin, mining, distance, soft, record_stats
        As for :class:`~sktriplet.triplets.losses.TripletLoss`.
    grad_scale : float or None, default=None
        See :func:`all_gather_batch`.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.training.distributed import DistributedTripletLoss
    >>> criterion = DistributedTripletLoss(mining="hard")
    >>> emb = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    >>> criterion(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).ndim  # one process
    0
    """

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "semihard",
        distance: str = "sqeuclidean",
        soft: bool = False,
        record_stats: bool = False,
        grad_scale: float | None = None,
    ) -> None:
        loss = TripletLoss(
            margin=margin, mining=mining, distance=distance, soft=soft, record_stats=record_stats
        )
        super().__init__(loss, grad_scale=grad_scale)


class ShardedPKSampler:
    """The share of global PK batches that one process draws.

    Every process builds the same :class:`~sktriplet.training.sampling.PKSampler` over
    the whole data set (same labels, same seed), which draws the global
    batches; each process keeps a contiguous slice of every batch, so the
    shards never overlap and their union is the global batch. Batches list
    their classes one after the other, so with ``P`` a multiple of the
    number of processes each process gets whole classes.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Labels of the whole data set (identical on every process).
    batch_size : int, default=128
        Size of the *global* batch.
    rank : int or None, default=None
        This process's rank; ``None`` asks :mod:`torch.distributed` (0 when
        not distributed).
    world_size : int or None, default=None
        Number of processes; ``None`` asks :mod:`torch.distributed`.
    **kwargs : dict
        ``samples_per_class``, ``n_batches``, ``random_state`` and ``epoch``
        of :class:`~sktriplet.training.sampling.PKSampler`; ``random_state`` must be
        the same int on every process.

    Examples
    --------
    >>> from sktriplet.training.distributed import ShardedPKSampler
    >>> labels = [0, 0, 1, 1, 2, 2, 3, 3]
    >>> shards = [ShardedPKSampler(labels, batch_size=8, samples_per_class=2,
    ...                            rank=r, world_size=2, random_state=0) for r in (0, 1)]
    >>> a, b = (next(iter(s)) for s in shards)
    >>> len(a), len(b), sorted(a + b)
    (4, 4, [0, 1, 2, 3, 4, 5, 6, 7])
    """

    def __init__(
        self,
        labels: Sequence | np.ndarray,
        *,
        batch_size: int = 128,
        rank: int | None = None,
        world_size: int | None = None,
        **kwargs,
    ) -> None:
        distributed = is_distributed()
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        self.world_size = (
            world_size if world_size is not None else (dist.get_world_size() if distributed else 1)
        )
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank={self.rank} must lie in [0, world_size={self.world_size}).")
        if batch_size < self.world_size:
            raise ValueError(
                f"the global batch_size={batch_size} is smaller than world_size="
                f"{self.world_size}; every process needs samples."
            )
        self.sampler = PKSampler(labels, batch_size=batch_size, **kwargs)

    @property
    def epoch(self) -> int:
        """Number of the next epoch (as for :class:`~sktriplet.training.sampling.PKSampler`)."""
        return self.sampler.epoch

    def __len__(self) -> int:
        """Number of batches per epoch (the same on every process)."""
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this process's slice of every global batch."""
        for batch in self.sampler:
            yield np.array_split(np.asarray(batch), self.world_size)[self.rank].tolist()


class DistributedTripletNet(TripletNet):
    """:class:`~sktriplet.training.net.TripletNet` for a process group: global mining.

    :class:`~sktriplet.TripletEmbedder` builds this net in place of a
    :class:`~sktriplet.training.net.TripletNet` when :func:`is_distributed` is true.
    During ``fit`` the module runs inside
    :class:`~torch.nn.parallel.DistributedDataParallel` (which broadcasts
    rank 0's weights at the start and averages gradients), each process
    draws its shard of global PK batches of ``batch_size * world_size``
    samples (:class:`ShardedPKSampler`), and the loss is computed on the
    all-gathered global batch (:func:`all_gather_batch`). Outside ``fit``
    (``transform``, validation, pickling) the module is the plain one.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`~sktriplet.training.net.TripletNet`; ``batch_size`` is per
        process.
    """

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Run the training loop with the module inside ``DistributedDataParallel``."""
        if not is_distributed():  # e.g. warm start of an unpickled net in one process
            return super().fit_loop(X, y, epochs, **fit_params)
        device = next(self.module_.parameters()).device
        ids = None
        if device.type == "cuda":
            ids = [device.index if device.index is not None else torch.cuda.current_device()]
        self.ddp_ = {"module": DistributedDataParallel(self.module_, device_ids=ids)}
        try:
            return super().fit_loop(X, y, epochs, **fit_params)
        finally:
            self.ddp_ = None

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Give every process rank 0's buffers, then end the epoch as usual.

        DDP broadcasts buffers (batch-norm running statistics) before each
        forward pass, so after the last batch of an epoch they differ between
        processes. Synchronising them here, before the callbacks run, keeps
        validation scores, early stopping and the final network identical on
        every process.
        """
        if is_distributed():
            for buffer in self.module_.buffers():
                dist.broadcast(buffer, src=0)
        super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid)

    def infer(self, x, **fit_params):
        """Forward through ``DistributedDataParallel`` while training."""
        ddp = (getattr(self, "ddp_", None) or {}).get("module")
        if ddp is None or not self.module_.training:
            return super().infer(x, **fit_params)
        x = to_tensor(x, device=self.device)
        with self.autocast():
            return ddp(x, **fit_params)

    def get_iterator(self, dataset, training=False):
        """Shards of global PK batches for training; plain batches otherwise."""
        if not training or not is_distributed():
            return super().get_iterator(dataset, training=training)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(len(self.history))
        sampler = ShardedPKSampler(
            dataset.labels,
            batch_size=self.batch_size * dist.get_world_size(),
            samples_per_class=self.samples_per_class,
            random_state=self.seed,
            epoch=len(self.history),
            min_batches=self.min_batches_per_epoch(),
        )
        return self.batch_loader(dataset, sampler, training=True)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Loss of the all-gathered global batch while training.

        A weighted batch's target ``(labels, weights)``
        (``fit(X, y, sample_weight=w)``) has its weights gathered in the same
        rank order as the labels.
        """
        if training:
            y_true = to_tensor(y_true, device=self.device)
            if isinstance(y_true, tuple | list):
                labels, weights = y_true
                rows, _ = all_gather_batch(weights[:, None].float(), labels, grad_scale=1.0)
                y_pred, labels = all_gather_batch(y_pred, labels)
                y_true = (labels, rows[:, 0])
            else:
                y_pred, y_true = all_gather_batch(y_pred, y_true)
        return super().get_loss(y_pred, y_true, X=X, training=training)
