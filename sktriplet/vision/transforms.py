"""The size policy of image files: how a file of any size becomes ``image_size``.

Two policies, both Pillow + numpy (no torchvision), both a crop box chosen on
the oriented, full-resolution image and resized to ``image_size`` with
Pillow's antialiased bilinear filter in one step (so a JPEG can be decoded at
a reduced scale, :func:`sktriplet.vision.decode.decode_image`):

**Evaluation** (:class:`ResizeCenterCrop`, used by ``transform``, ``score``
and training without augmentation): scale the image so that it covers
``image_size`` (the shorter side, relative to the target's aspect ratio, meets
the target) keeping its aspect ratio, then cut the centre. For a square
``image_size`` this is "shorter side to ``image_size``, then centre crop".
The crop is rounded to whole source pixels, so an image that already has the
target's size is returned unchanged. Nothing is padded and nothing distorted.

**Training augmentation for photos** (:class:`RandomResizedCrop`): the
random-resized-crop of Inception / torchvision: a region covering a random
fraction ``scale`` (default 0.25 to 1) of the image's area, with a random
aspect ratio ``ratio`` (default 3/4 to 4/3, log-uniform, relative to the
target's aspect) at a random place, resized to ``image_size``; then a
horizontal flip with probability 1/2. When 10 draws do not fit in the image,
the largest centred region with the nearest allowed aspect ratio is taken.
Randomness comes from a generator seeded with ``(seed, epoch, index,
repeat)`` (:func:`augmentation_rng`), so a fit is reproducible whatever the
number of DataLoader workers and whichever worker reads a sample.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence

import numpy as np

from sktriplet.vision.decode import Box, decode_image, read_image_size

__all__ = [
    "RandomResizedCrop",
    "ResizeCenterCrop",
    "UpscaleWarning",
    "as_image_size",
    "augmentation_rng",
    "find_small_images",
    "preprocess_images",
    "warn_small_images",
]

#: Dtypes :func:`preprocess_images` returns (those of the exported models' inputs).
_DTYPES = ("float32", "uint8")


def as_image_size(image_size) -> tuple[int, int]:
    """``image_size`` (an int or ``(height, width)``) as a ``(height, width)`` tuple.

    Parameters
    ----------
    image_size : int or tuple of two int
        Side of a square output, or its height and width, in pixels (>= 1).

    Returns
    -------
    tuple of int (height, width)

    Examples
    --------
    >>> from sktriplet.vision.transforms import as_image_size
    >>> as_image_size(64), as_image_size((32, 48))
    ((64, 64), (32, 48))
    """
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(
            f"image_size must be an int or a (height, width) pair of ints; got {image_size!r}."
        )
    if min(size) < 1:
        raise ValueError(f"image_size must be at least 1 pixel; got {image_size!r}.")
    return size


def augmentation_rng(seed: int, epoch: int, index: int, repeat: int = 0) -> np.random.Generator:
    """The random generator of one training sample in one epoch.

    Parameters
    ----------
    seed : int
        The fit's seed (non-negative).
    epoch : int
        The epoch (0-based).
    index : int
        The sample's position in the data set.
    repeat : int, default=0
        How many times the sample already appeared in the same batch (a PK
        batch can repeat a sample of a small class): repeats get different
        crops.

    Returns
    -------
    numpy.random.Generator

    Examples
    --------
    >>> from sktriplet.vision.transforms import augmentation_rng
    >>> a = augmentation_rng(0, 1, 2).random()
    >>> a == augmentation_rng(0, 1, 2).random(), a == augmentation_rng(0, 2, 2).random()
    (True, False)
    """
    return np.random.default_rng([seed, epoch, index, repeat])


class ResizeCenterCrop:
    """Evaluation policy: scale to cover ``image_size``, keep the aspect, cut the centre.

    Parameters
    ----------
    image_size : int or tuple of int (height, width)
        Output size.

    Notes
    -----
    For an image of ``H x W`` and a target ``h x w`` the scale is
    ``s = max(h / H, w / W)`` and the crop is the centred ``round(h / s) x
    round(w / s)`` region of the source (offsets rounded to whole pixels),
    resized to ``h x w``.

    Examples
    --------
    >>> from sktriplet.vision.transforms import ResizeCenterCrop
    >>> ResizeCenterCrop(4).box(height=8, width=16)
    (4.0, 0.0, 12.0, 8.0)
    """

    def __init__(self, image_size) -> None:
        self.image_size = as_image_size(image_size)

    def __repr__(self) -> str:
        return f"ResizeCenterCrop(image_size={self.image_size})"

    def box(self, height: int, width: int) -> Box:
        """The crop ``(left, top, right, bottom)`` of a ``height x width`` image."""
        h, w = self.image_size
        s = max(h / height, w / width)
        crop_h = min(height, max(1, round(h / s)))
        crop_w = min(width, max(1, round(w / s)))
        top = round((height - crop_h) / 2)
        left = round((width - crop_w) / 2)
        return float(left), float(top), float(left + crop_w), float(top + crop_h)

    def __call__(self, path, channels: int = 3, draft: bool = True, region=None):
        """Decode ``path`` (a file or a Pillow image, or its ``region``) as uint8 ``(C, H, W)``."""
        return decode_image(
            path,
            channels=channels,
            size=self.image_size,
            crop=self.box,
            draft=draft,
            region=region,
        )


class RandomResizedCrop:
    """Training augmentation: a random crop of random area and aspect, resized, maybe flipped.

    Parameters
    ----------
    image_size : int or tuple of int (height, width)
        Output size.
    scale : tuple of float, default=(0.25, 1.0)
        Range of the crop's area as a fraction of the image's area.
    ratio : tuple of float, default=(3/4, 4/3)
        Range of the crop's aspect ratio (width / height) relative to the
        output's, drawn log-uniformly.
    flip : bool, default=True
        Flip left-right with probability 1/2.

    Examples
    --------
    >>> from sktriplet.vision.transforms import RandomResizedCrop, augmentation_rng
    >>> policy = RandomResizedCrop(32)
    >>> box, flipped = policy.draw(100, 150, augmentation_rng(0, 0, 7))
    >>> box == policy.draw(100, 150, augmentation_rng(0, 0, 7))[0]
    True
    """

    def __init__(
        self,
        image_size,
        scale: tuple[float, float] = (0.25, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
    ) -> None:
        self.image_size = as_image_size(image_size)
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1; got {scale!r}.")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < low <= high; got {ratio!r}.")
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.flip = flip

    def __repr__(self) -> str:
        return (
            f"RandomResizedCrop(image_size={self.image_size}, scale={self.scale}, "
            f"ratio={self.ratio}, flip={self.flip})"
        )

    def draw(self, height: int, width: int, rng: np.random.Generator) -> tuple[Box, bool]:
        """A random crop box of a ``height x width`` image, and whether to flip."""
        area = height * width
        target_aspect = self.image_size[1] / self.image_size[0]
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        box = None
        for _ in range(10):
            crop_area = area * rng.uniform(*self.scale)
            aspect = target_aspect * math.exp(rng.uniform(log_lo, log_hi))
            w = round(math.sqrt(crop_area * aspect))
            h = round(math.sqrt(crop_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                box = (float(left), float(top), float(left + w), float(top + h))
                break
        if box is None:
            box = self._fallback(height, width, target_aspect)
        flipped = bool(self.flip and rng.random() < 0.5)
        return box, flipped

    def _fallback(self, height: int, width: int, target_aspect: float) -> Box:
        lo, hi = target_aspect * self.ratio[0], target_aspect * self.ratio[1]
        if width / height < lo:
            w, h = width, max(1, round(width / lo))
        elif width / height > hi:
            w, h = max(1, round(height * hi)), height
        else:
            w, h = width, height
        w, h = min(w, width), min(h, height)
        top, left = (height - h) // 2, (width - w) // 2
        return float(left), float(top), float(left + w), float(top + h)

    def __call__(
        self,
        path: str | os.PathLike,
        rng: np.random.Generator,
        channels: int = 3,
        draft: bool = True,
        region=None,
    ) -> np.ndarray:
        """Decode ``path`` (or its ``region``) as an augmented ``(channels, *image_size)`` array."""
        drawn: list[bool] = []

        def crop(height: int, width: int) -> Box:
            box, flipped = self.draw(height, width, rng)
            drawn.append(flipped)
            return box

        image = decode_image(
            path, channels=channels, size=self.image_size, crop=crop, draft=draft, region=region
        )
        if drawn and drawn[0]:
            image = np.ascontiguousarray(image[:, :, ::-1])
        return image


def _as_pil(image, index: int):
    """A file path or Pillow image as it is; a uint8 array as a Pillow image."""
    from PIL import Image

    if isinstance(image, (str, bytes, os.PathLike, Image.Image)):
        return image
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (
        a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))
    ):
        raise ValueError(
            f"images[{index}] is an array of shape {a.shape} and dtype {a.dtype}; arrays must "
            "be uint8 photos (H, W) or channels-last (H, W, 1|3|4) with values 0-255, as "
            "Pillow and OpenCV give them (OpenCV's are BGR: convert to RGB first)."
        )
    return Image.fromarray(a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a)


def preprocess_images(images, image_size, *, channels: int = 3, dtype: str = "float32"):
    """Photos as the batch an exported model takes: ``(N, channels, H, W)``, values 0-255.

    Each image is read exactly as ``transform`` reads an image file: EXIF
    orientation applied, converted to grey or RGB (:mod:`sktriplet.vision.decode`),
    scaled so that it covers ``image_size`` keeping its aspect ratio and cut at
    the centre (:class:`ResizeCenterCrop`). The values stay raw pixels, 0 to
    255, also as float32: the exported model standardises them itself, so
    do not divide by 255 nor subtract a mean. The size, channels and dtype
    of an export are in its metadata
    (:func:`sktriplet.io.export.read_input_contract`, key ``"preprocess"``).

    Parameters
    ----------
    images : path, PIL image, array, or a sequence of them
        Image files (any format and mode Pillow reads), images opened with
        Pillow, or uint8 arrays ``(H, W)`` / ``(H, W, C)`` with RGB(A)
        channels last. One image gives a batch of one.
    image_size : int or tuple of int (height, width)
        The size the model was fitted at (its ``image_size``).
    channels : {1, 3}, default=3
        Grey or RGB, as the model was fitted.
    dtype : {"float32", "uint8"}, default="float32"
        The dtype the model was exported with (``export_onnx(..., dtype=...)``).

    Returns
    -------
    ndarray of shape (N, channels, height, width)
        Pixel values 0-255 in ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.vision.transforms import preprocess_images
    >>> photo = np.zeros((40, 60, 3), dtype=np.uint8)   # a 60 x 40 black photo
    >>> photo[:, 30:] = 255                              # its right half white
    >>> batch = preprocess_images([photo, photo], image_size=4)
    >>> batch.shape, batch.dtype.name
    ((2, 3, 4, 4), 'float32')
    >>> batch[0, 0, 0]                                   # raw 0-255, not scaled
    array([  0.,  32., 223., 255.], dtype=float32)
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}; got {dtype!r}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels!r}.")
    policy = ResizeCenterCrop(image_size)
    single = isinstance(images, (str, bytes, os.PathLike)) or _is_one_image(images)
    items = [images] if single else list(images)
    out = np.empty((len(items), channels, *policy.image_size), dtype=dtype)
    for i, image in enumerate(items):
        out[i] = policy(_as_pil(image, i), channels)
    return out


