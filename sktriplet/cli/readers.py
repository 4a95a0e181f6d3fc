"""What the ``sktriplet`` command reads: data files and image folders.

The reader is chosen by the path:

- ``.npz``: arrays ``X`` and ``y`` (``--x-key``/``--y-key`` rename them).
- ``.csv`` and ``.parquet``: one row per sample; the label column is
  ``--label`` (default ``label``), every other column is a numeric feature;
  a table with a ``path`` column lists image files instead, with a crop box
  each in the columns ``x_1, y_1, x_2, y_2`` (or none): relative paths are
  read from the table's folder. Parquet needs ``pyarrow`` (``pip install "sktriplet[cli]"``).
- a folder with one sub-folder per class, each holding images (``.png``,
  ``.pgm``, ``.jpg``, ...) kept as paths that the model decodes lazily with
  Pillow (``pip install "sktriplet[cli]"``; matplotlib brings it too), or
  ``.npy`` arrays read with NumPy. A folder holding images directly (no
  sub-folders) is unlabelled data for ``embed``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from sktriplet.cli.messages import CLIError
from sktriplet.inputs.boxes import BOX_COLUMNS, PATH_COLUMN, as_box_table
from sktriplet.vision.decode import find_unreadable
from sktriplet.vision.folders import (
    EMPTY_CLASS,
    IMAGE_EXTENSIONS,
    NOT_AN_IMAGE,
    UNREADABLE,
    LeftOut,
    folder_entries,
    scan_image_folder,
)

__all__ = [
    "FOLDER_EXTENSIONS",
    "TABLE_SUFFIXES",
    "Data",
    "keep_readable_files",
    "list_folder_files",
    "file_paths",
    "read_data",
    "read_image_folder",
    "require_labels",
    "require_pyarrow",
]

#: File suffixes read from image folders: images, and .npy arrays (one per image).
FOLDER_EXTENSIONS = (*IMAGE_EXTENSIONS, ".npy")
#: Suffixes of the tables read and written (compared case-insensitively).
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class Data:
    """Samples read from a path: ``X`` (array or DataFrame), labels, names.

    Parameters
    ----------
    X : numpy.ndarray or pandas.DataFrame
        Feature rows, or images ``(N, H, W)`` / ``(N, C, H, W)``.
    y : numpy.ndarray or None
        Labels, when the data has them.
    ids : list of str or None
        File paths of the samples (image folders), when known.
    paths : bool, default=False
        ``X`` holds image file paths, which the model decodes lazily.
    left_out : LeftOut or None, default=None
        For a folder: what reading it left out (empty class folders, other
        files, and with ``--on-error skip`` files that do not decode).
    """

    def __init__(self, X, y=None, ids=None, paths: bool = False, left_out=None) -> None:
        self.X = X
        self.y = y
        self.ids = ids
        self.paths = paths
        self.left_out = left_out


def _read_npz(path: Path, x_key: str, y_key: str) -> Data:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            if x_key not in keys:
                raise CLIError(
                    f"{path}: no array {x_key!r} in the .npz (it has {keys}); "
                    "name the features with --x-key."
                )
            X = npz[x_key]
            y = npz[y_key] if y_key in keys else None
    except (OSError, ValueError) as exc:
        raise CLIError(f"{path}: not a readable .npz file ({exc}).") from None
    return Data(X, y)


def require_pyarrow(path: Path, doing: str) -> None:
    """Refuse a parquet path early when its reader/writer is not installed."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise CLIError(
            f"{path}: {doing} parquet needs pyarrow: pip install pyarrow "
            '(or pip install "sktriplet[cli]"), or use .csv (embeddings: or .npy) instead.'
        ) from None


def _read_table(path: Path, label: str) -> Data:
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path)
        else:
            require_pyarrow(path, "reading")
            df = pd.read_parquet(path)
    except CLIError:
        raise
    except Exception as exc:  # pandas raises many types for a bad file
        raise CLIError(f"{path}: not a readable {path.suffix} table ({exc}).") from None
    y = None
    if label in df.columns:
        y = df[label].to_numpy()
        df = df.drop(columns=[label])
    df.columns = [str(c) for c in df.columns]
    if PATH_COLUMN in df.columns:
        return _read_file_table(df, y, path, label)
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise CLIError(
            f"{path}: column(s) {bad} are not numeric; encode them first, or if one "
            f"of them is the label name it with --label (now {label!r})."
        )
    if df.shape[1] == 0:
        raise CLIError(f"{path}: no feature columns besides the label {label!r}.")
    return Data(df, y)


def _read_file_table(df, y, path: Path, label: str) -> Data:
    """A table of image files (``path``) with crop boxes (``x_1, y_1, x_2, y_2``) or none.

    Relative paths are read from the table's own folder, as datasets that
    ship a table beside their photos write them.
    """
    allowed = (PATH_COLUMN, *BOX_COLUMNS)
    extra = [c for c in df.columns if c not in allowed]
    if extra:
        raise CLIError(
            f"{path}: a table of image files has the column {PATH_COLUMN!r} and, for crop "
            f"boxes, {', '.join(BOX_COLUMNS)}; column(s) {extra[:5]} are neither: drop them, "
            f"or if one of them is the label name it with --label (now {label!r})."
        )
    base = path.parent
    files = [str(base / p) for p in df[PATH_COLUMN].astype(str)]  # absolute p stays p
    df = df.assign(**{PATH_COLUMN: files}).reset_index(drop=True)
    try:
        as_box_table(df)  # bad box values: one line naming the row, before any work
    except ValueError as exc:
        raise CLIError(f"{path}: {exc}") from None
    return Data(df, y, ids=files, paths=True)


