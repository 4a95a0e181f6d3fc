"""What the ``sktriplet`` command writes: embeddings, scores and progress.

Output files are checked before any work (:func:`check_output`), so a wrong
suffix or a missing parquet writer is reported before a model is trained or
a folder embedded. Embeddings of a whole array go to ``.npy``, ``.csv`` or
``.parquet`` here; a folder's embeddings are written chunk by chunk through
:func:`sktriplet.io.writers.open_embedding_writer`. Scores are printed as a
table and optionally written as ``.json`` or ``.csv``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sktriplet.cli.messages import CLIError
from sktriplet.cli.readers import TABLE_SUFFIXES, Data, require_pyarrow

__all__ = ["Progress", "check_output", "format_table", "write_embeddings", "write_scores"]


def check_output(path: str, suffixes: Sequence[str], what: str) -> Path:
    """The output path, once its format is known and its folder exists."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise CLIError(
            f"{path}: unknown {what} format {out.suffix or '(no suffix)'!r}; use "
            f"{', '.join(suffixes)}."
        )
    if not out.parent.exists():
        raise CLIError(f"{path}: the folder {out.parent} does not exist.")
    if out.suffix.lower() in (".parquet", ".pq"):
        require_pyarrow(out, "writing")  # before any work, not after it
    return out


def write_embeddings(Z: np.ndarray, data: Data, out: Path, columns: list[str]) -> None:
    """Write embeddings as ``.npy``, or as a table with the ids and labels of ``data``."""
    import pandas as pd

    suffix = out.suffix.lower()
    if suffix == ".npy":
        np.save(out, Z)
        return
    if suffix not in TABLE_SUFFIXES:
        raise CLIError(f"{out}: unknown output format {suffix!r}; use .npy, .csv or .parquet.")
    df = pd.DataFrame(Z, columns=columns)
    if data.ids is not None:
        df.insert(0, "id", data.ids)
    if data.y is not None:
        df["label"] = data.y
    if suffix == ".csv":
        df.to_csv(out, index=False)
    else:
        require_pyarrow(out, "writing")
        df.to_parquet(out, index=False)


def format_table(scores: dict[str, Any]) -> str:
    """Scores as a two-column text table, floats with four decimals."""
    width = max(len(k) for k in scores)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 6}"]
    for key, value in scores.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def write_scores(scores: dict[str, Any], out: Path) -> None:
    """Write scores as ``.json`` (NaN as ``null``) or a ``metric,value`` ``.csv``."""
    suffix = out.suffix.lower()
    if suffix == ".json":
        clean = {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in scores.items()
        }
        out.write_text(json.dumps(clean, indent=2) + "\n")
    elif suffix == ".csv":
        rows = ["metric,value", *(f"{k},{v!r}" for k, v in scores.items())]
        out.write_text("\n".join(rows) + "\n")
    else:
        raise CLIError(f"{out}: unknown metrics format {suffix!r}; use .json or .csv.")


class Progress:
    """A counter line on stderr: rewritten in place on a terminal, a line per update otherwise.

    Parameters
    ----------
    total : int
        Items to process.
    what : str, default="files"
        What is counted.
    stream : file object, default=None
        Where to write (standard error when ``None``).
    """

    def __init__(self, total: int, what: str = "files", stream=None) -> None:
        self.total = total
        self.what = what
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._width = 0

    def update(self, done: int) -> None:
        """Show that ``done`` items of ``total`` are processed."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        percent = 100.0 * done / self.total if self.total else 100.0
        text = (
            f"embedded {done:,}/{self.total:,} {self.what} ({percent:.0f}%), "
            f"{done / seconds:,.1f} {self.what}/s"
        )
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width) + ("\n" if done >= self.total else ""))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
