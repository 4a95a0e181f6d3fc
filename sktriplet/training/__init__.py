"""Training: the skorch net, PK sampling, callbacks and schedules.

The distributed extension (:mod:`sktriplet.training.distributed`) is imported
only when used.
"""
