"""Default embedding networks, sized from the data at fit time.

:class:`MLPEmbedder` embeds tabular rows, :class:`ConvEmbedder` embeds images
given as ``(C, H, W)`` tensors. Both end in a linear layer of
``n_components`` units followed by L2 normalisation, so embeddings lie on the
unit sphere (where the margin has a fixed scale). Any other ``nn.Module``
whose output is ``(batch, n_components)`` can replace them.

:class:`BackboneEmbedder` turns a pretrained image network (an ``nn.Module``,
``"efficientnet_lite0"`` or a torchvision model name) into such an embedder
and declares the input normalisation its weights expect.
"""

from sktriplet.networks.backbone import BackboneEmbedder
from sktriplet.networks.conv import POOLINGS, ConvEmbedder
from sktriplet.networks.layers import L2Normalize, Standardize, declared_standardize
from sktriplet.networks.mlp import MLPEmbedder

__all__ = [
    "POOLINGS",
    "BackboneEmbedder",
    "ConvEmbedder",
    "L2Normalize",
    "MLPEmbedder",
    "Standardize",
    "declared_standardize",
]
