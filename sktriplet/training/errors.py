"""Exceptions of training, shared by the skorch net and its callbacks."""

from __future__ import annotations

__all__ = ["StopTraining", "TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss stops being finite."""


class StopTraining(KeyboardInterrupt):
    """Raised by a callback at the end of an epoch to end training early.

    skorch ends ``fit`` normally on a ``KeyboardInterrupt``; this subclass
    marks a planned stop (early stopping), which keeps the weights as they are.
    """
