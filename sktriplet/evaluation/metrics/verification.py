"""Verification metrics: k-fold accuracy, ROC AUC, equal error rate and TAR@FAR.

Each scores a distance per pair of samples against whether the pair is
"same" or "different" (face verification), through the rule "accept if
distance <= t": :func:`verification_accuracy` with the threshold chosen on
other folds (the protocol of the face benchmarks), the others through the
ROC curve of every threshold. Plain NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["equal_error_rate", "tar_at_far", "verification_accuracy", "verification_scores"]


def _check_pairs(distances: npt.ArrayLike, is_same: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64)
    same = np.asarray(is_same)
    if d.ndim != 1 or same.ndim != 1:
        raise ValueError("distances and is_same must be 1-D.")
    if d.shape != same.shape:
        raise ValueError(f"distances has {d.shape[0]} entries but is_same has {same.shape[0]}.")
    if not np.isfinite(d).all():
        raise ValueError("distances contains NaN or infinite values.")
    if same.dtype != bool:
        if not np.isin(same, (0, 1)).all():
            raise ValueError("is_same must be boolean (or 0/1).")
        same = same.astype(bool)
    if same.all() or not same.any():
        raise ValueError("is_same must contain both same and different pairs.")
    return d, same


def _sweep(distances: np.ndarray, *counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cumulative counts of the rule "accept if distance <= t" for every t.

    Returns the candidate thresholds (``-inf``, accepting nothing, then each
    distinct distance ascending) and, for each array in ``counts``, how many
    of its entries are accepted at each candidate.
    """
    order = np.argsort(distances, kind="stable")
    d = distances[order]
    last = np.append(d[1:] != d[:-1], True)
    thresholds = np.append(-np.inf, d[last])
    out = [np.append(0, np.cumsum(c[order])[last]) for c in counts]
    return (thresholds, *out)


