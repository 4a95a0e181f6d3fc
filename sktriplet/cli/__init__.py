"""The ``sktriplet`` command: train, embed and evaluate from a shell.

``sktriplet fit`` trains a :class:`~sktriplet.TripletEmbedder` on a data
file or an image folder and saves it with :func:`sktriplet.save`;
``sktriplet embed`` writes the embeddings of data with a saved model;
``sktriplet evaluate`` prints retrieval scores (precision@k, recall@k,
R-precision, MAP@R) of a saved model's embeddings. ``python -m sktriplet``
is the same command. Run ``sktriplet --help`` or ``sktriplet fit --help``
for the manual.

The package, one concept per module:

- :mod:`sktriplet.cli.parser`: the commands, their flags and help;
- :mod:`sktriplet.cli.options`: the flags that set estimator parameters,
  with the estimator's defaults and choices (a new one is one line there);
- :mod:`sktriplet.cli.readers`: data files and image folders;
- :mod:`sktriplet.cli.saved_model`: loading a model and checking data against it;
- :mod:`sktriplet.cli.outputs`: embeddings, scores and progress lines;
- :mod:`sktriplet.cli.commands`: what each command does;
- :mod:`sktriplet.cli.messages`: user errors and warnings, one line each.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sktriplet.cli.commands import COMMANDS
from sktriplet.cli.messages import PROG, CLIError, one_line, print_error
from sktriplet.cli.parser import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sktriplet`` command.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments (without the program name); ``None`` reads
        ``sys.argv``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 on a usage or data error, 130 when
        interrupted.

    Examples
    --------
    >>> from sktriplet.cli import main
    >>> main(["embed", "missing.sktriplet", "data.npz", "-o", "Z.npy"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CLIError as exc:
        print_error(args.command, exc)
    except (ValueError, ImportError, OSError) as exc:
        print_error(args.command, one_line(exc))
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2
