"""Choosing distance thresholds on labelled validation data.

:func:`calibrate_threshold` picks the open-set rejection threshold of
:class:`~sktriplet.evaluation.neighbors.OpenSetKNeighborsClassifier` (its
:meth:`~sktriplet.evaluation.neighbors.OpenSetKNeighborsClassifier.calibrate`
uses it), and :func:`calibrate_pair_threshold` the threshold of pair
verification (:func:`~sktriplet.evaluation.neighbors.verify_pairs`). Both
sweep every observed distance as a candidate "accept if distance <= t" and
pick by a target false accept rate, a target precision, or the best F1 or
accuracy. The vocabulary of the rates is in :mod:`sktriplet.evaluation.neighbors`.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

__all__ = ["calibrate_pair_threshold", "calibrate_threshold"]


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


def _pick(score: np.ndarray, feasible: np.ndarray) -> int:
    """Index of the highest ``score`` among ``feasible`` candidates, smallest first.

    Candidates are ordered by increasing threshold, so ``argmax`` (the first
    maximum) breaks ties towards the smaller threshold.
    """
    masked = np.where(feasible, score, -np.inf)
    return int(np.argmax(masked))


def _check_target(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}.")
    return float(value)


def calibrate_threshold(
    distances,
    correct,
    known,
    *,
    target_far: float | None = None,
    target_precision: float | None = None,
) -> dict[str, Any]:
    """Choose an open-set rejection threshold from validation queries.

    Each validation query has a *match distance* (to the gallery sample that
    labels it), a flag saying whether its class is enrolled (``known``) and
    one saying whether the match is the right class (``correct``; never true
    for unknown queries). A query is accepted when its match distance is at
    most the threshold. The threshold is one of the observed distances (or
    ``-inf``, accepting nothing), chosen as follows:

    * ``target_far``: the most correct accepts (highest ``recall``) among the
      thresholds whose false accept rate is at most ``target_far``;
    * ``target_precision``: the highest ``recall`` among the thresholds whose
      precision is at least ``target_precision`` (precision is taken as 1
      when nothing is accepted);
    * neither: the highest F1.

    Ties go to the smallest threshold, which accepts the fewest errors.

    Parameters
    ----------
    distances : array-like of shape (n_queries,)
        Match distance of each query.
    correct : array-like of bool, shape (n_queries,)
        Whether the match has the query's class.
    known : array-like of bool, shape (n_queries,)
        Whether the query's class is enrolled.
    target_far : float, default=None
        Highest acceptable false accept rate, in ``[0, 1]``. Needs unknown
        queries.
    target_precision : float, default=None
        Lowest acceptable precision, in ``[0, 1]``.

    Returns
    -------
    dict
        ``"threshold"``, ``"method"`` (``"far"``, ``"precision"`` or
        ``"f1"``), ``"target"``, the rates achieved on these queries
        (``"far"``, ``"precision"``, ``"recall"``, ``"f1"``,
        ``"misidentification_rate"`` (accepted but wrong known queries /
        known queries), ``"accuracy"`` (right decisions: correct accepts
        plus rejected unknowns, over all queries)), ``"n_known"``,
        ``"n_unknown"`` and ``"curve"``, a dict of arrays (``"threshold"``,
        ``"far"``, ``"precision"``, ``"recall"``, ``"f1"``) over all
        candidate thresholds.

    Raises
    ------
    ValueError
        If the inputs differ in length, are empty or not finite, a query is
        correct but not known, both targets are given, a target is outside
        ``[0, 1]``, or ``target_far`` is given without unknown queries.

    See Also
    --------
    OpenSetKNeighborsClassifier.calibrate : The same rule on a classifier.

    Examples
    --------
    >>> from sktriplet.evaluation.neighbors import calibrate_threshold
    >>> d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    >>> correct = [True, True, False, True, False, False]
    >>> known = [True, True, False, True, False, False]
    >>> calibrate_threshold(d, correct, known, target_far=0.0)["threshold"]
    0.2
    >>> res = calibrate_threshold(d, correct, known, target_far=1 / 3)
    >>> res["threshold"], res["far"], res["recall"]
    (0.4, 0.333..., 1.0)
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    known = np.asarray(known, dtype=bool).ravel()
    if not len(d) == len(correct) == len(known):
        raise ValueError(
            f"distances, correct and known must have the same length; got "
            f"{len(d)}, {len(correct)} and {len(known)}."
        )
    if len(d) == 0:
        raise ValueError("no validation queries: distances is empty.")
    if not np.isfinite(d).all():
        raise ValueError("distances contains NaN or infinite values.")
    if np.any(correct & ~known):
        raise ValueError("a query marked correct must also be marked known.")
    target_far = _check_target("target_far", target_far)
    target_precision = _check_target("target_precision", target_precision)
    if target_far is not None and target_precision is not None:
        raise ValueError("give at most one of target_far and target_precision.")
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    if target_far is not None and n_unknown == 0:
        raise ValueError(
            "target_far needs validation queries of classes that are not enrolled "
            "(unknown queries); all of them are known."
        )

    t, tp, acc, unk = _sweep(d, correct, np.ones_like(correct), ~known)
    wrong = acc - tp - unk  # accepted known queries with the wrong class
    with np.errstate(invalid="ignore", divide="ignore"):
        far = unk / n_unknown if n_unknown else np.zeros(len(t))
        precision = np.where(acc > 0, tp / np.maximum(acc, 1), 1.0)
        recall = tp / n_known if n_known else np.zeros(len(t))
        f1 = 2.0 * tp / np.maximum(acc + n_known, 1)
    if target_far is not None:
        method, target = "far", target_far
        # Rates are compared with a little slack so that e.g. 0.1 * 30 / 30
        # counts as 0.1.
        i = _pick(tp, far <= target_far + 1e-12)
    elif target_precision is not None:
        method, target = "precision", target_precision
        i = _pick(tp, precision >= target_precision - 1e-12)
    else:
        method, target = "f1", None
        i = _pick(f1, np.ones(len(t), dtype=bool))
    if tp[i] == 0 and n_known:
        warnings.warn(
            f"the calibrated threshold ({method}={target}) accepts no known query "
            "correctly; the target cannot be met with any useful threshold.",
            RuntimeWarning,
            stacklevel=2,
        )
    n = len(d)
    return {
        "threshold": float(t[i]),
        "method": method,
        "target": target,
        "far": float(far[i]),
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "f1": float(f1[i]),
        "misidentification_rate": float(wrong[i] / n_known) if n_known else 0.0,
        "accuracy": float((tp[i] + (n_unknown - unk[i])) / n),
        "n_known": n_known,
        "n_unknown": n_unknown,
        "curve": {
            "threshold": t,
            "far": far,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        },
    }


