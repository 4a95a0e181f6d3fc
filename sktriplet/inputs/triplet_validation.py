"""Validate the input of triplet mode (``TripletEmbedder(triplets=True)``).

Triplet mode takes no labels. ``fit`` receives either triplet rows ``T``
of shape ``(n_triplets, 3, *sample_shape)`` or index triplets ``I`` of shape
``(n_triplets, 3)`` into ``samples``. Either way it comes down to validated
samples (rows, images or image file paths, checked as any ``X`` is, by
:func:`sktriplet.inputs.validation.validate_fit`), index triplets into them,
and the :class:`~sktriplet.inputs.spec.InputSpec` of the samples: the spec a
triplet-trained model transforms single samples with. Triplet rows are
turned into index triplets over their distinct rows
(:func:`~sktriplet.inputs.triplet_batches.dedupe_triplet_rows`). Like the rest of
validation, nothing here modifies the estimator or the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sktriplet.inputs.spec import InputSpec
from sktriplet.inputs.triplet_batches import (
    check_triplet_indices,
    check_triplet_rows,
    dedupe_triplet_rows,
    flatten_triplet_rows,
)
from sktriplet.inputs.validation import validate_fit

__all__ = [
    "take_samples",
    "triplet_score_input",
    "validate_fit_triplets",
]


def _refuse_labels(y: Any, method: str) -> None:
    if y is not None:
        raise ValueError(
            f"triplets=True learns from triplets alone, but {method} got y (labels) "
            f"too; call {method}(T) with triplet rows or {method}(I) with index triplets "
            "and y=None, or set triplets=False to train on labelled samples."
        )


def _refuse_path_rows(X: Any) -> None:
    arr = X if isinstance(X, np.ndarray) else None
    if arr is None and isinstance(X, (list, tuple)):
        arr = np.asarray(X, dtype=object)
    if arr is not None and arr.ndim == 2 and arr.shape[1:] == (3,) and arr.dtype.kind in "OUS":
        raise ValueError(
            "the triplets hold strings (file paths?); triplets of image files are given as "
            "index triplets (n_triplets, 3) into the paths: TripletEmbedder(triplets=True, "
            "samples=paths).fit(I)."
        )


def validate_samples(estimator, samples: Any, *, what: str = "samples", **options: Any):
    """Validate samples (no labels) as ``fit`` validates ``X``.

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator being fitted (not modified).
    samples : array-like
        Rows, images or image file paths.
    what : str, default="samples"
        What to call them in error messages.
    **options
        ``image_layout``, ``image_size`` and ``channels`` of
        :func:`~sktriplet.inputs.validation.validate_fit`. Missing files are
        always an error: index triplets need every sample.

    Returns
    -------
    samples : numpy.ndarray
        As :func:`~sktriplet.inputs.validation.validate_fit` returns ``X``.
    spec : InputSpec
        What one sample is.
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    try:
        n = len(samples)
    except TypeError:
        raise ValueError(
            f"{what} must be an array, a DataFrame or a list of image file paths; got "
            f"{type(samples).__name__}."
        ) from None
    try:
        X, _, spec = validate_fit(estimator, samples, np.zeros(n), on_error="raise", **options)
    except ValueError as exc:
        raise ValueError(f"{what} (the samples the triplets are made of): {exc}") from exc
    return X, spec


