"""Layers shared by the embedding networks: input standardisation, L2 normalisation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["L2Normalize", "Standardize"]


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
