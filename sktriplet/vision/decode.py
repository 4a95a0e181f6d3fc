"""Decoding one image file into a uint8 array the network can take (Pillow).

:func:`decode_image` opens a file with Pillow (JPEG, PNG, BMP, TIFF, WebP, GIF,
PGM/PPM, ...), applies its EXIF orientation, converts its mode to grey (``L``)
or colour (``RGB``) and, when asked, crops and resizes it, returning a
``(C, H, W)`` uint8 array with ``C`` the channels the network expects.

Mode rules (documented here once; the user guide copies them):

- ``1`` (bilevel) becomes ``L`` with 0 and 255.
- ``P`` (palette) becomes ``RGB``, or ``RGBA`` when it has a transparent entry.
- Transparency (``LA``, ``RGBA``, ``PA``, a ``P``/``L``/``RGB`` image with a
  transparent colour) is composited over :data:`BACKGROUND`, white: a
  transparent pixel reads as white, a half-transparent one as the average of
  its colour and white.
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` become ``RGB`` with Pillow's
  conversion (CMYK without colour management).
- 16-bit grey (``I;16``, ``I;16B``, ...) and 32-bit integer ``I`` are scaled to
  8 bits as ``round(x / 257)``, which maps 0..65535 exactly onto 0..255
  (``I`` values outside 0..65535 are clipped first).
- 32-bit float ``F`` is read as 0.0 = black, 1.0 = white (the convention of
  scikit-image and matplotlib): ``round(255 * clip(x, 0, 1))``, NaN as 0.
- Then ``channels=1`` turns colour into grey with Pillow's ITU-R 601-2 luma
  (``L = 0.299 R + 0.587 G + 0.114 B``) and ``channels=3`` repeats grey into
  three equal channels.
- Multi-frame files (animated GIF, multi-page TIFF) give their first frame.

Large JPEGs are decoded at a reduced scale (``Image.draft``: libjpeg's DCT
scaling by 1/2, 1/4 or 1/8) whenever the reduced image still has at least the
pixels the output needs, which makes a 3896 px photo destined for 64 px about
an order of magnitude faster to read (``benchmarks/bench_files.py``).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUND",
    "ImageFileError",
    "decode_image",
    "find_unreadable",
    "header_size",
    "is_grey_image",
    "read_image_size",
]

#: Grey level (and RGB colour) that transparent pixels are composited over.
BACKGROUND = 255

#: Pillow modes that hold one grey channel (whatever their bit depth).
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

#: A crop box ``(left, top, right, bottom)`` in pixels of the oriented image.
Box = tuple[float, float, float, float]

_ORIENTATION_TAG = 0x0112
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
)


class _CropBoxError(ValueError):
    """A crop callable returned a box outside the image (a bug of the caller, not the file)."""


class ImageFileError(ValueError):
    """A file that exists but cannot be read as an image (corrupt, truncated, not an image).

    Its message names the file and what Pillow said.
    """


def decode_image(
    path: str | os.PathLike | Any,
    *,
    channels: int = 3,
    size: tuple[int, int] | None = None,
    crop: Callable[[int, int], Box] | None = None,
    draft: bool = True,
    region: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Read one image file (or a Pillow image) as a ``(channels, H, W)`` uint8 array.

    Parameters
    ----------
    path : str, os.PathLike or PIL.Image.Image
        The image file, or an image already opened with Pillow (read as its
        file would be, EXIF orientation included; the image itself is left
        unchanged).
    channels : {1, 3}, default=3
        Channels of the output: grey or RGB (see the module notes for how
        every Pillow mode is converted).
    size : tuple of int (height, width) or None, default=None
        Output size. ``None`` keeps the file's size (after orientation).
    crop : callable or None, default=None
        ``crop(height, width) -> (left, top, right, bottom)``: the region of
        the oriented, full-resolution image to resize to ``size`` (float
        pixel coordinates). ``None`` takes the whole image. Needs ``size``.
    draft : bool, default=True
        Let JPEGs decode at a reduced scale (1/2, 1/4 or 1/8) when the crop
        keeps at least ``size`` pixels at that scale.
    region : tuple of int (left, top, right, bottom) or None, default=None
        A part of the oriented image (whole pixels, ``right`` and ``bottom``
        excluded, as Pillow's ``Image.crop``) to read as if the file held only
        that part: ``crop`` gets its height and width, and no pixel outside
        it enters the output. Without drafting the result is exactly that of
        the region saved as a lossless file and read whole. ``None``: the
        whole image. Needs ``size``.

    Returns
    -------
    ndarray of shape (channels, H, W), dtype uint8

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ImageFileError
        When the file cannot be decoded; the message names the file and
        Pillow's reason.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> from sktriplet.vision.decode import decode_image
    >>> path = os.path.join(tempfile.mkdtemp(), "red.png")
    >>> Image.new("RGBA", (6, 4), (255, 0, 0, 255)).save(path)
    >>> decode_image(path).shape
    (3, 4, 6)
    >>> decode_image(path, channels=1, size=(2, 3))[0]
    array([[76, 76, 76],
           [76, 76, 76]], dtype=uint8)
    """
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels!r}.")
    if (crop is not None or region is not None) and size is None:
        raise ValueError("decode_image: a crop needs an output size; pass size=(height, width).")
    if isinstance(path, Image.Image):
        # A copy: orientation and mode conversion must not change the caller's image.
        return _finish(_load_oriented(path.copy(), size, crop, False, region), channels, size)
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            img = _load_oriented(img, size, crop, draft, region)
    except _CropBoxError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path!r}") from None
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
        raise ImageFileError(
            f"{path}: cannot read this image file ({type(exc).__name__}: {exc}). "
            "Check or re-save the file, or leave it out of the input."
        ) from exc
    return _finish(img, channels, size)


