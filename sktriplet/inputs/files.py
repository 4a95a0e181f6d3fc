"""The input kind "paths": ``X`` as a 1-D sequence of image file paths, read lazily.

:func:`as_paths` recognises such an ``X``; :func:`check_files` reports missing
(or, on request, unreadable) files before training; :class:`ImageFileDataset`
decodes one file per sample when a DataLoader (or one of its workers) asks for
it, so memory depends on the batch, never on the number of files;
:func:`sample_channel_stats` and :func:`infer_channels` look at a bounded
random sample of the files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from sktriplet.vision.decode import (
    ImageFileError,
    find_unreadable,
    is_grey_image,
)
from sktriplet.vision.folders import LeftOutWarning
from sktriplet.vision.transforms import RandomResizedCrop, ResizeCenterCrop, augmentation_rng

__all__ = [
    "ImageFileDataset",
    "as_paths",
    "check_files",
    "default_workers",
    "infer_channels",
    "sample_channel_stats",
]

_ON_ERROR = ("raise", "skip")
_SHOWN = 5


def default_workers() -> int:
    """Data-loader workers that decode image files when none are asked for.

    Up to 4, and no more than the machine's cores: decoding JPEGs is the
    bottleneck of a small network's fit on files.

    Returns
    -------
    int
    """
    return max(1, min(4, os.cpu_count() or 1))


def _is_path(value) -> bool:
    return isinstance(value, (str, bytes, os.PathLike))


def _looks_like_file(value) -> bool:
    """A path object, or a string with a directory separator or a file extension.

    Used only where strings could also be a categorical feature (tables and
    2-D arrays of several columns): ``"Paris"`` is a category,
    ``"img/01.jpg"`` a file.
    """
    if isinstance(value, os.PathLike):
        return True
    if not isinstance(value, (str, bytes)):
        return False
    text = os.fsdecode(value)
    return "/" in text or os.sep in text or os.path.splitext(text)[1] != ""


def as_paths(X) -> np.ndarray | None:
    """``X`` as an array of file paths when it is a 1-D sequence of paths, else ``None``.

    Recognised: a list, tuple or ndarray of ``str``, ``bytes`` or
    ``os.PathLike`` (``pathlib.Path``), a pandas Series of them, a one-column
    DataFrame of them, and an ``(n, 1)`` array of them. So is
    ``sklearn.datasets.load_files(root, load_content=False).filenames``.

    Parameters
    ----------
    X : object
        The input of ``fit`` / ``transform``.

    Returns
    -------
    ndarray of str (dtype object), shape (n_paths,), or None
        ``None`` when ``X`` holds no path at all (numbers: rows or images).

    Raises
    ------
    ValueError
        When ``X`` mixes paths and other values, holds empty paths, or is a
        table of paths with more than one column.

    Examples
    --------
    >>> from pathlib import Path
    >>> from sktriplet.inputs.files import as_paths
    >>> as_paths(["a.jpg", Path("b.png")])
    array(['a.jpg', 'b.png'], dtype=object)
    >>> as_paths([[0.5, 1.0], [2.0, 3.0]]) is None
    True
    """
    if _is_path(X):
        raise ValueError(f"X is a single path ({X!r}); pass a list of paths, e.g. [{X!r}].")
    values = _column_values(X)
    if values is None or values.size == 0:
        return None
    flags = np.fromiter((_is_path(v) for v in values.flat), dtype=bool, count=values.size)
    if not flags.any():
        return None
    if values.ndim != 1:
        if not all(_looks_like_file(v) for v in values[:, 0]):
            return None  # strings as features (categories): the numeric check words it
        raise ValueError(
            f"X is an array of shape {values.shape} holding file paths; pass a 1-D "
            "sequence of paths (one per sample), e.g. X[:, 0] or X.ravel()."
        )
    if not flags.all():
        bad = int(np.flatnonzero(~flags)[0])
        raise ValueError(
            f"X mixes file paths and other values: X[{bad}] is {values[bad]!r} "
            f"({type(values[bad]).__name__}) while X[{int(np.flatnonzero(flags)[0])}] is a "
            "path; pass only paths (one image file per sample) or only numbers."
        )
    paths = np.empty(len(values), dtype=object)
    paths[:] = [str(os.fsdecode(v)) for v in values]
    empty = np.flatnonzero(paths == "")
    if empty.size:
        raise ValueError(
            f"X holds {empty.size} empty path(s), at position(s) {_listing(empty.tolist())}; "
            "every sample needs an image file path."
        )
    return paths


def _column_values(X) -> np.ndarray | None:
    """The values of ``X`` as a 1-D or 2-D ndarray, or None for non-sequences."""
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # pandas DataFrame
        if X.shape[1] == 1:
            return X.iloc[:, 0].to_numpy(dtype=object)
        text = [c for c in X.columns if getattr(X[c].dtype, "kind", "O") in "OSU"]
        if any(X[c].map(_looks_like_file).all() for c in text):
            raise ValueError(
                f"X is a DataFrame with {X.shape[1]} columns and file paths in some; pass "
                "the one column of paths, e.g. X['path'] or X[['path']]."
            )
        return None
    if hasattr(X, "iloc"):  # pandas Series
        return X.to_numpy(dtype=object)
    if isinstance(X, np.ndarray):
        if X.dtype.kind not in "OUS":
            return None
        values = X
    elif isinstance(X, (list, tuple)):
        if not any(_is_path(v) for v in X):
            return None
        values = np.empty(len(X), dtype=object)
        values[:] = list(X)
    else:
        return None
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    return values


def _listing(names: Sequence) -> str:
    """The first few names and how many more: ``'a', 'b' and 3 more``."""
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    more = len(names) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def check_files(
    paths: Sequence[str], on_error: str = "raise", *, decode: bool = False
) -> np.ndarray:
    """Report missing (and, with ``decode=True``, unreadable) image files up front.

    Parameters
    ----------
    paths : sequence of str
        Image file paths (e.g. the output of :func:`as_paths`).
    on_error : {"raise", "skip"}, default="raise"
        ``"raise"``: raise an error listing the bad files (the first 5 by
        name, then how many more). ``"skip"``: warn once with the same list
        (a :class:`~sktriplet.vision.folders.LeftOutWarning`) and return a
        mask that leaves them out.
    decode : bool, default=False
        Also decode every file (JPEGs at 1/8 scale, so about a millisecond
        each; :func:`sktriplet.vision.decode.find_unreadable`) to find
        corrupt, truncated and non-image files. Without it only existence is
        checked (a ``stat`` per file); such files then fail when a batch
        reads them.

    Returns
    -------
    keep : ndarray of bool, shape (n_paths,)
        ``True`` for the files to use (all of them with ``"raise"``).

    Raises
    ------
    FileNotFoundError
        With ``"raise"``, when some files are missing.
    ImageFileError
        With ``"raise"`` and ``decode=True``, when some files cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> import warnings
    >>> from PIL import Image
    >>> from sktriplet.inputs.files import check_files
    >>> good = os.path.join(tempfile.mkdtemp(), "good.png")
    >>> Image.new("L", (4, 4)).save(good)
    >>> with warnings.catch_warnings(record=True):
    ...     check_files([good, "missing.png"], on_error="skip")
    array([ True, False])
    """
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}.")
    keep = np.fromiter((os.path.isfile(p) for p in paths), dtype=bool, count=len(paths))
    missing = [paths[i] for i in np.flatnonzero(~keep)]
    unreadable: list[str] = []
    if decode:
        existing = np.flatnonzero(keep)
        for j, why in find_unreadable([paths[i] for i in existing]):
            keep[existing[j]] = False
            unreadable.append(f"{paths[existing[j]]} ({why})")
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} of {len(paths)} image files are missing: {_listing(missing)}"
        )
    if unreadable:
        problems.append(
            f"{len(unreadable)} of {len(paths)} image files cannot be read: "
            + _listing(unreadable)
        )
    if not problems:
        return keep
    message = "; ".join(problems)
    if on_error == "skip":
        warnings.warn(f"{message}. They are left out.", LeftOutWarning, stacklevel=2)
        return keep
    fix = ". Fix or remove them, or pass on_error='skip' to leave them out."
    raise (FileNotFoundError if missing else ImageFileError)(message + fix)


class _PathTable:
    """Paths packed into one byte buffer and offsets (no Python object per path).

    DataLoader workers started by ``fork`` share the parent's memory
    copy-on-write; touching a Python ``str`` writes its reference count and
    so copies its page, which makes every worker's memory grow with the
    number of files over an epoch. Two numpy arrays have no such counts.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [os.fsencode(p) for p in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        np.cumsum(lengths, out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return os.fsdecode(self.buffer[self.offsets[i] : self.offsets[i + 1]].tobytes())


class ImageFileDataset(Dataset):
    """Image files decoded lazily, one sample at a time, as uint8 tensors.

    ``dataset[i]`` reads file ``i`` and returns ``(image, label)``: a uint8
    tensor ``(channels, *image_size)`` and an int64 label. ``dataset[indices]``
    (a list or array, as a batch sampler gives) returns a stacked batch
    ``(images (B, C, H, W), labels (B,))``. Nothing is read in the
    constructor; DataLoader workers each decode their own samples, and the
    data set pickles to a few arrays (workers started with ``spawn`` too).

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        One image file per sample.
    labels : array-like of int, shape (n_paths,), default=None
        Integer labels; zeros when ``None``.
    image_size : int or tuple of int (height, width)
        Output size; see :mod:`sktriplet.vision.transforms` for the policy.
    channels : {1, 3}
        Output channels (grey or RGB, see :mod:`sktriplet.vision.decode`).
    train : bool, default=False
        ``False``: :class:`~sktriplet.vision.transforms.ResizeCenterCrop`
        (deterministic). ``True``: the training augmentation
        :class:`~sktriplet.vision.transforms.RandomResizedCrop` with a flip,
        drawn from ``(seed, epoch, index, repeat)``; call :meth:`set_epoch`
        before each epoch's DataLoader iterator is created.
    seed : int, default=0
        Seed of the training augmentation.
    on_error : {"raise", "skip"}, default="raise"
        A file that cannot be decoded raises :class:`ImageFileError` naming
        it; with ``"skip"`` (labelled data only) it warns and is replaced by
        the next readable file of the same label, so batches keep their
        size and classes.
    augmentation : RandomResizedCrop or None, default=None
        The training policy; ``None`` uses ``RandomResizedCrop(image_size)``.
    draft : bool, default=True
        Let JPEGs decode at a reduced scale when it serves the output size.
    boxes : array-like of int, shape (n_paths, 4), default=None
        A region ``(left, top, right, bottom)`` of each file to read as if
        the file held only that region (``decode_image(region=...)``; see
        :mod:`sktriplet.inputs.boxes`); ``None`` reads whole images.

    Attributes
    ----------
    y : ndarray of int64, shape (n_paths,)
        The labels (what :class:`sktriplet.training.sampling.PKSampler` draws
        batches from).
    epoch : int
        The epoch the training augmentation is drawn for.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from sktriplet.inputs.files import ImageFileDataset
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, f"{i}.png") for i in range(3)]
    >>> for i, p in enumerate(paths):
    ...     Image.new("RGB", (20 + 10 * i, 30), (i, 0, 0)).save(p)
    >>> ds = ImageFileDataset(paths, [0, 1, 1], image_size=16, channels=3)
    >>> image, label = ds[2]
    >>> image.shape, image.dtype, int(label)
    (torch.Size([3, 16, 16]), torch.uint8, 1)
    >>> ds[[0, 1]][0].shape
    torch.Size([2, 3, 16, 16])
    """

    #: Indexed with a whole batch of indices at a time (one worker reads a batch).
    fetches_batches = True

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        labels=None,
        *,
        image_size,
        channels: int,
        train: bool = False,
        seed: int = 0,
        on_error: str = "raise",
        augmentation: RandomResizedCrop | None = None,
        draft: bool = True,
        boxes=None,
    ) -> None:
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}.")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels!r}.")
        self.paths = _PathTable([os.fspath(p) for p in paths])
        self.y = _labels(labels, len(self.paths))
        self.labelled = labels is not None
        self.evaluation = ResizeCenterCrop(image_size)
        self.augmentation = augmentation or RandomResizedCrop(image_size)
        self.image_size = self.evaluation.image_size
        self.channels = channels
        self.train = train
        self.seed = int(seed)
        self.on_error = on_error
        self.draft = draft
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.int64)
        if self.boxes is not None and self.boxes.shape != (len(self.paths), 4):
            raise ValueError(
                f"boxes must have shape ({len(self.paths)}, 4), one (left, top, right, "
                f"bottom) per path; got shape {self.boxes.shape}."
            )
        self.epoch = 0

    def __len__(self) -> int:
        """Number of files."""
        return len(self.paths)

    @property
    def labels(self) -> np.ndarray:
        """The integer labels (what the PK sampler draws batches from)."""
        return self.y

    def set_epoch(self, epoch: int) -> None:
        """Draw the training augmentation of epoch ``epoch`` from now on."""
        self.epoch = int(epoch)

    def path(self, index: int) -> str:
        """The path of sample ``index``."""
        return self.paths[index]

    def read(self, index: int, repeat: int = 0) -> np.ndarray:
        """Sample ``index`` as a ``(channels, *image_size)`` uint8 array.

        Parameters
        ----------
        index : int
            Position of the file.
        repeat : int, default=0
            Earlier occurrences of ``index`` in the same batch (training
            augmentation only: they get other crops).

        Returns
        -------
        ndarray of uint8
        """
        try:
            return self._decode(index, repeat)
        except ImageFileError as exc:
            if self.on_error == "raise":
                raise
            if not self.labelled:
                raise ImageFileError(
                    f"{exc} on_error='skip' replaces a bad file by another of its class "
                    "while training; without labels (transform) every file needs its row: "
                    "drop bad files first with check_files(paths, 'skip', decode=True)."
                ) from exc
            substitute = self._substitute(index)
            warnings.warn(
                f"{exc} Skipped (on_error='skip'): sample {index} reads "
                f"{self.paths[substitute]!r}, a file of the same label, instead.",
                UserWarning,
                stacklevel=2,
            )
            return self._decode(substitute, repeat)

    def _decode(self, index: int, repeat: int) -> np.ndarray:
        path = self.paths[index]
        region = None if self.boxes is None else tuple(self.boxes[index].tolist())
        if not self.train:
            return self.evaluation(path, self.channels, draft=self.draft, region=region)
        rng = augmentation_rng(self.seed, self.epoch, index, repeat)
        return self.augmentation(path, rng, self.channels, draft=self.draft, region=region)

    def _substitute(self, index: int) -> int:
        """The next index (cyclically) with the same label whose file decodes."""
        same = np.flatnonzero(self.y == self.y[index])
        order = np.roll(same, -int(np.searchsorted(same, index)))
        for candidate in order[1:]:
            try:
                self._decode(int(candidate), 0)
            except ImageFileError:
                continue
            return int(candidate)
        raise ImageFileError(
            f"no readable image file of label {self.y[index]} is left to replace "
            f"{self.paths[index]!r} (on_error='skip'); remove the class's bad files."
        )

    def __getitem__(self, index):
        """``(image, label)`` for an int, a stacked batch for a list or array of ints."""
        if np.ndim(index) == 0:
            i = int(index)
            return torch.from_numpy(self.read(i)), torch.tensor(self.y[i])
        indices = np.asarray(index, dtype=np.int64).ravel()
        seen: dict[int, int] = {}
        images = np.empty((len(indices), self.channels, *self.image_size), dtype=np.uint8)
        for j, i in enumerate(indices.tolist()):
            repeat = seen.get(i, 0)
            seen[i] = repeat + 1
            images[j] = self.read(i, repeat)
        return torch.from_numpy(images), torch.from_numpy(self.y[indices])


