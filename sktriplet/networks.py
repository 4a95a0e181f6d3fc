"""Default embedding networks, sized from the data at fit time.

:class:`MLPEmbedder` embeds tabular rows, :class:`ConvEmbedder` embeds images
given as ``(C, H, W)`` tensors. Both end in a linear layer of
``n_components`` units followed by L2 normalisation, so embeddings lie on the
unit sphere (where the margin has a fixed scale). Any other ``nn.Module``
whose output is ``(batch, n_components)`` can replace them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvEmbedder", "L2Normalize", "MLPEmbedder", "Standardize"]

#: Global poolings that :class:`ConvEmbedder` offers.
POOLINGS = ("avgmax", "avg", "max")


class L2Normalize(nn.Module):
    """Scale every row to unit Euclidean norm (zero rows stay zero).

    Examples
    --------
    >>> import torch
    >>> from sktriplet.networks import L2Normalize
    >>> L2Normalize()(torch.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` with rows of unit norm."""
        return F.normalize(x, dim=1, eps=1e-12)


class MLPEmbedder(nn.Module):
    """Multi-layer perceptron that maps feature vectors to unit embeddings.

    Each hidden layer is ``Linear -> BatchNorm1d -> ReLU`` (with optional
    dropout); the last layer is linear with ``n_components`` units, then L2
    normalisation.

    With ``skip=True`` (the default) and at least one hidden layer, a linear
    path from the input is added to the last layer's output before the
    normalisation. It starts as a random orthogonal map and the last hidden
    layer's weights start at zero, so the untrained network embeds each row
    as the input itself, rotated (or, when ``n_features > n_components``,
    randomly projected) and L2-normalised: training starts from the input's
    own geometry and adds to it what the labels teach. On classes never seen
    in training this keeps the input's neighbourhoods where the labels have
    nothing to say (see ``docs/defaults.md``).

    Parameters
    ----------
    n_features : int
        Width of the input rows.
    n_components : int, default=64
        Embedding dimension.
    hidden_units : sequence of int, default=(256, 256)
        Width of each hidden layer; empty for a linear map.
    dropout : float, default=0.0
        Dropout probability after each hidden layer.
    normalize : bool, default=True
        L2-normalise the output.
    skip : bool, default=True
        Add the linear skip path described above (ignored without hidden
        layers, where the network is a single linear map).

    Examples
    --------
    >>> import torch
    >>> from sktriplet.networks import MLPEmbedder
    >>> net = MLPEmbedder(n_features=10, n_components=3).eval()
    >>> net(torch.randn(5, 10)).shape
    torch.Size([5, 3])
    """

    def __init__(
        self,
        n_features: int,
        n_components: int = 64,
        hidden_units: Sequence[int] = (256, 256),
        dropout: float = 0.0,
        normalize: bool = True,
        skip: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for units in hidden_units:
            layers += [nn.Linear(width, units), nn.BatchNorm1d(units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        last = nn.Linear(width, n_components)
        layers.append(last)
        self.layers = nn.Sequential(*layers)
        self.skip: nn.Linear | None = None
        if skip and len(hidden_units) > 0:
            self.skip = nn.Linear(n_features, n_components, bias=False)
            nn.init.orthogonal_(self.skip.weight)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.normalize = L2Normalize() if normalize else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of shape ``(batch, n_features)``."""
        x = x.flatten(1)
        out = self.layers(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return self.normalize(out)


class ConvEmbedder(nn.Module):
    """Small convolutional network that maps images to unit embeddings.

    Each block is ``Conv3x3 -> BatchNorm2d -> ReLU -> Conv3x3 -> BatchNorm2d ->
    ReLU -> MaxPool2``; a block pools only while its feature map stays at
    least ``min_size`` pixels high and wide. Global pooling over the last
    feature map, a linear layer of ``n_components`` units and L2
    normalisation follow.

    The default global pooling, ``"avgmax"``, concatenates the average and
    the maximum of every channel: the average says how much of a pattern an
    image holds, the maximum whether it holds it at all (a stroke ending, a
    junction), which average pooling dilutes over the map. On unseen
    Omniglot alphabets, COIL-20 objects and Binary Alphadigits letters it
    scores above average pooling at the same cost; the measurements are in
    ``docs/defaults.md``.

    With ``min_size=8`` a 28x28 image ends on a 14x14 map instead of 7x7:
    on handwritten characters that scored higher again (Omniglot one-shot
    86 % against 85 %) but costs twice the time per epoch at 28x28 and
    scored lower on COIL-20's 32x32 objects, so it is not the default.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_components : int, default=64
        Embedding dimension.
    image_size : tuple of int, default=(28, 28)
        ``(H, W)`` of the input, used to decide how many blocks pool.
    channels : sequence of int, default=(32, 64, 128)
        Output channels of each block.
    normalize : bool, default=True
        L2-normalise the output.
    pooling : {"avgmax", "avg", "max"}, default="avgmax"
        Global pooling of the last feature map: per-channel average and
        maximum concatenated, the average alone, or the maximum alone.
    min_size : int, default=4
        A block max-pools (halves the map) only when the result is at least
        this many pixels high and wide.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.networks import ConvEmbedder
    >>> net = ConvEmbedder(in_channels=1, n_components=8, image_size=(16, 16)).eval()
    >>> net(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 8])
    >>> net.head.in_features  # 128 channels, averaged and maximised
    256
    """

    def __init__(
        self,
        in_channels: int,
        n_components: int = 64,
        image_size: tuple[int, int] = (28, 28),
        channels: Sequence[int] = (32, 64, 128),
        normalize: bool = True,
        pooling: str = "avgmax",
        min_size: int = 4,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(
                f"pooling must be one of {', '.join(map(repr, POOLINGS))}; got {pooling!r}."
            )
        if min_size < 1:
            raise ValueError(f"min_size must be at least 1; got {min_size}.")
        self.pooling = pooling
        blocks: list[nn.Module] = []
        width, size = in_channels, min(image_size)
        for out in channels:
            blocks += [
                nn.Conv2d(width, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            width = out
            if size // 2 >= min_size:
                blocks.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(width * (2 if pooling == "avgmax" else 1), n_components)
        self.normalize = L2Normalize() if normalize else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of shape ``(batch, C, H, W)``."""
        f = self.features(x)
        if self.pooling == "avg":
            z = f.mean(dim=(2, 3))
        elif self.pooling == "max":
            z = f.amax(dim=(2, 3))
        else:
            z = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.normalize(self.head(z))


class Standardize(nn.Module):
    """Fixed affine input standardisation ``(x - mean) / scale``.

    Converts its input to float32 first, so uint8 images can be fed as they
    are. ``mean`` and ``scale`` are buffers (saved with the weights, not
    trained).

    Parameters
    ----------
    mean, scale : array-like
        Broadcastable against one sample: shape ``(n_features,)`` for rows,
        ``(C, 1, 1)`` for images.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.networks import Standardize
    >>> Standardize([1.0, 2.0], [2.0, 4.0])(torch.tensor([[3.0, 6.0]]))
    tensor([[1., 1.]])
    """

    def __init__(self, mean, scale) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the standardised float32 input."""
        return (x.float() - self.mean) / self.scale
