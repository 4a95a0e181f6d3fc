"""Scikit-learn scorers built on the retrieval and verification metrics.

:func:`make_retrieval_scorer` turns a retrieval metric of
:mod:`sktriplet.evaluation.metrics` into a ``scorer(estimator, X, y)``
callable for ``GridSearchCV(scoring=...)``, ``cross_validate`` and the like,
scoring labelled samples; :func:`make_verification_scorer` does the same with
a verification metric on labelled *pairs*. The estimator only needs a
``transform`` method (an embedder, or a :class:`~sklearn.pipeline.Pipeline`
ending in one); scikit-learn itself is not imported here.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from sktriplet.evaluation import metrics
from sktriplet.evaluation.neighbors.pairs import pair_distances
from sktriplet.triplets.distances import check_distance

__all__ = [
    "RETRIEVAL_METRICS",
    "VERIFICATION_METRICS",
    "RetrievalScorer",
    "VerificationScorer",
    "make_retrieval_scorer",
    "make_verification_scorer",
]

#: Metric names accepted by :func:`make_retrieval_scorer`.
RETRIEVAL_METRICS: tuple[str, ...] = (
    "map_at_r",
    "r_precision",
    "precision_at_k",
    "recall_at_k",
)
_USES_K = ("precision_at_k", "recall_at_k")
_OPTIONS = ("block_size",)


class RetrievalScorer:
    """Score an embedder by a leave-one-out retrieval metric on ``(X, y)``.

    Build it with :func:`make_retrieval_scorer`; see there for the
    parameters. Calling it as ``scorer(estimator, X, y)`` embeds ``X`` with
    ``estimator.transform`` and returns the metric, computed with every
    sample as a query against all the others. Higher is better.

    Parameters
    ----------
    metric : str
        One of :data:`RETRIEVAL_METRICS`.
    k : int or None
        Neighbours considered by ``"precision_at_k"`` and ``"recall_at_k"``.
    distance : str or None
        Distance to rank by; ``None`` means the estimator's own.
    options : dict
        Further keyword arguments of the metric (``block_size``).

    See Also
    --------
    make_retrieval_scorer : The factory to use.
    """

    def __init__(
        self,
        metric: str,
        k: int | None,
        distance: str | None,
        options: dict[str, Any],
    ) -> None:
        self.metric = metric
        self.k = k
        self.distance = distance
        self.options = options

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        """Return the metric of ``estimator.transform(X)`` with labels ``y``.

        Parameters
        ----------
        estimator : object
            Fitted estimator with a ``transform`` method, or a fitted
            ``Pipeline`` whose last step has one.
        X : array-like of shape (n_samples, ...)
            Samples to embed.
        y : array-like of shape (n_samples,)
            Their labels.

        Returns
        -------
        float
            The metric; higher is better. ``nan`` if no sample shares its
            label with another.

        Raises
        ------
        ValueError
            If ``y`` is None.
        """
        if y is None:
            raise ValueError("A retrieval scorer needs the labels y.")
        embeddings = estimator.transform(X)
        kwargs = dict(self.options)
        if self.k is not None:
            kwargs["k"] = self.k
        distance = self.distance or _estimator_distance(estimator)
        metric = getattr(metrics, self.metric)
        return float(metric(embeddings, y, distance=distance, **kwargs))

    def __repr__(self) -> str:
        """Return the call to :func:`make_retrieval_scorer` that builds it."""
        args = [repr(self.metric)]
        if self.k is not None:
            args.append(f"k={self.k!r}")
        if self.distance is not None:
            args.append(f"distance={self.distance!r}")
        args += [f"{name}={value!r}" for name, value in self.options.items()]
        return f"make_retrieval_scorer({', '.join(args)})"


def _estimator_distance(estimator: Any) -> str:
    """Return the ``distance`` of the estimator, or of a pipeline's last step."""
    steps = getattr(estimator, "steps", None)
    final_step = steps[-1][1] if steps else estimator
    return getattr(final_step, "distance", "sqeuclidean")


