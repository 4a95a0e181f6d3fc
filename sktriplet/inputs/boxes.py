"""The input kind "boxes": a table of image files with a crop box each.

A pandas DataFrame with a ``path`` column and the four box columns
``x_1, y_1, x_2, y_2`` (all four or none) describes one sample per row: the
region of the image file between columns ``x_1`` and ``x_2`` and rows
``y_1`` and ``y_2``, in pixels of the image as it is displayed (after its
EXIF orientation), ``x_2`` and ``y_2`` excluded, as Pillow's ``Image.crop``
counts them; fractional values are rounded to whole pixels. This is the
standard protocol of fine-grained sets such as Stanford Cars, and of
product photos. The region is cut out when the file is decoded, before the
size policy resizes it (:func:`sktriplet.vision.decode.decode_image`,
``region=``), so a box reads exactly as the same crop saved as a lossless
file would.

:func:`as_box_table` recognises such a table (a table with only the
``path`` column is plain image files, the kind ``"paths"``) and checks its
values; :func:`check_box_bounds` reads every file's size from its header
(no pixel decoded) and refuses a box outside its image, naming the row,
before anything is trained. ``TripletEmbedder.fit`` / ``transform`` /
``score`` take such a table (or the :class:`BoxTable` that
:func:`as_box_table` returns) as ``X``; the command line or any other caller
can pass the columns of a CSV read with ``pandas.read_csv`` as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BOX_COLUMNS", "PATH_COLUMN", "BoxTable", "as_box_table", "check_box_bounds"]

#: The column of image file paths.
PATH_COLUMN = "path"

#: The box columns: left, top, right (excluded) and bottom (excluded), in pixels.
BOX_COLUMNS = ("x_1", "y_1", "x_2", "y_2")

_SHOWN = 5


@dataclass(frozen=True)
class BoxTable:
    """Validated image files and their crop boxes, indexed like an array.

    Attributes
    ----------
    paths : numpy.ndarray of str (dtype object), shape (n_samples,)
        One image file per sample.
    boxes : numpy.ndarray of int64, shape (n_samples, 4)
        ``(left, top, right, bottom)`` of each sample's region, whole pixels.
    rows : numpy.ndarray of shape (n_samples,) or None, default=None
        The table's index labels (how errors name rows); ``None``: positions.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.boxes import BoxTable
    >>> table = BoxTable(np.array(["a.png", "b.png"], dtype=object), np.array([[0, 0, 4, 4]] * 2))
    >>> len(table[[1]]), table[np.array([True, False])].paths.tolist()
    (1, ['a.png'])
    """

    paths: np.ndarray
    boxes: np.ndarray
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.rows is None:
            object.__setattr__(self, "rows", np.arange(len(self.paths)))

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.paths)

    def __getitem__(self, index) -> BoxTable:
        """The samples ``index`` (an int array, a boolean mask or a slice)."""
        paths = self.paths[index]
        if np.ndim(paths) == 0:
            raise TypeError("index a BoxTable with an array, a mask or a slice, not a scalar.")
        return BoxTable(paths, self.boxes[index], self.rows[index])

    def name(self, i: int) -> str:
        """How messages name sample ``i``: its row label and its path."""
        label = self.rows[i]
        label = label.item() if isinstance(label, np.generic) else label
        return f"row {label!r}, {self.paths[i]!r}"


def _listing(rows: list[str]) -> str:
    more = len(rows) - _SHOWN
    return "; ".join(rows[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")


def as_box_table(X: Any) -> BoxTable | None:
    """``X`` as a :class:`BoxTable` when it is a table of paths with box columns, else ``None``.

    Parameters
    ----------
    X : object
        The input of ``fit`` / ``transform``.

    Returns
    -------
    BoxTable or None
        ``X`` itself when it is a ``BoxTable`` already; ``None`` for anything
        but a pandas DataFrame with a ``path`` column and at least one box
        column (a ``path`` column alone is the kind ``"paths"``; a table
        without a ``path`` column is feature rows).

    Raises
    ------
    ValueError
        When some but not all of the box columns are there (naming the
        missing ones), when the table has other columns, or when a box is
        not numeric, not finite, or empty or inverted after rounding (naming
        the first rows).

    Examples
    --------
    >>> import pandas as pd
    >>> from sktriplet.inputs.boxes import as_box_table
    >>> df = pd.DataFrame({"path": ["a.jpg"], "x_1": [2.0], "y_1": [0], "x_2": [10], "y_2": [5]})
    >>> as_box_table(df).boxes.tolist()
    [[2, 0, 10, 5]]
    >>> as_box_table(df.drop(columns="y_2"))
    Traceback (most recent call last):
    ...
    ValueError: X has box column(s) 'x_1', 'y_1', 'x_2' but not 'y_2': a table of image \
