"""Pair verification: whether two samples are of the same identity.

:func:`pair_distances` measures each pair, :func:`verify_pairs` accepts the
pairs within a threshold (chosen by
:func:`~sktriplet.evaluation.neighbors.calibrate_pair_threshold`), and
:mod:`sktriplet.evaluation.metrics` scores the distances (TAR@FAR, ROC AUC,
EER).
"""

from __future__ import annotations

import numpy as np

from sktriplet.triplets.distances import check_distance

__all__ = ["pair_distances", "verify_pairs"]


def pair_distances(Z1, Z2, distance: str = "sqeuclidean") -> np.ndarray:
    """Distance between corresponding rows of two embedding arrays.

    Parameters
    ----------
    Z1, Z2 : array-like of shape (n_pairs, n_features)
        Embeddings of the first and second sample of each pair.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance (see :mod:`sktriplet.triplets.distances`).

    Returns
    -------
    ndarray of shape (n_pairs,), dtype float64
        ``distance(Z1[i], Z2[i])`` for each ``i``.

    Examples
    --------
    >>> from sktriplet.evaluation.neighbors import pair_distances
    >>> pair_distances([[0.0, 0.0], [1.0, 0.0]], [[3.0, 4.0], [0.0, 1.0]], "euclidean")
    array([5.        , 1.41421356])
    """
    check_distance(distance)
    a = np.asarray(Z1, dtype=np.float64)
    b = np.asarray(Z2, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"Z1 and Z2 must be 2-D arrays of the same shape; got {a.shape} and {b.shape}."
        )
    if distance == "cosine":
        na = np.maximum(np.linalg.norm(a, axis=1), 1e-12)
        nb = np.maximum(np.linalg.norm(b, axis=1), 1e-12)
        return np.maximum(1.0 - (a * b).sum(axis=1) / (na * nb), 0.0)
    sq = ((a - b) ** 2).sum(axis=1)
    return np.sqrt(sq) if distance == "euclidean" else sq


def verify_pairs(Z1, Z2, threshold: float, distance: str = "sqeuclidean") -> np.ndarray:
    """Decide "same identity" for each pair: distance at most ``threshold``.

    Parameters
    ----------
    Z1, Z2 : array-like of shape (n_pairs, n_features)
        Embeddings of the first and second sample of each pair.
    threshold : float
        Largest distance accepted as "same" (e.g. from
        :func:`calibrate_pair_threshold`).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance (see :mod:`sktriplet.triplets.distances`).

    Returns
    -------
    ndarray of bool, shape (n_pairs,)
        ``True`` where the pair is accepted as the same identity.

    Examples
    --------
    >>> from sktriplet.evaluation.neighbors import verify_pairs
    >>> verify_pairs([[0.0, 0.0], [1.0, 0.0]], [[0.1, 0.0], [0.0, 1.0]], threshold=0.5)
    array([ True, False])
    """
    return pair_distances(Z1, Z2, distance) <= threshold
