"""The skorch net that :class:`sktriplet.TripletEmbedder` owns.

Triplet logic enters skorch only through its override points: the criterion
is :class:`sktriplet.losses.TripletLoss`, ``get_iterator`` draws PK batches
for training, and ``get_loss`` refuses a non-finite loss before the optimizer
steps. skorch's loop, callbacks, history and checkpointing stay as they are.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from sktriplet.sampling import PKSampler

__all__ = ["ArrayDataset", "TrainingDivergedError", "TripletNet"]


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss stops being finite."""


class ArrayDataset(Dataset):
    """Samples and integer labels held as arrays, indexed a batch at a time.

    ``dataset[indices]`` returns ``(X[indices], y[indices])`` as tensors, so a
    data loader given a batch sampler fetches each batch with one fancy index.

    Parameters
    ----------
    X : numpy.ndarray
        Samples, first axis indexing them.
    y : numpy.ndarray of shape (n_samples,), default=None
        Integer labels; zeros when ``None``.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray | None = None) -> None:
        self.X = X
        self.y = np.zeros(len(X), dtype=np.int64) if y is None else y

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.X)

    def __getitem__(self, index):
        """Return ``(X[index], y[index])`` as tensors."""
        return torch.from_numpy(np.asarray(self.X[index])), torch.from_numpy(
            np.asarray(self.y[index])
        )


class TripletNet(NeuralNet):
    """A skorch ``NeuralNet`` that trains on PK batches with a triplet criterion.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`skorch.NeuralNet`.
    samples_per_class : int, default=8
        ``K`` of the PK batches (see :class:`sktriplet.sampling.PKSampler`).
    seed : int or None, default=None
        Seed of the PK batches; epoch ``e`` uses ``(seed, e)``.
    """

    def __init__(self, *args, samples_per_class: int = 8, seed: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.samples_per_class = samples_per_class
        self.seed = seed

    def get_iterator(self, dataset, training=False):
        """PK batches for training, plain sequential batches otherwise."""
        if training:
            sampler = PKSampler(
                dataset.y,
                batch_size=self.batch_size,
                samples_per_class=self.samples_per_class,
                random_state=self.seed,
                epoch=len(self.history),
            )
        else:
            sampler = BatchSampler(SequentialSampler(dataset), self.batch_size, drop_last=False)
        return DataLoader(dataset, sampler=sampler, batch_size=None)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Triplet loss of the batch; raise if it is not finite while training."""
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training and not math.isfinite(loss.item()):
            epoch = len(self.history)
            raise TrainingDivergedError(
                f"the training loss became {loss.item()} in epoch {epoch}: training "
                f"diverged. Lower the learning rate (lr={self.lr} now, try "
                f"lr={self.lr / 10:g}) or check the input for extreme values."
            )
        return loss
