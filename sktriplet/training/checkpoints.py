"""Fits that survive being killed: every epoch's training state on disk, resumed by the next fit.

With ``TripletEmbedder(checkpoint_dir=DIR)``, ``fit`` keeps in ``DIR``:

- ``fit.json``: the fit's identity (:func:`sktriplet.training.identity.fit_identity`:
  the parameters that change training, a digest of the data, the network a
  warm start continues) and its seed, written once when the fit starts;
- ``stage-N.pt``: the complete training state at the end of the last
  completed epoch of the fit's ``N``-th training run (a fit trains in one run,
  stage 0, unless a route trains parts of the network in turn). After every
  epoch it holds the network, the loss's state (learnable proxies, classifier
  weights, memory buffers), the optimizer, the learning-rate schedule and the
  other callbacks' state (the validation's best weights and score, its
  patience count), the history, the torch, numpy and Python random states and
  the epoch number (the PK batches of epoch ``e`` are drawn from ``(seed,
  e)``, so it is the sampler's position), and whether the run finished.

Every file is written atomically (:func:`sktriplet.runtime.durable.write_atomically`:
a temporary file, ``fsync``, ``os.replace``, ``fsync`` of the directory), so a
process killed at any moment leaves the previous complete state. The format
holds tensors and plain containers only, read back with
``torch.load(weights_only=True)``; the history is JSON text inside it.

A new ``fit`` pointed at ``DIR`` opens it (:class:`CheckpointDirectory`): a
directory of another fit is refused (:class:`CheckpointMismatchError`, naming
what differs); the same fit reuses the stored seed and each training run
(:func:`attach_checkpoint`, called by :func:`sktriplet.training.routine.run_fit`)
restores its stage's state and trains only the epochs left: none when the
run had finished. Everything before training (building the network, the
features a frozen backbone gives) is recomputed deterministically.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import os
import random
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.history import History

from sktriplet.runtime.durable import remove_temporaries, write_atomically
from sktriplet.training.identity import (
    describe_value,
    fit_identity,
    identity_differences,
    is_cosmetic,
    net_digest,
)

__all__ = [
    "FIT_FILE",
    "FORMAT_VERSION",
    "CheckpointDirectory",
    "CheckpointError",
    "CheckpointMismatchError",
    "EpochCheckpoint",
    "attach_checkpoint",
    "open_checkpoints",
    "plain_values",
]

#: Version of the checkpoint layout.
FORMAT_VERSION = 1
#: The fit's identity and seed.
FIT_FILE = "fit.json"
_LOCK_FILE = ".lock"
_STAGE_FILE = "stage-{}.pt"

#: The directory of the fit running in this context (thread, task).
_ACTIVE: ContextVar[CheckpointDirectory | None] = ContextVar("sktriplet_checkpoints", default=None)


class CheckpointError(ValueError):
    """A checkpoint directory cannot be used."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint directory holds the checkpoints of another fit."""


# ------------------------------------------------------------ plain values
_SKIP = object()


def plain_values(obj: Any) -> Any:
    """``obj`` as plain JSON values: numbers, strings, lists and dicts (anything else dropped).

    Parameters
    ----------
    obj : object
        E.g. a skorch history (a list of dicts).

    Returns
    -------
    object
        JSON-able.

    Examples
    --------
    >>> import numpy as np
    >>> plain_values({"epoch": np.int64(1), "loss": 0.5, "f": print})
    {'epoch': 1, 'loss': 0.5}
    """
    value = _plain(obj, tensors=False)
    return None if value is _SKIP else value


