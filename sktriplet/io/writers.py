"""Writing embeddings to a file chunk by chunk: ``.npy``, ``.parquet`` or ``.csv``.

A collection of image files can be larger than memory, so its embeddings are
computed a chunk at a time (``transform`` on, say, 1,024 paths) and each chunk
is written as soon as it exists. :func:`open_embedding_writer` returns a
writer for the output's format; every writer is a context manager whose
:meth:`~EmbeddingWriter.write` takes one chunk:

- ``.npy``: a float32 array ``(n_rows, width)`` written through
  :func:`numpy.lib.format.open_memmap`, so the file has its final size from
  the start and each chunk lands in place. The file paths (when given) go to
  a sidecar text file beside it, ``<name>.paths.txt`` (``Z.npy`` ->
  ``Z.paths.txt``), one path per line, UTF-8, in row order.
- ``.parquet``: a :class:`pyarrow.parquet.ParquetWriter` that writes one row
  group per chunk, with a ``path`` column first, then the embedding columns
  (float32), then ``label``.
- ``.csv``: the same columns, a chunk of lines appended at a time.

The output appears under its name only when every row was written: chunks go
to a hidden ``.<name>.part`` file beside it, renamed on success and removed on
error, so an interrupted run never leaves a truncated file that looks whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["EMBEDDING_SUFFIXES", "EmbeddingWriter", "open_embedding_writer", "paths_sidecar"]

#: Output formats :func:`open_embedding_writer` writes (compared case-insensitively).
EMBEDDING_SUFFIXES = (".npy", ".parquet", ".pq", ".csv")


def paths_sidecar(path: str | os.PathLike) -> Path:
    """The text file listing the rows' file paths beside an ``.npy`` output.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npy`` file.

    Returns
    -------
    pathlib.Path
        ``<name>.paths.txt`` in the same folder.

    Examples
    --------
    >>> from sktriplet.io.writers import paths_sidecar
    >>> paths_sidecar("out/Z.npy").as_posix()
    'out/Z.paths.txt'
    """
    path = Path(path)
    return path.with_name(path.stem + ".paths.txt")


def _part(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


class EmbeddingWriter:
    """Base of the writers: chunk checks, row counting, atomic rename.

    Parameters
    ----------
    path : str or os.PathLike
        The output file.
    n_rows : int
        Rows that will be written in total.
    columns : sequence of str
        Names of the embedding columns (their count is the width).
    with_paths : bool, default=False
        Each chunk comes with the file path of each row.
    with_labels : bool, default=False
        Each chunk comes with a label per row (tables only; ``.npy`` ignores
        labels).

    Attributes
    ----------
    n_written : int
        Rows written so far.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_rows: int,
        columns: Sequence[str],
        *,
        with_paths: bool = False,
        with_labels: bool = False,
    ) -> None:
        self.path = Path(path)
        self.n_rows = int(n_rows)
        self.columns = [str(c) for c in columns]
        self.with_paths = with_paths
        self.with_labels = with_labels
        self.n_written = 0
        self._tmp = _part(self.path)

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, Z, paths: Sequence[str] | None = None, labels=None) -> None:
        """Write the next chunk of rows.

        Parameters
        ----------
        Z : array-like of shape (n_chunk, width)
            Embeddings of the chunk.
        paths : sequence of str, default=None
            The chunk's file paths (required when ``with_paths``).
        labels : array-like of shape (n_chunk,), default=None
            The chunk's labels (required when ``with_labels``).
        """
        Z = np.asarray(Z, dtype=np.float32)
        if Z.ndim != 2 or Z.shape[1] != len(self.columns):
            raise ValueError(
                f"a chunk of embeddings must have shape (n, {len(self.columns)}); got {Z.shape}."
            )
        if self.n_written + len(Z) > self.n_rows:
            raise ValueError(
                f"{self.path}: {self.n_written + len(Z)} rows written but {self.n_rows} announced."
            )
        given = (("paths", paths, self.with_paths), ("labels", labels, self.with_labels))
        for name, values, wanted in given:
            if wanted and (values is None or len(values) != len(Z)):
                raise ValueError(f"this writer needs {name}, one per row of the chunk.")
        self._write(Z, None if paths is None else list(paths), labels)
        self.n_written += len(Z)

    def close(self) -> None:
        """Finish the file and give it its name; every announced row must be written."""
        if self.n_written != self.n_rows:
            self.abort()
            raise ValueError(
                f"{self.path}: only {self.n_written} of {self.n_rows} rows were written."
            )
        self._finish()
        for tmp, final in self._renames():
            os.replace(tmp, final)

    def abort(self) -> None:
        """Stop and remove the partial file(s)."""
        try:
            self._finish()
        except Exception:  # already failing: only clean up
            pass
        for tmp, _ in self._renames():
            if tmp.exists():
                tmp.unlink()

    def _renames(self) -> list[tuple[Path, Path]]:
        return [(self._tmp, self.path)]

    def _write(self, Z: np.ndarray, paths: list[str] | None, labels) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError


