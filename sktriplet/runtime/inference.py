"""The one eval-mode forward loop: embed samples batch by batch, without gradients.

``transform``, validation during training and the checks after training all
embed a dataset through :func:`embed_dataset` (and so :func:`embed`), whatever
the kind of input, so batching, device transfer and the train/eval mode
switch live in one place.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sktriplet.runtime.precision import autocast, resolve_precision

__all__ = ["TRANSFORM_BATCH_SIZE", "embed", "embed_dataset"]

#: Samples embedded at a time (bounds the memory of ``transform``).
TRANSFORM_BATCH_SIZE = 1024


def _batches(X, batch_size: int):
    """Contiguous numpy batches of an array (views where possible)."""
    for start in range(0, len(X), batch_size):
        chunk = X[start : start + batch_size]
        if not (chunk.flags.c_contiguous and chunk.flags.writeable):
            # C order (not the view's): a channels-last view would otherwise
            # reach the network as a channels-last tensor and take other kernels.
            chunk = np.array(chunk, order="C")  # no copy for the usual in-memory array
        yield torch.from_numpy(chunk)


def embed(
    module: nn.Module,
    X,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = TRANSFORM_BATCH_SIZE,
    n_components: int | None = None,
    n_samples: int | None = None,
    precision: str = "32",
) -> np.ndarray:
    """Embed samples with ``module`` in eval mode, restoring its mode after.

    Parameters
    ----------
    module : torch.nn.Module
        The network, already on ``device``.
    X : numpy.ndarray or iterable of torch.Tensor
        Samples (batched here), or an iterable of ready batches (e.g. a
        ``DataLoader`` over a dataset that yields tensors or ``(X, y)``).
    device : str or torch.device, default="cpu"
        Where to run.
    batch_size : int, default=1024
        Samples per forward pass (for arrays).
    n_components : int, default=None
        Width of the output, to preallocate it (arrays only).
    n_samples : int, default=None
        How many samples an iterable of batches holds: the output is then
        allocated once, at the first batch, and filled in place, instead of
        keeping every batch's output and joining them at the end (half the
        memory, and no small long-lived blocks between the network's
        buffers in the C heap).
    precision : {"32", "bf16", "16"}, default="32"
        A resolved precision (:func:`~sktriplet.runtime.precision.autocast`):
        ``"bf16"`` runs the forward pass under bfloat16 autocast; ``"32"``
        touches no autocast state.

    Returns
    -------
    numpy.ndarray of float32, shape (n_samples, width)
        The embeddings, in float32 whatever the network computes in.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sktriplet.runtime.inference import embed
    >>> embed(torch.nn.Linear(3, 2, bias=False), np.ones((5, 3), np.float32)).shape
    (5, 2)
    """
    was_training = module.training
    module.eval()
    batches = _batches(X, batch_size) if isinstance(X, np.ndarray) else X
    out = None
    if isinstance(X, np.ndarray) and n_components is not None:
        out = np.empty((len(X), n_components), dtype=np.float32)
    parts, filled = [], 0
    try:
        with torch.inference_mode(), autocast(precision, device):
            for batch in batches:
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                emb = module(batch.to(device, non_blocking=True)).float().cpu().numpy()
                if out is None and n_samples is not None and not parts:
                    out = np.empty((n_samples, *emb.shape[1:]), dtype=np.float32)
                if out is not None and filled + len(emb) > len(out):
                    parts, out = [out[:filled]], None  # more than announced: join instead
                if out is not None:
                    out[filled : filled + len(emb)] = emb
                else:
                    parts.append(emb)
                filled += len(emb)
    finally:
        module.train(was_training)
    if out is not None:
        return out[:filled]
    if not parts:
        width = n_components if n_components is not None else 0
        return np.empty((0, width), dtype=np.float32)
    return np.concatenate(parts)


def embed_dataset(
    net,
    dataset,
    batch_size: int | None = None,
    *,
    n_components: int | None = None,
    precision: str | None = None,
    **loader,
) -> np.ndarray:
    """Embeddings of a whole dataset, in order: the inference loop of every kind of input.

    A dataset that holds its samples as one in-memory array (its ``array``
    attribute, e.g. :class:`~sktriplet.inputs.loading.ArrayDataset`) is
    sliced into batches of ``batch_size`` (default
    :data:`TRANSFORM_BATCH_SIZE`) with no data loader; any other (image
    files) goes through the net's inference loader in batches of
    ``batch_size`` (default: the net's).

    Parameters
    ----------
    net : sktriplet.training.net.TripletNet
        An initialised net (its ``batch_loader`` gives the loader, with the
        ``iterator_valid__*`` settings).
    dataset : torch.utils.data.Dataset
        Samples (e.g. from :func:`~sktriplet.inputs.loading.make_dataset`).
    batch_size : int, default=None
        Samples per batch.
    n_components : int, default=None
        Width of the output, to preallocate it (in-memory arrays).
    precision : {"32", "bf16", "16"}, default=None
        A resolved precision of the forward pass; ``None``: the inference
        precision of the net's ``precision`` (so validation during training
        runs as the net trains: ``"bf16"`` in bfloat16, else float32).
    **loader : dict
        Data-loader settings replacing the net's ``iterator_valid__*`` ones.

    Returns
    -------
    numpy.ndarray of float32
        One row per sample.
    """
    if precision is None:
        precision = resolve_precision(getattr(net, "precision", "32"), net.device).inference
    array = getattr(dataset, "array", None)
    if array is not None:
        return embed(
            net.module_,
            array,
            device=net.device,
            batch_size=batch_size or TRANSFORM_BATCH_SIZE,
            n_components=n_components,
            precision=precision,
        )
    from torch.utils.data import BatchSampler, SequentialSampler

    batches = BatchSampler(SequentialSampler(dataset), batch_size or net.batch_size, False)
    return embed(
        net.module_,
        net.batch_loader(dataset, batches, **loader),
        device=net.device,
        n_samples=len(dataset),
        precision=precision,
    )
