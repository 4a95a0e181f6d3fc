"""Open-set recognition: a nearest-neighbour classifier that can say "unknown".

:class:`OpenSetKNeighborsClassifier` enrols a gallery of labelled embeddings
in a nearest-neighbour index (:mod:`sktriplet.evaluation.neighbors.index`)
and rejects queries whose match is farther than a threshold, chosen by
:func:`~sktriplet.evaluation.neighbors.calibrate_threshold`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sktriplet.evaluation.neighbors.calibration import _calibrate, stranger_classes_needed
from sktriplet.evaluation.neighbors.index import ALGORITHMS, ExactIndex, make_index
from sktriplet.triplets.distances import DISTANCES, pairwise_distances

__all__ = ["OpenSetKNeighborsClassifier"]

# Bytes of one block of the exact distance matrix in decision_function.
_BLOCK_BYTES = 64 * 2**20


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
        the optional faiss or hnswlib packages (see :mod:`sktriplet.evaluation.neighbors.index`).
    index_params : dict, default=None
        Keyword arguments of the index (e.g. ``{"ef_search": 64}``). The
        approximate indexes' default ``ef_search="auto"`` keeps recall@k at
        or above 0.95 even on unstructured data, at a speed cost; see
        :func:`~sktriplet.evaluation.neighbors.auto_ef_search`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The enrolled classes, sorted (``unknown_label`` is not among them).
    threshold_ : float
        The threshold in use: ``threshold`` (``inf`` for ``None``), or the
        one set by :meth:`calibrate`.
    calibration_ : dict
        Set by :meth:`calibrate`: the rates achieved on the validation data
        and the false accept rate expected on strangers (see
        :func:`calibrate_threshold`).
    expected_far_ : float or None
        Set by :meth:`calibrate`: the false accept rate expected at
        ``threshold_`` on strangers, estimated on the kind of stranger
        (never-enrolled classes, or enrolled classes left out in turn) whose
        upper bound is highest; ``None`` when the calibration had no
        strangers.
    far_interval_ : tuple of float or None
        Set by :meth:`calibrate`: ``(lower, upper)`` bounds of that rate,
        each one-sided at the ``confidence`` of :meth:`calibrate` (0.95: a
        90 % interval), counting stranger classes, not queries, as the units
        of evidence (:func:`~sktriplet.evaluation.neighbors.stranger_far`).
        With a ``target_far``, ``upper`` is at most the target unless no
        threshold could hold it.
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
        for name in ("calibration_", "expected_far_", "far_interval_", "embedder_"):
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

    def _neighbours(self, Z: np.ndarray, exclude: int | None = None):
        """Distances, class codes and missing flags of the voting neighbours.

        With ``exclude`` (a class code), the neighbours are those of the
        gallery without that class: the search reaches past its samples.
        """
        k = min(self.n_neighbors, len(self.index_))
        extra = 0 if exclude is None else int(np.sum(self._codes() == exclude))
        dist, ids = self.index_.search(Z, min(k + extra, len(self.index_)))
        missing = ids < 0  # approximate indexes may return fewer than k
        codes = self._codes()[np.where(missing, 0, ids)]
        if exclude is not None:
            missing |= codes == exclude
            keep = np.argsort(missing, axis=1, kind="stable")[:, :k]  # nearest k left
            dist, codes, missing = (np.take_along_axis(a, keep, 1) for a in (dist, codes, missing))
        return dist, codes, missing

    def _vote(
        self, Z: np.ndarray, exclude: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(proba, class codes, match distances)`` for embeddings ``Z``.

        ``exclude``: vote as if that class (a code) were not enrolled.
        """
        dist, codes, missing = self._neighbours(Z, exclude)
        k = dist.shape[1]
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
        leave_class_out: bool | str = "auto",
        far_rule: str = "bound",
        confidence: float = 0.95,
    ) -> OpenSetKNeighborsClassifier:
        """Set ``threshold_`` from labelled validation queries.

        ``y`` holds the true class of every query; classes that are not in
        ``classes_`` (their own labels, or ``unknown_label_``) are unknown
        identities, which should be rejected. The queries must not be
        gallery samples. See :func:`calibrate_threshold` for the rule; the
        rates it achieves on these queries are stored in ``calibration_``.

        A target FAR is held by an upper confidence bound of the false accept
        rate over stranger *classes*, not by the rate measured on these
        queries: a threshold fitted to the few stranger classes at hand
        accepts strangers of other kinds more often (``docs/open_set.md``,
        "Calibrating the threshold"). The strangers are the unknown queries,
        one cluster per class (label each never-enrolled identity with its
        own class; those labelled ``unknown_label_`` count as one class), and
        with ``leave_class_out`` the enrolled classes in turn: each is removed
        from the gallery and its queries play strangers. The threshold must
        hold the target on both kinds.

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
        leave_class_out : bool or "auto", default="auto"
            Let each enrolled class with queries here play strangers in turn.
            ``"auto"``: when the unknown queries come from fewer classes than
            :func:`stranger_classes_needed` of ``target_far`` (of 0.05 without
            a target: 19). Needs two enrolled classes.
        far_rule : {"bound", "empirical"}, default="bound"
            ``"empirical"``: hold ``target_far`` on the rate measured on the
            unknown queries instead (the rule of earlier versions; no
            left-out classes).
        confidence : float, default=0.95
            Level of the one-sided bounds of the false accept rate.

        Returns
        -------
        OpenSetKNeighborsClassifier
            This classifier, with ``threshold_``, ``calibration_``,
            ``expected_far_`` and ``far_interval_`` set.

        Warns
        -----
        FewStrangerClassesWarning
            With ``target_far``, when the stranger classes of both kinds are
            fewer than :func:`stranger_classes_needed` of it.
        """
        check_is_fitted(self)
        if leave_class_out not in (True, False, "auto"):
            raise ValueError(
                f"leave_class_out must be True, False or 'auto'; got {leave_class_out!r}."
            )
        Z, y = self._embed(X, y, reset=False)
        _, pred, match = self._vote(Z)
        y = np.asarray(y)
        known = np.isin(y, self.classes_)
        correct = known & (self.classes_[pred] == y)
        needed = stranger_classes_needed(0.05 if target_far is None else target_far)
        if leave_class_out == "auto":
            leave_class_out = far_rule != "empirical" and len(np.unique(y[~known])) < needed
        left_out = self._left_out(Z, y, known) if leave_class_out else None
        result = _calibrate(
            match,
            correct,
            known,
            targets=(target_far, target_precision),
            groups=y,
            left_out=left_out,
            far_rule=far_rule,
            confidence=confidence,
            stacklevel=3,
        )
        self.threshold_ = result["threshold"]
        self.calibration_ = result
        self.expected_far_ = result["expected_far"]
        self.far_interval_ = result["far_interval"]
        return self

    def _left_out(self, Z: np.ndarray, y: np.ndarray, known: np.ndarray):
        """Match distances of the known queries with their own class left out of the gallery."""
        if len(self.classes_) < 2:
            return None
        parts, classes = [], []
        for code, label in enumerate(self.classes_):
            rows = known & (y == label)
            if rows.any():
                parts.append(self._vote(Z[rows], exclude=code)[2])
                classes.append(y[rows])
        if not parts:
            return None
        return np.concatenate(parts), np.concatenate(classes)