def file_paths(data: Data) -> np.ndarray:
    """The image files of ``data``: its paths, or a file table's ``path`` column."""
    X = data.X
    return X[PATH_COLUMN].to_numpy() if hasattr(X, "columns") else X


def _take_rows(X, keep: np.ndarray):
    return X[keep].reset_index(drop=True) if hasattr(X, "columns") else X[keep]


def _has_class_folders(path: Path) -> bool:
    return any(d.is_dir() and not d.name.startswith(".") for d in path.iterdir())


def list_folder_files(path: Path) -> tuple[np.ndarray, np.ndarray | None, LeftOut]:
    """Image (or ``.npy``) files of a folder, their class-folder labels, and what was left out.

    A folder with sub-folders is a class tree ``path/<class>/<file>``
    (:func:`sktriplet.vision.folders.scan_image_folder`): the labels are the
    sub-folder names. A folder holding the files directly is unlabelled
    (labels ``None``). Files are sorted by name (class folders by name too).
    Empty class folders and files that are neither images nor ``.npy``
    arrays are recorded in the returned :class:`~sktriplet.vision.folders.LeftOut`.
    """
    if _has_class_folders(path):
        try:
            files, labels, names, left_out = scan_image_folder(path, extensions=FOLDER_EXTENSIONS)
        except ValueError:
            pass  # sub-folders without images: files may sit in the folder itself
        else:
            return files, np.asarray(names)[labels], left_out
    left_out = LeftOut(str(path))
    names, others, folders = folder_entries(path, FOLDER_EXTENSIONS)
    if not names:
        raise CLIError(
            f"{path}: no images found; expected one sub-folder per class holding image "
            f"files ({' '.join(IMAGE_EXTENSIONS)} or .npy), or for 'embed' the files themselves."
        )
    left_out.add(EMPTY_CLASS, folders)
    left_out.add(NOT_AN_IMAGE, others)
    return np.array([os.path.join(path, n) for n in names], dtype=object), None, left_out


def _read_npy_arrays(path: Path, files: np.ndarray, y: np.ndarray | None) -> Data:
    """A folder of ``.npy`` arrays (one per image), stacked: they must share a shape."""
    images = []
    for f in files:
        try:
            images.append(np.load(f, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise CLIError(f"{f}: not a readable .npy array ({exc}).") from None
        if images[-1].shape != images[0].shape:
            raise CLIError(
                f"{path}: .npy images differ in shape: {os.path.relpath(files[0], path)} is "
                f"{images[0].shape} but {os.path.relpath(f, path)} is {images[-1].shape}; "
                "save them at one size, or as image files (.png, .jpg, ...), which may "
                "differ in size (--image-size sets the size the model sees)."
            )
    X = np.stack(images)
    if X.dtype not in (np.uint8, np.float32):
        X = X.astype(np.float32)
    return Data(X, y, ids=list(files))


def read_image_folder(path: Path) -> Data:
    """An image folder as lazily read file paths (``.npy`` arrays are read now).

    Image files of any size and mode are not decoded here: ``Data.X`` holds
    their paths and the model decodes them batch by batch
    (``Data.paths`` is ``True``).
    """
    files, y, left_out = list_folder_files(path)
    npy = np.array([f.lower().endswith(".npy") for f in files])
    if npy.all():
        data = _read_npy_arrays(path, files, y)
        data.left_out = left_out
        return data
    if npy.any():
        raise CLIError(
            f"{path}: mixes .npy arrays ({files[npy][0]}) and image files "
            f"({files[~npy][0]}); keep one kind in a folder."
        )
    return Data(files, y, ids=list(files), paths=True, left_out=left_out)


def keep_readable_files(data: Data, root: str) -> Data:
    """``--on-error skip``: leave out the files that do not decode, recorded in ``left_out``.

    Every file is decoded once, small (:func:`sktriplet.vision.decode.find_unreadable`),
    before the long work; the files left out join the folder's one-line
    summary of what it left out.
    """
    files = file_paths(data)
    bad = find_unreadable(files)
    if not bad:
        return data
    left_out = data.left_out if data.left_out is not None else LeftOut(root)
    folder = root if os.path.isdir(root) else os.path.dirname(root)  # a table's folder
    left_out.add(UNREADABLE, ((os.path.relpath(files[i], folder), why) for i, why in bad))
    keep = np.ones(len(data.X), dtype=bool)
    keep[[i for i, _ in bad]] = False
    if not keep.any():
        raise CLIError(f"no image file could be read; {left_out.summary()}.")
    ids = [i for i, k in zip(data.ids, keep, strict=True) if k]
    y = None if data.y is None else data.y[keep]
    return Data(_take_rows(data.X, keep), y, ids=ids, paths=True, left_out=left_out)


def read_data(path: str, args: argparse.Namespace) -> Data:
    """Read samples (and labels) from an .npz, .csv, .parquet or image folder."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such file or folder.")
    if p.is_dir():
        return read_image_folder(p)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return _read_npz(p, args.x_key, args.y_key)
    if suffix in TABLE_SUFFIXES:
        return _read_table(p, args.label)
    raise CLIError(
        f"{path}: unknown data format {suffix or '(no suffix)'!r}; use .npz, .csv, "
        ".parquet or a folder of images with one sub-folder per class."
    )


def require_labels(data: Data, path: str, args: argparse.Namespace) -> np.ndarray:
    """The labels of ``data``, or an error saying how to give them."""
    if data.y is None:
        p = Path(path)
        if p.is_dir():
            how = "put the images in one sub-folder per class"
        elif p.suffix.lower() == ".npz":
            how = f"store them as {args.y_key!r} or name the array with --y-key"
        else:
            how = f"add a label column or name it with --label (now {args.label!r})"
        raise CLIError(f"{path}: this command needs labels, and none were found; {how}.")
    return data.y
