"""The default network for feature rows: :class:`MLPEmbedder`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sktriplet.networks.layers import L2Normalize

__all__ = ["MLPEmbedder"]


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