def _roc(distances: npt.ArrayLike, is_same: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return the false and true accept rates of "accept if distance <= t".

    One point per distinct distance t, plus the origin (accept nothing).
    """
    d, same = _check_pairs(distances, is_same)
    _, tp, fp = _sweep(d, same, ~same)
    return fp / fp[-1], tp / tp[-1]


def _check_far(far: float) -> float:
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1]; got {far}.")
    return float(far)


def _tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    return float(tpr[fpr <= _check_far(far)].max())


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    # fpr + tpr strictly increases from 0 to 2 along the curve; the EER is
    # where it crosses 1, i.e. where FAR = FRR = 1 - TAR.
    return float(np.interp(1.0, fpr + tpr, fpr))


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def tar_at_far(distances: npt.ArrayLike, is_same: npt.ArrayLike, far: float = 1e-3) -> float:
    """Compute the true accept rate at a given false accept rate.

    Parameters
    ----------
    distances : array-like of shape (n_pairs,)
        Distance between the two samples of each pair; smaller means more
        alike.
    is_same : array-like of shape (n_pairs,)
        Whether each pair is of the same identity (bool or 0/1). Both kinds
        of pair must be present.
    far : float, default=1e-3
        Highest acceptable false accept rate, in ``[0, 1]``.

    Returns
    -------
    float
        The largest fraction of "same" pairs accepted by a threshold rule
        "accept if distance <= t" that accepts at most a fraction ``far`` of
        the "different" pairs.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``distances`` is not
        finite, ``is_same`` is not boolean or lacks one kind of pair, or
        ``far`` is outside ``[0, 1]``.

    See Also
    --------
    equal_error_rate : Where false accept and false reject rates meet.
    verification_scores : AUC, EER and TAR@FAR together.

    Notes
    -----
    No interpolation: only thresholds actually realisable on the data count
    (pairs at equal distance are accepted or rejected together), so the
    result is the highest point of the ROC curve with FAR <= ``far``.

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import tar_at_far
    >>> d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    >>> same = [True, True, False, True, False, False]
    >>> tar_at_far(d, same, far=0.0)
    0.6666666666666666
    >>> tar_at_far(d, same, far=0.5)
    1.0
    """
    fpr, tpr = _roc(distances, is_same)
    return _tar_at_far(fpr, tpr, far)


def equal_error_rate(distances: npt.ArrayLike, is_same: npt.ArrayLike) -> float:
    """Compute the equal error rate, where false accepts and rejects balance.

    Parameters
    ----------
    distances : array-like of shape (n_pairs,)
        Distance between the two samples of each pair; smaller means more
        alike.
    is_same : array-like of shape (n_pairs,)
        Whether each pair is of the same identity (bool or 0/1). Both kinds
        of pair must be present.

    Returns
    -------
    float
        The EER, in ``[0, 1]``; lower is better.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``distances`` is not
        finite, or ``is_same`` is not boolean or lacks one kind of pair.

    See Also
    --------
    tar_at_far : True accept rate at a fixed false accept rate.
    verification_scores : AUC, EER and TAR@FAR together.

    Notes
    -----
    The ROC curve of the rule "accept if distance <= t" is taken as the
    polyline through its realisable points; the EER is the false accept
    rate where that polyline crosses FAR = FRR (``FAR + TAR = 1``), found by
    linear interpolation between the two points that straddle it.

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import equal_error_rate
    >>> equal_error_rate([0.1, 0.2, 0.3, 0.4], [True, True, False, False])
    0.0
    >>> equal_error_rate([0.1, 0.2, 0.3, 0.4], [True, False, True, False])
    0.5
    """
    return _eer(*_roc(distances, is_same))


def verification_scores(
    distances: npt.ArrayLike,
    is_same: npt.ArrayLike,
    *,
    far: Sequence[float] = (1e-3, 1e-2, 1e-1),
) -> dict[str, float]:
    """Compute ROC AUC, equal error rate and TAR@FAR of pair distances.

    Parameters
    ----------
    distances : array-like of shape (n_pairs,)
        Distance between the two samples of each pair; smaller means more
        alike.
    is_same : array-like of shape (n_pairs,)
        Whether each pair is of the same identity (bool or 0/1). Both kinds
        of pair must be present.
    far : sequence of float, default=(1e-3, 1e-2, 1e-1)
        False accept rates at which to report the true accept rate.

    Returns
    -------
    dict
        ``"roc_auc"`` (the probability that a random "same" pair is closer
        than a random "different" pair, ties counting one half), ``"eer"``
        and ``f"tar_at_far_{far:g}"`` for each ``far``.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``distances`` is not
        finite, ``is_same`` is not boolean or lacks one kind of pair, or a
        ``far`` is outside ``[0, 1]``.

    See Also
    --------
    tar_at_far, equal_error_rate
        The individual metrics, whose definitions apply here unchanged.

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import verification_scores
    >>> d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    >>> same = [True, True, False, True, False, False]
    >>> verification_scores(d, same, far=(0.0, 0.5))
    ... # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
    {'roc_auc': 0.888..., 'eer': 0.333..., 'tar_at_far_0': 0.666...,
     'tar_at_far_0.5': 1.0}
    """
    fpr, tpr = _roc(distances, is_same)
    scores = {"roc_auc": _auc(fpr, tpr), "eer": _eer(fpr, tpr)}
    for rate in far:
        scores[f"tar_at_far_{rate:g}"] = _tar_at_far(fpr, tpr, rate)
    return scores


def _folds(n: int, n_folds: int, shuffle: bool, random_state) -> list[np.ndarray]:
    """Pair indices of each fold: consecutive blocks (as ``KFold``), optionally shuffled first."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer of at least 2; got {n_folds!r}.")
    if n_folds > n:
        raise ValueError(f"n_folds={n_folds} is more than the {n} pairs; use at most {n} folds.")
    order = np.arange(n)
    if shuffle:
        rng = (
            random_state
            if isinstance(random_state, np.random.RandomState)
            else np.random.RandomState(random_state)
        )
        order = rng.permutation(n)
    elif random_state is not None:
        raise ValueError(
            "random_state is only used with shuffle=True; set shuffle=True or drop it."
        )
    return np.array_split(order, n_folds)


def _best_accuracy_threshold(d: np.ndarray, same: np.ndarray) -> float:
    """The threshold of highest accuracy on these pairs, the smallest on ties."""
    t, ta, fa = _sweep(d, same, ~same)
    right = ta + (fa[-1] - fa)  # accepted "same" + rejected "different" pairs
    return float(t[int(np.argmax(right))])