def make_retrieval_scorer(
    metric: str = "map_at_r",
    *,
    k: int | None = None,
    distance: str | None = None,
    **kwargs: Any,
) -> RetrievalScorer:
    """Make a scikit-learn scorer from a leave-one-out retrieval metric.

    Parameters
    ----------
    metric : {"map_at_r", "r_precision", "precision_at_k", "recall_at_k"}, \
default="map_at_r"
        The metric of :mod:`sktriplet.evaluation.metrics` to compute.
    k : int, default=None
        Number of neighbours for ``"precision_at_k"`` and ``"recall_at_k"``;
        ``None`` means 1. Not accepted by the other metrics.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default=None
        Distance used to rank neighbours. ``None`` means the ``distance``
        attribute of the estimator (of the last step of a ``Pipeline``), or
        ``"sqeuclidean"`` if it has none.
    **kwargs
        Further keyword arguments of the metric; only ``block_size`` is
        accepted.

    Returns
    -------
    RetrievalScorer
        A callable ``scorer(estimator, X, y) -> float`` that embeds ``X``
        with ``estimator.transform`` and scores the embeddings leave-one-out
        (each sample a query against all the others) with labels ``y``.
        Higher is better, as scikit-learn expects.

    Raises
    ------
    ValueError
        If ``metric`` or ``distance`` is unknown, ``k`` is given to a metric
        that does not use it or is not a positive integer, or ``kwargs`` has
        an unexpected key.

    See Also
    --------
    sktriplet.evaluation.metrics.map_at_r : The default metric.
    sktriplet.evaluation.metrics.retrieval_scores : Every metric at once, on any split.

    Notes
    -----
    Samples whose label no other sample of the scored split shares are
    skipped (see :mod:`sktriplet.evaluation.metrics`); with stratified splits of
    classes having a few samples each, make sure every class keeps at least
    two samples per split.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sktriplet.evaluation.scoring import make_retrieval_scorer
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 1.0], [3.1, 1.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> scorer = make_retrieval_scorer("precision_at_k", k=1)
    >>> scorer
    make_retrieval_scorer('precision_at_k', k=1)
    >>> scorer(PCA(n_components=1).fit(X), X, y)
    1.0

    It plugs into model selection like any scorer:

    >>> from sklearn.model_selection import cross_val_score
    >>> cross_val_score(PCA(n_components=1), np.vstack([X, X + 0.05]),
    ...                 np.r_[y, y], cv=2, scoring=make_retrieval_scorer())
    array([1., 1.])
    """
    if metric not in RETRIEVAL_METRICS:
        raise ValueError(
            f"metric={metric!r} is not supported; use one of {list(RETRIEVAL_METRICS)}."
        )
    if k is not None and metric not in _USES_K:
        raise ValueError(f"k is not used by {metric!r}; only by {list(_USES_K)}.")
    if metric in _USES_K:
        k = 1 if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}.")
    if distance is not None:
        check_distance(distance)
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"Unexpected keyword arguments {unknown}; accepted: {list(_OPTIONS)}.")
    return RetrievalScorer(metric, k, distance, kwargs)


#: Metric names accepted by :func:`make_verification_scorer`.
VERIFICATION_METRICS: tuple[str, ...] = ("accuracy", "tar_at_far", "roc_auc")


class VerificationScorer:
    """Score an embedder by a verification metric on labelled pairs.

    Build it with :func:`make_verification_scorer`; see there for the
    parameters. Calling it as ``scorer(estimator, X, y)`` embeds both
    samples of every pair (``X[:, 0]`` and ``X[:, 1]``, in one ``transform``
    call), measures each pair's distance and returns the metric against
    ``y``, whether each pair is of the same identity. Higher is better.

    Parameters
    ----------
    metric : str
        One of :data:`VERIFICATION_METRICS`.
    distance : str or None
        Distance between the embeddings; ``None`` means the estimator's own.
    options : dict
        ``n_folds`` (for ``"accuracy"``) or ``far`` (for ``"tar_at_far"``).

    See Also
    --------
    make_verification_scorer : The factory to use.
    """

    def __init__(self, metric: str, distance: str | None, options: dict[str, Any]) -> None:
        self.metric = metric
        self.distance = distance
        self.options = options

    def pair_distances(self, estimator: Any, X: Any) -> np.ndarray:
        """Distance of every pair of ``X`` in the estimator's embedding.

        Parameters
        ----------
        estimator : object
            Fitted estimator with a ``transform`` method.
        X : array-like of shape (n_pairs, 2, ...)
            Pairs of samples: ``X[:, 0]`` and ``X[:, 1]`` are samples of the
            kind the estimator embeds (feature rows, images or file paths).

        Returns
        -------
        ndarray of shape (n_pairs,)
            The distances.
        """
        X = X if hasattr(X, "shape") else np.asarray(X)
        if X.ndim < 2 or X.shape[1] != 2:
            raise ValueError(
                f"pairs X must have shape (n_pairs, 2, ...): two samples per row; got shape "
                f"{tuple(X.shape)}."
            )
        Z = np.asarray(estimator.transform(np.concatenate([X[:, 0], X[:, 1]])))
        n = len(X)
        return pair_distances(Z[:n], Z[n:], self.distance or _estimator_distance(estimator))

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        """Return the metric of the pairs ``X`` with "same identity" flags ``y``.

        Parameters
        ----------
        estimator : object
            Fitted estimator with a ``transform`` method, or a fitted
            ``Pipeline`` whose last step has one.
        X : array-like of shape (n_pairs, 2, ...)
            Pairs of samples.
        y : array-like of shape (n_pairs,)
            Whether each pair is of the same identity (bool or 0/1).

        Returns
        -------
        float
            The metric; higher is better.

        Raises
        ------
        ValueError
            If ``y`` is None or ``X`` does not hold pairs.
        """
        if y is None:
            raise ValueError("A verification scorer needs y: whether each pair is the same.")
        d = self.pair_distances(estimator, X)
        if self.metric == "accuracy":
            return metrics.verification_accuracy(d, y, **self.options)[0]
        if self.metric == "tar_at_far":
            return metrics.tar_at_far(d, y, **self.options)
        return metrics.verification_scores(d, y, far=())["roc_auc"]

    def __repr__(self) -> str:
        """Return the call to :func:`make_verification_scorer` that builds it."""
        args = [repr(self.metric)]
        args += [f"{name}={value!r}" for name, value in self.options.items()]
        if self.distance is not None:
            args.append(f"distance={self.distance!r}")
        return f"make_verification_scorer({', '.join(args)})"


