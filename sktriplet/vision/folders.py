"""Listing a class-folder tree of image files: ``root/<class>/<file>``."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "list_image_folder"]

#: File extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
    ".pgm",
    ".ppm",
)


def list_image_folder(
    root: str | os.PathLike, *, extensions: Iterable[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image files of a class-folder tree, with integer labels and class names.

    The tree is ``root/<class>/<file>``: one sub-folder per class holding its
    image files directly (sub-sub-folders are not read). Files whose
    extension is not an image extension (case-insensitive), and hidden files
    and folders (names starting with ``.``), are skipped. Classes are the
    sub-folders that hold at least one image, sorted by name; files are sorted
    by name within a class, so the order is the same on every machine.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding one sub-folder per class.
    extensions : iterable of str or None, default=None
        Extensions to keep, with or without the dot (``"jpg"``, ``".PNG"``);
        ``None`` keeps :data:`IMAGE_EXTENSIONS` (``.jpg .jpeg .png .bmp .tif
        .tiff .webp .gif .pgm .ppm``).

    Returns
    -------
    paths : ndarray of str, shape (n_files,)
        The file paths (``root`` joined with class folder and file name).
    labels : ndarray of int64, shape (n_files,)
        Index of each file's class in ``class_names``.
    class_names : list of str
        The class folder names, sorted.

    Raises
    ------
    FileNotFoundError
        When ``root`` is not a folder.
    ValueError
        When no class folder holds an image file.

    Examples
    --------
    >>> import os, tempfile
    >>> from sktriplet.datasets import list_image_folder
    >>> root = tempfile.mkdtemp()
    >>> for name in ["cat/b.JPG", "cat/a.png", "dog/c.jpeg", "dog/notes.txt"]:
    ...     os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
    ...     open(os.path.join(root, name), "wb").close()
    >>> paths, labels, class_names = list_image_folder(root)
    >>> [os.path.relpath(p, root) for p in paths], labels.tolist(), class_names
    (['cat/a.png', 'cat/b.JPG', 'dog/c.jpeg'], [0, 0, 1], ['cat', 'dog'])
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"image folder not found: {root!r}; pass a folder holding one sub-folder per class."
        )
    keep = _extension_set(extensions)
    paths: list[str] = []
    labels: list[int] = []
    class_names: list[str] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        files = sorted(
            f.name
            for f in os.scandir(entry.path)
            if not f.name.startswith(".")
            and os.path.splitext(f.name)[1].lower() in keep
            and f.is_file()
        )
        if files:
            paths.extend(os.path.join(root, entry.name, f) for f in files)
            labels.extend([len(class_names)] * len(files))
            class_names.append(entry.name)
    if not paths:
        raise ValueError(
            f"{root}: no image files in class folders; expected {root}/<class>/<file> with "
            f"extensions {' '.join(sorted(keep))} (pass extensions=... for others)."
        )
    return np.array(paths, dtype=object), np.array(labels, dtype=np.int64), class_names


def _extension_set(extensions: Iterable[str] | None) -> frozenset[str]:
    if extensions is None:
        return frozenset(IMAGE_EXTENSIONS)
    if isinstance(extensions, str):
        extensions = [extensions]
    out = frozenset("." + e.lower().lstrip(".") for e in extensions)
    if not out or "." in out:
        raise ValueError(f"extensions must be non-empty names like 'jpg'; got {extensions!r}.")
    return out
