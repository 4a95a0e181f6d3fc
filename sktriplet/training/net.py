"""The skorch net that :class:`sktriplet.TripletEmbedder` owns.

Triplet logic enters skorch only through its override points: the criterion
(a registered loss such as :class:`sktriplet.triplets.losses.TripletLoss`, or
the user's) is called through the one loss interface, ``get_iterator`` draws PK batches
for training, and ``get_loss`` refuses a non-finite loss before the optimizer
steps. skorch's loop, callbacks, history and checkpointing stay as they are.

The net also keeps a snapshot of the module, the optimizer and the torch
random state at the end of every epoch: a ``KeyboardInterrupt`` in the middle
of an epoch rolls back to the last completed epoch (skorch then ends ``fit``
normally), and non-finite weights at the end of an epoch stop training.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import torch
from skorch import NeuralNet
from skorch.utils import TeeGenerator, to_tensor
from torch.utils.data import BatchSampler, SequentialSampler

from sktriplet.inputs.triplet_batches import TripletBatchSampler, TripletDataset
from sktriplet.networks.layers import regularization_loss
from sktriplet.networks.split import is_pretrained
from sktriplet.runtime.allocator import keep_freed_memory
from sktriplet.runtime.loader_errors import clean_loader_errors
from sktriplet.runtime.precision import resolve_precision
from sktriplet.runtime.threads import fit_threads
from sktriplet.training.criterion import call_criterion
from sktriplet.training.errors import StopTraining, TrainingDivergedError
from sktriplet.training.sampling import MIN_BATCHES_PER_EPOCH, PKSampler

__all__ = ["StopTraining", "TrainingDivergedError", "TripletNet"]


class TripletNet(NeuralNet):
    """A skorch ``NeuralNet`` that trains on PK batches with a triplet criterion.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`skorch.NeuralNet`.
    samples_per_class : int, default=8
        ``K`` of the PK batches (see :class:`sktriplet.training.sampling.PKSampler`).
    seed : int or None, default=None
        Seed of the PK batches; epoch ``e`` uses ``(seed, e)``.
    precision : {"auto", "32", "bf16", "16"}, default="32"
        As for :class:`sktriplet.TripletEmbedder`
        (:func:`~sktriplet.runtime.precision.resolve_precision`): training
        passes under ``"bf16"`` and ``"16"`` run the module's forward pass under
        :func:`torch.autocast` with bfloat16 or float16 (the loss computes
        distances and mines in float32 regardless), and validation embeds in
        the inference precision; ``"16"`` also scales the
        loss with a :class:`torch.amp.GradScaler` (kept as ``grad_scaler_``)
        so that small float16 gradients do not flush to zero.
    augment : callable or None, default=None
        Applied to the input of every training batch (never at inference),
        e.g. :class:`sktriplet.vision.augment.RandomAffine` for images.
    n_threads : int or None, default=None
        torch threads while training on the CPU. ``None``: one for a small
        network, else torch's count capped by the limit joblib or
        threadpoolctl set (see :func:`sktriplet.runtime.threads.choose_threads`).

    Attributes
    ----------
    rng_state_ : torch.Tensor
        The CPU torch random state at the end of the last epoch; a
        warm-started :class:`sktriplet.TripletEmbedder` continues from it.
    epoch_snapshot_ : dict or None
        While training, the :meth:`snapshot` taken at the end of the last
        epoch (a ``KeyboardInterrupt`` rolls back to it); ``None`` after.
    interrupted_ : bool
        Whether the last training loop ended by a ``KeyboardInterrupt``
        other than a planned :class:`~sktriplet.training.errors.StopTraining`.
    """

    def __init__(
        self,
        *args,
        samples_per_class: int = 8,
        seed: int | None = None,
        precision: str = "32",
        augment=None,
        n_threads: int | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.samples_per_class = samples_per_class
        self.seed = seed
        self.precision = precision
        self.augment = augment
        self.n_threads = n_threads

    def get_default_callbacks(self):
        """The default callbacks of skorch, the epoch table coloured only on a terminal."""
        from sktriplet.training.callbacks import TerminalPrintLog

        # An instance, not the class: skorch runs PrintLog instances last.
        return [
            (name, TerminalPrintLog()) if name == "print_log" else (name, cb)
            for name, cb in super().get_default_callbacks()
        ]

    # ------------------------------------------------------ mixed precision
    def autocast(self):
        """The autocast context of ``precision``'s training passes (disabled for float32)."""
        pretrained = is_pretrained(self.module_)
        fit = resolve_precision(self.precision, self.device, pretrained=pretrained).fit
        dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(fit)
        return torch.autocast(
            device_type=torch.device(self.device).type,
            dtype=dtype,
            enabled=dtype is not None,
        )

    def infer(self, x, **fit_params):
        """The module's forward pass, under autocast with ``precision``."""
        with self.autocast():
            return super().infer(x, **fit_params)

    def _set_training(self, training=True):
        # skorch sets the mode of every submodule before each batch; setting
        # an nn.Module attribute is slow, so only modules in the other mode
        # are switched (same result, ~0.1 ms less per batch for small nets).
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and any(
                m.training != training for m in module.modules()
            ):
                module.train(training)

    def train_step_single(self, batch, **fit_params):
        """Forward, loss and backward; the loss is scaled for ``precision="16"``."""
        if self.augment is not None:
            Xi, yi = batch
            batch = (self.augment(Xi.to(self.device)), yi)
        if self.precision != "16":
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        Xi, yi = batch
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self.grad_scaler_.scale(loss).backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        """One optimizer step; with ``precision="16"`` through the grad scaler."""
        if self.precision != "16":
            return super().train_step(batch, **fit_params)
        if getattr(self, "grad_scaler_", None) is None:
            self.grad_scaler_ = torch.amp.GradScaler(torch.device(self.device).type)
        scaler = self.grad_scaler_
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        optimizers = [getattr(self, name + "_") for name in self._optimizers]
        for optimizer in optimizers:
            scaler.unscale_(optimizer)  # callbacks (e.g. clipping) see true gradients
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(self.get_all_learnable_params()),
            batch=batch,
            training=True,
        )
        for optimizer in optimizers:
            scaler.step(optimizer)  # skipped when a gradient is not finite
        scaler.update()
        return step

    def get_iterator(self, dataset, training=False):
        """PK batches for training, plain sequential batches otherwise.

        A :class:`~sktriplet.inputs.triplet_batches.TripletDataset` (triplet mode)
        is trained on shuffled batches of ``batch_size`` triplets
        (:class:`~sktriplet.inputs.triplet_batches.TripletBatchSampler`, seeded per
        epoch as the PK batches are); each batch holds the distinct samples
        of its triplets and the ``(m, 3)`` triplets into them as the target.

        The loader is skorch's ``iterator_train`` / ``iterator_valid`` class
        with the ``iterator_train__*`` / ``iterator_valid__*`` parameters
        (``num_workers``, ``pin_memory``, ``persistent_workers``,
        ``collate_fn``, ...), as in skorch; only the batches are ours.
        """
        if training:
            if hasattr(dataset, "set_epoch"):
                # Augmentation drawn as files are read follows the epoch
                # (workers get the dataset as it is when the loader starts).
                dataset.set_epoch(len(self.history))
            if isinstance(dataset, TripletDataset):
                batches = TripletBatchSampler(
                    len(dataset), self.batch_size, random_state=self.seed, epoch=len(self.history)
                )
                return self.batch_loader(dataset, batches, training=training)
            batches = PKSampler(
                dataset.labels,
                batch_size=self.batch_size,
                samples_per_class=self.samples_per_class,
                random_state=self.seed,
                epoch=len(self.history),
                min_batches=self.min_batches_per_epoch(),
            )
        else:
            batches = BatchSampler(SequentialSampler(dataset), self.batch_size, drop_last=False)
        return self.batch_loader(dataset, batches, training=training)

    def min_batches_per_epoch(self) -> int:
        """The floor on PK batches per epoch: ``iterator_train__min_batches``.

        Its default, :data:`~sktriplet.training.sampling.MIN_BATCHES_PER_EPOCH`,
        gives a tiny data set a few optimizer steps per epoch; ``1`` sets no
        floor (one pass of PK batches per epoch).
        """
        return int(self.get_params_for("iterator_train").get("min_batches", MIN_BATCHES_PER_EPOCH))

    def batch_loader(self, dataset, batches, training=False, **overrides):
        """A data loader over ``dataset`` that yields the given batches of indices.

        Parameters
        ----------
        dataset : torch.utils.data.Dataset
            A dataset whose ``fetches_batches`` is true is indexed with a
            whole batch at a time; any other one sample at a time, and the
            samples are collated.
        batches : iterable of list of int
            The batches (a batch sampler).
        training : bool, default=False
            Use the ``iterator_train`` settings, else ``iterator_valid``.
        **overrides : dict
            Loader settings that replace the net's (e.g. the estimator's
            current ``iterator_valid__*`` parameters at ``transform`` time).

        Returns
        -------
        torch.utils.data.DataLoader
            The loader (skorch's iterator class with its routed parameters);
            with worker processes, wrapped so that an error raised in a
            worker comes out as itself, with its own message
            (:func:`~sktriplet.runtime.loader_errors.clean_loader_errors`).
        """
        name = "iterator_train" if training else "iterator_valid"
        kwargs = {**self.get_params_for(name), **overrides}
        given = ("batch_size", "shuffle", "sampler", "batch_sampler", "drop_last", "min_batches")
        for key in given:
            kwargs.pop(key, None)  # the batches are given
        if getattr(dataset, "fetches_batches", False):
            # One fancy index per batch: no per-sample fetch and no collation.
            loader = getattr(self, name)(dataset, sampler=batches, batch_size=None, **kwargs)
        else:
            loader = getattr(self, name)(dataset, batch_sampler=batches, **kwargs)
        return clean_loader_errors(loader)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """The criterion's loss of the batch; raise if it is not finite while training.

        The criterion is called through the one loss interface
        (:func:`~sktriplet.training.criterion.call_criterion`): labels, or
        ``indices_tuple`` for a batch of index triplets.

        While training, the penalties of the module's layers that define
        ``regularization_loss()`` (such as the L2-SP head of
        :class:`~sktriplet.networks.BackboneEmbedder`, see
        :class:`~sktriplet.networks.layers.AnchoredLinear`) are added.
        """
        loss = call_criterion(self.criterion_, y_pred, to_tensor(y_true, device=self.device))
        if training:
            penalty = regularization_loss(self.module_)
            if penalty is not None:
                loss = loss + penalty
        if training and not math.isfinite(loss.item()):
            epoch = len(self.history)
            raise TrainingDivergedError(
                f"the training loss became {loss.item()} in epoch {epoch}: training "
                f"diverged. Lower the learning rate (lr={self.lr} now, try "
                f"lr={self.lr / 10:g}) or check the input for extreme values."
            )
        return loss

    # ------------------------------------------------- snapshots and rollback
    def snapshot(self) -> dict[str, Any]:
        """Copy the training state: module, loss, optimizer, history length, RNG.

        Tensors are copied to the CPU, so a snapshot costs host memory of
        about the module's size (plus the optimizer's state), not GPU memory.

        Returns
        -------
        dict
            Pass it to :meth:`restore`.
        """
        return {
            "module": _cpu_copy(self.module_.state_dict()),
            "criterion": _cpu_copy(self.criterion_.state_dict()),
            "optimizer": _cpu_copy(self.optimizer_.state_dict()),
            "n_epochs": len(self.history),
            "rng_state": torch.get_rng_state(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Return to a state taken by :meth:`snapshot`.

        Parameters
        ----------
        snapshot : dict
            The output of :meth:`snapshot` on this net.
        """
        self.module_.load_state_dict(snapshot["module"])
        if "criterion" in snapshot:  # learnable proxies, classifier weights, memory buffers
            self.criterion_.load_state_dict(snapshot["criterion"])
        self.optimizer_.load_state_dict(snapshot["optimizer"])
        del self.history[snapshot["n_epochs"] :]
        self.rng_state_ = snapshot["rng_state"]

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """Snapshot the state training starts from."""
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.epoch_snapshot_ = self.snapshot()

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Start the epoch's history row; samples augmented as they are read follow the epoch.

        The loader's workers copy the dataset when the epoch's iteration
        starts, so epoch ``e`` (from 0) draws the augmentation of ``e``, in
        an uninterrupted fit as in a resumed one (unless the workers persist
        across epochs, ``iterator_train__persistent_workers=True``).
        """
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid)
        if hasattr(dataset_train, "set_epoch"):
            dataset_train.set_epoch(len(self.history) - 1)

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Check that the weights are finite, then snapshot them."""
        super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid)
        tensors = list(self.module_.parameters()) + [
            b for b in self.module_.buffers() if b.is_floating_point()
        ]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            raise TrainingDivergedError(
                f"the network's weights stopped being finite in epoch {len(self.history)}: "
                f"training diverged. Lower the learning rate (lr={self.lr} now, try "
                f"lr={self.lr / 10:g}) or check the input for extreme values."
            )
        self.epoch_snapshot_ = self.snapshot()
        self.rng_state_ = self.epoch_snapshot_["rng_state"]

    def on_train_end(self, net, X=None, y=None, **kwargs):
        """Drop the last snapshot (it is only needed while training)."""
        super().on_train_end(net, X=X, y=y, **kwargs)
        self.epoch_snapshot_ = None

    def threads(self):
        """The torch thread count for this net's work: a context manager.

        On the CPU, :func:`~sktriplet.runtime.threads.fit_threads` (one thread
        for a small network, the joblib / threadpoolctl limit otherwise, or
        ``n_threads``); elsewhere nothing changes.
        """
        if torch.device(self.device).type != "cpu":
            return contextlib.nullcontext()
        n_threads = getattr(self, "n_threads", None)  # nets pickled by 0.1.0 lack it
        return fit_threads(n_threads, module=self.module_, batch_size=self.batch_size)

    def allocator(self):
        """How the C allocator keeps freed memory during training: a context manager.

        On the CPU, :func:`~sktriplet.runtime.allocator.keep_freed_memory`
        (a training step reuses the pages the step before freed); elsewhere
        nothing changes.
        """
        if torch.device(self.device).type != "cpu":
            return contextlib.nullcontext()
        return keep_freed_memory()

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Skorch's loop; on ``KeyboardInterrupt`` roll back to the last epoch end.

        On the CPU the loop runs inside :func:`~sktriplet.runtime.threads.fit_threads`
        and :func:`~sktriplet.runtime.allocator.keep_freed_memory`.
        """
        self.interrupted_ = False
        try:
            with self.threads(), self.allocator():
                return super().fit_loop(X, y, epochs, **fit_params)
        except StopTraining:
            raise  # a planned stop at the end of an epoch: nothing to roll back
        except KeyboardInterrupt:
            # Any other interrupt (Ctrl-C; skorch's EarlyStopping raises one too)
            # leaves a checkpointed run resumable (training.checkpoints).
            self.interrupted_ = True
            snapshot = getattr(self, "epoch_snapshot_", None)
            # An interrupt after the epoch's snapshot (e.g. skorch's EarlyStopping
            # in on_epoch_end) has nothing to roll back.
            if snapshot is not None and len(self.history) > snapshot["n_epochs"]:
                self.restore(snapshot)
                warnings.warn(
                    f"training interrupted in epoch {snapshot['n_epochs'] + 1}; the "
                    f"network keeps the weights at the end of epoch {snapshot['n_epochs']} "
                    "(0: the weights training started from).",
                    UserWarning,
                    stacklevel=2,
                )
            raise


def _cpu_copy(obj):
    """A copy of nested dicts/lists/tuples with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj
