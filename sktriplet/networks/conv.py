"""The default network for images: :class:`ConvEmbedder`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sktriplet.networks.layers import L2Normalize

__all__ = ["POOLINGS", "ConvEmbedder"]

#: Global poolings that :class:`ConvEmbedder` offers.
POOLINGS = ("avgmax", "avg", "max")


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
    convs : int or sequence of int, default=2
        ``Conv3x3 -> BatchNorm2d -> ReLU`` layers in each block: one number
        for every block, or one per block (as long as ``channels``).
    channels_last : bool, default=False
        Keep the convolution weights and feature maps in
        ``torch.channels_last`` memory format, which the CPU's convolution
        kernels (oneDNN) run faster: a training step took 0.7-0.8x the time
        at 28-64 px. Not the default: on the CPU, BatchNorm's batch
        statistics in this layout are computed far less accurately (torch
        2.13: about 1e-3 absolute error against 5e-7 on real feature maps),
        and on COIL-20 that cost 0.035-0.05 unseen-class MAP@R (seeds 0
        and 3-5; ``docs/defaults.md``). Inference (BatchNorm in eval mode) is
        not affected.

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
        convs: int | Sequence[int] = 2,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(
                f"pooling must be one of {', '.join(map(repr, POOLINGS))}; got {pooling!r}."
            )
        if min_size < 1:
            raise ValueError(f"min_size must be at least 1; got {min_size}.")
        per_block = _per_block(convs, len(channels))
        self.pooling = pooling
        self.channels_last = bool(channels_last)
        blocks: list[nn.Module] = []
        width, size = in_channels, min(image_size)
        for out, n_convs in zip(channels, per_block, strict=True):
            for _ in range(n_convs):
                blocks += [
                    nn.Conv2d(width, out, 3, padding=1, bias=False),
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
        if self.channels_last:
            self.features.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of shape ``(batch, C, H, W)``."""
        if getattr(self, "channels_last", False):  # networks pickled before it existed lack it
            x = x.contiguous(memory_format=torch.channels_last)
        f = self.features(x)
        if self.pooling == "avg":
            z = f.mean(dim=(2, 3))
        elif self.pooling == "max":
            z = f.amax(dim=(2, 3))
        else:
            z = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.normalize(self.head(z))


def _per_block(convs: int | Sequence[int], n_blocks: int) -> list[int]:
    """``convs`` as one count per block; raise if it is not positive or has the wrong length."""
    counts = list(convs) if isinstance(convs, Sequence) else [convs] * n_blocks
    if len(counts) != n_blocks or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts
    ):
        raise ValueError(
            f"convs must be a positive integer or one positive integer per block "
            f"({n_blocks} blocks, one per entry of channels); got {convs!r}."
        )
    return counts
