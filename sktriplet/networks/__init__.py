"""Default embedding networks, sized from the data at fit time.

:class:`MLPEmbedder` embeds tabular rows, :class:`ConvEmbedder` embeds images
given as ``(C, H, W)`` tensors. Both end in a linear layer of
``n_components`` units followed by L2 normalisation, so embeddings lie on the
unit sphere (where the margin has a fixed scale). Any other ``nn.Module``
whose output is ``(batch, n_components)`` can replace them.
"""

from sktriplet.networks.conv import POOLINGS, ConvEmbedder
from sktriplet.networks.layers import L2Normalize, Standardize
from sktriplet.networks.mlp import MLPEmbedder

__all__ = ["POOLINGS", "ConvEmbedder", "L2Normalize", "MLPEmbedder", "Standardize"]
