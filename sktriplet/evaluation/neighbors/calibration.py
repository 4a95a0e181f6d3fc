"""Choosing distance thresholds on labelled validation data.

:func:`calibrate_threshold` picks the open-set rejection threshold of
:class:`~sktriplet.evaluation.neighbors.OpenSetKNeighborsClassifier` (its
:meth:`~sktriplet.evaluation.neighbors.OpenSetKNeighborsClassifier.calibrate`
uses it), and :func:`calibrate_pair_threshold` the threshold of pair
verification (:func:`~sktriplet.evaluation.neighbors.verify_pairs`). Both
sweep every observed distance as a candidate "accept if distance <= t" and
pick by a target false accept rate, a target precision, or the best F1 or
accuracy. The vocabulary of the rates is in :mod:`sktriplet.evaluation.neighbors`.

A target false accept rate is a promise about strangers: how often one is
taken for somebody enrolled. By default (``far_rule="bound"``) it is held by
an upper confidence bound of the rate over the stranger *classes*
(:func:`~sktriplet.evaluation.neighbors.stranger_far`), not by the rate
measured on the validation queries, and :class:`FewStrangerClassesWarning`
says when too few stranger classes were seen to support the target.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from sktriplet.evaluation.metrics.verification import _sweep
from sktriplet.evaluation.neighbors.far_bound import _check_confidence, stranger_far

__all__ = [
    "FAR_RULES",
    "FewStrangerClassesWarning",
    "calibrate_pair_threshold",
    "calibrate_threshold",
    "stranger_classes_needed",
]

#: Values of ``far_rule``: hold a target FAR by its upper confidence bound
#: over stranger classes, or by the rate measured on the validation queries.
FAR_RULES: tuple[str, ...] = ("bound", "empirical")

#: Names of the kinds of stranger in ``calibration_["strangers"]``.
UNKNOWN, LEFT_OUT = "unknown", "left_out"


class FewStrangerClassesWarning(UserWarning):
    """The calibration saw too few strangers to support its target FAR.

    With ``G`` stranger classes, the next stranger class is unlike all of
    them (ranks beyond every one) with probability ``1 / (G + 1)``, so no
    calibration on them can promise a false accept rate below that for
    strangers of new kinds. Calibrate with queries of more classes that are
    not enrolled (each labelled with its own class), or enrol more classes
    (each is left out in turn). Also issued when the stranger *queries* are
    too few for any threshold to show the target (the threshold then
    accepts none of them).
    """


def stranger_classes_needed(target_far: float) -> float:
    """The fewest stranger classes that support ``target_far``: ``1 / target_far - 1``.

    Parameters
    ----------
    target_far : float
        The target false accept rate, in ``[0, 1]``.

    Returns
    -------
    float
        ``G`` such that ``1 / (G + 1) <= target_far`` (``inf`` for 0), rounded up.

    Examples
    --------
    >>> from sktriplet.evaluation.neighbors import stranger_classes_needed
    >>> stranger_classes_needed(0.05), stranger_classes_needed(0.1)
    (19, 9)
    """
    if target_far <= 0:
        return math.inf
    return max(0, math.ceil(1.0 / target_far - 1.0 - 1e-9))


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


def _check_queries(distances, correct, known) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    return d, correct, known


def _strangers(d, known, groups, left_out) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The stranger queries of each kind: ``{name: (distances, classes)}``."""
    out = {}
    if (~known).any():
        if groups is None:
            classes = np.arange(int((~known).sum()))  # each query a class of its own
        else:
            groups = np.asarray(groups).ravel()
            if len(groups) != len(d):
                raise ValueError(f"distances has {len(d)} entries but groups has {len(groups)}.")
            classes = groups[~known]
        out[UNKNOWN] = (d[~known], classes)
    if left_out is not None:
        lo_d, lo_groups = (np.asarray(a).ravel() for a in left_out)
        if len(lo_d) != len(lo_groups):
            raise ValueError(
                f"left_out holds {len(lo_d)} distances but {len(lo_groups)} classes."
            )
        if np.isnan(lo_d.astype(np.float64)).any():
            raise ValueError("left_out distances contain NaN.")
        if len(lo_d):
            out[LEFT_OUT] = (lo_d.astype(np.float64), lo_groups)
    return out


