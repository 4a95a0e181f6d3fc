"""Light, label-preserving image augmentation for training batches (plain torch).

:class:`RandomAffine` moves every image of a batch by a small random shift,
rotation and scaling, drawn independently per image from torch's global
random generator (so a seeded ``fit`` stays reproducible). It works on any
``(batch, C, H, W)`` tensor on any device, uint8 or float, and knows nothing
of skorch or scikit-learn; :class:`sktriplet.TripletEmbedder` applies it to
its training batches only (``augment=True``), never in ``transform``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["RandomAffine"]


class RandomAffine:
    """Random shift, rotation and scaling of a batch of images.

    Parameters
    ----------
    max_shift : float, default=2.0
        Largest shift along each axis, in pixels.
    max_rotation : float, default=10.0
        Largest rotation, in degrees (either direction).
    max_scale : float, default=0.1
        Largest relative change of size: the scale factor is drawn from
        ``[1 - max_scale, 1 + max_scale]``.
    max_shear : float, default=0.0
        Largest horizontal shear angle, in degrees (either direction); ``0``
        draws no shear (and so leaves the random stream as without it).

    Notes
    -----
    Pixels are resampled bilinearly; pixels that come from outside the image
    repeat the nearest border pixel, so the background colour is kept
    whatever it is. The output is float32 on the input's device (uint8 input
    keeps its 0-255 range).

    Examples
    --------
    >>> import torch
    >>> from sktriplet.vision.augment import RandomAffine
    >>> _ = torch.manual_seed(0)
    >>> images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    >>> RandomAffine()(images).shape
    torch.Size([4, 1, 28, 28])
    >>> RandomAffine(max_shift=0, max_rotation=0, max_scale=0)(images).dtype
    torch.float32
    """

    def __init__(
        self,
        max_shift: float = 2.0,
        max_rotation: float = 10.0,
        max_scale: float = 0.1,
        max_shear: float = 0.0,
    ) -> None:
        self.max_shift = max_shift
        self.max_rotation = max_rotation
        self.max_scale = max_scale
        self.max_shear = max_shear

    def __repr__(self) -> str:
        return (
            f"RandomAffine(max_shift={self.max_shift}, max_rotation={self.max_rotation}, "
            f"max_scale={self.max_scale}, max_shear={self.max_shear})"
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Return a randomly moved float32 copy of ``images`` ``(batch, C, H, W)``."""
        if images.ndim != 4:
            raise ValueError(
                f"RandomAffine needs images of shape (batch, C, H, W); got {tuple(images.shape)}."
            )
        x = images.float()
        n, _, h, w = x.shape
        if n == 0:
            return x

        def uniform(bound: float) -> torch.Tensor:
            return (torch.rand(n) * 2 - 1) * bound

        angle = uniform(math.radians(self.max_rotation))
        scale = 1 + uniform(self.max_scale)
        # affine_grid maps output to input coordinates in [-1, 1]: a shift of
        # one pixel is 2 / size there.
        shift_x = uniform(self.max_shift) * 2 / w
        shift_y = uniform(self.max_shift) * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # Output-to-input map in pixel units: rotation/scale, then (optionally)
        # a horizontal shear [[1, t], [0, 1]] applied first.
        shear = (
            torch.tan(uniform(math.radians(self.max_shear))) if self.max_shear else torch.zeros(n)
        )
        a00, a01 = cos, cos * shear - sin
        a10, a11 = sin, sin * shear + cos
        theta = torch.stack(
            [
                torch.stack([a00, a01 * h / w, shift_x], dim=1),
                torch.stack([a10 * w / h, a11, shift_y], dim=1),
            ],
            dim=1,
        ).to(x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
