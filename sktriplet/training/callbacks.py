"""skorch callbacks that :class:`sktriplet.TripletEmbedder` adds to its net.

:class:`MiningStats` writes per-epoch mining statistics into the history and
warns when training collapses; :class:`RetrievalValidation` scores retrieval
on held-out data before training and after every epoch, stops early and
restores the best weights (which may be the ones training started from).
Both work with any skorch ``NeuralNet`` whose criterion is a
:class:`sktriplet.triplets.losses.TripletLoss`.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback

from sktriplet.training.net import StopTraining

__all__ = ["CollapseWarning", "MiningStats", "RetrievalValidation"]

_STAT_KEYS = ("active", "fallback", "d_ap", "d_an", "spread")


class CollapseWarning(UserWarning):
    """Training is collapsing: all embeddings converge to one point."""


class MiningStats(Callback):
    """Record mining statistics per epoch and warn when training collapses.

    After every epoch the history gets ``train_active`` (fraction of mined
    triplets with a non-zero loss term), ``train_fallback`` (semi-hard:
    fraction of positive pairs with no negative farther than the positive),
    ``train_d_ap`` and ``train_d_an`` (mean anchor-positive and
    anchor-negative distance of the mined triplets) and ``train_spread``
    (mean distance between all pairs of a batch), each averaged over the
    epoch's batches. Statistics stay on the device until the epoch ends, so
    they cost no synchronisation per batch.

    Parameters
    ----------
    collapse_spread : float, default=1e-3
        Warn when the mean pairwise distance falls below this value.
    collapse_patience : int, default=3
        Also warn when the training loss has stayed within 1 % of the margin
        for this many epochs (the hinge with every distance equal).

    Examples
    --------
    >>> from sktriplet.training.callbacks import MiningStats
    >>> MiningStats(collapse_patience=5)  # doctest: +ELLIPSIS
    <sktriplet.training.callbacks.MiningStats object at ...>
    """

    def __init__(self, collapse_spread: float = 1e-3, collapse_patience: int = 3) -> None:
        self.collapse_spread = collapse_spread
        self.collapse_patience = collapse_patience

    def initialize(self):  # noqa: D102
        self._sums: dict[str, torch.Tensor] = {}
        self._batches = 0
        self._at_margin = 0
        self._warned = False
        return self

    def on_train_begin(self, net, **kwargs):  # noqa: D102
        net.criterion_.record_stats = True

    def on_epoch_begin(self, net, **kwargs):  # noqa: D102
        self._sums, self._batches = {}, 0

    def on_batch_end(self, net, training=False, **kwargs):  # noqa: D102
        stats = getattr(net.criterion_, "last_stats", None)
        if not training or not stats:
            return
        for key in _STAT_KEYS:
            value = stats[key].detach()
            self._sums[key] = self._sums[key] + value if key in self._sums else value
        self._batches += 1

    def on_epoch_end(self, net, **kwargs):  # noqa: D102
        if not self._batches:
            return
        means = {k: float(v.item()) / self._batches for k, v in self._sums.items()}
        for key, value in means.items():
            net.history.record(f"train_{key}", value)
        self._check_collapse(net, means)

    def _check_collapse(self, net, means: dict[str, float]) -> None:
        criterion = net.criterion_
        loss = net.history[-1].get("train_loss", math.nan)
        margin = getattr(criterion, "margin", None)
        pinned = (
            margin is not None
            and not getattr(criterion, "soft", False)
            and margin > 0
            and abs(loss - margin) <= 0.01 * margin
        )
        self._at_margin = self._at_margin + 1 if pinned else 0
        collapsed = means["spread"] < self.collapse_spread
        if self._warned or not (collapsed or self._at_margin >= self.collapse_patience):
            return
        self._warned = True
        what = (
            f"the mean distance between embeddings fell to {means['spread']:.2e}"
            if collapsed
            else f"the loss has stayed at the margin ({margin}) for {self._at_margin} epochs"
        )
        warnings.warn(
            f"Training is collapsing: {what} (epoch {len(net.history)}), so all "
            "embeddings are converging to one point. Likely fixes: a lower lr, a "
            "larger samples_per_class, mining='semihard' (if using 'hard'), or "
            "soft=True.",
            CollapseWarning,
            stacklevel=2,
        )


class RetrievalValidation(Callback):
    """Score retrieval on held-out data each epoch; stop early; keep the best.

    After every epoch the held-out samples are embedded (eval mode, no
    gradient) and scored leave-one-out with
    :func:`sktriplet.evaluation.metrics.retrieval_scores`; the history gets
    ``valid_map_at_r``, ``valid_r_precision`` and ``valid_precision_at_1``,
    and ``valid_map_at_r_best`` marks the best epoch so far. At the end of
    training the weights of the best epoch are restored.

    The weights training starts from ("epoch 0": the untrained network, or
    the previous fit's with ``warm_start``) are scored too, before the first
    epoch, and compete with the epochs: an epoch counts as an improvement
    only when it beats them, and when no epoch does, they are restored. So
    with held-out classes the kept network is never worse on them than where
    training started. Their scores go into the first epoch's history row as
    ``valid_map_at_r_start``, ``valid_r_precision_start`` and
    ``valid_precision_at_1_start``.

    Parameters
    ----------
    X : numpy.ndarray
        Held-out samples, already in the form the network takes.
    y : numpy.ndarray of shape (n_samples,)
        Their labels.
    distance : str, default="sqeuclidean"
        Distance used for ranking.
    patience : int or None, default=None
        Stop when MAP@R has not improved for this many epochs. ``None``
        trains for all epochs.
    batch_size : int, default=1024
        Samples embedded at a time.

    Attributes
    ----------
    best_score_ : float
        Best validation MAP@R.
    best_epoch_ : int
        Epoch (1-based) that reached it; the number of epochs trained before
        this fit (``0`` for a fresh network) when no epoch beat the start.
    start_scores_ : dict of str to float
        Scores of the weights training started from.
    """

    def __init__(self, X, y, distance="sqeuclidean", patience=None, batch_size=1024) -> None:
        self.X = X
        self.y = y
        self.distance = distance
        self.patience = patience
        self.batch_size = batch_size

    def initialize(self):  # noqa: D102
        self.best_score_ = -math.inf
        self.best_epoch_ = 0
        self._best_state = None
        self._since_best = 0
        self._first_epoch = True
        self.start_scores_: dict[str, float] = {}
        return self

    def _embed(self, net) -> np.ndarray:
        from sktriplet.training.inference import embed, embed_dataset

        if isinstance(self.X, np.ndarray):
            return embed(net.module_, self.X, device=net.device, batch_size=self.batch_size)
        return embed_dataset(net, self.X)  # a dataset, e.g. of image files

    def _scores(self, net) -> dict[str, float]:
        from sktriplet.evaluation.metrics import retrieval_scores

        scores = retrieval_scores(self._embed(net), self.y, k=1, distance=self.distance)
        return {k: float(scores[k]) for k in ("map_at_r", "r_precision", "precision_at_1")}

    def _keep_if_best(self, net, score: float, epoch: int) -> bool:
        if not score > self.best_score_:
            return False
        self.best_score_, self.best_epoch_ = score, epoch
        self._best_state = copy.deepcopy(net.module_.state_dict())
        return True

    def on_train_begin(self, net, **kwargs):  # noqa: D102
        # Epoch 0: the weights training starts from compete with every epoch.
        self.start_scores_ = self._scores(net)
        self._keep_if_best(net, self.start_scores_["map_at_r"], len(net.history))
        self._since_best = 0
        self._first_epoch = True

    def on_epoch_end(self, net, **kwargs):  # noqa: D102
        scores = self._scores(net)
        score = scores["map_at_r"]
        for key, value in scores.items():
            net.history.record(f"valid_{key}", value)
        if self._first_epoch:
            for key, value in self.start_scores_.items():
                net.history.record(f"valid_{key}_start", value)
            self._first_epoch = False
        improved = self._keep_if_best(net, score, len(net.history))
        net.history.record("valid_map_at_r_best", improved)
        self._since_best = 0 if improved else self._since_best + 1
        if self.patience is not None and self._since_best >= self.patience:
            if net.verbose:
                print(
                    f"Stopping: validation MAP@R has not improved for {self.patience} "
                    f"epochs; best {self.best_score_:.4f} in epoch {self.best_epoch_}."
                )
            raise StopTraining

    def on_train_end(self, net, **kwargs):  # noqa: D102
        if self._best_state is not None:
            net.module_.load_state_dict(self._best_state)
        # The held-out data and the best weights are only needed while
        # training: do not keep them in the fitted net.
        self.X = self.y = self._best_state = None
