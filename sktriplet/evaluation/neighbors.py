"""Open-set recognition and pair verification on embeddings.

:class:`OpenSetKNeighborsClassifier` enrols a *gallery* of labelled
embeddings and labels each query with the class of its nearest gallery
samples, or with an ``unknown_label`` when even the best match is farther
than a distance threshold. New identities are enrolled with
:meth:`~OpenSetKNeighborsClassifier.enroll` without retraining anything, and
the threshold is chosen on labelled validation data by
:meth:`~OpenSetKNeighborsClassifier.calibrate` (:func:`calibrate_threshold`
is the same rule as a function).

:func:`pair_distances`, :func:`verify_pairs` and
:func:`calibrate_pair_threshold` answer the verification question "are these
two samples of the same identity?"; :mod:`sktriplet.evaluation.metrics` scores them
(TAR@FAR, ROC AUC, EER).

Vocabulary of the open-set rates (queries whose class is enrolled are
*known*, the others *unknown*; a query is *accepted* when its match distance
is at most the threshold):

* false accept rate (FAR): accepted unknown queries / unknown queries;
* detection and identification rate (``recall``): known queries accepted
  *and* labelled correctly / known queries;
* ``precision``: correct accepted queries / accepted queries (accepted
  unknowns and accepted misidentified known queries are the errors);
* ``f1``: the harmonic mean of ``precision`` and ``recall``.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sktriplet.evaluation.index import ALGORITHMS, ExactIndex, make_index
from sktriplet.triplets.distances import DISTANCES, check_distance, pairwise_distances

__all__ = [
    "OpenSetKNeighborsClassifier",
    "calibrate_pair_threshold",
    "calibrate_threshold",
    "pair_distances",
    "verify_pairs",
]

# Bytes of one block of the exact distance matrix in decision_function.
_BLOCK_BYTES = 64 * 2**20


# ---------------------------------------------------------------------------
# Threshold selection
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Pair verification
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------


class OpenSetKNeighborsClassifier(ClassifierMixin, BaseEstimator):
    """Nearest-neighbour classifier that says "unknown" for unfamiliar queries.

    ``fit`` enrols a gallery of labelled samples; ``predict`` gives each
    query the class voted by its ``n_neighbors`` nearest gallery samples, or
    ``unknown_label`` when the *match distance* -- from the query to the
    nearest gallery sample of the voted class -- exceeds the threshold.
    :meth:`enroll` adds samples and classes later without retraining, and
    :meth:`calibrate` sets the threshold from validation data for a target
    false accept rate, a target precision or the best F1.

    The classifier works on embeddings: put it after a
    :class:`~sktriplet.TripletEmbedder` in a :class:`~sklearn.pipeline.Pipeline`,
    or give the embedder as ``embedder``. An ``embedder`` is cloned and
    trained on the data given to ``fit``; to enrol new identities with an
    embedder trained on *other* identities (the open-set use), wrap the
    trained embedder in :class:`sklearn.frozen.FrozenEstimator`, which
    ``fit`` leaves as it is. :meth:`enroll`, :meth:`calibrate` and
    ``predict`` never retrain it.

    Parameters
    ----------
    threshold : float, default=None
        Largest match distance that is accepted, in the units of
        ``distance``. ``None`` accepts every query (a closed-set classifier)
        until :meth:`calibrate` sets one.
    n_neighbors : int, default=1
        Gallery samples that vote for each query.
    weights : {"uniform", "distance"}, default="uniform"
        Weight of each vote: equal, or the inverse of the distance (a
        neighbour at distance zero takes all the weight, as in scikit-learn).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings, as in :mod:`sktriplet.triplets.distances`. Use
        the embedder's.
    unknown_label : int, str or "auto", default="auto"
        Label predicted for rejected queries. ``"auto"`` means ``-1`` when
        the class labels are numbers (one less than the smallest class if
        ``-1`` is a class) and ``"unknown"`` otherwise. It must not be an
        enrolled class.
    embedder : estimator with ``fit`` and ``transform``, default=None
        Maps samples to embeddings (e.g. a :class:`~sktriplet.TripletEmbedder`,
        or a :class:`~sklearn.frozen.FrozenEstimator` around a trained one).
        ``None``: ``X`` are embeddings already.
    algorithm : {"brute", "faiss", "hnsw"}, default="brute"
        Gallery search: exact, through scikit-learn's
        :class:`~sklearn.neighbors.NearestNeighbors`, or approximate through
        the optional faiss or hnswlib packages (see :mod:`sktriplet.evaluation.index`).
    index_params : dict, default=None
        Keyword arguments of the index (e.g. ``{"ef_search": 64}``). The
        approximate indexes' default ``ef_search="auto"`` keeps recall@k at
        or above 0.95 even on unstructured data, at a speed cost; see
        :func:`~sktriplet.evaluation.index.auto_ef_search`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The enrolled classes, sorted (``unknown_label`` is not among them).
    threshold_ : float
        The threshold in use: ``threshold`` (``inf`` for ``None``), or the
        one set by :meth:`calibrate`.
    calibration_ : dict
        Set by :meth:`calibrate`: the rates achieved on the validation data
        (see :func:`calibrate_threshold`).
    unknown_label_ : int or str
        The label of rejected queries.
    gallery_labels_ : ndarray of shape (n_gallery,)
        Label of every enrolled sample.
    index_ : ExactIndex, FaissIndex or HNSWIndex
        The gallery's embeddings, searchable.
    embedder_ : estimator
        The fitted embedder (only when ``embedder`` is given).
    n_features_in_ : int
        Number of features of ``X`` seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of ``X``, when they are all strings.

    See Also
    --------
    sklearn.neighbors.KNeighborsClassifier : The closed-set counterpart.
    calibrate_threshold : The threshold rule of :meth:`calibrate`.

    Notes
    -----
    ``predict_proba`` is the closed-set posterior: the (weighted) fraction
    of the ``n_neighbors`` votes each enrolled class gets, summing to 1 over
    ``classes_``. It does not change with the threshold; rejection is
    expressed by ``predict`` and by :meth:`match` (the match distance).
    ``decision_function`` is minus the distance from the query to the
    nearest gallery sample of each class, computed exactly by brute force
    even when ``algorithm`` is approximate (the classifier then keeps a
    float32 copy of the gallery for it); with ``n_neighbors=1`` and exact
    search its arg-max is ``predict``'s class before rejection. The
    accuracy of :meth:`score` counts a rejected query as right when its
    label is ``unknown_label``; relabel never-enrolled classes to
    ``unknown_label`` to score open-set data.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.neighbors import OpenSetKNeighborsClassifier
    >>> gallery = np.array([[0.0, 0.0], [0.0, 0.1], [5.0, 5.0]])
    >>> clf = OpenSetKNeighborsClassifier(threshold=1.0).fit(gallery, ["a", "a", "b"])
    >>> clf.predict([[0.1, 0.0], [5.0, 4.5], [9.0, 0.0]])
    array(['a', 'b', 'unknown'], dtype='<U7')
    >>> clf = clf.enroll([[9.0, 0.5]], ["c"])
    >>> clf.predict([[9.0, 0.0]])
    array(['c'], dtype='<U7')
    """

    _parameter_constraints: dict = {
        "threshold": [None, Interval(numbers.Real, None, None, closed="neither")],
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "weights": [StrOptions({"uniform", "distance"})],
        "distance": [StrOptions(set(DISTANCES))],
        "unknown_label": [numbers.Integral, str],
        "embedder": [None, HasMethods(["fit", "transform"])],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "index_params": [None, dict],
    }

    def __init__(
        self,
        *,
        threshold: float | None = None,
        n_neighbors: int = 1,
        weights: str = "uniform",
        distance: str = "sqeuclidean",
        unknown_label: int | str = "auto",
        embedder: Any = None,
        algorithm: str = "brute",
        index_params: dict | None = None,
    ) -> None:
        self.threshold = threshold
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.distance = distance
        self.unknown_label = unknown_label
        self.embedder = embedder
        self.algorithm = algorithm
        self.index_params = index_params

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.embedder is not None:
            tags.input_tags.three_d_array = True
        return tags

    # ----------------------------------------------------------------- input
    def _embed(self, X, y=None, *, reset: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Validate ``X`` (and ``y``) and return embeddings (float32 or float64)."""
        if self.embedder is None:
            if y is None:
                Z = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
            else:
                Z, y = validate_data(self, X, y, reset=reset, dtype=[np.float32, np.float64])
        else:
            if reset:
                self.embedder_ = clone(self.embedder).fit(X, y)
                for name in ("n_features_in_", "feature_names_in_"):
                    if hasattr(self.embedder_, name):
                        setattr(self, name, getattr(self.embedder_, name))
                    elif hasattr(self, name):
                        delattr(self, name)
            Z = np.asarray(self.embedder_.transform(X))
            if y is not None:
                y = np.asarray(y)
                if y.ndim == 2 and y.shape[1] == 1:
                    y = y.ravel()
                if len(y) != len(Z):
                    raise ValueError(
                        f"X has {len(Z)} samples but y has {len(y)}; pass one label per sample."
                    )
        Z = np.asarray(Z)
        if Z.dtype not in (np.float32, np.float64):
            Z = Z.astype(np.float32)
        if not np.isfinite(Z).all():
            raise ValueError("the embeddings contain NaN or infinite values.")
        return Z if y is None else (Z, y)

    def _resolve_unknown_label(self, classes: np.ndarray):
        label = self.unknown_label
        if isinstance(label, str) and label == "auto":
            if not np.issubdtype(classes.dtype, np.number):
                return "unknown"
            # -1, or one less than the smallest class when -1 is a class.
            label = -1 if not np.any(classes == -1) else classes.min().item() - 1
        # Compare as Python objects: a str never equals a number here.
        if any(c == label for c in classes.tolist()):
            raise ValueError(
                f"unknown_label={label!r} is also an enrolled class; set unknown_label "
                "to a value that is not a class label."
            )
        return label

    def _set_labels(self, classes: np.ndarray) -> None:
        self.unknown_label_ = self._resolve_unknown_label(classes)
        self.classes_ = classes
        self._labels_out = np.append(classes, np.asarray([self.unknown_label_]))

    # ------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y) -> OpenSetKNeighborsClassifier:
        """Enrol a gallery of labelled samples (replacing any previous one).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, or samples for ``embedder`` (which is trained on them
            unless it is a :class:`~sklearn.frozen.FrozenEstimator`).
        y : array-like of shape (n_samples,)
            Class of each sample.

        Returns
        -------
        OpenSetKNeighborsClassifier
            The fitted classifier.
        """
        for name in ("calibration_", "embedder_"):
            if hasattr(self, name):
                delattr(self, name)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        Z, y = self._embed(X, y, reset=True)
        check_classification_targets(y)
        self._set_labels(np.unique(y))
        self.gallery_labels_ = np.asarray(y)
        self.index_ = make_index(self.algorithm, self.distance, **(self.index_params or {}))
        self.index_.add(Z)
        self._gallery_cache = None if isinstance(self.index_, ExactIndex) else Z
        self.threshold_ = np.inf if self.threshold is None else float(self.threshold)
        return self

    def enroll(self, X, y) -> OpenSetKNeighborsClassifier:
        """Add samples (of new or enrolled classes) to the gallery.

        Nothing is retrained: the samples are embedded (by ``embedder_``, if
        any) and added to the index; new classes join ``classes_``. The
        threshold is kept. Before ``fit``, this is ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, or samples for the embedder.
        y : array-like of shape (n_samples,)
            Class of each sample.

        Returns
        -------
        OpenSetKNeighborsClassifier
            This classifier.
        """
        if not hasattr(self, "index_"):
            return self.fit(X, y)
        Z, y = self._embed(X, y, reset=False)
        check_classification_targets(y)
        labels = np.concatenate([self.gallery_labels_, y])
        self._set_labels(np.unique(labels))
        self.index_.add(Z)
        if self._gallery_cache is not None:
            self._gallery_cache = np.concatenate([self._gallery_cache, Z])
        self.gallery_labels_ = labels
        return self

    def partial_fit(self, X, y, classes=None) -> OpenSetKNeighborsClassifier:
        """Enrol samples; the same as :meth:`enroll` (scikit-learn's name).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, or samples for the embedder.
        y : array-like of shape (n_samples,)
            Class of each sample.
        classes : array-like, default=None
            Ignored: classes are added as they are enrolled.

        Returns
        -------
        OpenSetKNeighborsClassifier
            This classifier.
        """
        return self.enroll(X, y)

    # ---------------------------------------------------------------- search
    def _codes(self) -> np.ndarray:
        return np.searchsorted(self.classes_, self.gallery_labels_)

    def _vote(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(proba, class codes, match distances)`` for embeddings ``Z``."""
        k = min(self.n_neighbors, len(self.index_))
        dist, ids = self.index_.search(Z, k)
        missing = ids < 0  # approximate indexes may return fewer than k
        ids = np.where(missing, 0, ids)
        codes = self._codes()[ids]
        if self.weights == "uniform":
            w = np.ones_like(dist, dtype=np.float64)
        else:
            with np.errstate(divide="ignore"):
                w = 1.0 / dist.astype(np.float64)
            zero = np.isinf(w)
            w = np.where(zero.any(axis=1, keepdims=True), zero.astype(np.float64), w)
        w[missing] = 0.0
        n_classes = len(self.classes_)
        proba = np.zeros((len(Z), n_classes))
        rows = np.repeat(np.arange(len(Z)), k)
        np.add.at(proba, (rows, codes.ravel()), w.ravel())
        total = proba.sum(axis=1, keepdims=True)
        proba = np.divide(proba, total, out=np.full_like(proba, 1.0 / n_classes), where=total > 0)
        pred = np.argmax(proba, axis=1)
        # Match distance: the nearest neighbour of the voted class (neighbours
        # are sorted by distance, so the first one of that class).
        hit = (codes == pred[:, None]) & ~missing
        first = np.argmax(hit, axis=1)
        match = np.where(hit.any(axis=1), dist[np.arange(len(Z)), first], np.inf)
        return proba, pred, match.astype(np.float64)

    def match(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Best class and match distance of each query, before rejection.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Embeddings, or samples for the embedder.

        Returns
        -------
        labels : ndarray of shape (n_queries,)
            The voted class (never ``unknown_label``).
        distances : ndarray of shape (n_queries,)
            Distance to the nearest gallery sample of that class; ``predict``
            rejects the query when it exceeds ``threshold_``.
        """
        check_is_fitted(self)
        _, pred, match = self._vote(self._embed(X, reset=False))
        return self.classes_[pred], match

    def kneighbors(self, X, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest gallery samples of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Embeddings, or samples for the embedder.
        n_neighbors : int, default=None
            Neighbours per query; ``None`` uses ``n_neighbors``.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors)
            Distances, ascending.
        indices : ndarray of shape (n_queries, n_neighbors)
            Positions in the gallery (the order of enrolment); their labels
            are ``gallery_labels_[indices]``.
        """
        check_is_fitted(self)
        Z = self._embed(X, reset=False)
        return self.index_.search(Z, self.n_neighbors if n_neighbors is None else n_neighbors)

    def predict(self, X) -> np.ndarray:
        """Class of each query, or ``unknown_label_`` when it is rejected.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Embeddings, or samples for the embedder.

        Returns
        -------
        ndarray of shape (n_queries,)
            Enrolled classes or ``unknown_label_``.
        """
        check_is_fitted(self)
        _, pred, match = self._vote(self._embed(X, reset=False))
        pred = np.where(match <= self.threshold_, pred, len(self.classes_))
        return self._labels_out[pred]

    def predict_proba(self, X) -> np.ndarray:
        """Closed-set class probabilities: the share of neighbour votes.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Embeddings, or samples for the embedder.

        Returns
        -------
        ndarray of shape (n_queries, n_classes)
            Rows sum to 1 over ``classes_``; they ignore the threshold (see
            the class notes).
        """
        check_is_fitted(self)
        proba, _, _ = self._vote(self._embed(X, reset=False))
        return proba

    def decision_function(self, X) -> np.ndarray:
        """Minus the distance from each query to the nearest sample of each class.

        Computed exactly (brute force over the whole gallery, in blocks).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Embeddings, or samples for the embedder.

        Returns
        -------
        ndarray of shape (n_queries, n_classes), or (n_queries,) for two classes
            Higher means closer. With two classes, as scikit-learn expects,
            the score of ``classes_[1]`` minus that of ``classes_[0]``.
        """
        check_is_fitted(self)
        # float64, so that a query's scores do not depend on its batch.
        Z = torch.from_numpy(self._embed(X, reset=False)).double()
        gallery = torch.from_numpy(self._gallery_embeddings()).double()
        codes = torch.from_numpy(self._codes())
        n_classes = len(self.classes_)
        out = np.empty((len(Z), n_classes))
        step = max(1, _BLOCK_BYTES // (8 * len(gallery)))
        for start in range(0, len(Z), step):
            d = pairwise_distances(Z[start : start + step], gallery, self.distance)
            best = torch.full((len(d), n_classes), float("inf"), dtype=torch.float64)
            best.scatter_reduce_(1, codes.expand(len(d), -1), d, reduce="amin")
            out[start : start + len(d)] = -best.double().numpy()
        if n_classes == 2:
            return out[:, 1] - out[:, 0]
        return out

    def _gallery_embeddings(self) -> np.ndarray:
        if self._gallery_cache is not None:
            return self._gallery_cache
        chunks = self.index_._chunks
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    # ----------------------------------------------------------- calibration
    def calibrate(
        self,
        X,
        y,
        *,
        target_far: float | None = None,
        target_precision: float | None = None,
    ) -> OpenSetKNeighborsClassifier:
        """Set ``threshold_`` from labelled validation queries.

        ``y`` holds the true class of every query; classes that are not in
        ``classes_`` (their own labels, or ``unknown_label_``) are unknown
        identities, which should be rejected. The
        queries must not be gallery samples. See :func:`calibrate_threshold`
        for the rule; the rates it achieves on these queries are stored in
        ``calibration_``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Embeddings, or samples for the embedder.
        y : array-like of shape (n_queries,)
            True classes (enrolled or not).
        target_far : float, default=None
            Highest acceptable false accept rate (unknown queries accepted /
            unknown queries).
        target_precision : float, default=None
            Lowest acceptable precision.

        Returns
        -------
        OpenSetKNeighborsClassifier
            This classifier, with ``threshold_`` and ``calibration_`` set.
        """
        check_is_fitted(self)
        Z, y = self._embed(X, y, reset=False)
        _, pred, match = self._vote(Z)
        y = np.asarray(y)
        known = np.isin(y, self.classes_)
        correct = known & (self.classes_[pred] == y)
        result = calibrate_threshold(
            match, correct, known, target_far=target_far, target_precision=target_precision
        )
        self.threshold_ = result["threshold"]
        self.calibration_ = result
        return self
