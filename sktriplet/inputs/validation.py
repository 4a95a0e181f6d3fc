"""Validate ``X`` and ``y`` and compute their :class:`~sktriplet.inputs.spec.InputSpec`.

Validation mutates nothing: :func:`validate_fit` returns the arrays and the
spec, and the estimator stores them only once training has succeeded, so a
failed ``fit`` needs no rollback. :func:`validate_transform` checks new data
against a fitted spec.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import _num_samples, check_array, validate_data

from sktriplet.inputs.boxes import BoxTable, as_box_table, check_box_bounds
from sktriplet.inputs.files import as_paths, check_files, infer_channels
from sktriplet.inputs.spec import LAYOUTS, InputSpec

__all__ = [
    "all_finite",
    "encode_labels",
    "resolve_layout",
    "validate_fit",
    "validate_transform",
]

#: Channel counts an image array may have in its last axis to be read as
#: channels-last (grey, RGB, RGBA).
CHANNELS_LAST_SIZES = (1, 3, 4)


def all_finite(a: np.ndarray, block: int = 1 << 20) -> bool:
    """Whether every entry of ``a`` is finite, in blocks of about ``block`` entries.

    One vectorised pass, with a temporary of at most ``block`` booleans
    instead of one of the array's size.

    Parameters
    ----------
    a : numpy.ndarray
        Any array; non-float arrays are finite.
    block : int, default=2**20
        Entries checked at a time.

    Returns
    -------
    bool
        ``True`` when no entry is NaN or infinite.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.validation import all_finite
    >>> all_finite(np.array([[1.0, 2.0]])), all_finite(np.array([[1.0, np.nan]]))
    (True, False)
    """
    if a.dtype.kind != "f":
        return True
    flat = a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)
    rows = max(1, block // max(1, flat.shape[1]))
    return all(np.isfinite(flat[i : i + rows]).all() for i in range(0, len(flat), rows))


def _check_finite(X: np.ndarray) -> None:
    """Raise scikit-learn's error for NaN or infinity in ``X``."""
    if not all_finite(X):
        check_array(X, dtype=None, input_name="X", ensure_min_samples=0)  # raises


def _check_float32_range(X: np.ndarray) -> None:
    if X.dtype == np.float64 and X.size and np.abs(X).max() > np.finfo(np.float32).max:
        raise ValueError(
            "X has values beyond the float32 range (|x| > 3.4e38), which the network "
            "cannot represent; rescale X (e.g. with StandardScaler) first."
        )


