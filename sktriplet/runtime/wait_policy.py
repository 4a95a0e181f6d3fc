"""OpenMP threads that sleep, rather than spin, while they wait for work.

torch's CPU kernels run on an OpenMP thread pool (GNU libgomp in the Linux
wheels). Between two parallel regions libgomp's threads busy-wait for the
next one for a while (``GOMP_SPINCOUNT``, by default 300,000 spins when
``OMP_WAIT_POLICY`` is unset) before they sleep. On a machine whose cores
other processes keep busy, those spinning threads take the CPU time that
the thread holding the rest of the work needs: issue 30 saw a
default image fit take 4-9x as long as with ``OMP_NUM_THREADS=1``, and
threads that spin did about three times the CPU work of one thread.
``OMP_WAIT_POLICY=PASSIVE`` (the threads sleep as soon as they wait) removed
that slow-down (``benchmarks/bench_contention.py``; table in
``docs/scaling.md``, "Busy machines").

libgomp reads the variable once, when it is loaded, which is when torch is
first imported. So :func:`prefer_passive_wait` runs from
``sktriplet/__init__.py`` before anything imports torch, and acts only when
torch is not imported yet and the user has not set ``OMP_WAIT_POLICY``
themselves (``OMP_WAIT_POLICY=ACTIVE`` keeps the spinning). Processes
started afterwards (data-loader workers, joblib's workers) inherit it.

This module imports neither torch nor anything that does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

__all__ = ["prefer_passive_wait"]


def prefer_passive_wait(
    environ: MutableMapping[str, str] | None = None,
    modules: Mapping[str, object] | None = None,
) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless it is set or torch is already loaded.

    Parameters
    ----------
    environ : mutable mapping, default=None
        The environment to change; ``None`` means :data:`os.environ`.
    modules : mapping, default=None
        The loaded modules; ``None`` means :data:`sys.modules`. When it holds
        ``torch``, the OpenMP runtime has read its settings already and
        nothing is changed.

    Returns
    -------
    bool
        Whether the variable was set.

    Examples
    --------
    >>> from sktriplet.runtime.wait_policy import prefer_passive_wait
    >>> env = {}
    >>> prefer_passive_wait(env, modules={})
    True
    >>> env
    {'OMP_WAIT_POLICY': 'PASSIVE'}
    >>> prefer_passive_wait({"OMP_WAIT_POLICY": "ACTIVE"}, modules={})
    False
    >>> prefer_passive_wait({}, modules={"torch": object()})
    False
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "OMP_WAIT_POLICY" in environ or "torch" in modules:
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