def _plain(obj: Any, *, tensors: bool) -> Any:
    """Plain values (and, with ``tensors``, CPU tensors); ``_SKIP`` for anything else."""
    if isinstance(obj, np.generic):  # before float: np.float64 is a float
        return obj.item() if obj.dtype.kind in "biuf" else _SKIP
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        if tensors:
            return obj.detach().to("cpu", copy=True)
        return obj.item() if obj.numel() == 1 else _SKIP
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = _plain(v, tensors=tensors)
            if v is not _SKIP and isinstance(k, (str, int)):
                out[k if tensors else str(k)] = v
        return out
    if isinstance(obj, (list, tuple)):
        items = [v for v in (_plain(v, tensors=tensors) for v in obj) if v is not _SKIP]
        return tuple(items) if tensors and isinstance(obj, tuple) else items
    return _SKIP


# ---------------------------------------------------------------- the state
def _rng_states(device: str) -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 - the global state user code draws from
    version, state, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": version,
            "state": torch.tensor(state, dtype=torch.int64),
            "gauss": gauss_next,
        },
    }
    if torch.device(device).type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict[str, Any], device: str) -> None:
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))  # noqa: NPY002
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    if torch.device(device).type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def _callback_state(cb: Callback) -> dict[str, dict]:
    """A callback's state: what it set beyond its parameters, as tensors and plain values.

    Every attribute but the constructor's arguments is state (skorch's
    ``get_params`` also lists private attributes, such as the validation's
    best weights). Attributes with a ``state_dict()`` (e.g. the torch
    scheduler of skorch's ``LRScheduler``) are stored by it; other attributes
    when they are plain (numbers, strings, tensors, containers of them); the
    rest is left out.
    """
    given = set(inspect.signature(type(cb).__init__).parameters)
    attributes, state_dicts = {}, {}
    for key, value in vars(cb).items():
        if key in given:
            continue
        if callable(getattr(value, "state_dict", None)):
            state_dicts[key] = _plain(value.state_dict(), tensors=True)
            continue
        plain = _plain(value, tensors=True)
        if plain is not _SKIP:
            attributes[key] = plain
    return {"attributes": attributes, "state_dicts": state_dicts}


def _load_callback_state(cb: Callback, state: dict[str, dict]) -> None:
    for key, value in state["attributes"].items():
        setattr(cb, key, value)
    for key, value in state["state_dicts"].items():
        target = getattr(cb, key, None)
        if callable(getattr(target, "load_state_dict", None)):
            target.load_state_dict(value)


def _stateful_callbacks(net) -> list[tuple[str, Callback]]:
    return [
        (name, cb)
        for name, cb in net.callbacks_
        if not isinstance(cb, EpochCheckpoint) and not is_cosmetic(cb)
    ]


def _capture(net) -> dict[str, Any]:
    """The training state of a net, on the CPU, as tensors and plain containers."""
    scaler = getattr(net, "grad_scaler_", None)
    return {
        "module": _plain(net.module_.state_dict(), tensors=True),
        "criterion": _plain(net.criterion_.state_dict(), tensors=True),
        "optimizer": _plain(net.optimizer_.state_dict(), tensors=True),
        "grad_scaler": None if scaler is None else _plain(scaler.state_dict(), tensors=True),
        "history": json.dumps(plain_values(list(net.history)), allow_nan=True),
        "callbacks": {name: _callback_state(cb) for name, cb in _stateful_callbacks(net)},
        "rng": _rng_states(str(net.device)),
    }


def _restore(net, state: dict[str, Any]) -> None:
    """Put a net (initialised, its callbacks too) back in a :func:`_capture` d state."""
    net.module_.load_state_dict(state["module"])
    net.criterion_.load_state_dict(state["criterion"])
    net.optimizer_.load_state_dict(state["optimizer"])
    if state.get("grad_scaler") is not None:
        net.grad_scaler_ = torch.amp.GradScaler(torch.device(net.device).type)
        net.grad_scaler_.load_state_dict(state["grad_scaler"])
    net.history = History(json.loads(state["history"]))
    saved = state["callbacks"]
    for name, cb in _stateful_callbacks(net):
        if name in saved:
            _load_callback_state(cb, saved[name])
    _set_rng_states(state["rng"], str(net.device))  # last: nothing draws after it
    net.rng_state_ = torch.get_rng_state()
    if callable(getattr(net, "snapshot", None)):
        net.epoch_snapshot_ = net.snapshot()  # Ctrl-C rolls back to here, not further


