"""Class-balanced ("PK") batches: P classes with K samples each.

Every batch must hold positive pairs for triplet mining to work. A
:class:`PKSampler` yields lists of indices; each list draws ``P`` distinct
classes and ``K`` samples of each. It knows nothing of skorch or
scikit-learn: any ``torch.utils.data.DataLoader`` can take it as its
``batch_sampler`` (or as ``sampler`` with ``batch_size=None``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["MIN_BATCHES_PER_EPOCH", "PKSampler"]

#: Default floor on the batches of an epoch (see ``docs/defaults.md``, "Tiny
#: data sets"): at batch size 128 it applies to at most 128 samples.
MIN_BATCHES_PER_EPOCH = 2


class PKSampler:
    """Batches of ``P`` classes times ``K`` samples per class.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Class label of every sample of the data set the batches index into.
    batch_size : int, default=128
        Number of samples per batch (before singletons, see below). The batch
        takes ``P = batch_size // samples_per_class`` classes; when the data
        has fewer classes with at least two samples than that, it takes all of
        them and more samples of each (``batch_size // n_classes``), so that
        batches keep their size.
    samples_per_class : int, default=8
        ``K``, the samples drawn per class in a batch (at least 2). A class
        with fewer samples than ``K`` repeats some (sampling with
        replacement).
    n_batches : int, default=None
        Batches per epoch. ``None`` gives ``ceil(n_samples / batch_size)``, so
        an epoch is about one pass over the data, but at least
        ``min_batches``.
    min_batches : int, default=MIN_BATCHES_PER_EPOCH
        Floor on the batches of an epoch when ``n_batches`` is ``None``, so
        that a fit on a tiny data set still takes a useful number of
        optimizer steps (one batch per epoch would make 30 epochs 30 steps).
        It only applies to data sets of at most ``(min_batches - 1) *
        batch_size`` samples; ``1`` turns it off.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the draws. With an int, epoch ``e`` draws from the seed
        ``(random_state, e)``, so the same seed gives the same batches and
        every epoch differs from the one before.
    epoch : int, default=0
        Number of the first epoch (so a resumed fit continues the sequence of
        batches of an uninterrupted one). It advances by one on every pass.

    Notes
    -----
    The floor exists because a fit on a tiny data set would otherwise take
    one optimizer step per epoch. Measured (``docs/defaults.md``, "Tiny data
    sets", at ``lr=1e-3``): on 40 samples, 3 epochs leave the training loss
    at about 0.12 with one batch per epoch, 0.09-0.10 with two and 0.02-0.04
    with four; with 10 or more epochs it reaches 0 with two or four. A floor
    of four cost unseen-class MAP@R on 240 face photos at 15 epochs, so the
    default is two.

    Classes are drawn without replacement within a batch, each with
    probability proportional to its size, and the samples of a class are
    taken from a shuffled queue that is refilled when it runs out, so over an
    epoch every sample is visited about once. Classes with a single sample
    cannot serve as anchors; their samples are spread over the batches as
    extra negatives (each appears once per epoch).

    Examples
    --------
    >>> from sktriplet.training.sampling import PKSampler
    >>> sampler = PKSampler([0, 0, 0, 1, 1, 1, 2, 2], batch_size=4,
    ...                     samples_per_class=2, random_state=0)
    >>> len(sampler)  # 8 samples make 2 batches of 4
    2
    >>> [len(batch) for batch in sampler]
    [4, 4]
    >>> len(PKSampler([0, 0, 0, 1, 1, 1, 2, 2], batch_size=8, samples_per_class=2))
    2
    >>> len(PKSampler([0, 0, 0, 1, 1, 1, 2, 2], batch_size=8, samples_per_class=2,
    ...                   min_batches=1))  # one batch of 8 covers them; no floor
    1
    """

    def __init__(
        self,
        labels: Sequence | np.ndarray,
        *,
        batch_size: int = 128,
        samples_per_class: int = 8,
        n_batches: int | None = None,
        min_batches: int = MIN_BATCHES_PER_EPOCH,
        random_state: int | np.random.Generator | None = None,
        epoch: int = 0,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError("labels must be a non-empty 1-D array.")
        if samples_per_class < 2:
            raise ValueError(
                f"samples_per_class={samples_per_class} must be at least 2: "
                "a batch needs positive pairs."
            )
        if min_batches < 1:
            raise ValueError(f"min_batches={min_batches} must be at least 1 (1 sets no floor).")
        if batch_size < samples_per_class:
            raise ValueError(
                f"batch_size={batch_size} must be at least samples_per_class={samples_per_class}."
            )
        _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
        order = np.argsort(codes, kind="stable")
        groups = np.split(order, np.cumsum(counts)[:-1])
        self._groups = [g for g, c in zip(groups, counts, strict=True) if c >= 2]
        self._singletons = np.concatenate(
            [g for g, c in zip(groups, counts, strict=True) if c < 2] or [np.empty(0, int)]
        )
        if not self._groups:
            raise ValueError(
                "every class has a single sample: triplets need at least one class "
                "with two or more samples."
            )
        self.labels = labels
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.n_batches = n_batches
        self.min_batches = min_batches
        self.random_state = random_state
        self.epoch = epoch
        n_classes = len(self._groups)
        self.classes_per_batch = min(batch_size // samples_per_class, n_classes)
        self.samples_per_class_ = max(samples_per_class, batch_size // self.classes_per_batch)
        sizes = np.array([len(g) for g in self._groups], dtype=float)
        self._weights = sizes / sizes.sum()

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.n_batches is not None:
            return int(self.n_batches)
        return max(self.min_batches, math.ceil(len(self.labels) / self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the batches of one epoch as lists of indices."""
        if isinstance(self.random_state, (int, np.integer)):
            rng = np.random.default_rng([int(self.random_state), self.epoch])
        else:
            rng = np.random.default_rng(self.random_state)
        self.epoch += 1
        n_batches = len(self)
        queues = [rng.permutation(g) for g in self._groups]
        heads = [0] * len(queues)
        singles = np.array_split(rng.permutation(self._singletons), n_batches)
        p, k = self.classes_per_batch, self.samples_per_class_
        for b in range(n_batches):
            classes = rng.choice(len(self._groups), size=p, replace=False, p=self._weights)
            batch = []
            for c in classes:
                batch.extend(self._take(c, k, queues, heads, rng))
            batch.extend(singles[b].tolist())
            yield batch

    def _take(self, c, k, queues, heads, rng) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            queue, head = queues[c], heads[c]
            if head >= len(queue):
                # Refill: a new shuffle of the class (draws with replacement
                # across refills, never twice the same sample in one refill).
                queue = queues[c] = rng.permutation(self._groups[c])
                head = 0
            take = queue[head : head + k - len(out)]
            heads[c] = head + len(take)
            out.extend(take.tolist())
        return out
