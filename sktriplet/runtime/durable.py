"""Write a file so that a crash leaves either the old file or the new one, never a mix.

:func:`write_atomically` writes the bytes to a temporary file in the target's
directory, flushes them to the disk (``fsync``), renames the temporary file
over the target (``os.replace``, atomic on POSIX and on Windows within one
file system) and flushes the directory, so the rename itself survives a power
cut. A process killed at any moment (``kill -9``, out of memory) therefore
leaves the previous complete file in place, or the new complete one, and at
most a temporary file beside it (named ``.NAME.*.tmp``, which
:func:`remove_temporaries` deletes). Training checkpoints
(:mod:`sktriplet.training.checkpoints`) and :func:`sktriplet.save` write
this way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["remove_temporaries", "write_atomically"]

#: Bytes handed to the operating system per ``write`` call.
_CHUNK = 1 << 22


def _fsync_directory(directory: Path) -> None:
    """Flush a directory's entries to the disk (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` by a file holding ``data``, atomically and durably.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its directory must exist.
    data : bytes or callable
        The whole content, or a function that writes it to the binary file
        it is given (e.g. a zip archive streamed member by member).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "state.bin")
    >>> write_atomically(path, b"epoch 1")
    >>> write_atomically(path, b"epoch 2")
    >>> open(path, "rb").read(), os.listdir(os.path.dirname(path))
    (b'epoch 2', ['state.bin'])
    """
    path = Path(path)
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        try:
            if callable(data):
                with os.fdopen(os.dup(fd), "wb") as f:
                    data(f)
            else:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view[:_CHUNK])
                    view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def remove_temporaries(directory: str | os.PathLike, name: str) -> list[str]:
    """Delete the temporary files a killed :func:`write_atomically` of ``name`` left.

    Parameters
    ----------
    directory : str or os.PathLike
        Where the file lives.
    name : str
        The file's name (its temporaries are ``.NAME.*.tmp``); a glob
        pattern such as ``"stage-*.pt"`` matches several files' temporaries.

    Returns
    -------
    list of str
        The names deleted.
    """
    removed = []
    for entry in Path(directory).glob(f".{name}.*.tmp"):
        try:
            entry.unlink()
        except OSError:  # pragma: no cover - another process's, or already gone
            continue
        removed.append(entry.name)
    return removed