class NpyEmbeddingWriter(EmbeddingWriter):
    """``.npy`` through a memory map, file paths in the ``.paths.txt`` sidecar."""

    def __init__(self, path, n_rows, columns, **kwargs) -> None:
        super().__init__(path, n_rows, columns, **kwargs)
        self._array = np.lib.format.open_memmap(
            self._tmp, mode="w+", dtype=np.float32, shape=(self.n_rows, len(self.columns))
        )
        self._sidecar = paths_sidecar(self.path)
        self._paths_file = None
        if self.with_paths:
            self._paths_file = open(  # noqa: SIM115 - closed in _finish
                _part(self._sidecar), "w", encoding="utf-8", errors="surrogateescape"
            )

    def _write(self, Z, paths, labels) -> None:
        self._array[self.n_written : self.n_written + len(Z)] = Z
        if self._paths_file is not None:
            bad = [p for p in paths if "\n" in p or "\r" in p]
            if bad:
                raise ValueError(
                    f"{bad[0]!r} has a line break in its name, which a .paths.txt file "
                    "cannot hold; write .parquet instead."
                )
            self._paths_file.write("".join(p + "\n" for p in paths))

    def _finish(self) -> None:
        if self._array is not None:
            self._array.flush()
            del self._array
            self._array = None
        if self._paths_file is not None:
            self._paths_file.close()

    def _renames(self) -> list[tuple[Path, Path]]:
        extra = [(_part(self._sidecar), self._sidecar)] if self.with_paths else []
        return [(self._tmp, self.path), *extra]


class _TableWriter(EmbeddingWriter):
    """Shared by the table formats: one DataFrame per chunk."""

    def _frame(self, Z, paths, labels):
        import pandas as pd

        df = pd.DataFrame(Z, columns=self.columns)
        if self.with_paths:
            df.insert(0, "path", paths)
        if self.with_labels:
            df["label"] = np.asarray(labels)
        return df


class CsvEmbeddingWriter(_TableWriter):
    """``.csv``: a header, then the lines of each chunk appended."""

    def _write(self, Z, paths, labels) -> None:
        self._frame(Z, paths, labels).to_csv(
            self._tmp, mode="a", header=self.n_written == 0, index=False
        )

    def _finish(self) -> None:
        if self.n_rows == 0 and not self._tmp.exists():
            self._frame(np.empty((0, len(self.columns)), np.float32), [], []).to_csv(
                self._tmp, index=False
            )


class ParquetEmbeddingWriter(_TableWriter):
    """``.parquet``: a :class:`pyarrow.parquet.ParquetWriter`, one row group per chunk."""

    def __init__(self, path, n_rows, columns, **kwargs) -> None:
        super().__init__(path, n_rows, columns, **kwargs)
        import pyarrow.parquet  # noqa: F401 - fail here, before anything is embedded

        self._writer = None

    def _write(self, Z, paths, labels) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self._frame(Z, paths, labels), preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))

    def _finish(self) -> None:
        if self._writer is None and self.n_rows == 0:
            self._write(np.empty((0, len(self.columns)), np.float32), [], [])
        if self._writer is not None:
            self._writer.close()
            self._writer = None


_WRITERS = {
    ".npy": NpyEmbeddingWriter,
    ".parquet": ParquetEmbeddingWriter,
    ".pq": ParquetEmbeddingWriter,
    ".csv": CsvEmbeddingWriter,
}


def open_embedding_writer(
    path: str | os.PathLike,
    n_rows: int,
    columns: Sequence[str],
    *,
    with_paths: bool = False,
    with_labels: bool = False,
) -> EmbeddingWriter:
    """A writer of embeddings, chunk by chunk, for the format named by ``path``'s suffix.

    Parameters
    ----------
    path : str or os.PathLike
        Output file: ``.npy``, ``.parquet`` (or ``.pq``) or ``.csv``.
    n_rows : int
        Rows that will be written in total (the ``.npy`` file is sized for
        them; every writer checks the count on close).
    columns : sequence of str
        Embedding column names, e.g. ``estimator.get_feature_names_out()``.
    with_paths : bool, default=False
        Write the file path of each row (``path`` column; for ``.npy`` the
        ``<name>.paths.txt`` sidecar, see :func:`paths_sidecar`).
    with_labels : bool, default=False
        Write a ``label`` column (tables only).

    Returns
    -------
    EmbeddingWriter
        Use it as a context manager: the file gets its name when the block
        ends without error, and is removed when it ends with one.

    Raises
    ------
    ValueError
        For an unknown suffix.
    ImportError
        For ``.parquet`` without pyarrow (before anything is written).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sktriplet.io.writers import open_embedding_writer
    >>> out = os.path.join(tempfile.mkdtemp(), "Z.npy")
    >>> with open_embedding_writer(out, 3, ["e0", "e1"], with_paths=True) as writer:
    ...     writer.write(np.zeros((2, 2)), ["a.jpg", "b.jpg"])
    ...     writer.write(np.ones((1, 2)), ["c.jpg"])
    >>> np.load(out).tolist()
    [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
    >>> open(out.replace(".npy", ".paths.txt")).read().split()
    ['a.jpg', 'b.jpg', 'c.jpg']
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _WRITERS:
        raise ValueError(
            f"{path}: unknown embeddings format {suffix or '(no suffix)'!r}; use "
            f"{', '.join(EMBEDDING_SUFFIXES)}."
        )
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(
                f"{path}: writing parquet needs pyarrow: pip install pyarrow "
                '(or pip install "sktriplet[cli]"), or write .npy / .csv.'
            ) from None
    return _WRITERS[suffix](path, n_rows, columns, with_paths=with_paths, with_labels=with_labels)
