"""Scikit-learn scorers built on the retrieval metrics.

:func:`make_retrieval_scorer` turns a metric of :mod:`sktriplet.evaluation.metrics` into
a ``scorer(estimator, X, y)`` callable for ``GridSearchCV(scoring=...)``,
``cross_validate`` and the like. The estimator only needs a ``transform``
method (an embedder, or a :class:`~sklearn.pipeline.Pipeline` ending in one);
scikit-learn itself is not imported here.
"""

from __future__ import annotations

from typing import Any

from sktriplet.evaluation import metrics
from sktriplet.triplets.distances import check_distance

__all__ = ["RETRIEVAL_METRICS", "RetrievalScorer", "make_retrieval_scorer"]

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