def validate_fit_triplets(
    estimator, X: Any, y: Any, samples: Any, **options: Any
) -> tuple[np.ndarray, np.ndarray, InputSpec]:
    """Validate the training input of triplet mode.

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator being fitted (not modified).
    X : array-like
        Triplet rows ``(n_triplets, 3, *sample_shape)`` when ``samples`` is
        ``None``, else index triplets ``(n_triplets, 3)`` into ``samples``.
    y : None
        Refused when given: triplets carry no labels.
    samples : array-like or None
        What index triplets point into (rows, images or image file paths).
    **options
        ``image_layout``, ``image_size`` and ``channels`` (see
        :func:`validate_samples`).

    Returns
    -------
    samples : numpy.ndarray
        Validated samples: for index triplets all of ``samples``; for
        triplet rows the distinct rows.
    triplets : numpy.ndarray of shape (n_triplets, 3), int64
        Index triplets into the returned samples.
    spec : InputSpec
        What one sample is.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet import TripletEmbedder
    >>> from sktriplet.inputs.triplet_validation import validate_fit_triplets
    >>> T = np.array([[[0.0, 1], [0, 2], [5, 5]], [[0, 2], [0, 1], [6, 6]]])
    >>> S, I, spec = validate_fit_triplets(TripletEmbedder(), T, None, None)
    >>> S.tolist(), I.tolist(), spec.kind
    ([[0.0, 1.0], [0.0, 2.0], [5.0, 5.0], [6.0, 6.0]], [[0, 1, 2], [1, 0, 3]], 'rows')
    """
    _refuse_labels(y, "fit")
    if samples is not None:
        S, spec = validate_samples(estimator, samples, **options)
        return S, check_triplet_indices(X, len(S)), spec
    _refuse_path_rows(X)
    flat, index = flatten_triplet_rows(check_triplet_rows(X))
    S, spec = validate_samples(estimator, flat, what="the triplet rows' samples", **options)
    S, index = dedupe_triplet_rows(S, index)
    return S, index, spec


def take_samples(samples: Any, ids: np.ndarray) -> Any:
    """The samples ``ids`` of an array, tensor, DataFrame, Series or list.

    Parameters
    ----------
    samples : array-like
        Samples indexed along their first axis (by position).
    ids : numpy.ndarray of int
        Positions.

    Returns
    -------
    array-like
        The same kind of container (a list for a list).

    Examples
    --------
    >>> from sktriplet.inputs.triplet_validation import take_samples
    >>> take_samples(["a.png", "b.png", "c.png"], [2, 0])
    ['c.png', 'a.png']
    """
    ids = np.asarray(ids, dtype=np.int64)
    if hasattr(samples, "iloc"):
        return samples.iloc[ids]
    if isinstance(samples, torch.Tensor):
        return samples[torch.as_tensor(ids, device=samples.device)]
    if isinstance(samples, (list, tuple)):
        return [samples[i] for i in ids.tolist()]
    return np.asarray(samples)[ids]


def triplet_score_input(X: Any, y: Any, samples: Any) -> tuple[Any, np.ndarray]:
    """Samples to embed and index triplets into them, for ``score`` in triplet mode.

    Parameters
    ----------
    X : array-like
        Triplet rows ``(n_triplets, 3, *sample_shape)`` (with or without
        ``samples``: e.g. triplets of new samples), or index triplets
        ``(n_triplets, 3)`` into ``samples``.
    y : None
        Refused when given.
    samples : array-like or None
        The estimator's ``samples``.

    Returns
    -------
    to_embed : array-like
        The rows of the triplets, anchor, positive and negative of each in
        turn; or the samples the index triplets touch, each once.
    triplets : numpy.ndarray of shape (n_triplets, 3), int64
        Index triplets into ``to_embed``.
    """
    _refuse_labels(y, "score")
    if samples is None or np.ndim(X) >= 3:
        arr = np.asarray(X)
        if arr.ndim == 2 and arr.shape[1:] == (3,) and arr.dtype.kind in "iu":
            raise ValueError(
                "score got index triplets (n_triplets, 3), but samples is None (a loaded "
                "model keeps no samples); set_params(samples=X) with the samples they "
                "index, or pass triplet rows (n_triplets, 3, *sample_shape)."
            )
        _refuse_path_rows(X)
        return flatten_triplet_rows(check_triplet_rows(X))
    try:
        n = len(samples)
    except TypeError:
        raise ValueError(f"samples has no length ({type(samples).__name__}).") from None
    index = check_triplet_indices(X, n)
    ids, local = np.unique(index, return_inverse=True)
    return take_samples(samples, ids), local.reshape(index.shape).astype(np.int64)