def _accepted(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of ``values`` are at most each threshold."""
    return np.searchsorted(np.sort(values), thresholds, side="right")


def _rates(d, correct, known, t) -> dict[str, np.ndarray]:
    """Counts and rates of the validation queries at every threshold ``t``."""
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    tp, acc, unk = _accepted(d[correct], t), _accepted(d, t), _accepted(d[~known], t)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "tp": tp,
            "acc": acc,
            "unk": unk,
            "far": unk / n_unknown if n_unknown else np.zeros(len(t)),
            "precision": np.where(acc > 0, tp / np.maximum(acc, 1), 1.0),
            "recall": tp / n_known if n_known else np.zeros(len(t)),
            "f1": 2.0 * tp / np.maximum(acc + n_known, 1),
        }


def _far_summary(bounds: Mapping[str, dict], i: int, confidence: float) -> dict[str, Any]:
    """The stranger FARs at candidate ``i``: per kind, and for the kind that binds."""
    kinds = {
        name: {
            "far": float(b["far"][i]),
            "far_interval": (float(b["lower"][i]), float(b["upper"][i])),
            "n_classes": b["n_classes"],
            "n_queries": b["n_queries"],
        }
        for name, b in bounds.items()
    }
    out: dict[str, Any] = {"confidence": confidence, "strangers": kinds}
    if kinds:
        worst = max(kinds.values(), key=lambda k: k["far_interval"][1])
        out["expected_far"] = worst["far"]
        out["far_interval"] = worst["far_interval"]
        out["n_stranger_classes"] = sum(k["n_classes"] for k in kinds.values())
    else:
        out["expected_far"], out["far_interval"], out["n_stranger_classes"] = None, None, 0
    return out


def _support_messages(summary: dict, target_far: float, floor: float) -> list[str]:
    """Why the strangers cannot support ``target_far``: too few classes, too few queries."""
    needed = stranger_classes_needed(target_far)
    kinds = summary["strangers"]
    n = summary["n_stranger_classes"]
    out = []
    if n < needed:
        seen = ", ".join(
            f"{k['n_classes']} "
            f"{'not enrolled' if name == UNKNOWN else 'enrolled, left out in turn'}"
            for name, k in kinds.items()
        )
        out.append(
            f"the calibration saw {n} stranger classes ({seen}); the next class of stranger "
            f"is unlike all of them with probability 1/(G+1) = {1 / (n + 1):.3f}, more than "
            f"target_far={target_far:g}, so the false accept rate on strangers of new kinds "
            f"may exceed the target. Calibrate with queries of at least {needed} classes "
            "that are not enrolled (each labelled with its own class), or enrol more classes."
        )
    if floor > target_far + 1e-12:
        confidence = summary["confidence"]
        queries = math.ceil(math.log(1 - confidence) / math.log(1 - target_far))
        counts = ", ".join(f"{k['n_queries']} {name}" for name, k in kinds.items())
        out.append(
            f"too few stranger queries ({counts}) to show a false accept rate of "
            f"target_far={target_far:g}: even a threshold that accepts none of them leaves an "
            f"upper bound of {floor:.3f} at confidence={confidence:g}. The threshold is the "
            f"largest that accepts no stranger. Calibrate with at least {queries} stranger "
            "queries of each kind, or lower confidence."
        )
    return out


def calibrate_threshold(
    distances,
    correct,
    known,
    *,
    target_far: float | None = None,
    target_precision: float | None = None,
    groups=None,
    left_out=None,
    far_rule: str = "bound",
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Choose an open-set rejection threshold from validation queries.

    Each validation query has a *match distance* (to the gallery sample that
    labels it), a flag saying whether its class is enrolled (``known``) and
    one saying whether the match is the right class (``correct``; never true
    for unknown queries). A query is accepted when its match distance is at
    most the threshold. The threshold is one of the observed distances (or
    ``-inf``, accepting nothing), chosen as follows:

    * ``target_far``: the most correct accepts (highest ``recall``) among the
      thresholds whose false accept rate is at most ``target_far``. With
      ``far_rule="bound"`` (the default) that is the *upper confidence
      bound* of the rate over stranger classes
      (:func:`~sktriplet.evaluation.neighbors.stranger_far`), for every kind
      of stranger given: the unknown queries, grouped by ``groups``, and the
      ``left_out`` ones; with ``far_rule="empirical"`` it is the rate
      measured on the unknown queries;
    * ``target_precision``: the highest ``recall`` among the thresholds whose
      precision is at least ``target_precision`` (precision is taken as 1
      when nothing is accepted);
    * neither: the highest F1.

    Ties go to the smallest threshold, which accepts the fewest errors. When
    no threshold brings the bound down to ``target_far`` (too few stranger
    queries: with none of ``n`` accepted the bound is still
    ``1 - (1 - confidence) ** (1 / n)``), the bound is held at its floor:
    the threshold is the largest that accepts no stranger, and a
    :class:`FewStrangerClassesWarning` says so.

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
        queries or ``left_out``.
    target_precision : float, default=None
        Lowest acceptable precision, in ``[0, 1]``.
    groups : array-like of shape (n_queries,), default=None
        Class of each query; the unknown queries of one class form one
        cluster of the bound. ``None``: each unknown query is a class of its
        own, which understates the uncertainty when the queries of a class
        are alike.
    left_out : tuple of two array-likes, default=None
        ``(distances, classes)`` of further strangers: the enrolled classes
        left out in turn (the match distance of a query of class ``c`` when
        ``c`` is removed from the gallery), as
        :meth:`OpenSetKNeighborsClassifier.calibrate` computes them. They
        count in the FAR bound only (a kind of its own: the threshold must
        hold the target on both kinds), not in the other rates.
    far_rule : {"bound", "empirical"}, default="bound"
        How ``target_far`` is held (see above).
    confidence : float, default=0.95
        Level of the one-sided bounds, in ``[0.5, 1)``.

    Returns
    -------
    dict
        ``"threshold"``, ``"method"`` (``"far"``, ``"precision"`` or
        ``"f1"``), ``"target"``, the rates achieved on these queries
        (``"far"``, ``"precision"``, ``"recall"``, ``"f1"``,
        ``"misidentification_rate"`` (accepted but wrong known queries /
        known queries), ``"accuracy"`` (right decisions: correct accepts
        plus rejected unknowns, over all queries)), ``"n_known"``,
        ``"n_unknown"``; the false accept rate expected on strangers:
        ``"expected_far"`` and ``"far_interval"`` (the estimate and the
        interval, each bound one-sided at ``confidence``, of the kind of
        stranger whose upper bound is highest; ``None`` without strangers),
        ``"strangers"`` (the same per kind, ``"unknown"`` and ``"left_out"``,
        with ``"n_classes"`` and ``"n_queries"``), ``"n_stranger_classes"``,
        ``"far_rule"`` and ``"confidence"``; and ``"curve"``, a dict of
        arrays (``"threshold"``, ``"far"``, ``"far_upper"``,
        ``"precision"``, ``"recall"``, ``"f1"``) over all candidate
        thresholds (every distance, of the queries and ``left_out``).

    Raises
    ------
    ValueError
        If the inputs differ in length, are empty or not finite, a query is
        correct but not known, both targets are given, a target is outside
        ``[0, 1]``, or ``target_far`` is given without strangers.

    Warns
    -----
    FewStrangerClassesWarning
        With ``target_far``, when the stranger classes are fewer than
        :func:`stranger_classes_needed` of it, or the stranger queries too few
        for any threshold to show it.

    See Also
    --------
    OpenSetKNeighborsClassifier.calibrate : The same rule on a classifier.

    Examples
    --------
    With the measured rate, as :func:`calibrate_pair_threshold` does:

    >>> from sktriplet.evaluation.neighbors import calibrate_threshold
    >>> d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    >>> correct = [True, True, False, True, False, False]
    >>> known = [True, True, False, True, False, False]
    >>> res = calibrate_threshold(d, correct, known, target_far=1 / 3, far_rule="empirical")
    >>> res["threshold"], res["far"], res["recall"]
    (0.4, 0.333..., 1.0)

    Thirty classes of ten strangers each, at distances drawn around a
    level of their own, and 300 known queries: the measured rate picks the
    largest threshold that accepts at most 5 % of these strangers, whose
    interval reaches 8.7 %; the bound picks one whose interval, counting
    classes, stays below 5 %:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> classes = np.repeat(np.arange(30), 10)
    >>> strangers = rng.uniform(0.6, 2.0, 300) + rng.uniform(0, 0.5, 30)[classes]
    >>> d = np.r_[rng.uniform(0, 1, 300), strangers]
    >>> known = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    >>> groups = np.r_[np.full(300, -1), classes]
    >>> for rule in ("empirical", "bound"):
    ...     res = calibrate_threshold(d, known, known, target_far=0.05, groups=groups,
    ...                               far_rule=rule)
    ...     print(rule, round(res["far"], 3), np.round(res["far_interval"], 3))
    empirical 0.047 [0.022 0.087]
    bound 0.02 [0.008 0.043]
    """
    return _calibrate(
        distances,
        correct,
        known,
        targets=(target_far, target_precision),
        groups=groups,
        left_out=left_out,
        far_rule=far_rule,
        confidence=confidence,
        stacklevel=3,
    )


def _calibrate(
    distances, correct, known, *, targets, groups, left_out, far_rule, confidence, stacklevel
) -> dict[str, Any]:
    """:func:`calibrate_threshold`, warning ``stacklevel`` frames up."""
    d, correct, known = _check_queries(distances, correct, known)
    target_far = _check_target("target_far", targets[0])
    target_precision = _check_target("target_precision", targets[1])
    if target_far is not None and target_precision is not None:
        raise ValueError("give at most one of target_far and target_precision.")
    if far_rule not in FAR_RULES:
        raise ValueError(f"far_rule must be one of {list(FAR_RULES)}; got {far_rule!r}.")
    confidence = _check_confidence(confidence)
    strangers = _strangers(d, known, groups, left_out)
    if target_far is not None and not strangers:
        raise ValueError(
            "target_far needs validation queries of classes that are not enrolled "
            "(unknown queries), or enrolled classes left out in turn; all of them are known."
        )
    if target_far is not None and far_rule == "empirical" and UNKNOWN not in strangers:
        raise ValueError("far_rule='empirical' needs unknown queries (classes not enrolled).")
    finite = [s[0][np.isfinite(s[0])] for s in strangers.values()]
    t = np.append(-np.inf, np.unique(np.concatenate([d, *finite])))
    r = _rates(d, correct, known, t)
    bounds = {k: stranger_far(*v, t, confidence=confidence) for k, v in strangers.items()}
    upper = np.max([b["upper"] for b in bounds.values()], axis=0) if bounds else r["far"]
    if target_far is not None:
        method, target = "far", target_far
        # Rates are compared with a little slack so that e.g. 0.1 * 30 / 30
        # counts as 0.1.
        far = r["far"] if far_rule == "empirical" else upper
        # A bound that no threshold brings down to the target (too few
        # strangers: even accepting none leaves room) is held at its floor,
        # the thresholds that accept no stranger.
        limit = max(target_far, float(far.min()))
        i = _pick(r["tp"], far <= limit + 1e-12)
    elif target_precision is not None:
        method, target = "precision", target_precision
        i = _pick(r["tp"], r["precision"] >= target_precision - 1e-12)
    else:
        method, target = "f1", None
        i = _pick(r["f1"], np.ones(len(t), dtype=bool))
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    if r["tp"][i] == 0 and n_known:
        warnings.warn(
            f"the calibrated threshold ({method}={target}) accepts no known query "
            "correctly; the target cannot be met with any useful threshold.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    summary = _far_summary(bounds, i, confidence)
    floor = float(upper[0]) if far_rule == "bound" and bounds else 0.0
    messages = [] if target_far is None else _support_messages(summary, target_far, floor)
    for message in messages:
        warnings.warn(message, FewStrangerClassesWarning, stacklevel=stacklevel)
    wrong = r["acc"][i] - r["tp"][i] - r["unk"][i]  # accepted known queries, wrong class
    return {
        "threshold": float(t[i]),
        "method": method,
        "target": target,
        "far": float(r["far"][i]),
        "precision": float(r["precision"][i]),
        "recall": float(r["recall"][i]),
        "f1": float(r["f1"][i]),
        "misidentification_rate": float(wrong / n_known) if n_known else 0.0,
        "accuracy": float((r["tp"][i] + (n_unknown - r["unk"][i])) / len(d)),
        "n_known": n_known,
        "n_unknown": n_unknown,
        "far_rule": far_rule,
        **summary,
        "curve": {
            "threshold": t,
            "far": r["far"],
            "far_upper": upper,
            "precision": r["precision"],
            "recall": r["recall"],
            "f1": r["f1"],
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
