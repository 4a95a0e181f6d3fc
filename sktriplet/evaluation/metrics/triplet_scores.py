"""Triplet accuracy: how often an embedding agrees with triplet judgements.

A triplet ``(a, p, n)`` says "``a`` is more like ``p`` than like ``n``"; the
embedding agrees when ``d(a, p) < d(a, n)`` (strictly: a tie is a miss). This
is the score of an embedding learnt from triplets, where no class labels
exist for retrieval metrics. Plain NumPy / PyTorch; no scikit-learn.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from sktriplet.triplets.distances import paired_distances

__all__ = ["indexed_triplet_accuracy", "triplet_accuracy"]


def _as_float64(x, name: str) -> torch.Tensor:
    arr = (
        x.detach().cpu().double()
        if isinstance(x, torch.Tensor)
        else torch.as_tensor(np.asarray(x, dtype=np.float64))
    )
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_triplets, n_components); got shape {tuple(arr.shape)}."
        )
    return arr


def triplet_accuracy(
    anchor: npt.ArrayLike | torch.Tensor,
    positive: npt.ArrayLike | torch.Tensor,
    negative: npt.ArrayLike | torch.Tensor,
    *,
    distance: str = "sqeuclidean",
) -> float:
    """Fraction of triplets whose anchor is nearer its positive than its negative.

    Parameters
    ----------
    anchor, positive, negative : array-like or torch.Tensor of shape (n_triplets, n_components)
        Embeddings of the three members of each triplet.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings (``sqeuclidean`` and ``euclidean`` give
        the same accuracy). Computed in float64 from differences.

    Returns
    -------
    float
        ``mean(d(a_i, p_i) < d(a_i, n_i))``, in ``[0, 1]``.

    Raises
    ------
    ValueError
        If the shapes differ or there is no triplet.

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import triplet_accuracy
    >>> triplet_accuracy([[0.0], [0.0]], [[1.0], [3.0]], [[2.0], [2.0]])
    0.5
    """
    a = _as_float64(anchor, "anchor")
    p = _as_float64(positive, "positive")
    n = _as_float64(negative, "negative")
    if not a.shape == p.shape == n.shape:
        raise ValueError(
            "anchor, positive and negative must have the same shape; got "
            f"{tuple(a.shape)}, {tuple(p.shape)} and {tuple(n.shape)}."
        )
    if len(a) == 0:
        raise ValueError("triplet accuracy needs at least one triplet; got 0.")
    d_ap = paired_distances(a, p, distance=distance)
    d_an = paired_distances(a, n, distance=distance)
    return float((d_ap < d_an).double().mean())


def indexed_triplet_accuracy(
    embeddings: npt.ArrayLike | torch.Tensor,
    triplets: npt.ArrayLike | torch.Tensor,
    *,
    distance: str = "sqeuclidean",
) -> float:
    """:func:`triplet_accuracy` of index triplets into one set of embeddings.

    Parameters
    ----------
    embeddings : array-like or torch.Tensor of shape (n_samples, n_components)
        One embedding per sample.
    triplets : array-like of shape (n_triplets, 3)
        Rows ``(anchor, positive, negative)`` of indices into ``embeddings``.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings.

    Returns
    -------
    float

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import indexed_triplet_accuracy
    >>> indexed_triplet_accuracy([[0.0], [1.0], [3.0]], [[0, 1, 2], [2, 0, 1]])
    0.5
    """
    from sktriplet.inputs.triplet_batches import check_triplet_indices

    emb = _as_float64(embeddings, "embeddings")
    idx = torch.from_numpy(check_triplet_indices(triplets, len(emb)))
    return triplet_accuracy(emb[idx[:, 0]], emb[idx[:, 1]], emb[idx[:, 2]], distance=distance)
