"""Layers shared by the embedding networks: input standardisation, L2 normalisation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["L2Normalize", "Standardize", "declared_standardize"]


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


def declared_standardize(module: nn.Module, pixel_max: float = 255.0) -> Standardize | None:
    """The input standardisation a network declares, for images in ``[0, pixel_max]``.

    A network such as :class:`~sktriplet.networks.BackboneEmbedder` declares
    per-channel ``input_mean`` and ``input_std`` for pixels scaled to
    ``[0, 1]``; this returns the layer that maps raw pixels ``x`` (``uint8``
    with ``pixel_max=255``, or floats in ``[0, 1]`` with ``pixel_max=1``) to
    ``(x / pixel_max - mean) / std``, i.e. ``Standardize(mean * pixel_max,
    std * pixel_max)`` with ``(C, 1, 1)`` buffers. It replaces the
    standardisation fitted to the data.

    Parameters
    ----------
    module : torch.nn.Module
        The network; its ``input_mean`` / ``input_std`` attributes are read.
    pixel_max : float, default=255.0
        The value of a white pixel in the input.

    Returns
    -------
    Standardize or None
        ``None`` when the network declares no normalisation (attributes
        missing or ``None``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sktriplet.networks import declared_standardize
    >>> net = nn.Identity()
    >>> net.input_mean, net.input_std = (127 / 255,) * 3, (128 / 255,) * 3
    >>> layer = declared_standardize(net)
    >>> layer(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).flatten()
    tensor([1., 1., 1.])
    """
    mean = getattr(module, "input_mean", None)
    std = getattr(module, "input_std", None)
    if mean is None or std is None:
        return None
    mean_t = torch.as_tensor(mean, dtype=torch.float64).reshape(-1, 1, 1) * pixel_max
    std_t = torch.as_tensor(std, dtype=torch.float64).reshape(-1, 1, 1) * pixel_max
    return Standardize(mean_t, std_t)
