"""Train only the head of a frozen backbone, on features computed once.

With a frozen backbone (``BackboneEmbedder(freeze=True)``, which keeps it in
evaluation mode) and no augmentation, every epoch would compute the same
backbone features again. Instead:

1. :func:`split_for_caching` splits the network into a feature extractor
   (input standardisation, backbone, pooling) and a head (projection, L2
   normalisation) that shares its parameters with the network;
2. :func:`cache_features` runs the extractor once over the training set,
   into memory or, above ``max_bytes``, into a memory-mapped temporary file;
3. the skorch net trains the head on ``ArrayDataset(features, y)``; the
   network itself, whose head *is* the trained head, then embeds as usual.

The result is that of training the whole network with the frozen backbone
(the same PK batches give the same head updates), at the cost of one
forward pass over the data.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sktriplet.networks.backbone import BackboneEmbedder

__all__ = ["FeatureExtractor", "FeatureHead", "cache_features", "split_for_caching"]


class FeatureExtractor(nn.Module):
    """Input layers (e.g. ``Standardize``), then a backbone's pooled features.

    Parameters
    ----------
    embedder : BackboneEmbedder
        The network whose :meth:`~BackboneEmbedder.features` to compute.
    before : sequence of torch.nn.Module, default=()
        Layers applied to the input first.
    """

    def __init__(self, embedder: BackboneEmbedder, before: tuple[nn.Module, ...] = ()) -> None:
        super().__init__()
        self.before = nn.Sequential(*before)
        self.embedder = embedder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, F)`` of a batch of inputs."""
        return self.embedder.features(self.before(x))


class FeatureHead(nn.Module):
    """A backbone embedder's head alone: pooled features to embeddings.

    Its ``head`` and ``normalize`` are the embedder's own modules (shared,
    not copied), so training this module trains the embedder's head; its
    parameter names (``head.*``) are the embedder's.

    Parameters
    ----------
    embedder : BackboneEmbedder
        The network whose head to expose.
    """

    def __init__(self, embedder: BackboneEmbedder) -> None:
        super().__init__()
        self.head = embedder.head
        self.normalize = embedder.normalize

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Embeddings of pooled features ``(B, F)``."""
        return self.normalize(self.head(f))


def split_for_caching(module: nn.Module) -> tuple[FeatureExtractor, FeatureHead]:
    """Split a network with a frozen backbone into feature extractor and head.

    Parameters
    ----------
    module : torch.nn.Module
        A :class:`BackboneEmbedder`, or an ``nn.Sequential`` ending in one
        (such as the estimator's ``Sequential(Standardize, embedder)``).

    Returns
    -------
    extractor : FeatureExtractor
        Everything up to the pooled backbone features.
    head : FeatureHead
        The rest, sharing its parameters with ``module``.

    Raises
    ------
    ValueError
        If ``module`` holds no :class:`BackboneEmbedder` at its end, or its
        backbone is not frozen (its features would change while training).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = BackboneEmbedder(nn.Conv2d(3, 4, 1), n_components=2, freeze=True, image_size=4)
    >>> extractor, head = split_for_caching(net)
    >>> x = torch.rand(3, 3, 4, 4)
    >>> torch.allclose(head(extractor(x)), net(x))
    True
    """
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    embedder = layers[-1] if layers else None
    if not isinstance(embedder, BackboneEmbedder):
        raise ValueError(
            "feature caching needs a BackboneEmbedder (alone or at the end of an "
            f"nn.Sequential); got {type(module).__name__}."
        )
    if any(p.requires_grad for p in embedder.backbone.parameters()):
        raise ValueError(
            "feature caching needs a frozen backbone: build the BackboneEmbedder with "
            "freeze=True (and train without augmentation), or train without the cache."
        )
    return FeatureExtractor(embedder, tuple(layers[:-1])), FeatureHead(embedder)


def _allocate(n_rows: int, n_cols: int, max_bytes: int, directory) -> np.ndarray:
    """A float32 (n_rows, n_cols) array in memory, or memory-mapped above ``max_bytes``."""
    if n_rows * n_cols * 4 <= max_bytes:
        return np.empty((n_rows, n_cols), dtype=np.float32)
    fd, path = tempfile.mkstemp(prefix="sktriplet-features-", suffix=".f32", dir=directory)
    os.close(fd)
    out = np.memmap(path, dtype=np.float32, mode="w+", shape=(n_rows, n_cols))
    try:
        os.unlink(path)  # the mapping stays valid; the file goes when it is released
    except OSError:  # pragma: no cover - Windows keeps open files
        pass
    return out


def cache_features(
    extractor: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    max_bytes: int = 1 << 30,
    directory: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Compute an extractor's features for a whole dataset, once.

    Parameters
    ----------
    extractor : torch.nn.Module
        Maps a batch of inputs to ``(B, F)`` features (a
        :class:`FeatureExtractor`); run in evaluation mode without gradients.
    dataset : torch.utils.data.Dataset
        Map-style dataset whose items are inputs or ``(input, label)``
        pairs, read in order.
    batch_size : int, default=64
        Samples per forward pass.
    max_bytes : int, default=1 GiB
        Largest feature array kept in memory; a larger one is written to a
        memory-mapped temporary file (deleted when the array is released).
    directory : str or path-like, default=None
        Where that file goes (the system's temporary directory by default).
    device : str or torch.device, default="cpu"
        Device the extractor runs on.

    Returns
    -------
    numpy.ndarray or numpy.memmap of shape (len(dataset), F)
        float32 features, in dataset order.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.arange(10.0).reshape(5, 2))
    >>> cache_features(torch.nn.Identity(), data, batch_size=2)[:, 0]
    array([0., 2., 4., 6., 8.], dtype=float32)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
    was_training = extractor.training
    extractor.eval()
    out: np.ndarray | None = None
    start = 0
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                f = extractor(x.to(device)).float().cpu().numpy()
                if out is None:
                    out = _allocate(len(dataset), f.shape[1], max_bytes, directory)
                out[start : start + len(f)] = f
                start += len(f)
    finally:
        extractor.train(was_training)
    if out is None:
        raise ValueError("cannot cache the features of an empty dataset.")
    return out
