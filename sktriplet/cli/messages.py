"""What the ``sktriplet`` command says on standard error when something is wrong.

A user error (a missing file, an unknown format, data the model cannot take)
is a :class:`CLIError`: :func:`sktriplet.cli.main` prints it as one line,
``sktriplet COMMAND: error: MESSAGE``, and exits with status 2. Warnings
(files left out with ``--on-error skip``) are one line each too.
"""

from __future__ import annotations

import re
import sys

__all__ = ["PROG", "CLIError", "one_line", "print_error", "print_warning"]

# torch's DataLoader re-raises a worker's exception with the worker's whole
# traceback in the message: "Caught X in DataLoader worker process N.\nOriginal
# Traceback (most recent call last): ... module.X: the message".
_WORKER = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")

#: The command's name, as it starts every message.
PROG = "sktriplet"


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


def print_warning(command: str, message: object) -> None:
    """Print ``sktriplet COMMAND: warning: MESSAGE`` on standard error."""
    print(f"{PROG} {command}: warning: {message}", file=sys.stderr)


def print_error(command: str, message: object) -> None:
    """Print ``sktriplet COMMAND: error: MESSAGE`` on standard error."""
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)


def one_line(exc: BaseException) -> str:
    r"""The message of ``exc`` on one line.

    An exception re-raised from a data-loader worker carries the worker's
    traceback; its own message (the last line, naming the file and the fix)
    is what is kept.

    Examples
    --------
    >>> from sktriplet.cli.messages import one_line
    >>> one_line(ValueError("bad.jpg: cannot read this image file.\nRe-save it."))
    'bad.jpg: cannot read this image file. Re-save it.'
    """
    text = str(exc)
    match = _WORKER.match(text)
    if match:
        name = match.group(1)
        # The last line of the traceback that starts with the type's (qualified) name.
        last = re.findall(rf"^(?:[\w.]+\.)?{name}: (.*(?:\n(?!\s*$).*)*)", text, re.MULTILINE)
        if last:
            text = last[-1]
    return " ".join(text.split())
