"""The input statistics: the data-fitted standardisation of the network's first layer.

:func:`input_statistics` computes the mean and scale that ``Standardize``
applies, from training samples of any kind (rows, images in an array, image
files, crop boxes of image files); :func:`resolve_scaling` says what
``scaling="auto"`` means for the data (:func:`is_pixel_like`). Why, with the
measurements: ``docs/defaults.md`` ("The hard case").
"""

from __future__ import annotations

import numpy as np

from sktriplet.inputs.spec import InputSpec

__all__ = [
    "FILE_STATS_SAMPLES",
    "PIXEL_LIKE_MIN_FEATURES",
    "input_statistics",
    "is_pixel_like",
    "resolve_scaling",
]

#: Rows need at least this many columns to count as pixel-like (an 8x8 image).
PIXEL_LIKE_MIN_FEATURES = 16

#: Image files whose pixels the input statistics are computed from, at most
#: (a random sample: memory and time do not grow with the collection).
FILE_STATS_SAMPLES = 500

#: Images of more bytes than this get their per-channel statistics in blocks
#: (no float64 copy of the whole array).
_STATS_BYTES = 2**28


def is_pixel_like(X: np.ndarray, *, min_features: int = PIXEL_LIKE_MIN_FEATURES) -> bool:
    """Whether 2-D rows look like flattened images: values of one kind in one range.

    True when ``X`` has at least ``min_features`` columns, no negative value,
    and either only whole numbers or only values in ``[0, 1]``, and when the
    columns share their range: at least half of the columns that vary reach
    half of the largest value in ``X``. Grey levels (0-255, 0-16, 0-1) pass;
    measurements in different units, centred or signed data and counts whose
    columns have very different ranges do not.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training rows (finite values).
    min_features : int, default=PIXEL_LIKE_MIN_FEATURES
        Fewest columns that count as an image.

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.statistics import is_pixel_like
    >>> rng = np.random.default_rng(0)
    >>> is_pixel_like(rng.integers(0, 256, size=(50, 64)))
    True
    >>> is_pixel_like(rng.normal(size=(50, 64)))
    False
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] < min_features or X.size == 0:
        return False
    low = X.min(axis=0)
    high = X.max(axis=0)
    if low.min() < 0:
        return False
    top = float(high.max())
    if top <= 0:
        return False
    whole = bool(np.all(np.mod(X, 1) == 0))
    if not whole and top > 1:
        return False
    varying = high > low
    if not varying.any():
        return False
    return bool(np.mean(high[varying] >= top / 2) >= 0.5)


def resolve_scaling(scaling: str | None, X: np.ndarray) -> str | None:
    """The input scaling that ``scaling`` asks for, with ``"auto"`` resolved.

    Parameters
    ----------
    scaling : {"auto", "feature", "global"} or None
        The estimator's parameter.
    X : ndarray
        Training samples: rows ``(n_samples, n_features)`` or images
        ``(n_samples, C, H, W)``.

    Returns
    -------
    {"feature", "global"} or None
        ``"auto"`` gives ``"global"`` for pixel-like rows
        (:func:`is_pixel_like`) and ``"feature"`` for other rows and for
        images (whose ``"feature"`` scaling is already per channel); any
        other value is returned as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.statistics import resolve_scaling
    >>> grey = np.random.default_rng(0).integers(0, 17, size=(10, 64))
    >>> resolve_scaling("auto", grey)
    'global'
    >>> resolve_scaling("auto", np.array([[1.5, -2.0], [0.5, 3.0]]))
    'feature'
    """
    if scaling != "auto":
        return scaling
    X = np.asarray(X)
    return "global" if X.ndim == 2 and is_pixel_like(X) else "feature"


def input_statistics(
    X: np.ndarray, spec: InputSpec, scaling: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the input standardisation that ``scaling`` asks for.

    Parameters
    ----------
    X : numpy.ndarray
        Training samples, ``(N, n_features)`` or ``(N, C, H, W)``, or image
        file paths (statistics of a random sample of
        ``FILE_STATS_SAMPLES`` files, read as ``transform`` reads them).
    spec : InputSpec
        What they are.
    scaling : {"auto", "feature", "global"} or None
        ``"feature"``: per feature (images: per channel); ``"global"``: the
        same centring, one common scale (the root mean square of the centred
        values); ``None``: identity; ``"auto"``: :func:`resolve_scaling`
        (``"feature"`` for image files).

    Returns
    -------
    mean, scale : numpy.ndarray
        Shapes ``(n_features,)`` for rows and ``(C, 1, 1)`` for images.
    """
    if scaling == "auto":
        # Files: per channel, as for images (rows: global when pixel-like).
        scaling = "feature" if spec.reads_files else resolve_scaling(scaling, X)
    if spec.reads_files:
        mean, scale = _file_moments(X, spec)
    elif not spec.is_image:
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
    else:
        mean = X.mean(axis=(0, 2, 3), dtype=np.float64)
        scale = _channel_std(X, mean)
    if scaling is None:
        mean, scale = np.zeros_like(mean), np.ones_like(scale)
    elif scaling == "global":
        # Every feature (channel) weighs the same in the mean of the variances.
        common = float(np.sqrt(np.mean(scale**2)))
        scale = np.full_like(scale, common if common > 1e-12 else 1.0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    if spec.is_image:
        mean, scale = mean[:, None, None], scale[:, None, None]
    return mean, scale


def _file_moments(paths: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of a bounded random sample of the image files."""
    from sktriplet.inputs.files import sample_channel_stats
    from sktriplet.inputs.loading import make_dataset

    return sample_channel_stats(make_dataset(paths, spec), max_samples=FILE_STATS_SAMPLES)


def _channel_std(X: np.ndarray, mean: np.ndarray) -> np.ndarray:
    if X.nbytes < _STATS_BYTES:
        axes = (0, 2, 3)
        return np.sqrt(np.maximum((X.astype(np.float64) ** 2).mean(axis=axes) - mean**2, 0.0))
    total = np.zeros(X.shape[1])
    for start in range(0, len(X), 4096):
        chunk = X[start : start + 4096].astype(np.float64) - mean[:, None, None]
        total += (chunk**2).sum(axis=(0, 2, 3))
    return np.sqrt(total / (len(X) * X.shape[2] * X.shape[3]))