def _load_oriented(img, size, crop, draft: bool, region=None):
    """Decode ``img`` (drafted when possible), orient it and crop-resize it to ``size``.

    Returns a loaded ``L`` or ``RGB`` image (``RGB`` for every colour mode).
    Boxes are worked out in pixels of the oriented, full-resolution image and
    divided by the draft's scale at the end.
    """
    from PIL import Image, ImageOps

    box, scale = None, 1.0
    if draft and size is not None and img.format == "JPEG":
        # A JPEG's EXIF (and so its orientation) is in the header: the crop is
        # known before decoding, and so is the smallest scale that serves it.
        swapped = img.getexif().get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8)
        width, height = img.size[::-1] if swapped else img.size
        box = _full_box(crop, region, width, height)
        need = (
            math.ceil(size[1] * width / (box[2] - box[0])),
            math.ceil(size[0] * height / (box[3] - box[1])),
        )
        raw_width = img.size[0]
        result = img.draft(None, need[::-1] if swapped else need)
        if result is not None:
            scale = raw_width / result[1][2]
    img.load()
    ImageOps.exif_transpose(img, in_place=True)
    img = _to_grey_or_rgb(img)
    if size is None:
        return img
    if box is None:
        box = _full_box(crop, region, *img.size)
    box = tuple(b / scale for b in box)
    if region is not None:
        # Cut the region out (rounded outwards at a draft's scale), so that
        # the resampling filter sees no pixel beyond it.
        cut = (
            math.floor(region[0] / scale),
            math.floor(region[1] / scale),
            min(math.ceil(region[2] / scale), img.size[0]),
            min(math.ceil(region[3] / scale), img.size[1]),
        )
        img = img.crop(cut)
        box = (box[0] - cut[0], box[1] - cut[1], box[2] - cut[0], box[3] - cut[1])
    limits = (*img.size, *img.size)
    box = tuple(min(max(b, 0.0), limit) for b, limit in zip(box, limits, strict=True))
    return img.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)


def _full_box(crop, region, width: int, height: int) -> Box:
    """The crop box in pixels of the whole oriented image (inside ``region`` if given)."""
    if region is None:
        return _crop_box(crop, width, height)
    left, top, right, bottom = region
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise _CropBoxError(
            f"region {tuple(region)} is not a non-empty region of the {width}x{height} image."
        )
    box = _crop_box(crop, right - left, bottom - top)
    return box[0] + left, box[1] + top, box[2] + left, box[3] + top


def _crop_box(crop, width: int, height: int) -> Box:
    """``crop(height, width)``, checked, or the whole image when ``crop`` is None."""
    if crop is None:
        return 0.0, 0.0, float(width), float(height)
    box = crop(height, width)
    left, top, right, bottom = (float(b) for b in box)
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise _CropBoxError(
            f"crop box {tuple(box)} is not a non-empty region of the {width}x{height} image."
        )
    return left, top, right, bottom


