"""Serving embeddings: open-set recognition, verification and neighbour indexes.

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

The gallery is searched through an index with one small interface:
:class:`ExactIndex` (exhaustive, the default), or the approximate
:class:`FaissIndex` and :class:`HNSWIndex` for galleries of millions of rows
(optional packages, imported only when used); :func:`make_index` builds one
by name.

Import these names from here; the submodules hold one concept each:
:mod:`~sktriplet.evaluation.neighbors.open_set` (the classifier),
:mod:`~sktriplet.evaluation.neighbors.calibration` (choosing thresholds),
:mod:`~sktriplet.evaluation.neighbors.far_bound` (the false accept rate of
strangers and its bounds over their classes),
:mod:`~sktriplet.evaluation.neighbors.pairs` (pair verification) and
:mod:`~sktriplet.evaluation.neighbors.index` (the index backends).

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

from sktriplet.evaluation.neighbors.calibration import (
    FAR_RULES,
    FewStrangerClassesWarning,
    calibrate_pair_threshold,
    calibrate_threshold,
    stranger_classes_needed,
)
from sktriplet.evaluation.neighbors.far_bound import stranger_far
from sktriplet.evaluation.neighbors.index import (
    ALGORITHMS,
    ExactIndex,
    FaissIndex,
    HNSWIndex,
    auto_ef_search,
    auto_nprobe,
    make_index,
)
from sktriplet.evaluation.neighbors.open_set import OpenSetKNeighborsClassifier
from sktriplet.evaluation.neighbors.pairs import pair_distances, verify_pairs

__all__ = [
    "ALGORITHMS",
    "FAR_RULES",
    "ExactIndex",
    "FaissIndex",
    "FewStrangerClassesWarning",
    "HNSWIndex",
    "OpenSetKNeighborsClassifier",
    "auto_ef_search",
    "auto_nprobe",
    "calibrate_pair_threshold",
    "calibrate_threshold",
    "make_index",
    "pair_distances",
    "stranger_classes_needed",
    "stranger_far",
    "verify_pairs",
]