def _check_numeric_columns(X) -> None:
    """Refuse a DataFrame with non-numeric columns, naming them and the fix."""
    dtypes = getattr(X, "dtypes", None)
    if not hasattr(dtypes, "items") or not hasattr(X, "columns"):
        return  # not a pandas DataFrame
    from pandas.api.types import is_numeric_dtype

    bad = [(c, str(t)) for c, t in dtypes.items() if not is_numeric_dtype(t)]
    if bad:
        shown = ", ".join(f"{c!r} ({t})" for c, t in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise ValueError(
            f"X has {len(bad)} non-numeric column(s): {shown}. TripletEmbedder needs "
            "numbers; encode them first (e.g. OneHotEncoder or OrdinalEncoder in a "
            "ColumnTransformer) or drop them."
        )


def _explain_non_numeric(exc: ValueError) -> None:
    if "could not convert" in str(exc):
        raise ValueError(
            f"X must be numeric ({exc}); encode string or categorical features first "
            "(e.g. with OneHotEncoder or OrdinalEncoder)."
        ) from exc


def _ndim(X) -> int | None:
    """``X``'s number of dimensions without copying it (``None``: a DataFrame)."""
    ndim = getattr(X, "ndim", None)
    if ndim is not None or hasattr(X, "iloc"):
        return ndim
    try:
        return np.asarray(X).ndim
    except ValueError:
        raise ValueError(
            "X is ragged: its rows (or images) do not all have the same length; "
            "pass a 2-D array of equal-length rows or images of one shape."
        ) from None


def resolve_layout(shape: tuple[int, ...], image_layout: str) -> str:
    """Whether a 4-D image array of ``shape`` is channels-first or channels-last.

    ``"auto"`` reads ``(N, H, W, C)`` as channels-last when its last axis has
    1, 3 or 4 entries (grey, RGB, RGBA) and its second axis does not; in
    every other case, including the ambiguous one where both axes could hold
    channels (e.g. ``(N, 3, 8, 3)``), it reads channels-first, as 0.1.0 did,
    and warns when both readings are possible. ``image_layout`` set to
    ``"channels_first"`` or ``"channels_last"`` says which is meant.

    Parameters
    ----------
    shape : tuple of int
        The array's shape, ``(N, a, b, c)``.
    image_layout : {"auto", "channels_first", "channels_last"}
        What the user asked for.

    Returns
    -------
    str
        ``"channels_first"`` or ``"channels_last"``.

    Examples
    --------
    >>> from sktriplet.inputs.validation import resolve_layout
    >>> resolve_layout((10, 32, 32, 3), "auto"), resolve_layout((10, 3, 32, 32), "auto")
    ('channels_last', 'channels_first')
    """
    if image_layout not in LAYOUTS:
        raise ValueError(f"image_layout must be one of {LAYOUTS}; got {image_layout!r}.")
    if image_layout != "auto":
        return image_layout
    first, last = shape[1] in CHANNELS_LAST_SIZES, shape[3] in CHANNELS_LAST_SIZES
    if 0 in shape[1:]:
        return "channels_first"  # empty images are refused as they were given
    if last and not first:
        return "channels_last"
    if last and first and not shape[1] == shape[2] == shape[3]:
        warnings.warn(
            f"X has images of shape {tuple(shape[1:])}, which can be read as (C, H, W) or "
            "as (H, W, C); reading them as (C, H, W). Pass image_layout='channels_last' "
            "(or 'channels_first') to say which is meant.",
            UserWarning,
            stacklevel=5,
        )
    return "channels_first"


def _as_image_array(X, *, min_samples: int) -> np.ndarray:
    if X.ndim > 4:
        raise ValueError(
            f"X has {X.ndim} dimensions; images must be (n_samples, H, W), "
            "(n_samples, C, H, W) or (n_samples, H, W, C)."
        )
    X = check_array(
        X,
        allow_nd=True,
        dtype=None if np.asarray(X).dtype == np.uint8 else np.float32,
        ensure_min_samples=min_samples,
        input_name="X",
    )
    if X.dtype != np.uint8:
        X = X.astype(np.float32, copy=False)
    return X


def _channels_first(X: np.ndarray, layout: str) -> np.ndarray:
    if X.ndim == 3:
        return X[:, None]
    return X.transpose(0, 3, 1, 2) if layout == "channels_last" else X


def _check_sample_shape(shape: tuple[int, ...]) -> None:
    if 0 in shape:
        raise ValueError(
            f"X has images of shape {shape} (as (C, H, W)) with an empty dimension; "
            "pass images with at least one channel and one pixel."
        )


def _labels(y, n_samples: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if len(y) != n_samples:
        raise ValueError(
            f"X has {n_samples} samples but y has {len(y)}; pass one label per sample."
        )
    return y


def _validate_fit_images(X, y, image_layout: str) -> tuple[np.ndarray, np.ndarray, InputSpec]:
    X = _as_image_array(X, min_samples=2)
    layout = resolve_layout(X.shape, image_layout) if X.ndim == 4 else "channels_first"
    X = _channels_first(X, layout)
    shape = tuple(int(s) for s in X.shape[1:])
    _check_sample_shape(shape)
    y = _labels(y, len(X))
    spec = InputSpec("images", shape, dtype=str(X.dtype), layout=layout)
    return X, y, spec


#: Side of the images that files are read at when ``image_size=None``.
DEFAULT_IMAGE_SIZE = 64


def _validate_fit_files(
    files: np.ndarray | BoxTable, y, image_size, channels, on_error: str
) -> tuple[np.ndarray | BoxTable, np.ndarray, InputSpec, np.ndarray | None]:
    """Image files (paths, or a ``BoxTable`` of crop boxes), checked before anything is built.

    Also returns the positions of the files kept (``None``: all of them).
    """
    from sktriplet.vision.transforms import as_image_size

    size = as_image_size(DEFAULT_IMAGE_SIZE if image_size is None else image_size)
    if channels not in ("auto", 1, 3):
        raise ValueError(f"channels must be 1 (grey), 3 (RGB) or 'auto'; got {channels!r}.")
    y = _labels(y, len(files))
    if len(files) < 2:
        raise ValueError(f"fit needs at least 2 image files; got {len(files)}.")
    boxed = isinstance(files, BoxTable)
    # "skip" decodes every file (small) now, so that no later pass, with or
    # without labels (input statistics, feature caching, the hold-out), meets
    # one that does not decode; "raise" checks only that the files exist.
    keep = check_files(files.paths if boxed else files, on_error, decode=on_error == "skip")
    if not keep.any():
        raise ValueError(
            f"none of the {len(keep)} image files can be used (see the warning above); "
            "fix the paths or the files."
        )
    kept = None if keep.all() else np.flatnonzero(keep)
    files, y = files[keep], y[keep]
    if boxed:
        check_box_bounds(files)  # boxes outside their image
    paths = files.paths if boxed else files
    n_channels = infer_channels(paths) if channels == "auto" else int(channels)
    kind = "boxes" if boxed else "paths"
    spec = InputSpec(kind, (n_channels, *size), dtype="uint8", layout="channels_first")
    return files, y, spec, kept


def _validate_fit_rows(estimator, X, y) -> tuple[np.ndarray, np.ndarray, InputSpec]:
    _check_numeric_columns(X)
    # sklearn's validate_data records n_features_in_ / feature_names_in_ on the
    # estimator it is given: give it a shallow copy, so that validation
    # mutates nothing.
    probe = copy.copy(estimator)
    try:
        X, y = validate_data(probe, X, y, dtype=[np.float32, np.float64], ensure_min_samples=2)
    except ValueError as exc:
        _explain_non_numeric(exc)
        if "inconsistent numbers of samples" not in str(exc):
            raise
        raise ValueError(
            f"X has {_num_samples(X)} samples but y has {_num_samples(y)}; pass "
            "one label per sample."
        ) from None
    _check_float32_range(X)
    X = X.astype(np.float32, copy=False)
    names = getattr(probe, "feature_names_in_", None)
    spec = InputSpec("rows", (X.shape[1],), feature_names=None if names is None else tuple(names))
    return X, y, spec


def validate_fit(
    estimator,
    X,
    y,
    *,
    image_layout: str = "auto",
    image_size: Any = None,
    channels: Any = "auto",
    on_error: str = "raise",
    return_kept: bool = False,
) -> tuple:
    """Validate training data; return samples, labels and their spec.

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator being fitted (for scikit-learn's checks and messages);
        it is not modified.
    X : array-like
        Feature rows ``(n_samples, n_features)`` (array or DataFrame), or
        images ``(n_samples, H, W)``, ``(n_samples, C, H, W)`` or
        ``(n_samples, H, W, C)`` (see :func:`resolve_layout`), or image file
        paths, or a DataFrame of paths with crop boxes
        (:mod:`sktriplet.inputs.boxes`).
    y : array-like of shape (n_samples,)
        Labels.
    image_layout : {"auto", "channels_first", "channels_last"}, default="auto"
        Layout of 4-D image arrays.
    image_size : int, tuple of int or None, default=None
        For image files: the size they are read at (``None``: 64).
    channels : {"auto", 1, 3}, default="auto"
        For image files: grey or RGB (``"auto"``: grey when every sampled
        file is grey).
    on_error : {"raise", "skip"}, default="raise"
        For image files: ``"raise"`` refuses missing files; ``"skip"``
        decodes every file (small, about a millisecond per JPEG) and leaves
        out the missing ones and those that do not decode, with one
        :class:`~sktriplet.vision.folders.LeftOutWarning` naming them.
    return_kept : bool, default=False
        Also return ``kept``.

    Returns
    -------
    X : numpy.ndarray or BoxTable
        float32 rows, uint8 / float32 images as ``(N, C, H, W)`` (a view of
        the input where no conversion is needed), image file paths, or a
        :class:`~sktriplet.inputs.boxes.BoxTable` (boxes checked against the
        images' sizes).
    y : numpy.ndarray of shape (n_samples,)
        The labels as given.
    spec : InputSpec
        What the samples are.
    kept : numpy.ndarray of int or None
        Only with ``return_kept``: the positions in ``X`` of the samples
        returned, when ``on_error="skip"`` left some out; ``None`` when
        every sample is returned.
    """
    if y is None:
        raise ValueError("TripletEmbedder requires y to be passed, but the target y is None.")
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    files = as_box_table(X)
    if files is None:
        files = as_paths(X)
    if files is not None:
        *validated, kept = _validate_fit_files(files, y, image_size, channels, on_error)
    else:
        ndim = _ndim(X)
        if ndim is not None and ndim >= 3:
            validated = _validate_fit_images(X, y, image_layout)
        else:
            validated = _validate_fit_rows(estimator, X, y)
        kept = None
    return (*validated, kept) if return_kept else tuple(validated)


def _validate_transform_images(X, spec: InputSpec) -> np.ndarray:
    X = _as_image_array(X, min_samples=1)
    if not spec.is_image:
        shape = tuple(int(s) for s in _channels_first(X, "channels_first").shape[1:])
        raise ValueError(
            f"X has images of shape {shape} (as (C, H, W)) but TripletEmbedder was fitted on "
            f"{spec.describe()}; pass X of shape (n_samples, {spec.sample_shape[0]})."
        )
    c, h, w = spec.sample_shape
    got = tuple(int(s) for s in X.shape[1:])
    if X.ndim == 4 and got == (h, w, c) and got != spec.sample_shape:
        X = X.transpose(0, 3, 1, 2)  # channels-last, as the fitted images may have been
    else:
        X = _channels_first(X, "channels_first")
    shape = tuple(int(s) for s in X.shape[1:])
    if shape != spec.sample_shape:
        raise ValueError(
            f"X has images of shape {shape} (as (C, H, W)) but TripletEmbedder was "
            f"fitted on {spec.describe()}; resize them to {spec.image_size[0]}x"
            f"{spec.image_size[1]} pixels with {spec.channels} channel(s)."
        )
    return X


def _validate_transform_files(files, spec: InputSpec):
    """Image files (paths, or a box table) to embed: every file and box checked."""
    if files is None:
        raise ValueError(
            f"TripletEmbedder was fitted on {spec.describe()}, but X holds no file paths; "
            "pass a list (or array, or Series) of image file paths, or a table with a 'path' "
            "column and crop boxes x_1, y_1, x_2, y_2."
        )
    if not spec.reads_files:
        raise ValueError(
            f"X holds image file paths but TripletEmbedder was fitted on {spec.describe()}; "
            "fit it on image files (a list of paths) to embed files, or pass arrays here."
        )
    paths = files.paths if isinstance(files, BoxTable) else files
    check_files(paths, "raise")  # every file needs its row of embeddings
    if isinstance(files, BoxTable):
        check_box_bounds(files)
    return files


def validate_transform(estimator, X, spec: InputSpec) -> np.ndarray:
    """Validate data to embed against the spec of the fitted data.

    Parameters
    ----------
    estimator : BaseEstimator
        The fitted estimator (scikit-learn checks feature names and counts
        against it; it is not modified).
    X : array-like
        Samples of the same kind as in ``fit``.
    spec : InputSpec
        The fitted spec.

    Returns
    -------
    numpy.ndarray or BoxTable
        float32 rows or ``(N, C, H, W)`` images, ready for the network, or
        image file paths (checked to exist), or a
        :class:`~sktriplet.inputs.boxes.BoxTable` (files and boxes checked).
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    files = as_box_table(X)
    if files is None:
        files = as_paths(X)
    if spec.reads_files or files is not None:
        # Files of either kind: a model fitted on crop boxes embeds whole
        # images too, and one fitted on whole images embeds crop boxes.
        return _validate_transform_files(files, spec)
    ndim = _ndim(X)
    if ndim is not None and ndim >= 3:
        return _validate_transform_images(X, spec)
    _check_numeric_columns(X)
    try:
        # NaN/inf are checked below in one vectorised pass (sklearn's check
        # costs ~3x as much; it still words the error).
        X = validate_data(
            estimator, X, reset=False, dtype=[np.float32, np.float64], ensure_all_finite=False
        )
        _check_finite(X)
    except ValueError as exc:
        _explain_non_numeric(exc)
        raise
    if spec.is_image:
        raise ValueError(
            f"TripletEmbedder was fitted on {spec.describe()} but X is 2-D with shape "
            f"{X.shape}; pass images of that shape."
        )
    _check_float32_range(X)
    return X.astype(np.float32, copy=False)


def encode_labels(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check class labels and encode them as integer codes.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels (any hashable values).

    Returns
    -------
    classes : numpy.ndarray
        The sorted unique labels.
    codes : numpy.ndarray of int64
        Each sample's index into ``classes``.

    Examples
    --------
    >>> from sktriplet.inputs.validation import encode_labels
    >>> encode_labels(["b", "a", "b"])
    (array(['a', 'b'], dtype='<U1'), array([1, 0, 1]))
    """
    y = np.asarray(y)
    kind = type_of_target(y, input_name="y", raise_unknown=True)
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"TripletEmbedder needs class labels, but y is {kind!r} (e.g. "
            "continuous values); pass one discrete class label per sample."
        )
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    if len(classes) < 2:
        raise ValueError(
            f"y has 1 class ({classes[0]!r}); triplet training needs at least "
            "2 classes so that every anchor has negatives."
        )
    if counts.max() < 2:
        raise ValueError(
            "every class in y has a single sample; at least one class needs 2 or "
            "more samples to form positive pairs."
        )
    return classes, codes.astype(np.int64)