def _labels(labels, n: int) -> np.ndarray:
    if labels is None:
        return np.zeros(n, dtype=np.int64)
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per path; got shape {y.shape}.")
    if y.dtype.kind not in "iub":
        raise ValueError(
            f"labels must be integers (got dtype {y.dtype}); encode them first, e.g. with "
            "sklearn.preprocessing.LabelEncoder."
        )
    return y.astype(np.int64)


def sample_channel_stats(
    dataset, max_samples: int = 1000, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel of a bounded random sample of images.

    Reads ``min(len(dataset), max_samples)`` samples chosen at random
    without replacement and accumulates per-channel sums in float64, so its
    memory is one image whatever the size of the data set.

    Parameters
    ----------
    dataset : Dataset
        ``dataset[i]`` returns ``(image (C, H, W), label)``, e.g. an
        :class:`ImageFileDataset` with ``train=False`` (statistics of the
        images as ``transform`` sees them).
    max_samples : int, default=1000
        Most images read.
    random_state : int, default=0
        Seed of the sample.

    Returns
    -------
    mean, std : ndarray of float64, shape (C,)
        Over all pixels of the sampled images (population std).

    Examples
    --------
    >>> import torch
    >>> from sktriplet.inputs.files import sample_channel_stats
    >>> data = [(torch.full((1, 2, 2), float(v)), 0) for v in (0, 2)]
    >>> sample_channel_stats(data)
    (array([1.]), array([1.]))
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("sample_channel_stats needs at least one sample; the data set is empty.")
    rng = np.random.default_rng(random_state)
    chosen = rng.choice(n, size=min(n, int(max_samples)), replace=False)
    total = total_sq = None
    count = 0
    for i in np.sort(chosen).tolist():
        image = np.asarray(dataset[i][0], dtype=np.float64)
        flat = image.reshape(image.shape[0], -1)
        total = flat.sum(axis=1) + (0.0 if total is None else total)
        total_sq = (flat**2).sum(axis=1) + (0.0 if total_sq is None else total_sq)
        count += flat.shape[1]
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))