files takes all four box columns x_1, y_1, x_2, y_2 (left, top, right, bottom) or none.
    """
    if isinstance(X, BoxTable):
        return X
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "iloc") or PATH_COLUMN not in list(columns):
        return None
    present = [c for c in BOX_COLUMNS if c in columns]
    if not present:
        return None
    if len(present) < len(BOX_COLUMNS):
        missing = [c for c in BOX_COLUMNS if c not in present]
        raise ValueError(
            f"X has box column(s) {', '.join(map(repr, present))} but not "
            f"{', '.join(map(repr, missing))}: a table of image files takes all four box "
            "columns x_1, y_1, x_2, y_2 (left, top, right, bottom) or none."
        )
    extra = [c for c in columns if c != PATH_COLUMN and c not in BOX_COLUMNS]
    if extra:
        raise ValueError(
            f"X is a table of image files with crop boxes, but it also has the column(s) "
            f"{', '.join(map(repr, extra[:_SHOWN]))}; pass only 'path', 'x_1', 'y_1', "
            "'x_2', 'y_2' (labels go to y), e.g. X[['path', 'x_1', 'y_1', 'x_2', 'y_2']]."
        )
    from sktriplet.inputs.files import as_paths

    paths = as_paths(X[PATH_COLUMN])
    if paths is None:
        raise ValueError(
            "X's 'path' column holds no file paths; it must hold one image file path per row."
        )
    table = BoxTable(paths, np.zeros((len(paths), 4), dtype=np.int64), np.asarray(X.index))
    return BoxTable(paths, _checked_boxes(X, table), table.rows)


def _checked_boxes(X, table: BoxTable) -> np.ndarray:
    """The box columns as whole pixels, refusing non-numeric, non-finite and empty boxes."""
    from pandas.api.types import is_numeric_dtype

    bad_types = [c for c in BOX_COLUMNS if not is_numeric_dtype(X[c].dtype)]
    if bad_types:
        raise ValueError(
            f"the box column(s) {', '.join(map(repr, bad_types))} are not numeric; box "
            "coordinates are pixel positions (numbers)."
        )
    values = X[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    problems = []
    finite = np.isfinite(values).all(axis=1)
    for i in np.flatnonzero(~finite).tolist():
        problems.append(f"{table.name(i)}: box {values[i].tolist()} is not finite")
    boxes = np.zeros(values.shape, dtype=np.int64)
    boxes[finite] = np.rint(values[finite]).astype(np.int64)
    empty = finite & ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
    for i in np.flatnonzero(empty).tolist():
        problems.append(
            f"{table.name(i)}: box {values[i].tolist()} is empty or inverted "
            "(x_2 must exceed x_1 and y_2 exceed y_1)"
        )
    if problems:
        raise ValueError(
            f"{len(problems)} crop box(es) are not valid regions: {_listing(problems)}. Fix "
            "the boxes (x_1, y_1, x_2, y_2 = left, top, right, bottom in pixels) or drop "
            "those rows."
        )
    return boxes


def check_box_bounds(table: BoxTable) -> None:
    """Refuse boxes that leave their image, reading each file's size from its header.

    Parameters
    ----------
    table : BoxTable
        Files that exist (see :func:`sktriplet.inputs.files.check_files`).

    Raises
    ------
    ValueError
        Naming the first rows whose box is not inside the image, and the
        image's size.
    ImageFileError
        When a file's header cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sktriplet.inputs.boxes import BoxTable, check_box_bounds
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.new("RGB", (8, 6)).save(path)
    >>> paths = np.array([path, path], dtype=object)
    >>> check_box_bounds(BoxTable(paths, np.array([[0, 0, 8, 6], [2, 1, 5, 4]])))
    >>> check_box_bounds(BoxTable(paths, np.array([[0, 0, 8, 6], [2, 1, 9, 4]])))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 1 crop box(es) lie outside their image: row 1, '...a.png': box [2, 1, 9, 4] \
in a 8x6 (width x height) image. ...
    """
    from sktriplet.vision.decode import header_size

    sizes: dict[str, tuple[int, int]] = {}
    problems = []
    for i, (path, box) in enumerate(zip(table.paths.tolist(), table.boxes, strict=True)):
        if path not in sizes:
            sizes[path] = header_size(path)
        height, width = sizes[path]
        left, top, right, bottom = box.tolist()
        if left < 0 or top < 0 or right > width or bottom > height:
            problems.append(
                f"{table.name(i)}: box {box.tolist()} in a {width}x{height} (width x height) image"
            )
    if problems:
        raise ValueError(
            f"{len(problems)} crop box(es) lie outside their image: {_listing(problems)}. "
            "Boxes are (x_1, y_1, x_2, y_2) = (left, top, right, bottom) in pixels of the "
            "image as displayed, with 0 <= x_1 < x_2 <= width and 0 <= y_1 < y_2 <= height; "
            "fix them or drop those rows."
        )
