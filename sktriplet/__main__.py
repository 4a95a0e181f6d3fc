"""``python -m sktriplet``: the ``sktriplet`` command (see :mod:`sktriplet.cli`)."""

import sys

from sktriplet.cli import main

if __name__ == "__main__":
    sys.exit(main())