def calibrate_pair_threshold(
    distances, is_same, *, target_far: float | None = None
) -> dict[str, float]:
    """Choose the verification threshold of "same if distance <= t".

    Parameters
    ----------
    distances : array-like of shape (n_pairs,)
        Distance of each validation pair.
    is_same : array-like of bool, shape (n_pairs,)
        Whether each pair is of the same identity. Both kinds must occur.
    target_far : float, default=None
        Highest acceptable false accept rate (accepted "different" pairs /
        "different" pairs). The threshold is the one of highest true accept
        rate within it, the smallest such; its TAR equals
        :func:`sktriplet.evaluation.metrics.tar_at_far`. ``None``: the threshold of
        highest accuracy.

    Returns
    -------
    dict
        ``"threshold"`` (an observed distance, or ``-inf``), and the rates
        achieved on the validation pairs: ``"far"``, ``"tar"``,
        ``"accuracy"``.

    Raises
    ------
    ValueError
        If the inputs are malformed or one kind of pair is missing.

    Examples
    --------
    >>> from sktriplet.evaluation.neighbors import calibrate_pair_threshold
    >>> d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    >>> same = [True, True, False, True, False, False]
    >>> calibrate_pair_threshold(d, same, target_far=0.0)
    {'threshold': 0.2, 'far': 0.0, 'tar': 0.666..., 'accuracy': 0.833...}
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    same = np.asarray(is_same).ravel()
    if same.dtype != bool and not np.isin(same, (0, 1)).all():
        raise ValueError("is_same must be boolean (or 0/1).")
    same = same.astype(bool)
    if len(d) != len(same):
        raise ValueError(f"distances has {len(d)} entries but is_same has {len(same)}.")
    if not np.isfinite(d).all():
        raise ValueError("distances contains NaN or infinite values.")
    n_same, n_diff = int(same.sum()), int((~same).sum())
    if n_same == 0 or n_diff == 0:
        raise ValueError("is_same must contain both same and different pairs.")
    target_far = _check_target("target_far", target_far)
    t, ta, fa = _sweep(d, same, ~same)
    tar, far = ta / n_same, fa / n_diff
    accuracy = (ta + n_diff - fa) / len(d)
    if target_far is None:
        i = _pick(accuracy, np.ones(len(t), dtype=bool))
    else:
        i = _pick(ta, far <= target_far + 1e-12)
    return {
        "threshold": float(t[i]),
        "far": float(far[i]),
        "tar": float(tar[i]),
        "accuracy": float(accuracy[i]),
    }
