"""Metrics of embeddings: retrieval, verification and triplet accuracy.

Everything here is plain NumPy / PyTorch and knows nothing of scikit-learn
estimators or skorch (the scorers for model selection are in
:mod:`sktriplet.evaluation.scoring`). Import the metrics from here; the
submodules hold one family each.

Retrieval metrics (:mod:`~sktriplet.evaluation.metrics.retrieval`)
    :func:`precision_at_k`, :func:`recall_at_k`, :func:`r_precision`,
    :func:`map_at_r` and :func:`retrieval_scores` (all of them in one pass).
    Each ranks a *gallery* by distance to every *query*. Without a gallery
    the evaluation is leave-one-out: every sample is a query against all the
    others.

Verification metrics (:mod:`~sktriplet.evaluation.metrics.verification`)
    :func:`verification_accuracy` (k-fold, the face benchmarks' protocol),
    :func:`verification_scores`, :func:`tar_at_far` and
    :func:`equal_error_rate` score a distance per pair of samples against
    whether the pair is "same" or "different" (face verification).

Triplet accuracy (:mod:`~sktriplet.evaluation.metrics.triplet_scores`)
    :func:`triplet_accuracy` and :func:`indexed_triplet_accuracy`: how often
    an embedding agrees with triplet judgements, the score of an embedding
    learnt from triplets (no labels).

Conventions shared by the retrieval metrics:

* For a query with label ``c``, ``R`` is the number of gallery samples
  labelled ``c``, the query itself excluded in leave-one-out mode. Queries
  with ``R = 0`` cannot be scored: they are *skipped*, and every average is
  over the other queries only. If every query is skipped the result is
  ``nan`` and a :class:`RuntimeWarning` is issued.
* Neighbours are ranked by increasing distance; equal distances are ranked
  by increasing gallery index (the order of a stable sort), so results are
  deterministic even with ties. The ranking is computed, with one matrix
  product, on a quantity that orders each query's gallery exactly like the
  distance: ``||g||^2 - 2 q.g`` for ``"sqeuclidean"`` and ``"euclidean"``
  (which therefore always give the same results) and ``-cos(q, g)`` for
  ``"cosine"``. Ties are exact ties of that quantity.
* In leave-one-out mode the query is removed from its own ranking by index,
  not by distance: an exact duplicate of the query stays in the ranking.
* Queries are processed in blocks, so memory stays bounded by a block's
  distance matrix (never the full ``n_queries x n_gallery`` one). On a
  gallery of 4096 samples or more only about ``1.5 * max(k, R)`` candidates
  per query are sorted, so the cost is dominated by the matrix product as
  long as classes are small compared with the gallery.
"""

from sktriplet.evaluation.metrics.retrieval import (
    map_at_r,
    precision_at_k,
    r_precision,
    recall_at_k,
    retrieval_scores,
)
from sktriplet.evaluation.metrics.triplet_scores import (
    indexed_triplet_accuracy,
    triplet_accuracy,
)
from sktriplet.evaluation.metrics.verification import (
    equal_error_rate,
    tar_at_far,
    verification_accuracy,
    verification_scores,
)

__all__ = [
    "equal_error_rate",
    "indexed_triplet_accuracy",
    "map_at_r",
    "precision_at_k",
    "r_precision",
    "recall_at_k",
    "retrieval_scores",
    "tar_at_far",
    "triplet_accuracy",
    "verification_accuracy",
    "verification_scores",
]
