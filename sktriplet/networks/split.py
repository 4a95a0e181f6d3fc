"""Cut a backbone embedder at a block boundary: a frozen bottom, a trainable top.

:func:`split_at_block` turns a :class:`~sktriplet.networks.BackboneEmbedder`
(alone, or at the end of an ``nn.Sequential`` such as the estimator's
``Sequential(Standardize, embedder)``) into

- a :class:`BlockBottom`: the layers in front, the stem and the blocks before
  the boundary. Run once in evaluation mode without gradients, its output
  (the *boundary activations*) can be cached;
- a :class:`BlockTop`: the blocks from the boundary on, what follows them in
  the backbone (EfficientNet's head convolution), the pooling, the head and
  the L2 normalisation.

Both hold the embedder's own modules (shared, not copied), under the
embedder's parameter names (``backbone.*``, ``head.*``), so training the top
trains the embedder, skorch's ``optimizer__param_groups`` patterns such as
``"*backbone.*"`` select the same parameters, and ``regularization_loss``
of the top holds both L2-SP penalties (the head's and ``backbone_anchor``'s).
In evaluation mode ``top(bottom(x))`` equals ``embedder(x)``.
"""

from __future__ import annotations

import torch
from torch import nn

from sktriplet.networks.backbone import BackboneEmbedder, pool_features, set_backbone_mode
from sktriplet.networks.blocks import BackboneBlocks, backbone_blocks

__all__ = [
    "BlockBottom",
    "BlockTop",
    "boundary_shape",
    "is_pretrained",
    "split_at_block",
    "unwrap_embedder",
]


def is_pretrained(module: nn.Module) -> bool:
    """Whether ``module`` trains a backbone: it is or holds a BackboneEmbedder or a BlockTop.

    ``precision="auto"`` trains such networks in bfloat16 where that is fast
    (:func:`~sktriplet.runtime.precision.resolve_precision`).

    Parameters
    ----------
    module : nn.Module

    Returns
    -------
    bool

    Examples
    --------
    >>> from torch import nn
    >>> from sktriplet.networks import BackboneEmbedder, MLPEmbedder
    >>> from sktriplet.networks.split import is_pretrained
    >>> is_pretrained(nn.Sequential(BackboneEmbedder(nn.Conv2d(3, 4, 3), image_size=8)))
    True
    >>> is_pretrained(MLPEmbedder(8))
    False
    """
    return any(isinstance(m, BackboneEmbedder | BlockTop) for m in module.modules())


def _parts(embedder: BackboneEmbedder) -> BackboneBlocks:
    parts = backbone_blocks(embedder.backbone)
    if parts is None or not len(parts):
        raise ValueError(
            f"cannot find the blocks of the backbone {type(embedder.backbone).__name__}: "
            "declare them (a blocks() method, forward_stem(x) and forward_end(x); see "
            "sktriplet.networks.blocks) or train it whole."
        )
    return parts


class BlockBottom(nn.Module):
    """Input layers, then the backbone up to the boundary before block ``start``.

    Parameters
    ----------
    embedder : BackboneEmbedder
        The network (its backbone is shared, not copied).
    start : int
        The first block *not* run here.
    before : tuple of torch.nn.Module, default=()
        Layers applied to the input first (e.g. ``Standardize``).
    flatten : bool, default=True
        Return ``(B, C * h * w)`` rows rather than ``(B, C, h, w)`` maps, so
        that the activations cache like any feature rows.
    """

    def __init__(
        self,
        embedder: BackboneEmbedder,
        start: int,
        before: tuple[nn.Module, ...] = (),
        flatten: bool = True,
    ) -> None:
        super().__init__()
        self.before = nn.Sequential(*before)
        self.backbone = embedder.backbone
        self.start = int(start)
        self.channels_last = embedder.channels_last
        self.flatten = bool(flatten)
        self.freeze_batchnorm = embedder.freeze_batchnorm

    def train(self, mode: bool = True) -> BlockBottom:
        """Set the training mode; frozen blocks and BatchNorm stay as the embedder keeps them."""
        super().train(mode)
        if mode:
            set_backbone_mode(self.backbone, self.freeze_batchnorm)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Boundary activations of a batch of inputs."""
        x = self.before(x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        x = _parts(self).run(x, stop=self.start)
        return x.reshape(len(x), -1) if self.flatten else x


class BlockTop(nn.Module):
    """The blocks from ``start`` on, the backbone's end, pooling, head, L2 normalisation.

    Parameters
    ----------
    embedder : BackboneEmbedder
        The network (its modules are shared, not copied).
    start : int
        The first block run here.
    shape : tuple of int
        ``(C, h, w)`` of the boundary activations, to unflatten rows.
    """

    def __init__(self, embedder: BackboneEmbedder, start: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.backbone = embedder.backbone
        self.anchor = embedder.anchor
        self.head = embedder.head
        self.normalize = embedder.normalize
        self.start = int(start)
        self.shape = tuple(int(s) for s in shape)
        self.pooling = embedder.pooling
        self.channels_last = embedder.channels_last
        self.freeze_batchnorm = embedder.freeze_batchnorm

    def features(self, a: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, F)`` of boundary activations (rows or maps)."""
        if a.ndim == 2:
            a = a.reshape(len(a), *self.shape)
        if self.channels_last and a.ndim == 4:
            a = a.contiguous(memory_format=torch.channels_last)
        return pool_features(_parts(self).run(a, start=self.start), self.pooling)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """Embeddings of boundary activations (rows or maps)."""
        return self.normalize(self.head(self.features(a)))

    def train(self, mode: bool = True) -> BlockTop:
        """Set the training mode; frozen blocks and BatchNorm stay as the embedder keeps them."""
        super().train(mode)
        if mode:
            set_backbone_mode(self.backbone, self.freeze_batchnorm)
        return self


