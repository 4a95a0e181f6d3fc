"""What the ``sktriplet`` command says on standard error when something is wrong.

A user error (a missing file, an unknown format, data the model cannot take)
is a :class:`CLIError`: :func:`sktriplet.cli.main` prints it as one line,
``sktriplet COMMAND: error: MESSAGE``, and exits with status 2. Warnings
(files left out with ``--on-error skip``) are one line each too.
"""

from __future__ import annotations

import sys

# One line of an error's message; a data-loader worker's error is its own message.
from sktriplet.runtime.loader_errors import one_line

__all__ = ["PROG", "CLIError", "one_line", "print_error", "print_warning"]

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
