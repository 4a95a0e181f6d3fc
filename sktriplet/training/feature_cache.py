"""Train only the part of a network after a frozen part, on that part's output cached once.

A network whose first part is frozen (a pretrained backbone,
``BackboneEmbedder(freeze=True)``, which keeps it in evaluation mode) and
that trains without augmentation computes the same frozen output for every
sample in every epoch. ``fit`` instead:

1. splits the network into a frozen part run once and a trained part
   (:func:`split_for_caching`: the input standardisation, backbone and
   pooling; and the projection head with its L2 normalisation, sharing its
   parameters with the network);
2. caches the frozen part's output for a dataset (:func:`cache_features`:
   into memory or, above ``max_bytes``, into a memory-mapped temporary file);
3. trains the trained part on the cached output with the same fit routine
   as any fit (:func:`sktriplet.training.fit.run_fit`: the same PK batches,
   or in triplet mode the same batches of triplets, validation and checks),
   then hands the whole network, whose head *is* the trained head, back to
   the net (:func:`hand_over`). Image files are then decoded once per fit,
   not once per epoch.

The result is that of training the whole network with the frozen part (the
same PK batches give the same updates), at the cost of one forward pass over
the data. :func:`can_cache_features` says when ``fit`` takes this route:
``augment="auto"`` then means no augmentation (cached output cannot be
augmented); ``augment=True`` trains through the backbone on augmented images
instead.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from sktriplet.networks.backbone import BackboneEmbedder
from sktriplet.networks.split import unwrap_embedder
from sktriplet.runtime.precision import autocast

if TYPE_CHECKING:
    from sktriplet.training.net import TripletNet

__all__ = [
    "FeatureExtractor",
    "FeatureHead",
    "MirrorViews",
    "cache_features",
    "cache_views",
    "can_cache_features",
    "hand_over",
    "split_for_caching",
]


def can_cache_features(module: nn.Module, params: dict[str, Any]) -> bool:
    """Whether ``fit`` trains ``module``'s head on cached backbone features.

    Parameters
    ----------
    module : torch.nn.Module
        The network (``Sequential(standardisation, body)``).
    params : dict
        Estimator parameters.

    Returns
    -------
    bool
        ``True`` when the body is a :class:`BackboneEmbedder` whose backbone
        is frozen, ``augment`` is ``"auto"`` or ``False``, and no callback
        maps parameters while training (skorch's ``Freezer`` / ``Unfreezer``).
    """
    body = module[-1] if isinstance(module, nn.Sequential) and len(module) else module
    if not isinstance(body, BackboneEmbedder):
        return False
    frozen = not any(p.requires_grad for p in body.backbone.parameters())
    return frozen and params["augment"] in ("auto", False) and not _maps_params(params)


def _maps_params(params: dict[str, Any]) -> bool:
    """Whether a callback changes parameters while training (e.g. skorch's Unfreezer).

    Such a fit must train through the backbone: with cached features an
    unfrozen backbone would never be used.
    """
    from skorch.callbacks import ParamMapper

    for cb in params.get("callbacks") or []:
        item = cb[1] if isinstance(cb, tuple) else cb
        kind = item if isinstance(item, type) else type(item)
        if issubclass(kind, ParamMapper):
            return True
    return False


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
    embedder, before = unwrap_embedder(module)
    if any(p.requires_grad for p in embedder.backbone.parameters()):
        raise ValueError(
            "feature caching needs a frozen backbone: build the BackboneEmbedder with "
            "freeze=True (and train without augmentation), or train without the cache."
        )
    return FeatureExtractor(embedder, before), FeatureHead(embedder)


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
    loader: Callable[[Dataset, Any], Any] | None = None,
    precision: str = "32",
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
    loader : callable, default=None
        ``loader(dataset, batches)`` gives the data loader over the batches
        of a :class:`~torch.utils.data.BatchSampler` (``fit`` passes its net's
        ``batch_loader``: its ``iterator_valid__*`` settings, e.g. workers
        that decode image files); ``None``: a plain
        :class:`~torch.utils.data.DataLoader`.
    precision : {"32", "bf16", "16"}, default="32"
        A resolved precision (:func:`~sktriplet.runtime.precision.autocast`):
        ``"bf16"`` runs the extractor under bfloat16 autocast (the features
        are stored as float32 all the same).

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
    # Every submodule's mode is restored after, not reset by ``train()``: a
    # bottom shares its backbone with a top whose frozen parts stay in eval.
    modes = [(m, m.training) for m in extractor.modules()]
    extractor.eval()
    extractor.to(device)
    out: np.ndarray | None = None
    start = 0
    batches = BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)
    if loader is None:
        loader = _plain_loader
    try:
        with torch.no_grad(), autocast(precision, device):
            for batch in loader(dataset, batches):
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                f = extractor(x.to(device)).float().cpu().numpy()
                if out is None:
                    out = _allocate(len(dataset), f.shape[1], max_bytes, directory)
                out[start : start + len(f)] = f
                start += len(f)
    finally:
        for module, mode in modes:
            module.training = mode
    if out is None:
        raise ValueError("cannot cache the features of an empty dataset.")
    return out


class MirrorViews(nn.Module):
    """A frozen part's output for an image and, as view 1, for its mirror image.

    Parameters
    ----------
    part : torch.nn.Module
        Maps a batch of images ``(B, C, H, W)`` to rows ``(B, D)`` (e.g. a
        :class:`~sktriplet.networks.split.BlockBottom`).
    n_views : {1, 2}, default=2
        ``1``: the images alone; ``2``: also their mirror images (flipped
        along the width), as :class:`~sktriplet.vision.views.FixedViews`'
        view 1 mirrors its view 0.
    """

    def __init__(self, part: nn.Module, n_views: int = 2) -> None:
        super().__init__()
        if n_views not in (1, 2):
            raise ValueError(f"n_views must be 1 or 2; got {n_views!r}.")
        self.part = part
        self.n_views = n_views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``(B, n_views * D)``: the views' outputs side by side."""
        out = [self.part(x)] + [self.part(x.flip(-1))] * (self.n_views - 1)
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]


def cache_views(
    part: nn.Module, dataset: Dataset, *, n_views: int = 2, **kwargs: Any
) -> np.ndarray:
    """A frozen part's output for every image of a dataset and its mirror, once.

    Parameters
    ----------
    part : torch.nn.Module
        Maps images to rows (run in evaluation mode without gradients).
    dataset : torch.utils.data.Dataset
        Images (or ``(image, label)`` pairs), read in order.
    n_views : {1, 2}, default=2
        View 0 is the image as read, view 1 its mirror image.
    **kwargs : dict
        As for :func:`cache_features` (``batch_size``, ``max_bytes``: above
        it the cache is a memory-mapped temporary file, ``directory``,
        ``device``, ``loader``).

    Returns
    -------
    numpy.ndarray or numpy.memmap of shape (len(dataset), n_views, D)
        float32 rows, for :class:`~sktriplet.inputs.cached_views.CachedViews`.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> images = TensorDataset(torch.arange(4.0).reshape(1, 1, 1, 4))
    >>> cache_views(torch.nn.Flatten(), images)[0]
    array([[0., 1., 2., 3.],
           [3., 2., 1., 0.]], dtype=float32)
    """
    rows = cache_features(MirrorViews(part, n_views), dataset, **kwargs)
    return rows.reshape(len(rows), n_views, -1)


def _plain_loader(dataset: Dataset, batches) -> DataLoader:
    if getattr(dataset, "fetches_batches", False):
        return DataLoader(dataset, sampler=batches, batch_size=None)
    return DataLoader(dataset, batch_sampler=batches)


def hand_over(net: TripletNet, module: nn.Module) -> None:
    """Make ``module`` (the whole network) the net's, with an optimizer over all of it.

    Called once the trained part (the net's module until now, sharing its
    parameters with ``module``) is trained. Its optimizer state (Adam's
    moments) carries over, so a saved model loads like any other and
    ``warm_start`` continues from here.

    Parameters
    ----------
    net : TripletNet
        The net that trained the trained part.
    module : torch.nn.Module
        The whole network.
    """
    trained = net.optimizer_
    net.module_ = module  # its head is the one just trained
    net.initialize_optimizer()
    for group in trained.param_groups:
        for param in group["params"]:
            if param in trained.state:
                net.optimizer_.state[param] = trained.state[param]