def unwrap_embedder(module: nn.Module) -> tuple[BackboneEmbedder, tuple[nn.Module, ...]]:
    """The :class:`BackboneEmbedder` at the end of ``module``, and the layers in front of it.

    Parameters
    ----------
    module : torch.nn.Module
        A :class:`BackboneEmbedder`, or an ``nn.Sequential`` ending in one.

    Returns
    -------
    embedder : BackboneEmbedder
    before : tuple of torch.nn.Module
        The layers in front (e.g. the estimator's ``Standardize``).
    """
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    embedder = layers[-1] if layers else None
    if not isinstance(embedder, BackboneEmbedder):
        raise ValueError(
            "split_at_block needs a BackboneEmbedder (alone or at the end of an "
            f"nn.Sequential); got {type(module).__name__}."
        )
    return embedder, tuple(layers[:-1])


def boundary_shape(embedder: BackboneEmbedder, n_trained: int, image_size=None) -> tuple:
    """``(C, h, w)`` of the activations at the boundary before the last ``n_trained`` blocks.

    Parameters
    ----------
    embedder : BackboneEmbedder
    n_trained : int
        Blocks above the boundary, ``0`` to the number of blocks.
    image_size : int or tuple of int, default=None
        Input size; ``None`` takes the embedder's ``image_size``.

    Returns
    -------
    tuple of int
        Multiply them and by 4 for the float32 bytes per image and view.
    """
    parts = _parts(embedder)
    start = _start(parts, n_trained)
    size = embedder.image_size if image_size is None else image_size
    h, w = (size, size) if isinstance(size, int) else size
    bottom = BlockBottom(embedder, start, flatten=False)
    with torch.no_grad(), _Evaluating(embedder):
        return tuple(bottom(torch.zeros(1, 3, int(h), int(w))).shape[1:])


class _Evaluating:
    """Evaluation mode inside a ``with``; the modes before are restored after."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()

    def __exit__(self, *exc) -> None:
        for m, mode in self.modes:
            m.training = mode


def _start(parts: BackboneBlocks, n_trained: int) -> int:
    n = len(parts)
    if isinstance(n_trained, bool) or not isinstance(n_trained, int) or not 0 <= n_trained <= n:
        raise ValueError(
            f"n_trained must be a number of trailing blocks between 0 and {n} (this "
            f"backbone's blocks); got {n_trained!r}."
        )
    return n - n_trained


def split_at_block(
    module: nn.Module, n_trained: int, *, flatten: bool = True, check: bool = True
) -> tuple[BlockBottom, BlockTop]:
    """Split a backbone embedder before its last ``n_trained`` blocks.

    Parameters
    ----------
    module : torch.nn.Module
        A :class:`BackboneEmbedder`, or an ``nn.Sequential`` ending in one
        (the layers in front go into the bottom).
    n_trained : int
        Blocks in the top, counted from the end: ``0`` puts every block in
        the bottom (the top is then the backbone's end and the head),
        ``len(find_blocks(backbone))`` puts only the stem in the bottom.
    flatten : bool, default=True
        The bottom returns ``(B, C * h * w)`` rows (the top takes rows or
        maps either way).
    check : bool, default=True
        Compare ``top(bottom(x))`` with the embedder on one random image of
        the embedder's ``image_size``, in evaluation mode, and refuse a
        backbone whose blocks do not reproduce its ``forward``.

    Returns
    -------
    bottom : BlockBottom
    top : BlockTop

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> trunk = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.Conv2d(6, 8, 1))
    >>> net = BackboneEmbedder(trunk, freeze=1, image_size=8).eval()
    >>> bottom, top = split_at_block(net, 1)
    >>> x = torch.rand(2, 3, 8, 8)
    >>> bottom(x).shape, torch.allclose(top(bottom(x)), net(x))
    (torch.Size([2, 96]), True)
    """
    embedder, before = unwrap_embedder(module)
    parts = _parts(embedder)
    start = _start(parts, n_trained)
    shape = boundary_shape(embedder, n_trained)
    bottom = BlockBottom(embedder, start, before, flatten=flatten)
    top = BlockTop(embedder, start, shape)
    if check:
        _check(embedder, bottom, top)
    return bottom, top


def _check(embedder: BackboneEmbedder, bottom: BlockBottom, top: BlockTop) -> None:
    size = embedder.image_size
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 3, int(h), int(w), generator=torch.Generator().manual_seed(0))
    inner = BlockBottom(embedder, bottom.start, flatten=bottom.flatten)
    with torch.no_grad(), _Evaluating(embedder):
        # The embedder's own path, without test-time flip averaging
        whole, split = embedder.embed_features(embedder.features(x)), top(inner(x))
    if not torch.allclose(whole, split, rtol=1e-4, atol=1e-5):
        raise ValueError(
            f"the blocks found in {type(embedder.backbone).__name__} do not reproduce its "
            "forward (the split network embeds differently). Declare its blocks: a blocks() "
            "method, forward_stem(x) and forward_end(x) (sktriplet.networks.blocks)."
        )
