"""How the C library's allocator treats the large blocks a training step frees.

A convolutional network trained on the CPU allocates and frees the same large
activation and gradient buffers in every step. glibc's ``malloc`` (Linux)
serves a block of more than 32 MiB with its own ``mmap`` and unmaps it when it
is freed, and gives the free top of its heap back to the kernel once more than
about twice that is free; the next step gets fresh pages, and the kernel
faults and zeroes each 4 KiB of them again. On the cars benchmark
(``benchmarks/bench_allocator.py``, table in ``docs/scaling.md``) a step of
the default 64 px network took about 130,000 such faults (519 MiB).

:func:`keep_freed_memory` is the context in which ``fit`` trains on the CPU:
inside it glibc serves every block from its heap (``M_MMAP_MAX = 0``) and
keeps what is freed (``M_TRIM_THRESHOLD`` of 1 GiB), so a step reuses the
pages of the one before. Leaving it gives the free memory back
(``malloc_trim(0)``) and sets glibc to the state its adaptive policy reaches
in a process that has freed a large block (``mmap`` above 32 MiB, trim above
64 MiB). Nothing changes where the C library is not glibc, where the
process already tunes glibc's malloc (``GLIBC_TUNABLES`` with
``glibc.malloc.*`` or a ``MALLOC_*_`` variable), where another allocator is
preloaded (``LD_PRELOAD``), or when ``SKTRIPLET_KEEP_FREED_MEMORY=0``.

The price is memory: blocks that glibc used to ``mmap`` share one heap, and
a freed block the next request does not fit stays resident beside it until
the context ends (peak RSS 11 % higher on that benchmark).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import threading
from collections.abc import Iterator

__all__ = ["KEEP_TRIM_THRESHOLD", "allocator_tunable", "keep_freed_memory"]

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536  # glibc's default for M_MMAP_MAX
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling of its adaptive mmap threshold

#: Bytes of free heap glibc keeps inside :func:`keep_freed_memory`.
KEEP_TRIM_THRESHOLD = 1 << 30

#: Environment variable that turns :func:`keep_freed_memory` off when ``"0"``.
ENV_SWITCH = "SKTRIPLET_KEEP_FREED_MEMORY"

_lock = threading.Lock()
_depth = 0


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # pragma: no cover - a glibc without them
        return None
    return libc


def _tuned_elsewhere() -> bool:
    """Whether the environment already chose this process's allocator behaviour."""
    return (
        "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
        or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ)
        or "alloc" in os.environ.get("LD_PRELOAD", "")
    )


def allocator_tunable() -> bool:
    """Whether :func:`keep_freed_memory` changes anything in this process.

    Returns
    -------
    bool
        ``True`` on glibc when neither the environment
        (``SKTRIPLET_KEEP_FREED_MEMORY=0``, ``GLIBC_TUNABLES`` with
        ``glibc.malloc.*``, a ``MALLOC_*_`` variable) nor ``LD_PRELOAD``
        chose the allocator's behaviour already.

    Examples
    --------
    >>> from sktriplet.runtime.allocator import allocator_tunable
    >>> isinstance(allocator_tunable(), bool)
    True
    """
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return False
    return _glibc() is not None and not _tuned_elsewhere()


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Let glibc keep the memory a training step frees, for the next step.

    Process-wide, like ``malloc`` itself: contexts that overlap (threads
    of one process training at once) share one setting, made by the first
    to enter and undone by the last to leave.

    Yields
    ------
    bool
        Whether the allocator was tuned (see :func:`allocator_tunable`).

    Examples
    --------
    >>> import torch
    >>> from sktriplet.runtime.allocator import keep_freed_memory
    >>> with keep_freed_memory():
    ...     for _ in range(3):  # the pages of the first block serve the next ones
    ...         block = torch.ones(10_000_000)
    >>> float(block.sum())
    10000000.0
    """
    global _depth
    libc = _glibc() if allocator_tunable() else None
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.malloc_trim(0)
