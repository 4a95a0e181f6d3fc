"""Progress output: when a fit shows it by default, and a bar over a loader's batches.

``verbose="auto"`` (the estimator's default) is resolved once per fit by
:func:`resolve_verbose`: progress (``1``: the epoch table, and a bar over
long passes such as caching a frozen backbone's features) where someone
watches, in a terminal or a Jupyter notebook; silence (``0``) inside
scikit-learn's model selection (``GridSearchCV``, ``cross_validate``, ...,
with ``n_jobs=1`` too), in worker processes (joblib's loky, multiprocessing,
dask) and threads other than the main one, and when the output goes to a
file or a pipe, as scikit-learn users expect. :func:`progress_loader`
wraps a loader factory so that its loaders show a bar over their batches.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["QUIET_CALLERS", "progress_loader", "resolve_verbose", "watched"]

#: Modules whose functions, anywhere on the call stack, make ``verbose="auto"``
#: silent: a fit run by model selection or by the estimator checks.
QUIET_CALLERS = ("sklearn.model_selection", "sklearn.utils.estimator_checks")


def _called_by_quiet_caller() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(QUIET_CALLERS):
            return True
        frame = frame.f_back
    return False


def _in_worker() -> bool:
    """A worker: a process (loky, multiprocessing, dask) or a thread other than the main one."""
    if multiprocessing.parent_process() is not None:
        return True
    if threading.current_thread() is not threading.main_thread():
        return True  # joblib's threading backend, a thread pool: lines would interleave
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except (ValueError, AttributeError):
        return False
    return True


def _in_notebook() -> bool:
    """A Jupyter kernel (whose streams are not terminals but are watched)."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    return any(c.__name__ == "ZMQInteractiveShell" for c in type(shell).__mro__)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


def watched() -> bool:
    """Whether someone watches this fit's output: a terminal or a notebook, not a search.

    Returns
    -------
    bool
        ``False`` inside scikit-learn's model selection or the estimator
        checks (:data:`QUIET_CALLERS` on the call stack), in a worker
        process or a thread other than the main one, and when standard
        output or standard error is not a terminal (outside a Jupyter
        kernel); ``True`` otherwise.
    """
    if _called_by_quiet_caller() or _in_worker():
        return False
    if _in_notebook():
        return True
    return _is_terminal(sys.stdout) and _is_terminal(sys.stderr)


def resolve_verbose(verbose: int | str) -> int:
    """The verbosity ``verbose`` asks for, with ``"auto"`` resolved (:func:`watched`).

    Parameters
    ----------
    verbose : int or "auto"
        The estimator's parameter.

    Returns
    -------
    int
        ``verbose`` itself when it is a number; for ``"auto"``, ``1`` when
        the fit is :func:`watched`, else ``0``.

    Examples
    --------
    >>> from sktriplet.runtime.progress import resolve_verbose
    >>> resolve_verbose(2)
    2
    >>> resolve_verbose("auto")  # doctests' output is not a terminal
    0
    """
    if verbose != "auto":
        return int(verbose)
    return 1 if watched() else 0


def progress_loader(make_loader: Callable, verbose: int, desc: str) -> Callable:
    """A loader factory whose loaders show a progress bar over their batches.

    Parameters
    ----------
    make_loader : callable
        ``make_loader(dataset, batches, **kwargs)`` gives a loader over the
        batches of a batch sampler (e.g. ``TripletNet.batch_loader``).
    verbose : int
        A resolved verbosity; ``0`` shows nothing.
    desc : str
        What the bar counts, e.g. ``"caching features"``.

    Returns
    -------
    callable
        ``make_loader`` itself when ``verbose`` is ``0`` (or tqdm is not
        installed); else a factory whose loaders are wrapped in a tqdm bar
        on standard error, one step per batch, removed when done.

    Examples
    --------
    >>> from sktriplet.runtime.progress import progress_loader
    >>> make = lambda dataset, batches: [dataset[b] for b in batches]
    >>> progress_loader(make, 0, "caching features") is make
    True
    """
    if not verbose or importlib.util.find_spec("tqdm") is None:
        return make_loader
    from tqdm import tqdm

    def make(dataset, batches, **kwargs):
        loader = make_loader(dataset, batches, **kwargs)
        return tqdm(
            loader, total=len(batches), desc=desc, unit="batch", leave=False, file=sys.stderr
        )

    return make