def _is_one_image(images) -> bool:
    """A Pillow image, or an array of one photo ((H, W) or (H, W, C), not a batch)."""
    from PIL import Image

    if isinstance(images, Image.Image):
        return True
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        return False
    return images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (1, 3, 4))


class UpscaleWarning(UserWarning):
    """Image files much smaller than ``image_size`` are enlarged (and so blurred)."""


def find_small_images(paths, image_size, factor: float = 2.0) -> list[tuple[int, tuple[int, int]]]:
    """Image files that the size policy enlarges more than ``factor`` times, from their headers.

    :class:`ResizeCenterCrop` scales an ``H x W`` image by ``max(h / H, w / W)``
    to cover ``h x w``; an image scaled up by more than ``factor`` has far
    fewer pixels than the network sees and reads as a blur.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files (those whose header cannot be read are not reported here).
    image_size : int or tuple of int (height, width)
        The size the files are read at.
    factor : float, default=2.0
        Report files scaled up by more than this.

    Returns
    -------
    list of (int, (int, int))
        Position of each such file in ``paths`` and its ``(height, width)``.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> from sktriplet.vision.transforms import find_small_images
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, f"{s}.png") for s in (1, 40, 100)]
    >>> for s, p in zip((1, 40, 100), paths):
    ...     Image.new("L", (s, s)).save(p)
    >>> find_small_images(paths, image_size=96)
    [(0, (1, 1)), (1, (40, 40))]
    """
    h, w = as_image_size(image_size)
    small = []
    for i, path in enumerate(paths):
        size = read_image_size(path)
        if size is not None and max(h / size[0], w / size[1]) > factor:
            small.append((i, size))
    return small


def warn_small_images(paths, image_size, factor: float = 2.0) -> int:
    """Warn once (one :class:`UpscaleWarning` line) about files enlarged more than ``factor``.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files.
    image_size : int or tuple of int (height, width)
        The size the files are read at.
    factor : float, default=2.0
        Report files scaled up by more than this.

    Returns
    -------
    int
        How many files were reported (0: no warning).
    """
    small = find_small_images(paths, image_size, factor)
    if small:
        h, w = as_image_size(image_size)
        shown = ", ".join(f"{os.fspath(paths[i])!r} ({s[1]} x {s[0]})" for i, s in small[:3])
        more = f" and {len(small) - 3} more" if len(small) > 3 else ""
        warnings.warn(
            f"{len(small)} of {len(paths)} image files will be enlarged more than {factor:g}x to "
            f"cover image_size {h} x {w}, which blurs them: {shown}{more}; use a smaller "
            "image_size or leave them out.",
            UpscaleWarning,
            stacklevel=2,
        )
    return len(small)