# ----------------------------------------------------------- the directory
def _lock(path: Path):
    """An exclusive lock on ``path`` held while the returned file is open (POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        return None
    handle = open(path, "a+")  # noqa: SIM115 - held until the fit ends
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise CheckpointError(
            f"checkpoint_dir={os.fspath(path.parent)!r} is in use by another fit that is "
            "running now (in this or another process); give this fit its own directory."
        ) from None
    return handle


class CheckpointDirectory:
    """The checkpoint directory of one running fit (a context manager).

    Entering it creates the directory, locks it against a second fit running
    at the same time, removes the temporary files a killed write left and
    checks ``fit.json`` against the fit's identity; leaving it unlocks it.

    Parameters
    ----------
    directory : str or os.PathLike
        The directory.
    identity : dict
        :func:`~sktriplet.training.identity.fit_identity` of the fit.

    Raises
    ------
    CheckpointMismatchError
        On entering, when the directory holds another fit's checkpoints.
    """

    def __init__(self, directory: str | os.PathLike, identity: dict[str, Any]) -> None:
        self.path = Path(directory)
        self.identity = identity
        self.digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        self.stored: dict[str, Any] | None = None
        self.seed_: int | None = None
        self._stages = 0
        self._restorable = True
        self._lock = None
        self._token = None

    def __enter__(self) -> CheckpointDirectory:
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.path / _LOCK_FILE)
        try:
            for name in (FIT_FILE, _STAGE_FILE.format("*")):
                remove_temporaries(self.path, name)
            self.stored = self._read_fit()
            if self.stored is not None:
                self._check(self.stored)
                self.seed_ = int(self.stored["seed"])
        except BaseException:
            self._unlock()
            raise
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _read_fit(self) -> dict[str, Any] | None:
        path = self.path / FIT_FILE
        if not path.exists():
            return None
        try:
            stored = json.loads(path.read_text())
            if stored.get("format") != "sktriplet-checkpoint":
                raise ValueError("not an sktriplet checkpoint")
            int(stored["seed"])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise CheckpointError(
                f"{os.fspath(path)!r} is not a readable sktriplet checkpoint ({exc}); delete "
                f"{os.fspath(self.path)!r} to start over, or give this fit another directory."
            ) from None
        if stored.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"{os.fspath(path)!r} was written by a newer sktriplet (checkpoint format "
                f"{stored.get('format_version')}); resume it with that version, or delete it."
            )
        return stored

    def _check(self, stored: dict[str, Any]) -> None:
        if stored.get("digest") == self.digest:
            return
        differences = identity_differences(stored.get("identity") or {}, self.identity)
        what = "; ".join(differences) or "their identities differ"
        raise CheckpointMismatchError(
            f"checkpoint_dir={os.fspath(self.path)!r} holds the checkpoints of another fit "
            f"({what}). Give this fit another directory, or delete {os.fspath(self.path)!r} "
            "to train this fit from the start there."
        )

    def seed(self, draw: Callable[[], int]) -> int:
        """The fit's seed: the stored one, or ``draw()`` recorded in ``fit.json`` (a new fit).

        Parameters
        ----------
        draw : callable
            Draws the seed of a new fit.

        Returns
        -------
        int
        """
        if self.seed_ is not None:
            return self.seed_
        self.seed_ = int(draw())
        from sktriplet import __version__

        record = {
            "format": "sktriplet-checkpoint",
            "format_version": FORMAT_VERSION,
            "sktriplet_version": __version__,
            "torch_version": torch.__version__,
            "digest": self.digest,
            "seed": self.seed_,
            "identity": self.identity,
        }
        write_atomically(self.path / FIT_FILE, json.dumps(record, indent=1).encode())
        return self.seed_

    def stage(self, net) -> EpochCheckpoint:
        """The checkpoint callback of the fit's next training run, with its saved state.

        A run restores its state only when every run before it restored a
        finished one (a run that starts over changes what follows it); a
        saved state made by a run with other settings (a route that plans
        its runs by time may plan differently when resumed) is set aside
        with a warning, and the run starts from its beginning.

        Parameters
        ----------
        net : TripletNet
            The initialised net of the run.

        Returns
        -------
        EpochCheckpoint
        """
        index = self._stages
        self._stages += 1
        signature = json.dumps(_signature(net))
        saved = self._load(index) if self._restorable else None
        if saved is not None and saved.get("signature") != signature:
            warnings.warn(
                f"training run {index} of this fit differs from the one checkpointed in "
                f"{os.fspath(self.path)!r} (other epochs, learning rate or network: a "
                "route that plans its training by time planned it differently); training "
                "that run from its start.",
                UserWarning,
                stacklevel=3,
            )
            saved = None
        self._restorable = saved is not None and bool(saved.get("finished"))
        return EpochCheckpoint(self, index, signature, len(net.history), saved)

    def _load(self, index: int) -> dict[str, Any] | None:
        path = self.path / _STAGE_FILE.format(index)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
            raise CheckpointError(
                f"{os.fspath(path)!r} cannot be read ({type(exc).__name__}: {exc}); delete it "
                "(the fit then trains that run again) or the directory."
            ) from None
        ours = isinstance(state, dict) and state.get("digest") == self.digest
        if not ours or state.get("seed") != self.seed_:
            return None  # left by an earlier fit whose fit.json was deleted
        return state

    def save(self, index: int, state: dict[str, Any]) -> None:
        """Write a run's state to ``stage-INDEX.pt``, atomically.

        Parameters
        ----------
        index : int
            The run.
        state : dict
            Tensors and plain containers.
        """
        buffer = io.BytesIO()
        torch.save({**state, "digest": self.digest, "seed": self.seed_}, buffer)
        write_atomically(self.path / _STAGE_FILE.format(index), buffer.getvalue())


def _signature(net) -> dict[str, Any]:
    """What a training run is: network, loss, schedule length, rate, batches, start."""
    return {
        "module": describe_value(type(net.module_)),
        "parameters": [[k, list(v.shape)] for k, v in net.module_.state_dict().items()],
        "criterion": describe_value(type(net.criterion_)),
        "max_epochs": int(net.max_epochs),
        "lr": describe_value(net.lr),
        "batch_size": int(net.batch_size),
        "start_epoch": len(net.history),
    }


class EpochCheckpoint(Callback):
    """Write a training run's state after every epoch; restore it when the run resumes.

    Made by :meth:`CheckpointDirectory.stage` and added last (before the
    printed table) by :func:`~sktriplet.training.routine.run_fit`, so it sees
    every other callback's work of the epoch.

    Parameters
    ----------
    directory : CheckpointDirectory
        Where to write.
    index : int
        The run's number within the fit.
    signature : str
        What the run is (JSON).
    start_epoch : int
        Epochs in the net's history when the run starts.
    saved : dict or None
        The state to resume from.
    """

    def __init__(self, directory, index, signature, start_epoch, saved=None) -> None:
        self.directory = directory
        self.index = index
        self.signature = signature
        self.start_epoch = start_epoch
        self.saved = saved

    def epochs_left(self, net) -> int | None:
        """Epochs the run still trains: ``None`` (all) without a saved state, 0 if it finished."""
        if self.saved is None:
            return None
        if self.saved["finished"]:
            return 0
        return max(0, int(net.max_epochs) - int(self.saved["epochs"]))

    def initialize(self):  # noqa: D102
        self.written_ = None if self.saved is None else self._mark(self.saved)
        return self

    @staticmethod
    def _mark(state) -> tuple[int, bool]:
        return int(state["epochs"]), bool(state["finished"])

    def on_train_begin(self, net, **kwargs):  # noqa: D102
        if self.saved is not None:
            _restore(net, self.saved)

    def _write(self, net, finished: bool) -> None:
        if self.directory is None:
            return
        state = _capture(net)
        epochs = len(net.history) - self.start_epoch
        state.update(
            format_version=FORMAT_VERSION,
            signature=self.signature,
            epochs=epochs,
            finished=finished,
        )
        self.directory.save(self.index, state)
        self.written_ = (epochs, finished)

    def on_epoch_end(self, net, **kwargs):  # noqa: D102
        self._write(net, finished=False)

    def on_train_end(self, net, **kwargs):  # noqa: D102
        # A planned stop (all epochs, or early stopping) finishes the run. An
        # interrupt (Ctrl-C) leaves the last epoch's state as it was written:
        # the other callbacks' ends (the best weights put back) are not state.
        finished = not getattr(net, "interrupted_", False) or _stopped_early(net)
        if finished and self.written_ != (len(net.history) - self.start_epoch, True):
            self._write(net, finished=True)
        # The fitted net keeps this callback: drop the directory and the state.
        self.directory = self.saved = None


def _stopped_early(net) -> bool:
    """Whether skorch's ``EarlyStopping`` ended training (it raises a ``KeyboardInterrupt``)."""
    from skorch.callbacks import EarlyStopping

    return any(
        isinstance(cb, EarlyStopping) and getattr(cb, "misses_", 0) >= cb.patience
        for _, cb in net.callbacks_
    )