def _to_grey_or_rgb(img):
    """``img`` as mode ``L`` (grey modes) or ``RGB`` (all others), rules in the module notes."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(img), mode), mode="L")
    if mode == "1":
        return img.convert("L")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (BACKGROUND,) * 3 + (255,))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
        return rgb.convert("L") if mode in ("LA", "La") or mode == "L" else rgb
    if mode in ("L", "RGB"):
        return img
    return img.convert("RGB")


def _to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float grey values scaled to uint8 (module notes)."""
    if mode == "F":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0)
        return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    a = np.clip(a.astype(np.int64), 0, 65535)
    return ((a + 128) // 257).astype(np.uint8)


def _finish(img, channels: int, size) -> np.ndarray:
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[None]
        if channels == 3:
            a = np.repeat(a, 3, axis=0)
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(np.moveaxis(a, -1, 0))


@contextlib.contextmanager
def _header(path: str | os.PathLike):
    """The file opened by Pillow (header read, no pixels), with errors that name it."""
    from PIL import Image

    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            yield img
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path!r}") from None
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
        raise ImageFileError(
            f"{path}: cannot read this image file ({type(exc).__name__}: {exc})."
        ) from exc


def is_grey_image(path: str | os.PathLike) -> bool:
    """Whether a file holds a grey image, from its header (no pixels decoded).

    Grey means a grey Pillow mode (``1``, ``L``, ``LA``, ``I;16``, ``I``,
    ``F``, ...) or a palette whose colours all have ``R == G == B``. An RGB
    file whose pixels happen to be grey counts as colour.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.

    Returns
    -------
    bool

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> from sktriplet.vision.decode import is_grey_image
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.png")
    >>> Image.new("L", (4, 4), 128).save(path)
    >>> is_grey_image(path)
    True
    """
    with _header(path) as img:
        if img.mode in GREY_MODES:
            return True
        if img.mode in ("P", "PA"):
            rgb = np.asarray(img.getpalette("RGB") or [0, 0, 1]).reshape(-1, 3)
            return bool((rgb == rgb[:, :1]).all())
        return False


def header_size(path: str | os.PathLike) -> tuple[int, int]:
    """Height and width of a file's image as :func:`decode_image` orients it, from its header.

    No pixel is decoded: Pillow reads the header, and the EXIF orientation
    where the header holds it (JPEG, TIFF, WebP; a PNG's EXIF only when it
    comes before the pixel data). Orientations 5 to 8 swap height and width.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.

    Returns
    -------
    tuple of int (height, width)

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ImageFileError
        When the header cannot be read.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> from sktriplet.vision.decode import header_size
    >>> path = os.path.join(tempfile.mkdtemp(), "wide.png")
    >>> Image.new("RGB", (6, 4)).save(path)
    >>> header_size(path)
    (4, 6)
    """
    with _header(path) as img:
        width, height = img.size
        # A PNG's getexif() decodes the pixels when the header holds no EXIF.
        header_exif = img.format != "PNG" or "exif" in img.info
        orientation = img.getexif().get(_ORIENTATION_TAG, 1) if header_exif else 1
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def read_image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """:func:`header_size`, or ``None`` when the file is missing or its header unreadable.

    Parameters
    ----------
    path : str or path-like
        An image file.

    Returns
    -------
    tuple of int (height, width), or None

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> from sktriplet.vision.decode import read_image_size
    >>> path = os.path.join(tempfile.mkdtemp(), "wide.png")
    >>> Image.new("L", (30, 20)).save(path)
    >>> read_image_size(path), read_image_size(path + ".missing")
    ((20, 30), None)
    """
    try:
        return header_size(path)
    except (FileNotFoundError, ImageFileError):
        return None


def find_unreadable(paths) -> list[tuple[int, str]]:
    """The files that do not decode, with the reason, by decoding each one (small).

    Every file is decoded at the smallest size it allows (JPEGs at 1/8
    scale, about a millisecond each), which finds truncated and corrupt
    files and files that are not images, as well as missing ones.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files.

    Returns
    -------
    list of (int, str)
        Position of each unreadable file in ``paths`` and why, in order (the
        reason without the path, which Pillow's messages may repeat).

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> from sktriplet.vision.decode import find_unreadable
    >>> folder = tempfile.mkdtemp()
    >>> good, bad = os.path.join(folder, "good.png"), os.path.join(folder, "bad.png")
    >>> Image.new("L", (4, 4)).save(good)
    >>> with open(bad, "wb") as f:
    ...     _ = f.write(b"not a picture")
    >>> [(i, why.split(":")[0]) for i, why in find_unreadable([good, bad, good + "x"])]
    [(1, 'UnidentifiedImageError'), (2, 'missing')]
    """
    bad = []
    for i, path in enumerate(paths):
        try:
            decode_image(path, channels=1, size=(1, 1))
        except FileNotFoundError:
            bad.append((i, "missing"))
        except ImageFileError as exc:
            cause = exc.__cause__
            why = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            bad.append((i, why.replace(f" {os.fspath(path)!r}", "")))
    return bad
