"""Listing a class-folder tree of image files: ``root/<class>/<file>``, and what it leaves out.

:func:`list_image_folder` returns the image files and their class labels and
warns once (:class:`LeftOutWarning`, one line) about what it left out: empty
class folders, files that are not images, folders nested in a class folder,
files outside the class folders. :func:`scan_image_folder` returns that
record (:class:`LeftOut`) instead, for callers that report it themselves
(the ``sktriplet`` command adds the files that fail to decode to the same
line).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EMPTY_CLASS",
    "IMAGE_EXTENSIONS",
    "NESTED_FOLDER",
    "NOT_AN_IMAGE",
    "OUTSIDE_CLASSES",
    "UNREADABLE",
    "LeftOut",
    "LeftOutWarning",
    "folder_entries",
    "list_image_folder",
    "scan_image_folder",
]

#: Reasons for leaving an entry out, as ``(singular, plural)``.
EMPTY_CLASS = ("empty class folder", "empty class folders")
NOT_AN_IMAGE = ("file without an image extension", "files without an image extension")
NESTED_FOLDER = ("folder inside a class folder", "folders inside class folders")
OUTSIDE_CLASSES = ("file outside the class folders", "files outside the class folders")
UNREADABLE = ("image file that cannot be read", "image files that cannot be read")
_ORDER = (EMPTY_CLASS, UNREADABLE, NOT_AN_IMAGE, NESTED_FOLDER, OUTSIDE_CLASSES)
_SHOWN = 3


class LeftOutWarning(UserWarning):
    """Entries of an image folder were left out (empty class folders, other files, ...).

    Also what ``fit`` with ``on_error="skip"`` left out of the image files it
    was given (missing files and files that do not decode).
    """


@dataclass
class LeftOut:
    """What reading an image folder left out, by reason, as paths relative to ``root``.

    Parameters
    ----------
    root : str
        The folder.
    entries : dict, default={}
        ``(singular, plural)`` reason -> names, or ``(name, why)`` pairs.

    Examples
    --------
    >>> from sktriplet.vision.folders import EMPTY_CLASS, NOT_AN_IMAGE, LeftOut
    >>> left = LeftOut("photos")
    >>> left.add(EMPTY_CLASS, ["owl"])
    >>> left.add(NOT_AN_IMAGE, ["cat/notes.txt", "dog/a.psd", "dog/b.psd", "dog/c.psd"])
    >>> for part in left.summary().split("; "):
    ...     print(part)
    left out of photos: 1 empty class folder ('owl')
    4 files without an image extension ('cat/notes.txt', 'dog/a.psd', 'dog/b.psd' and 1 more)
    """

    root: str
    entries: dict[tuple[str, str], list[str | tuple[str, str]]] = field(default_factory=dict)

    def add(self, reason: tuple[str, str], names: Iterable[str | tuple[str, str]]) -> None:
        """Record ``names`` (or ``(name, why)`` pairs) as left out for ``reason``."""
        names = list(names)
        if names:
            self.entries.setdefault(reason, []).extend(names)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def count(self, reason: tuple[str, str]) -> int:
        """How many entries were left out for ``reason``."""
        return len(self.entries.get(reason, ()))

    def summary(self) -> str:
        """One line: ``left out of ROOT: N reason ('a', 'b', 'c' and M more); ...``."""
        parts = []
        order = {reason: i for i, reason in enumerate(_ORDER)}
        entries = sorted(self.entries.items(), key=lambda item: order.get(item[0], len(order)))
        for (one, many), names in entries:
            shown = ", ".join(
                repr(n) if isinstance(n, str) else f"{n[0]!r} ({n[1]})" for n in names[:_SHOWN]
            )
            more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
            parts.append(f"{len(names)} {one if len(names) == 1 else many} ({shown}{more})")
        return f"left out of {self.root}: " + "; ".join(parts)

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
    What was left out, hidden entries aside (empty class folders, files that
    are not images, folders inside class folders, files next to the class
    folders), is said in one :class:`LeftOutWarning`.

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
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     paths, labels, class_names = list_image_folder(root)
    >>> [os.path.relpath(p, root) for p in paths], labels.tolist(), class_names
    (['cat/a.png', 'cat/b.JPG', 'dog/c.jpeg'], [0, 0, 1], ['cat', 'dog'])
    >>> str(caught[0].message).split(": ", 1)[1]
    "1 file without an image extension ('dog/notes.txt')"
    """
    paths, labels, class_names, left_out = scan_image_folder(root, extensions=extensions)
    if left_out:
        warnings.warn(left_out.summary(), LeftOutWarning, stacklevel=2)
    return paths, labels, class_names