def infer_channels(paths: Sequence[str], max_samples: int = 200, random_state: int = 0) -> int:
    """1 when every sampled file is grey, else 3 (read from file headers only).

    Grey is a grey Pillow mode or an all-grey palette
    (:func:`sktriplet.vision.decode.is_grey_image`); one colour file in the
    sample makes the answer 3. A user overrides it with ``channels``.

    Parameters
    ----------
    paths : sequence of str
        Image file paths.
    max_samples : int, default=200
        Most files whose header is read (chosen at random, without
        replacement).
    random_state : int, default=0
        Seed of the sample.

    Returns
    -------
    int
        1 or 3.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from sktriplet.inputs.files import infer_channels
    >>> folder = tempfile.mkdtemp()
    >>> grey, colour = os.path.join(folder, "g.png"), os.path.join(folder, "c.jpg")
    >>> Image.new("L", (8, 8)).save(grey)
    >>> Image.new("RGB", (8, 8)).save(colour)
    >>> infer_channels([grey]), infer_channels([grey, colour])
    (1, 3)
    """
    n = len(paths)
    if n == 0:
        raise ValueError("infer_channels needs at least one path; got none.")
    rng = np.random.default_rng(random_state)
    chosen = rng.choice(n, size=min(n, int(max_samples)), replace=False)
    return 1 if all(is_grey_image(paths[i]) for i in np.sort(chosen).tolist()) else 3
