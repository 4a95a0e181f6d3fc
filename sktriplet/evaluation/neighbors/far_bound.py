"""How often strangers are accepted, with a confidence interval that respects their classes.

A false accept rate (FAR) measured on the queries of a few stranger classes
is not a sample of independent queries: the queries of one class are
accepted together or not at all, so a calibration set of 400 queries from two
classes says little about a third class. :func:`stranger_far` estimates the
FAR of the rule "accept if distance <= t" at every threshold, with bounds
that count the classes, not only the queries:

* the estimate is the pooled rate ``p``, accepted stranger queries /
  stranger queries;
* the bounds are Clopper-Pearson's, the exact binomial ones, computed at an
  *effective* number of queries ``n / deff`` (Kish's design effect). ``deff``
  compares the variance of ``p`` over the ``G`` classes (the cluster-robust
  CR1 estimate, ``G / (G - 1)`` times the summed squared class residuals)
  with the binomial variance ``p (1 - p) / n``; because a variance measured
  on few classes is itself uncertain, it is scaled by ``(t_{G-1} / z)**2``,
  the ratio of Student's quantile with ``G - 1`` degrees of freedom to the
  normal one, the usual small-cluster correction (Cameron and Miller, "A
  practitioner's guide to cluster-robust inference", J. Human Resources
  50(2), 2015): 14.7 for two classes at 95 %, 1.07 for thirty. ``deff`` is
  at least 1: when the classes agree the bound is the binomial one of all
  the queries, and when one class holds the accepted queries it approaches
  the binomial bound of a few classes. The beta shape of the bound keeps it
  honest for rates near zero, where class rates are skewed (a few classes
  accepted often, most never) and a symmetric ``p + t * se`` would fall short;
* with one class there is no spread to measure and the bound is the
  binomial one (the calibration warns: see
  :class:`~sktriplet.evaluation.neighbors.FewStrangerClassesWarning`);
* the rate can only grow with the threshold, so the bounds are made to as
  well: the upper bound at ``t`` is the largest at any threshold up to
  ``t`` (a design effect measured at ``t`` can shrink as a lagging class
  catches up, which would call a larger threshold safe after a smaller one
  was not), the lower bound the smallest at any threshold from ``t`` on.

Each bound is one-sided at ``confidence``; together they form a two-sided
interval at ``2 * confidence - 1``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["stranger_far"]


def _check_confidence(confidence: float) -> float:
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, numbers.Real)
        or not 0.5 <= confidence < 1
    ):
        raise ValueError(f"confidence must be a number in [0.5, 1); got {confidence!r}.")
    return float(confidence)


def _class_sums(d: np.ndarray, codes: np.ndarray, thresholds: np.ndarray):
    """Per threshold: accepted queries ``K``, ``sum_g k_g**2`` and ``sum_g k_g n_g``.

    ``k_g`` is the number of accepted queries of class ``g`` and ``n_g`` its
    size. Sorting once gives all three for every threshold: when the
    threshold passes the ``r``-th smallest distance of class ``g``, ``k_g``
    goes from ``r`` to ``r + 1``, so ``k_g**2`` grows by ``2 r + 1`` and
    ``k_g n_g`` by ``n_g``.
    """
    order = np.lexsort((d, codes))  # by class, then by distance
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(d), dtype=np.int64)
    rank[order] = np.arange(len(d)) - np.repeat(starts, sizes)
    by_distance = np.argsort(d, kind="stable")
    d_sorted = d[by_distance]
    k2 = np.cumsum(2.0 * rank[by_distance] + 1.0)
    kn = np.cumsum(sizes[codes[by_distance]].astype(np.float64))
    accepted = np.searchsorted(d_sorted, thresholds, side="right")
    take = np.maximum(accepted - 1, 0)
    none = accepted == 0
    return (
        accepted.astype(np.float64),
        np.where(none, 0.0, k2[take]),
        np.where(none, 0.0, kn[take]),
        sizes,
    )


def stranger_far(distances, groups, thresholds, *, confidence: float = 0.95) -> dict[str, Any]:
    """False accept rate of stranger queries at each threshold, with class-aware bounds.

    Parameters
    ----------
    distances : array-like of shape (n_strangers,)
        Match distance of each stranger query (a query of a class that is not
        enrolled); it is accepted when the distance is at most the threshold.
    groups : array-like of shape (n_strangers,)
        Class of each stranger query. Queries of one class are one cluster.
    thresholds : array-like of shape (n_thresholds,)
        Thresholds to evaluate (``-inf`` accepts nothing). The monotone
        bounds (see the module notes) run over these thresholds in
        increasing order.
    confidence : float, default=0.95
        Level of each one-sided bound, in ``[0.5, 1)``.

    Returns
    -------
    dict
        ``"far"``, ``"lower"`` and ``"upper"``: arrays of shape
        ``(n_thresholds,)`` (the pooled rate and its bounds, see the module
        notes), ``"design_effect"`` (``deff``, by threshold);
        ``"n_classes"`` and ``"n_queries"``.

    Raises
    ------
    ValueError
        If there are no strangers, the inputs differ in length, a distance is
        NaN, or ``confidence`` is outside ``[0.5, 1)``.

    Examples
    --------
    Two classes of 50 strangers; at ``t = 1`` five queries of one class are
    accepted and none of the other. Two classes that disagree this much say
    next to nothing about a third:

    >>> import numpy as np
    >>> from sktriplet.evaluation.neighbors import stranger_far
    >>> d = np.r_[np.full(5, 0.5), np.full(95, 2.0)]
    >>> res = stranger_far(d, np.repeat([0, 1], 50), [1.0])
    >>> float(res["far"][0]), round(float(res["upper"][0]), 3)
    (0.05, 0.918)

    Had the five accepted queries come one from each of five classes of 20,
    the classes would agree, and the bound is the binomial one of all 100
    queries:

    >>> d = np.where(np.arange(100) % 20 == 0, 0.5, 2.0)
    >>> round(float(stranger_far(d, np.repeat(np.arange(5), 20), [1.0])["upper"][0]), 3)
    0.102
    """
    from scipy.special import betaincinv, ndtri, stdtrit  # scipy comes with scikit-learn

    confidence = _check_confidence(confidence)
    d = np.asarray(distances, dtype=np.float64).ravel()
    groups = np.asarray(groups).ravel()
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    if len(d) == 0:
        raise ValueError("no stranger queries: distances is empty.")
    if len(groups) != len(d):
        raise ValueError(f"distances has {len(d)} entries but groups has {len(groups)}.")
    if np.isnan(d).any():
        raise ValueError("distances contains NaN.")
    _, codes = np.unique(groups, return_inverse=True)
    accepted, k2, kn, sizes = _class_sums(d, codes.ravel(), t)
    n, n_classes = float(len(d)), len(sizes)
    far = accepted / n
    deff = np.ones(len(t))
    inside = (accepted > 0) & (accepted < n)
    if n_classes > 1:
        # sum_g (k_g - far * n_g)**2, expanded; over n**2: the CR1 variance.
        resid = k2 - 2.0 * far * kn + far**2 * float(np.sum(sizes.astype(np.float64) ** 2))
        var = np.maximum(resid, 0.0) * n_classes / (n_classes - 1) / n**2
        scale = (float(stdtrit(n_classes - 1, confidence)) / float(ndtri(confidence))) ** 2
        binomial = far * (1.0 - far) / n
        ratio = np.divide(var, binomial, out=np.zeros(len(t)), where=inside)
        deff = np.maximum(1.0, scale * ratio)
    n_eff = n / deff
    x = far * n_eff
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = np.where(accepted < n, betaincinv(x + 1.0, n_eff - x, confidence), 1.0)
        lower = np.where(accepted > 0, betaincinv(x, n_eff - x + 1.0, 1.0 - confidence), 0.0)
    order = np.argsort(t, kind="stable")
    upper[order] = np.maximum.accumulate(upper[order])
    lower[order] = np.minimum.accumulate(lower[order][::-1])[::-1]
    return {
        "far": far,
        "lower": np.clip(lower, 0.0, 1.0),
        "upper": np.clip(upper, 0.0, 1.0),
        "design_effect": deff,
        "n_classes": n_classes,
        "n_queries": int(n),
    }
