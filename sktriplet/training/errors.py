"""Exceptions of training, and the one check that embeddings are finite.

The exceptions are shared by the skorch net and its callbacks;
:func:`check_finite_embeddings` is what ``fit`` runs on training samples once
training ends and what ``transform`` runs on its output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sktriplet.inputs.validation import all_finite
from sktriplet.runtime.inference import TRANSFORM_BATCH_SIZE

__all__ = ["StopTraining", "TrainingDivergedError", "check_finite_embeddings"]


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss stops being finite."""


class StopTraining(KeyboardInterrupt):
    """Raised by a callback at the end of an epoch to end training early.

    skorch ends ``fit`` normally on a ``KeyboardInterrupt``; this subclass
    marks a planned stop (early stopping), which keeps the weights as they are.
    """


def check_finite_embeddings(
    out: np.ndarray, *, net: Any = None, batch_size: int = TRANSFORM_BATCH_SIZE
) -> None:
    """Raise when some embeddings are NaN or infinite (one vectorised pass).

    Parameters
    ----------
    out : numpy.ndarray of shape (n_samples, width)
        Embeddings.
    net : skorch.NeuralNet, default=None
        Given after training (``out`` embeds training samples): the error is
        a :class:`TrainingDivergedError` naming the epochs trained and a
        lower learning rate. ``None`` (``transform``): a
        :class:`FloatingPointError` naming the batch of samples where the
        first non-finite embedding is.
    batch_size : int, default=TRANSFORM_BATCH_SIZE
        Samples per batch, to name that batch.

    Raises
    ------
    TrainingDivergedError or FloatingPointError
        With the fix in the message.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.training.errors import check_finite_embeddings
    >>> check_finite_embeddings(np.zeros((3, 2), np.float32))
    >>> check_finite_embeddings(np.array([[0.0], [np.nan]]), batch_size=1)
    Traceback (most recent call last):
    ...
    FloatingPointError: the network returned non-finite embeddings for samples 1 to 1; \
check X for extreme values (refit on rescaled data) or refit with a lower lr.
    """
    if all_finite(out):
        return
    if net is not None:
        raise TrainingDivergedError(
            f"after {len(net.history)} epoch(s) the network maps training samples to "
            f"non-finite embeddings: training diverged. Lower the learning rate (lr={net.lr} "
            f"now, try lr={net.lr / 10:g}) or check the input for extreme values."
        )
    bad = ~np.isfinite(out).all(axis=1)
    start = int(np.argmax(bad)) // batch_size * batch_size
    stop = min(start + batch_size, len(out))
    raise FloatingPointError(
        f"the network returned non-finite embeddings for samples {start} to {stop - 1}; "
        "check X for extreme values (refit on rescaled data) or refit with a lower lr."
    )
