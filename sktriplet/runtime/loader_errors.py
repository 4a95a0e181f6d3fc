r"""Errors raised in data-loader workers, re-raised as themselves.

torch's ``DataLoader`` re-raises an exception from a worker process as
``type(exc)("Caught X in DataLoader worker process N.\nOriginal Traceback
... X: the message")``: the worker's whole traceback in the message, and the
message itself (for an unreadable image file: its name and the fix) at the
very end. :func:`clean_loader_errors` wraps a loader so that such an error
comes out as the original type with the original message; torch's error,
with the worker's traceback, stays attached as its ``__cause__``.
:class:`sktriplet.training.net.TripletNet` wraps every loader it makes
(training, validation, feature caching, ``transform``), so the rule lives in
one place; :func:`one_line` is what the ``sktriplet`` command prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["clean_loader_errors", "one_line", "unwrap_worker_error", "worker_message"]

# "Caught X in DataLoader worker process N.\nOriginal Traceback (most recent
# call last): ... module.X: the message" (or "in pin memory thread ...").
_WRAPPED = re.compile(r"^Caught (\w+) in [^\n]*\.\nOriginal Traceback")


def worker_message(exc: BaseException) -> str | None:
    r"""The original message of an error torch re-raised from a worker, else ``None``.

    Parameters
    ----------
    exc : BaseException
        Any exception.

    Returns
    -------
    str or None
        The worker exception's own message (the last lines of the wrapped
        traceback that start with its type's name), ``None`` when ``exc`` is
        not such a re-raise.

    Examples
    --------
    >>> from sktriplet.runtime.loader_errors import worker_message
    >>> wrapped = ValueError(
    ...     "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback "
    ...     "(most recent call last):\n  File \"x.py\", line 1, in f\nValueError: bad.jpg: "
    ...     "cannot read it.\n")
    >>> worker_message(wrapped)
    'bad.jpg: cannot read it.'
    >>> worker_message(ValueError("plain")) is None
    True
    """
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    match = _WRAPPED.match(text)
    if match is None:
        return None
    name = re.escape(match.group(1))
    # The last line that starts with the type's (qualified) name, and the
    # lines after it up to a blank one (a message of several lines).
    found = re.findall(rf"^(?:[\w.]+\.)?{name}: (.*(?:\n(?!\s*$).*)*)", text, re.MULTILINE)
    return found[-1].strip() if found else None


def unwrap_worker_error(exc: BaseException) -> BaseException:
    r"""The worker's exception as it was raised there: its type, its message.

    Parameters
    ----------
    exc : BaseException
        An exception from iterating a data loader.

    Returns
    -------
    BaseException
        A new exception of ``type(exc)`` with the worker's own message (raise
        it ``from exc`` to keep the worker's traceback), or ``exc`` itself
        when it is not a worker's error or its type cannot be built from a
        message.

    Examples
    --------
    >>> from sktriplet.runtime.loader_errors import unwrap_worker_error
    >>> wrapped = OSError(
    ...     "Caught OSError in DataLoader worker process 1.\nOriginal Traceback "
    ...     "(most recent call last):\nOSError: disk gone\n")
    >>> clean = unwrap_worker_error(wrapped)
    >>> type(clean).__name__, str(clean)
    ('OSError', 'disk gone')
    """
    message = worker_message(exc)
    if message is None:
        return exc
    try:
        return type(exc)(message)
    except Exception:  # a type that does not take one message
        return exc


class _CleanErrors:
    """A loader whose iteration re-raises workers' errors as themselves."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator:
        iterator = iter(self.loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                clean = unwrap_worker_error(exc)
                if clean is exc:
                    raise
                raise clean from exc
            yield batch


def clean_loader_errors(loader):
    """``loader``, with errors from its worker processes re-raised as themselves.

    Parameters
    ----------
    loader : torch.utils.data.DataLoader
        A data loader (any iterable with ``num_workers``).

    Returns
    -------
    iterable
        ``loader`` itself when it reads in this process (``num_workers=0``:
        errors are already the originals), else a wrapper that iterates it,
        has its length and attributes, and re-raises a worker's error with
        :func:`unwrap_worker_error`.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from sktriplet.runtime.loader_errors import clean_loader_errors
    >>> loader = DataLoader(torch.arange(4), batch_size=2)
    >>> clean_loader_errors(loader) is loader
    True
    """
    if not getattr(loader, "num_workers", 0):
        return loader
    return _CleanErrors(loader)


def one_line(exc: BaseException) -> str:
    r"""The message of ``exc`` on one line (a worker's error: the worker's own message).

    Parameters
    ----------
    exc : BaseException
        Any exception.

    Returns
    -------
    str
        Its message with every run of whitespace (newlines too) made one space.

    Examples
    --------
    >>> from sktriplet.runtime.loader_errors import one_line
    >>> one_line(ValueError("bad.jpg: cannot read this image file.\nRe-save it."))
    'bad.jpg: cannot read this image file. Re-save it.'
    """
    text = worker_message(exc)
    return " ".join((str(exc) if text is None else text).split())
