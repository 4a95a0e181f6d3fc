"""A fixed set of views of each photo, for augmentation that survives caching.

When the bottom of a network is frozen, its output for a photo can be
computed once and cached (:func:`sktriplet.networks.split.split_at_block`);
random augmentation drawn anew every epoch cannot. :class:`FixedViews`
instead gives every photo ``n_views`` *deterministic* views, whose
activations are cached once; every epoch then draws one view per photo
(:func:`draw_views`). The views are

0. the evaluation view (:class:`~sktriplet.vision.transforms.ResizeCenterCrop`),
1. its mirror image,
2. and on: random resized crops
   (:class:`~sktriplet.vision.transforms.RandomResizedCrop`, each flipped
   with probability 1/2) whose randomness is seeded by ``(seed, photo
   index, view)``, so they are the same in every epoch and every run.
"""

from __future__ import annotations

import os

import numpy as np

from sktriplet.vision.transforms import RandomResizedCrop, ResizeCenterCrop

__all__ = ["FixedViews", "draw_views"]


class FixedViews:
    """``n_views`` deterministic views of a photo file (see the module notes).

    Parameters
    ----------
    image_size : int or tuple of int (height, width)
        Output size.
    n_views : int, default=4
        Views per photo: 1 (the evaluation view only), 2 (and its mirror),
        more (and ``n_views - 2`` seeded random resized crops).
    scale : tuple of float, default=(0.25, 1.0)
        Area range of the crops, as :class:`RandomResizedCrop`'s.
    ratio : tuple of float, default=(3/4, 4/3)
        Aspect range of the crops, as :class:`RandomResizedCrop`'s.
    seed : int, default=0
        Seed of the crops.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).convert("RGB").save(path)
    >>> views = FixedViews(6, n_views=3)
    >>> a, b = views(path, 0, index=0), views(path, 1, index=0)
    >>> bool((a[:, :, ::-1] == b).all())  # view 1 mirrors view 0
    True
    >>> bool((views(path, 2, index=5) == views(path, 2, index=5)).all())
    True
    """

    def __init__(
        self,
        image_size,
        n_views: int = 4,
        scale: tuple[float, float] = (0.25, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        seed: int = 0,
    ) -> None:
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
            raise ValueError(f"n_views must be a positive int; got {n_views!r}.")
        self.n_views = n_views
        self.seed = int(seed)
        self.centre = ResizeCenterCrop(image_size)
        self.crop = RandomResizedCrop(image_size, scale=scale, ratio=ratio, flip=True)

    def __repr__(self) -> str:
        return (
            f"FixedViews(image_size={self.centre.image_size}, n_views={self.n_views}, "
            f"scale={self.crop.scale}, ratio={self.crop.ratio}, seed={self.seed})"
        )

    def rng(self, index: int, view: int) -> np.random.Generator:
        """The generator of crop ``view`` of photo ``index``."""
        return np.random.default_rng([self.seed, int(index), int(view)])

    def __call__(
        self, path: str | os.PathLike, view: int, index: int = 0, channels: int = 3
    ) -> np.ndarray:
        """View ``view`` of the photo at ``path`` (photo ``index``), ``(channels, H, W)`` uint8.

        ``index`` only seeds the crops (views 2 and up): pass the photo's
        position in the data set.
        """
        if not 0 <= view < self.n_views:
            raise ValueError(f"view must be in [0, {self.n_views}); got {view}.")
        if view < 2:
            image = self.centre(path, channels)
            return np.ascontiguousarray(image[:, :, ::-1]) if view == 1 else image
        return self.crop(path, self.rng(index, view), channels)


def draw_views(n_samples: int, n_views: int, seed: int, epoch: int) -> np.ndarray:
    """The view each sample uses in one epoch: uniform, seeded by ``(seed, epoch)``.

    Parameters
    ----------
    n_samples : int
        Photos in the training set.
    n_views : int
        Views cached per photo.
    seed : int
        The fit's seed.
    epoch : int
        The epoch (0-based).

    Returns
    -------
    numpy.ndarray of int of shape (n_samples,)
        Values in ``[0, n_views)``.

    Examples
    --------
    >>> v = draw_views(1000, 4, seed=0, epoch=0)
    >>> v.min(), v.max(), bool((v == draw_views(1000, 4, 0, 0)).all())
    (np.int64(0), np.int64(3), True)
    """
    return np.random.default_rng([int(seed), int(epoch)]).integers(0, n_views, size=n_samples)