def scan_image_folder(
    root: str | os.PathLike, *, extensions: Iterable[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], LeftOut]:
    """:func:`list_image_folder` without the warning: what it left out is returned.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding one sub-folder per class.
    extensions : iterable of str or None, default=None
        Extensions to keep (see :func:`list_image_folder`).

    Returns
    -------
    paths, labels, class_names
        As :func:`list_image_folder` returns them.
    left_out : LeftOut
        The entries left out, by reason (hidden ones are not recorded).

    Raises
    ------
    FileNotFoundError
        When ``root`` is not a folder.
    ValueError
        When no class folder holds an image file.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"image folder not found: {root!r}; pass a folder holding one sub-folder per class."
        )
    keep = _extension_set(extensions)
    left_out = LeftOut(root)
    paths: list[str] = []
    labels: list[int] = []
    class_names: list[str] = []
    for entry in _visible(root):
        if not entry.is_dir():
            left_out.add(OUTSIDE_CLASSES, [entry.name])
            continue
        files, others, folders = folder_entries(entry.path, keep)
        left_out.add(NOT_AN_IMAGE, (f"{entry.name}/{f}" for f in others))
        left_out.add(NESTED_FOLDER, (f"{entry.name}/{f}" for f in folders))
        if not files:
            left_out.add(EMPTY_CLASS, [entry.name])
            continue
        paths.extend(os.path.join(root, entry.name, f) for f in files)
        labels.extend([len(class_names)] * len(files))
        class_names.append(entry.name)
    if not paths:
        raise ValueError(
            f"{root}: no image files in class folders; expected {root}/<class>/<file> with "
            f"extensions {' '.join(sorted(keep))} (pass extensions=... for others)."
        )
    labels_array = np.array(labels, dtype=np.int64)
    return np.array(paths, dtype=object), labels_array, class_names, left_out


def _visible(folder: str) -> list[os.DirEntry]:
    """The entries of ``folder`` whose names do not start with a dot, sorted by name."""
    entries = (e for e in os.scandir(folder) if not e.name.startswith("."))
    return sorted(entries, key=lambda e: e.name)


def folder_entries(
    folder: str | os.PathLike, extensions: Iterable[str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """The image files, other files and sub-folders of one folder, each sorted by name.

    Hidden entries (names starting with ``.``) are in none of the lists.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder.
    extensions : iterable of str or None, default=None
        Extensions of image files (see :func:`list_image_folder`).

    Returns
    -------
    images, others, folders : list of str
        Names (not paths) of the image files, of the other files, and of the
        sub-folders.

    Examples
    --------
    >>> import os, tempfile
    >>> from sktriplet.vision.folders import folder_entries
    >>> root = tempfile.mkdtemp()
    >>> for name in ["b.png", "a.JPG", "notes.txt", ".DS_Store"]:
    ...     open(os.path.join(root, name), "wb").close()
    >>> os.mkdir(os.path.join(root, "sub"))
    >>> folder_entries(root)
    (['a.JPG', 'b.png'], ['notes.txt'], ['sub'])
    """
    keep = _extension_set(extensions)
    files, others, folders = [], [], []
    for f in _visible(os.fspath(folder)):
        if f.is_dir():
            folders.append(f.name)
        elif os.path.splitext(f.name)[1].lower() in keep and f.is_file():
            files.append(f.name)
        else:
            others.append(f.name)
    return files, others, folders


def _extension_set(extensions: Iterable[str] | None) -> frozenset[str]:
    if extensions is None:
        return frozenset(IMAGE_EXTENSIONS)
    if isinstance(extensions, str):
        extensions = [extensions]
    out = frozenset("." + e.lower().lstrip(".") for e in extensions)
    if not out or "." in out:
        raise ValueError(f"extensions must be non-empty names like 'jpg'; got {extensions!r}.")
    return out
