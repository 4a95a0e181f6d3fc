"""How many CPU threads torch uses while a network trains.

torch sizes its intra-op thread pool once, from the cores it sees, and
neither a busy machine nor the parallel jobs of a grid search change it.
Small networks gain nothing from a second thread, and lose a lot when the
threads wait for cores that other processes hold: on a busy 2-core machine
``examples/quickstart.py`` ran many times slower with torch's default
threads than with one (``benchmarks/bench_threads.py``; the table is in
``docs/scaling.md``).

:func:`fit_threads` is the context in which ``fit`` trains. Inside it
torch uses :func:`choose_threads`: never more than the limit the process was
given (``OMP_NUM_THREADS``, which joblib's loky workers set to their share
of the cores, or a :func:`threadpoolctl.threadpool_limits` on OpenMP), and
one thread for a small network. Leaving it restores the previous count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["SMALL_NETWORK_WORK", "choose_threads", "fit_threads", "inherited_thread_limit"]

#: Multiply-adds per batch (parameters of a network without convolutions
#: times the batch size) below which one thread is used. The default MLP on
#: 64 features with batches of 128 does about 1.3e7; on a busy machine a
#: second thread made its training step many times slower
#: (``benchmarks/bench_threads.py --steps``, table in ``docs/scaling.md``).
SMALL_NETWORK_WORK = 2**24


def _env_threads(name: str) -> int | None:
    value = os.environ.get(name, "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def inherited_thread_limit() -> int | None:
    """The thread limit this process was given, if any.

    The smallest of ``OMP_NUM_THREADS`` (loky, joblib's default backend,
    sets it in every worker to ``cpu_count() // n_jobs``) and the current
    thread count of every OpenMP runtime loaded, which a
    :func:`threadpoolctl.threadpool_limits` context lowers.

    Returns
    -------
    int or None
        The limit, or ``None`` when nothing limits the threads.

    Examples
    --------
    >>> from threadpoolctl import threadpool_limits
    >>> from sktriplet.runtime.threads import inherited_thread_limit
    >>> with threadpool_limits(1, user_api="openmp"):
    ...     inherited_thread_limit()
    1
    """
    limits = [n for n in (_env_threads("OMP_NUM_THREADS"),) if n is not None]
    try:
        from threadpoolctl import threadpool_info  # a dependency of scikit-learn
    except ImportError:  # pragma: no cover
        threadpool_info = list
    limits += [
        int(pool["num_threads"]) for pool in threadpool_info() if pool.get("user_api") == "openmp"
    ]
    return min(limits) if limits else None


def _is_small(module: nn.Module | None, batch_size: int | None) -> bool:
    if module is None or batch_size is None:
        return False
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules()):
        return False  # convolutions do far more work per parameter
    n_params = sum(p.numel() for p in module.parameters())
    return n_params * batch_size < SMALL_NETWORK_WORK


def choose_threads(
    n_threads: int | None = None,
    *,
    module: nn.Module | None = None,
    batch_size: int | None = None,
) -> int:
    """The number of torch threads to train ``module`` with.

    Parameters
    ----------
    n_threads : int or None, default=None
        An explicit count, returned as it is. ``None``: one thread for a
        small network (see :data:`SMALL_NETWORK_WORK`), else torch's current
        count, lowered to :func:`inherited_thread_limit`.
    module : torch.nn.Module or None, default=None
        The network that will train (``None``: size unknown).
    batch_size : int or None, default=None
        Samples per training batch (``None``: size unknown).

    Returns
    -------
    int
        The thread count, at least 1.

    Raises
    ------
    ValueError
        If ``n_threads`` is not a positive integer or ``None``.

    Examples
    --------
    >>> from torch import nn
    >>> from sktriplet.runtime.threads import choose_threads
    >>> choose_threads(module=nn.Linear(64, 32), batch_size=128)
    1
    >>> choose_threads(3)
    3
    """
    if n_threads is not None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
            raise ValueError(f"n_threads must be a positive integer or None; got {n_threads!r}.")
        return n_threads
    if _is_small(module, batch_size):
        return 1
    count = torch.get_num_threads()
    limit = inherited_thread_limit()
    return max(1, count if limit is None else min(count, limit))


@contextlib.contextmanager
def fit_threads(
    n_threads: int | None = None,
    *,
    module: nn.Module | None = None,
    batch_size: int | None = None,
) -> Iterator[int]:
    """Train with :func:`choose_threads` torch threads; restore the count after.

    ``torch.set_num_threads`` is process-wide: threads of one process that
    train at the same time (joblib's threading backend) share the count.

    Parameters
    ----------
    n_threads, module, batch_size
        As for :func:`choose_threads`.

    Yields
    ------
    int
        The thread count in use.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sktriplet.runtime.threads import fit_threads
    >>> before = torch.get_num_threads()
    >>> with fit_threads(module=nn.Linear(64, 32), batch_size=128) as n:
    ...     n, torch.get_num_threads()
    (1, 1)
    >>> torch.get_num_threads() == before
    True
    """
    before = torch.get_num_threads()
    target = choose_threads(n_threads, module=module, batch_size=batch_size)
    if target != before:
        torch.set_num_threads(target)
    try:
        yield target
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
