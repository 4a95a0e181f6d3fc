"""Evaluation and use of embeddings, by role.

- :mod:`sktriplet.evaluation.metrics`: what scores an embedding: retrieval
  (precision@k, MAP@R, ...), verification (TAR@FAR, EER, ROC AUC) and
  triplet accuracy; plain NumPy / PyTorch.
- :mod:`sktriplet.evaluation.scoring`: those metrics as scikit-learn
  scorers, for ``GridSearchCV(scoring=...)``.
- :mod:`sktriplet.evaluation.selection`: ``PreferDefault``, a
  ``GridSearchCV(refit=...)`` rule that keeps the default candidate unless
  another clearly wins.
- :mod:`sktriplet.evaluation.neighbors`: what serves an embedding: the
  open-set classifier, threshold calibration, pair verification and the
  nearest-neighbour indexes (exact, faiss, hnswlib).
- :mod:`sktriplet.evaluation.plotting`: embedding maps, training curves and
  neighbour grids (matplotlib, imported lazily).
"""
