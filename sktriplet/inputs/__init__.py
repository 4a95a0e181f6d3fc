"""The input boundary: the only place that knows what ``X`` is.

Validation (:mod:`~sktriplet.inputs.validation`) describes ``X`` with an
:class:`~sktriplet.inputs.spec.InputSpec`; :class:`~sktriplet.inputs.training_data.TrainingData`
hands training its datasets, statistics and probe; :func:`~sktriplet.inputs.loading.make_dataset`
reads validated samples of every kind (rows, images, image files, crop boxes).
"""