def make_verification_scorer(
    metric: str = "accuracy",
    *,
    n_folds: int = 10,
    far: float = 1e-3,
    distance: str | None = None,
) -> VerificationScorer:
    """Make a scikit-learn scorer from a verification metric on labelled pairs.

    Parameters
    ----------
    metric : {"accuracy", "tar_at_far", "roc_auc"}, default="accuracy"
        ``"accuracy"``: :func:`~sktriplet.evaluation.metrics.verification_accuracy`,
        the mean over ``n_folds`` folds with the threshold chosen on the
        others (the face benchmarks' protocol); ``"tar_at_far"``:
        :func:`~sktriplet.evaluation.metrics.tar_at_far` at ``far``;
        ``"roc_auc"``: the area under the ROC curve.
    n_folds : int, default=10
        Folds of ``"accuracy"`` (at least 2).
    far : float, default=1e-3
        False accept rate of ``"tar_at_far"``, in ``[0, 1]``.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default=None
        Distance between the two embeddings of a pair. ``None`` means the
        ``distance`` attribute of the estimator (of the last step of a
        ``Pipeline``), or ``"sqeuclidean"`` if it has none.

    Returns
    -------
    VerificationScorer
        A callable ``scorer(estimator, X, y) -> float``: ``X`` of shape
        ``(n_pairs, 2, ...)`` holds two samples per row (feature rows,
        images, or file paths as an ``(n_pairs, 2)`` array), ``y`` whether
        each pair is of the same identity. Higher is better.

    Raises
    ------
    ValueError
        If ``metric`` or ``distance`` is unknown, ``n_folds`` is not an
        integer of at least 2 or ``far`` is outside ``[0, 1]``.

    See Also
    --------
    make_retrieval_scorer : The scorer for labelled samples.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from sktriplet.evaluation.scoring import make_verification_scorer
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(200, 4))
    >>> same = rng.random(200) < 0.5
    >>> b = np.where(same[:, None], a + 0.1 * rng.normal(size=(200, 4)), rng.normal(size=(200, 4)))
    >>> pairs = np.stack([a, b], axis=1)        # (n_pairs, 2, n_features)
    >>> identity = FunctionTransformer().fit(a)
    >>> round(make_verification_scorer()(identity, pairs, same), 3)   # 10-fold accuracy
    0.995
    >>> make_verification_scorer("tar_at_far", far=0.01)
    make_verification_scorer('tar_at_far', far=0.01)
    """
    if metric not in VERIFICATION_METRICS:
        raise ValueError(
            f"metric={metric!r} is not supported; use one of {list(VERIFICATION_METRICS)}."
        )
    if distance is not None:
        check_distance(distance)
    if isinstance(n_folds, bool) or not isinstance(n_folds, numbers.Integral) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer of at least 2; got {n_folds!r}.")
    if isinstance(far, bool) or not isinstance(far, numbers.Real) or not 0 <= far <= 1:
        raise ValueError(f"far must be a number in [0, 1]; got {far!r}.")
    options: dict[str, Any] = {}
    if metric == "accuracy":
        options["n_folds"] = int(n_folds)
    elif metric == "tar_at_far":
        options["far"] = float(far)
    return VerificationScorer(metric, distance, options)