def attach_checkpoint(net) -> dict[str, int]:
    """Give a training run its checkpoint callback; the ``partial_fit`` arguments that resume it.

    Outside a fit with a directory, only drops the callback a previous fit
    left on the net.

    Parameters
    ----------
    net : TripletNet
        The initialised net of the run, its callbacks initialised.

    Returns
    -------
    dict
        ``{"epochs": n}`` (the epochs left, 0 for a finished run) when the run
        resumes a saved state, else ``{}``.
    """
    others = [cb for cb in net.callbacks if not (isinstance(cb, tuple) and cb[0] == "checkpoint")]
    directory = _ACTIVE.get()
    checkpoint = None if directory is None else directory.stage(net)
    if checkpoint is None and len(others) == len(net.callbacks):
        return {}
    net.callbacks = others if checkpoint is None else [*others, ("checkpoint", checkpoint)]
    net.initialize_callbacks()
    left = None if checkpoint is None else checkpoint.epochs_left(net)
    return {} if left is None else {"epochs": left}


def open_checkpoints(
    params: dict[str, Any], digest: Callable[[], dict], warm=None
) -> contextlib.AbstractContextManager:
    """The checkpoint directory of a fit, as a context manager (a stand-in without one).

    Parameters
    ----------
    params : dict
        Estimator parameters; ``checkpoint_dir`` names the directory.
    digest : callable
        Returns :func:`~sktriplet.inputs.digest.samples_digest` of the data
        (called only with a directory).
    warm : TripletNet, default=None
        The net a warm-started fit continues.

    Returns
    -------
    CheckpointDirectory or _NoCheckpoints
        Entering gives an object whose ``seed(draw)`` is the fit's seed.
    """
    directory = params.get("checkpoint_dir")
    if directory is None:
        return _NoCheckpoints()
    from sktriplet.training.distributed import is_distributed

    if is_distributed():
        raise ValueError(
            "checkpoint_dir is not available inside a torch.distributed process group yet "
            "(each process has its own random state and shard); train without it there."
        )
    start = None if warm is None else net_digest(warm)
    return CheckpointDirectory(directory, fit_identity(params, digest(), start))


class _NoCheckpoints(contextlib.AbstractContextManager):
    """No directory: the seed is drawn, nothing is written."""

    def __exit__(self, *exc_info) -> None:
        return None

    @staticmethod
    def seed(draw: Callable[[], int]) -> int:
        return int(draw())