def verification_accuracy(
    distances: npt.ArrayLike,
    is_same: npt.ArrayLike,
    n_folds: int = 10,
    *,
    shuffle: bool = False,
    random_state: int | np.random.RandomState | None = None,
    return_folds: bool = False,
):
    """Verification accuracy with the threshold chosen on the other folds (LFW protocol).

    The pairs are split into ``n_folds`` folds; for each fold, the threshold
    of the rule "same if distance <= t" that is most accurate on the other
    ``n_folds - 1`` folds is applied to it. This is how LFW, CFP, AgeDB and
    the other face-verification benchmarks report accuracy (10 folds): no
    pair is judged with a threshold it helped choose.

    Parameters
    ----------
    distances : array-like of shape (n_pairs,)
        Distance between the two samples of each pair; smaller means more
        alike.
    is_same : array-like of shape (n_pairs,)
        Whether each pair is of the same identity (bool or 0/1). Both kinds
        of pair must be present (a fold, or the folds beside it, may lack
        one).
    n_folds : int, default=10
        Number of folds, at least 2 and at most ``n_pairs``.
    shuffle : bool, default=False
        Shuffle the pairs before splitting. By default the folds are
        consecutive blocks in the order given (the first ``n_pairs %
        n_folds`` folds one pair larger), as scikit-learn's ``KFold`` makes
        them: LFW's ``pairs.txt`` lists its ten official folds one after the
        other, so pairs read in file order get exactly those folds.
    random_state : int, RandomState or None, default=None
        Seed of the shuffle (``shuffle=True`` only); the same folds as
        ``KFold(n_folds, shuffle=True, random_state=random_state)``.
    return_folds : bool, default=False
        Also return the accuracy and threshold of each fold.

    Returns
    -------
    mean : float
        Mean accuracy over the folds.
    std : float
        Standard deviation of the fold accuracies (``numpy.std``, ``ddof=0``,
        as the face-recognition code bases report it; LFW's README asks for
        the standard error, ``std * sqrt(n_folds / (n_folds - 1)) /
        sqrt(n_folds)``).
    folds : dict
        Only with ``return_folds``: ``"accuracy"`` and ``"threshold"``,
        arrays of shape ``(n_folds,)``, and ``"indices"``, the pairs of each
        fold.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``distances`` is not
        finite, ``is_same`` is not boolean or lacks one kind of pair,
        ``n_folds`` is not in ``[2, n_pairs]``, or ``random_state`` is given
        without ``shuffle``.

    See Also
    --------
    tar_at_far : True accept rate at a fixed false accept rate, beside it.
    sktriplet.evaluation.neighbors.calibrate_pair_threshold : One threshold
        for all pairs (for serving).

    Notes
    -----
    A threshold is one of the distances of the training folds (or
    ``-inf``, rejecting every pair); among equally accurate ones the
    smallest is taken, the one that accepts the fewest pairs.

    Examples
    --------
    >>> from sktriplet.evaluation.metrics import verification_accuracy
    >>> d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    >>> same = [True, True, False, True, False, True, False, False]
    >>> verification_accuracy(d, same, n_folds=4)
    (0.5, 0.353...)

    The first fold's two "same" pairs are judged by a threshold chosen on
    the other six pairs, where rejecting everything is as accurate as any
    threshold (4 of 6) and the smallest is kept:

    >>> mean, std, folds = verification_accuracy(d, same, n_folds=4, return_folds=True)
    >>> folds["threshold"], folds["accuracy"]
    (array([-inf,  0.2,  0.2,  0.2]), array([0. , 0.5, 0.5, 1. ]))
    """
    d, same = _check_pairs(distances, is_same)
    folds = _folds(len(d), n_folds, shuffle, random_state)
    accuracy, thresholds = np.empty(len(folds)), np.empty(len(folds))
    for i, test in enumerate(folds):
        train = np.ones(len(d), dtype=bool)
        train[test] = False
        thresholds[i] = _best_accuracy_threshold(d[train], same[train])
        accuracy[i] = np.mean((d[test] <= thresholds[i]) == same[test])
    mean, std = float(accuracy.mean()), float(accuracy.std())
    if return_folds:
        return mean, std, {"accuracy": accuracy, "threshold": thresholds, "indices": folds}
    return mean, std
