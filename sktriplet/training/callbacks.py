"""skorch callbacks that :class:`sktriplet.TripletEmbedder` adds to its net.

:class:`MiningStats` writes per-epoch mining statistics into the history and
warns when training collapses; :class:`RetrievalValidation` scores retrieval
on held-out data before training and after every epoch, stops early and
restores the best weights (which may be the ones training started from);
:class:`TerminalPrintLog` is skorch's epoch table, coloured only on a
terminal.
They work with any skorch ``NeuralNet``; :class:`MiningStats` records what
the criterion puts in its ``last_stats`` (the statistics protocol of
:class:`sktriplet.triplets.base.MetricLoss`; a criterion without it records
nothing).
"""

from __future__ import annotations

import copy
import math
import re
import sys
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback, PrintLog

from sktriplet.training.errors import StopTraining

__all__ = [
    "CollapseWarning",
    "InputBeatsEmbeddingWarning",
    "MiningStats",
    "RetrievalValidation",
    "TerminalPrintLog",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

_STAT_KEYS = ("active", "fallback", "d_ap", "d_an", "spread")


class CollapseWarning(UserWarning):
    """Training is collapsing: all embeddings converge to one point."""


class InputBeatsEmbeddingWarning(UserWarning):
    """Held-out classes retrieve better from the input itself than from the embedding."""


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
            if key not in stats:  # a loss records the statistics that apply to it
                continue
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
        collapsed = means.get("spread", math.inf) < self.collapse_spread
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


# Why not skorch's train_split + EpochScoring + EarlyStopping + Checkpoint:
# - the held-out split is by class (validation_split="class": the open-set
#   protocol), and skorch's train_split feeds the validation data through the
#   training iterator and the criterion, which would mine triplets on it;
# - retrieval scores (MAP@R) need all held-out embeddings at once, not a mean
#   of per-batch scores;
# - the weights training started from compete as "epoch 0" and are kept when
#   no epoch beats them, which EarlyStopping's load_best cannot express;
# - the best weights are kept in memory, not written to disk by Checkpoint.
# So the project keeps this one callback; mining statistics (MiningStats)
# likewise need the criterion's per-batch statistics, not an EpochScoring.
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
    X : numpy.ndarray or torch.utils.data.Dataset
        Held-out samples, already in the form the network takes, or a
        dataset of them (e.g. :meth:`TrainingData.valid_dataset()
        <sktriplet.inputs.training_data.TrainingData.valid_dataset>`).
    y : numpy.ndarray of shape (n_samples,)
        Their labels.
    distance : str, default="sqeuclidean"
        Distance used for ranking.
    patience : int or None, default=None
        Stop when MAP@R has not improved for this many epochs. ``None``
        trains for all epochs.
    batch_size : int, default=1024
        Samples embedded at a time (in-memory samples; files go in the net's
        batches).
    compare_input : bool, default=True
        Also score the held-out samples by the input itself (flattened, as
        given, by ``distance``) before training (``input_scores_``), and warn
        with :class:`InputBeatsEmbeddingWarning` at the end of training when
        the kept network's MAP@R is below it, naming the fixes.
    min_gain : float, default=0.0
        An epoch replaces the weights training started from only when its
        MAP@R beats theirs by more than this (later epochs must beat the best
        epoch so far, as usual): a margin against the noise of a small
        hold-out. A negative value prefers leaving the start: the first
        epoch that scores at most ``-min_gain`` below it replaces it.

    Attributes
    ----------
    best_score_ : float
        Best validation MAP@R.
    best_epoch_ : int
        Epoch (1-based) that reached it; the number of epochs trained before
        this fit (``0`` for a fresh network) when no epoch beat the start.
    start_scores_ : dict of str to float
        Scores of the weights training started from.
    input_scores_ : dict of str to float
        With ``compare_input``: scores of the input itself.
    """

    def __init__(
        self,
        X,
        y,
        distance="sqeuclidean",
        patience=None,
        batch_size=1024,
        compare_input=True,
        min_gain=0.0,
    ) -> None:
        self.X = X
        self.y = y
        self.distance = distance
        self.patience = patience
        self.batch_size = batch_size
        self.compare_input = compare_input
        self.min_gain = min_gain

    def initialize(self):  # noqa: D102
        self.best_score_ = -math.inf
        self.best_epoch_ = 0
        self._best_state = None
        self._start_epoch = 0
        self._since_best = 0
        self._first_epoch = True
        self.start_scores_: dict[str, float] = {}
        self.input_scores_: dict[str, float] = {}
        return self

    def _dataset(self):
        from sktriplet.inputs.loading import ArrayDataset

        return ArrayDataset(self.X) if isinstance(self.X, np.ndarray) else self.X

    def _embed(self, net) -> np.ndarray:
        from sktriplet.runtime.inference import embed_dataset

        dataset = self._dataset()
        # In-memory arrays in batches of batch_size; files in the net's batches.
        in_memory = getattr(dataset, "array", None) is not None
        return embed_dataset(net, dataset, self.batch_size if in_memory else None)

    def _scores(self, net, Z=None) -> dict[str, float]:
        from sktriplet.evaluation.metrics import retrieval_scores

        Z = self._embed(net) if Z is None else Z
        scores = retrieval_scores(Z, self.y, k=1, distance=self.distance)
        return {k: float(scores[k]) for k in ("map_at_r", "r_precision", "precision_at_1")}

    def _keep_if_best(self, net, score: float, epoch: int) -> bool:
        bar = self.best_score_
        if self._best_state is not None and self.best_epoch_ == self._start_epoch:
            bar += self.min_gain  # leaving the start needs the margin
        if not score > bar:
            return False
        self.best_score_, self.best_epoch_ = score, epoch
        self._best_state = copy.deepcopy(net.module_.state_dict())
        return True

    def on_train_begin(self, net, **kwargs):  # noqa: D102
        # Epoch 0: the weights training starts from compete with every epoch.
        self.start_scores_ = self._scores(net)
        given = getattr(self._dataset(), "array", None)
        if self.compare_input and given is not None:
            # (Held-out image files are not decoded a second time for this.)
            flat = np.asarray(given, dtype=np.float32).reshape(len(given), -1)
            self.input_scores_ = self._scores(net, flat)
        self._start_epoch = len(net.history)
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
        given = self.input_scores_.get("map_at_r", -math.inf)
        if self.best_score_ < given:
            warnings.warn(
                f"the held-out classes retrieve worse from the embedding (validation "
                f"MAP@R {self.best_score_:.3f}) than from the input itself ({given:.3f}): "
                "training has not learnt what carries over to other classes. With few "
                "training classes, use scaling='global' for pixel-like rows and train "
                "less (a lower lr or fewer max_epochs), or train on more classes; or "
                "use the input as it is.",
                InputBeatsEmbeddingWarning,
                stacklevel=2,
            )
        # The held-out data and the best weights are only needed while
        # training: do not keep them in the fitted net.
        self.X = self.y = self._best_state = None


class TerminalPrintLog(PrintLog):
    """The epoch table of skorch, with ANSI colours only when they reach a terminal.

    skorch's :class:`~skorch.callbacks.PrintLog` colours the best value of
    every column with ANSI escape codes (``ESC[36m`` ... ``ESC[0m``), which
    end up as garbage in redirected logs, CI output and notebooks
    saved as text. This subclass prints the same table and drops the codes
    unless ``color`` says otherwise.

    Parameters
    ----------
    color : bool or None, default=None
        ``None``: colour when the sink is ``print`` and ``sys.stdout`` is a
        terminal (``isatty()``); ``True`` / ``False``: always / never.
    **kwargs : dict
        As for :class:`skorch.callbacks.PrintLog` (``keys_ignored``, ``sink``,
        ``tablefmt``, ``floatfmt``, ``stralign``).

    Examples
    --------
    >>> from sktriplet.training.callbacks import TerminalPrintLog
    >>> log = TerminalPrintLog(color=False).initialize()
    >>> print(log.table({"epoch": 1, "train_loss": 0.25, "train_loss_best": True}))
      epoch    train_loss
    -------  ------------
          1        0.2500
    """

    def __init__(self, color: bool | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.color = color

    def _colored(self) -> bool:
        if self.color is not None:
            return bool(self.color)
        stdout = sys.stdout
        return self.sink is print and hasattr(stdout, "isatty") and stdout.isatty()

    def table(self, row) -> str:
        """The epoch's table row(s), without colour codes unless they reach a terminal."""
        text = super().table(row)
        return text if self._colored() else _ANSI.sub("", text)
