"""The ``sktriplet`` command: train, embed and evaluate from a shell.

``sktriplet fit`` trains a :class:`~sktriplet.TripletEmbedder` on a data
file or an image folder and saves it with :func:`sktriplet.save`;
``sktriplet embed`` writes the embeddings of data with a saved model;
``sktriplet evaluate`` prints retrieval scores (precision@k, recall@k,
R-precision, MAP@R) of a saved model's embeddings. ``python -m sktriplet``
is the same command. Run ``sktriplet --help`` or ``sktriplet fit --help``
for the manual.

Data readers (chosen by the path):

- ``.npz``: arrays ``X`` and ``y`` (``--x-key``/``--y-key`` rename them).
- ``.csv`` and ``.parquet``: one row per sample; the label column is
  ``--label`` (default ``label``), every other column is a numeric feature.
  Parquet needs ``pyarrow`` (``pip install "sktriplet[cli]"``).
- a folder with one sub-folder per class, each holding images (``.png``,
  ``.pgm``, ``.jpg``, ...) read with Pillow (``pip install "sktriplet[cli]"``;
  matplotlib brings it too) or ``.npy`` arrays read with NumPy. A folder
  holding images directly (no sub-folders) is unlabelled data for
  ``embed``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sktriplet.vision.folders import IMAGE_EXTENSIONS, list_image_folder

__all__ = ["main"]

PROG = "sktriplet"

#: File suffixes read from image folders: images, and .npy arrays (one per image).
FOLDER_EXTENSIONS = (*IMAGE_EXTENSIONS, ".npy")
_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


# ----------------------------------------------------------------- reading
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
    """

    def __init__(self, X, y=None, ids=None, paths: bool = False) -> None:
        self.X = X
        self.y = y
        self.ids = ids
        self.paths = paths


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


def _require_pyarrow(path: Path, doing: str) -> None:
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
            _require_pyarrow(path, "reading")
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
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise CLIError(
            f"{path}: column(s) {bad} are not numeric; encode them first, or if one "
            f"of them is the label name it with --label (now {label!r})."
        )
    if df.shape[1] == 0:
        raise CLIError(f"{path}: no feature columns besides the label {label!r}.")
    return Data(df, y)


def _has_class_folders(path: Path) -> bool:
    return any(d.is_dir() and not d.name.startswith(".") for d in path.iterdir())


def list_folder_files(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Image (or ``.npy``) files of a folder and their class-folder labels.

    A folder with sub-folders is a class tree ``path/<class>/<file>``
    (:func:`sktriplet.vision.folders.list_image_folder`): the labels are the
    sub-folder names. A folder holding the files directly is unlabelled
    (labels ``None``). Files are sorted by name (class folders by name too).
    """
    if _has_class_folders(path):
        try:
            files, labels, names = list_image_folder(path, extensions=FOLDER_EXTENSIONS)
        except ValueError:
            pass  # sub-folders without images: files may sit in the folder itself
        else:
            return files, np.asarray(names)[labels]
    names = sorted(
        f.name
        for f in os.scandir(path)
        if not f.name.startswith(".")
        and os.path.splitext(f.name)[1].lower() in FOLDER_EXTENSIONS
        and f.is_file()
    )
    if not names:
        raise CLIError(
            f"{path}: no images found; expected one sub-folder per class holding image "
            f"files ({' '.join(IMAGE_EXTENSIONS)} or .npy), or for 'embed' the files themselves."
        )
    return np.array([os.path.join(path, n) for n in names], dtype=object), None


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
    files, y = list_folder_files(path)
    npy = np.array([f.lower().endswith(".npy") for f in files])
    if npy.all():
        return _read_npy_arrays(path, files, y)
    if npy.any():
        raise CLIError(
            f"{path}: mixes .npy arrays ({files[npy][0]}) and image files "
            f"({files[~npy][0]}); keep one kind in a folder."
        )
    return Data(files, y, ids=list(files), paths=True)


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
    if suffix in _TABLE_SUFFIXES:
        return _read_table(p, args.label)
    raise CLIError(
        f"{path}: unknown data format {suffix or '(no suffix)'!r}; use .npz, .csv, "
        ".parquet or a folder of images with one sub-folder per class."
    )


def _require_labels(data: Data, path: str, args: argparse.Namespace) -> np.ndarray:
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


# ----------------------------------------------------------------- writing
def _write_embeddings(Z: np.ndarray, data: Data, out: Path, columns: list[str]) -> None:
    import pandas as pd

    suffix = out.suffix.lower()
    if suffix == ".npy":
        np.save(out, Z)
        return
    if suffix not in _TABLE_SUFFIXES:
        raise CLIError(f"{out}: unknown output format {suffix!r}; use .npy, .csv or .parquet.")
    df = pd.DataFrame(Z, columns=columns)
    if data.ids is not None:
        df.insert(0, "id", data.ids)
    if data.y is not None:
        df["label"] = data.y
    if suffix == ".csv":
        df.to_csv(out, index=False)
    else:
        _require_pyarrow(out, "writing")
        df.to_parquet(out, index=False)


def _format_table(scores: dict[str, Any]) -> str:
    width = max(len(k) for k in scores)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 6}"]
    for key, value in scores.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def _write_scores(scores: dict[str, Any], out: Path) -> None:
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


def _check_output(path: str, suffixes: Sequence[str], what: str) -> Path:
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise CLIError(
            f"{path}: unknown {what} format {out.suffix or '(no suffix)'!r}; use "
            f"{', '.join(suffixes)}."
        )
    if not out.parent.exists():
        raise CLIError(f"{path}: the folder {out.parent} does not exist.")
    if out.suffix.lower() in (".parquet", ".pq"):
        _require_pyarrow(out, "writing")  # before any work, not after it
    return out


# ---------------------------------------------------------------- commands
def _load_model(path: str, device: str):
    import torch

    from sktriplet import load

    if not Path(path).is_file():
        raise CLIError(f"{path}: no such model file.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return load(path, device=device)


def _check_image_shape(estimator, data: Data, path: str) -> None:
    """Refuse images the model cannot take, naming the option that fixes it."""
    fitted = tuple(getattr(estimator, "input_shape_", ()))
    X = data.X
    if len(fitted) != 3 or not isinstance(X, np.ndarray) or X.ndim not in (3, 4):
        return
    shape = (1, *X.shape[1:]) if X.ndim == 3 else X.shape[1:]
    if shape == fitted:
        return
    have = f"{path}: the images are {shape[0]} x {shape[1]} x {shape[2]} (channels x H x W)"
    want = f"the model takes {fitted[0]} x {fitted[1]} x {fitted[2]}"
    if shape[1:] == fitted[1:] and Path(path).is_dir() and fitted[0] in (1, 3):
        color = "rgb" if fitted[0] == 3 else "gray"
        raise CLIError(f"{have} but {want}; read them with --color {color}.")
    if shape[1:] == fitted[1:]:
        raise CLIError(f"{have} but {want}; give the images {fitted[0]} channel(s).")
    raise CLIError(f"{have} but {want}; resize them to {fitted[1]} x {fitted[2]} pixels.")


def _model_input(estimator, data: Data, path: str, args: argparse.Namespace):
    """``data.X`` with the columns the model was fitted on, in its order."""
    _check_image_shape(estimator, data, path)
    names = getattr(estimator, "feature_names_in_", None)
    if names is None or not hasattr(data.X, "columns"):
        return data.X
    names = [str(n) for n in names]
    extra = [c for c in data.X.columns if c not in names]
    missing = [c for c in names if c not in data.X.columns]
    if extra:
        raise CLIError(
            f"{path}: column(s) {extra[:5]} were not features when the model was fitted; "
            f"if one of them is the label, name it with --label (now {args.label!r})."
        )
    if missing:
        raise CLIError(f"{path}: the model needs column(s) {missing[:5]}, which are missing.")
    return data.X[names]


# ------------------------------------------------------------ image files
#: ``--color`` as the estimator's ``channels``.
COLOR_CHANNELS = {"auto": "auto", "gray": 1, "rgb": 3}
_CHANNEL_NAMES = {1: "grey (1 channel)", 3: "RGB (3 channels)"}


def _worker_params(workers: int | None) -> dict[str, int]:
    """DataLoader workers that decode image files, as routed estimator parameters."""
    if workers is None:
        return {}
    return {"iterator_train__num_workers": workers, "iterator_valid__num_workers": workers}


def image_file_params(args: argparse.Namespace) -> dict[str, Any]:
    """``TripletEmbedder`` parameters of ``sktriplet fit`` on a folder of image files."""
    params: dict[str, Any] = {"channels": COLOR_CHANNELS[args.color], "on_error": args.on_error}
    if args.image_size is not None:
        params["image_size"] = args.image_size
    return {**params, **_worker_params(args.workers)}


def _model_channels(estimator) -> int | None:
    return getattr(getattr(estimator, "input_spec_", None), "channels", None)


def _keep_readable_files(data: Data, command: str) -> Data:
    """``--on-error skip`` for a saved model: leave out files that do not decode."""
    from sktriplet.inputs.files import check_files

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keep = check_files(list(data.X), on_error="skip", decode=True)
    for w in caught:
        print(f"{PROG} {command}: warning: {w.message}", file=sys.stderr)
    if not keep.any():
        raise CLIError("no image file could be read (see the warning above).")
    ids = [i for i, k in zip(data.ids, keep, strict=True) if k]
    y = None if data.y is None else data.y[keep]
    return Data(data.X[keep], y, ids=ids, paths=True)


def prepare_image_files(estimator, data: Data, args: argparse.Namespace) -> Data:
    """Check ``--color`` against a saved model and set its workers for image files.

    A saved model decodes image files of any mode to the channels it was
    fitted with, so ``--color`` only has to agree with them. With
    ``--on-error skip`` unreadable files are left out (with a warning).
    """
    channels = _model_channels(estimator)
    wanted = COLOR_CHANNELS[args.color]
    if wanted != "auto" and channels is not None and wanted != channels:
        fix = "gray" if channels == 1 else "rgb"
        raise CLIError(
            f"{args.model} reads {_CHANNEL_NAMES[channels]} images and converts every file "
            f"to that; use --color {fix} or leave --color out (to embed in "
            f"{_CHANNEL_NAMES[wanted]}, fit a model with --color {args.color})."
        )
    if args.workers is not None:
        estimator.set_params(**_worker_params(args.workers))  # transform reads them
    if args.on_error == "skip":
        return _keep_readable_files(data, args.command)
    return data


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


def embed_folder(args: argparse.Namespace, out: Path) -> int:
    """``sktriplet embed`` on a folder: ``--chunk-size`` files per transform, written as it goes."""
    from sktriplet.io.writers import open_embedding_writer

    if out.suffix.lower() in (".parquet", ".pq"):
        _require_pyarrow(out, "writing")
    estimator = _load_model(args.model, args.device)
    data = read_image_folder(Path(args.data))
    if data.paths:
        data = prepare_image_files(estimator, data, args)
    columns = [str(c) for c in estimator.get_feature_names_out()]
    n = len(data.X)
    progress = Progress(n)
    with open_embedding_writer(
        out, n, columns, with_paths=True, with_labels=data.y is not None
    ) as writer:
        for start in range(0, n, args.chunk_size):
            stop = min(start + args.chunk_size, n)
            labels = None if data.y is None else data.y[start:stop]
            writer.write(estimator.transform(data.X[start:stop]), data.ids[start:stop], labels)
            progress.update(stop)
    print(f"wrote {n} embeddings of width {len(columns)} to {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> int:
    """Train on the data and save the model."""
    from sktriplet import TripletEmbedder, save

    out = _check_output(args.output, (".sktriplet",), "model file")
    data = read_data(args.data, args)
    y = _require_labels(data, args.data, args)
    if not data.paths and args.image_size is not None:
        raise CLIError(
            f"{args.data}: --image-size applies to folders of image files; arrays keep "
            "their size, so leave --image-size out."
        )
    params = {
        "max_epochs": args.max_epochs,
        "margin": args.margin,
        "mining": args.mining,
        "distance": args.distance,
        "soft": args.soft,
        "n_components": args.n_components,
        "batch_size": args.batch_size,
        "samples_per_class": args.samples_per_class,
        "lr": args.lr,
        "scaling": None if args.scaling == "none" else args.scaling,
        "random_state": args.random_state,
        "device": args.device,
        "verbose": args.verbose,
    }
    if args.validation_fraction is not None:
        params["validation_fraction"] = args.validation_fraction
    if data.paths:
        params.update(image_file_params(args))
    estimator = TripletEmbedder(**params)
    estimator.fit(data.X, y)
    save(estimator, out)
    if args.verbose:
        n_classes = len(estimator.classes_)
        print(
            f"trained on {len(y)} samples of {n_classes} classes; saved the model to {out}",
            file=sys.stderr,
        )
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Write the embeddings of the data."""
    out = _check_output(args.output, (".npy", ".csv", ".parquet", ".pq"), "embeddings")
    if Path(args.data).is_dir():
        return embed_folder(args, out)
    estimator = _load_model(args.model, args.device)
    data = read_data(args.data, args)
    Z = estimator.transform(_model_input(estimator, data, args.data, args))
    _write_embeddings(Z, data, out, [str(c) for c in estimator.get_feature_names_out()])
    print(f"wrote {Z.shape[0]} embeddings of width {Z.shape[1]} to {out}", file=sys.stderr)
    return 0


def _read_for_model(estimator, path: str, args: argparse.Namespace) -> Data:
    data = read_data(path, args)
    return prepare_image_files(estimator, data, args) if data.paths else data


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Print retrieval scores of the model's embeddings."""
    from sktriplet.evaluation.metrics import retrieval_scores

    out = _check_output(args.output, (".json", ".csv"), "metrics") if args.output else None
    estimator = _load_model(args.model, args.device)
    data = _read_for_model(estimator, args.data, args)
    y = _require_labels(data, args.data, args)
    X = _model_input(estimator, data, args.data, args)
    gallery = gallery_labels = None
    if args.gallery:  # read and check everything before the embedding work
        g = _read_for_model(estimator, args.gallery, args)
        gallery_labels = _require_labels(g, args.gallery, args)
        gallery = _model_input(estimator, g, args.gallery, args)
    Z = estimator.transform(X)
    if gallery is not None:
        gallery = estimator.transform(gallery)
    n_candidates = len(Z) - 1 if gallery is None else len(gallery)
    ks = sorted({k for k in args.k if k <= n_candidates})
    if not ks:
        raise CLIError(
            f"every --k exceeds the {n_candidates} samples each query is ranked against."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = retrieval_scores(
            Z,
            y,
            k=ks,
            gallery=gallery,
            gallery_labels=gallery_labels,
            distance=args.distance or estimator.distance,
        )
    print(_format_table(scores))
    if out is not None:
        _write_scores(scores, out)
    return 0


# ------------------------------------------------------------------ parser
DESCRIPTION = """\
Deep metric learning from the shell: train a triplet-loss embedding
(sktriplet.TripletEmbedder), write embeddings, and score retrieval.
Run 'sktriplet COMMAND --help' for the options of each command.
"""

DATA_FORMATS = """\
data formats (DATA):
  FILE.npz      arrays X (features, or images N x H x W / N x C x H x W) and
                y (labels); rename with --x-key / --y-key
  FILE.csv      one row per sample; the column --label holds the class, every
  FILE.parquet  other column is a numeric feature (parquet needs pyarrow)
  FOLDER/       one sub-folder per class holding image files of any size and
                mode (.jpg, .png, .bmp, .tif, .webp, ...), decoded batch by
                batch at --image-size, never all in memory; or .npy arrays
                of one shape. The sub-folder names are the labels. A folder
                of files with no sub-folders is unlabelled (fine for 'embed').
"""

EXAMPLES = """\
examples:
  sktriplet fit faces/ -o faces.sktriplet --max-epochs 20 --n-components 32
  sktriplet fit photos/ -o photos.sktriplet --image-size 64 --workers 2
  sktriplet embed photos.sktriplet new_photos/ -o new_photos.npy
  sktriplet embed faces.sktriplet new_faces/ -o new_faces.parquet
  sktriplet evaluate faces.sktriplet test_faces/ --k 1 5 --output scores.json
  sktriplet fit table.csv --label species -o table.sktriplet
  python -m sktriplet fit digits.npz -o digits.sktriplet --margin 0.5

exit status:
  0 on success, 2 on a usage or data error (one line on stderr).
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the description's layout and show every option's default."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=88)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.required:
            return action.help
        return super()._get_help_string(action)


def _add_reader_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data options")
    group.add_argument(
        "--label", metavar="COLUMN", default="label", help="label column of a .csv/.parquet file"
    )
    group.add_argument(
        "--x-key", metavar="KEY", default="X", help="name of the features array in an .npz"
    )
    group.add_argument(
        "--y-key", metavar="KEY", default="y", help="name of the labels array in an .npz"
    )


def _image_size(text: str) -> int | tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(
            f"must be a side in pixels (64) or HEIGHTxWIDTH (64x48), each >= 1; got {text!r}"
        )
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])


def _add_image_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Options for folders of image files (decoded lazily, batch by batch)."""
    group = parser.add_argument_group("image file options (folders of .jpg, .png, ...)")
    if command == "fit":
        group.add_argument(
            "--color",
            choices=("auto", "gray", "rgb"),
            default="auto",
            help="train on grey (1 channel) or RGB (3 channels) images; auto: grey when "
            "every sampled file is grey. Files of other modes are converted",
        )
        group.add_argument(
            "--image-size",
            metavar="SIZE",
            type=_image_size,
            default=None,
            help="size the network sees, a side (64) or HEIGHTxWIDTH; files of any size are "
            "resized (shorter side, then centre crop; random crops while training). "
            "Default: the estimator's (64)",
        )
    else:
        group.add_argument(
            "--color",
            choices=("auto", "gray", "rgb"),
            default="auto",
            help="must match the model's channels if given; files of any mode are converted "
            "to the channels (and size) the model was fitted with",
        )
    group.add_argument(
        "--workers",
        metavar="N",
        type=_non_negative_int,
        default=None,
        help="DataLoader worker processes decoding files (0: in this process). Default: "
        "the estimator's",
    )
    group.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="an unreadable image file stops the command (raise) or is left out with a "
        "warning (skip)",
    )
    if command == "embed":
        group.add_argument(
            "--chunk-size",
            metavar="N",
            type=_positive_int,
            default=1024,
            help="files embedded and written at a time (a parquet row group each)",
        )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _n_components(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _learning_rate(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0 or 'auto', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sktriplet`` command."""
    from sktriplet import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=DATA_FORMATS + "\n" + EXAMPLES,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    _add_fit_command(sub)
    _add_embed_command(sub)
    _add_evaluate_command(sub)
    return parser


def _add_fit_command(sub) -> None:
    """The ``fit`` command."""
    fit = sub.add_parser(
        "fit",
        help="train on labelled data and save the model (.sktriplet file)",
        description=textwrap.dedent(
            """\
            Train a TripletEmbedder on DATA and save it to the --output file with
            sktriplet.save (reload it in Python with sktriplet.load). Training
            draws class-balanced batches of batch-size // samples-per-class
            classes and mines triplets in each. With --verbose 1 a table of the
            loss and the fraction of active triplets is printed per epoch;
            --verbose 2 adds a progress bar over the batches."""
        ),
        epilog=DATA_FORMATS + "\n" + EXAMPLES,
        formatter_class=_Formatter,
    )
    fit.add_argument("data", metavar="DATA", help="training data (see data formats)")
    fit.add_argument(
        "-o", "--output", required=True, metavar="MODEL", help="model file to write (.sktriplet)"
    )
    _add_training_options(fit)
    _add_reader_options(fit)
    _add_image_options(fit, "fit")
    fit.set_defaults(func=cmd_fit)



def _add_training_options(fit: argparse.ArgumentParser) -> None:
    """The ``fit`` options that set the estimator's hyperparameters."""
    from sktriplet.triplets.distances import DISTANCES
    from sktriplet.triplets.mining import MINING_STRATEGIES

    hp = fit.add_argument_group("training options")
    hp.add_argument("--max-epochs", metavar="N", type=int, default=30, help="passes over the data")
    hp.add_argument(
        "--margin", metavar="M", type=float, default=0.2, help="margin of the triplet hinge"
    )
    hp.add_argument(
        "--mining", choices=MINING_STRATEGIES, default="semihard", help="triplet mining strategy"
    )
    hp.add_argument(
        "--distance", choices=DISTANCES, default="sqeuclidean", help="distance between embeddings"
    )
    hp.add_argument("--soft", action="store_true", help="soft margin log1p(exp(.)) for the hinge")
    hp.add_argument(
        "--n-components",
        metavar="N",
        type=_n_components,
        default="auto",
        help="embedding width; auto: 64, or a pretrained backbone's own width",
    )
    hp.add_argument(
        "--batch-size", metavar="N", type=_positive_int, default=128, help="samples per batch"
    )
    hp.add_argument(
        "--samples-per-class",
        metavar="K",
        type=_positive_int,
        default=8,
        help="samples of each class per batch",
    )
    hp.add_argument(
        "--lr",
        metavar="LR",
        type=_learning_rate,
        default="auto",
        help="peak learning rate (Adam); auto: 2e-3 for images, 1e-3 for tabular data",
    )
    hp.add_argument(
        "--scaling",
        choices=("auto", "feature", "global", "none"),
        default="auto",
        help="input scaling: per feature (tabular data), one common scale (pixel-like "
        "rows: see docs/defaults.md), none, or auto (global for pixel-like rows, else "
        "per feature)",
    )
    hp.add_argument(
        "--validation-fraction",
        metavar="F",
        type=float,
        default=None,
        help="hold out this fraction of the classes and report retrieval on them per epoch",
    )
    hp.add_argument(
        "--random-state", metavar="SEED", type=int, default=0, help="seed (same seed, same model)"
    )
    hp.add_argument("--device", metavar="DEVICE", default="auto", help="auto, cpu, cuda or cuda:N")
    hp.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=1, help="0 silent, 1 table, 2 bars"
    )


def _add_embed_command(sub) -> None:
    """The ``embed`` command."""
    embed = sub.add_parser(
        "embed",
        help="write the embeddings of data with a saved model",
        description=textwrap.dedent(
            """\
            Embed DATA with the model saved by 'sktriplet fit' and write the
            embeddings: .npy (a float32 array, one row per sample) or a .csv /
            .parquet table with columns tripletembedder0, tripletembedder1, ...,
            plus 'label' when the data has them. A FOLDER is embedded
            --chunk-size files at a time, each chunk written at once (a
            parquet row group), with a progress line on stderr; every row
            carries its file: a first column 'path' in tables, and for
            Z.npy a text file Z.paths.txt beside it, one path per line.
            The file appears under its name only once every row is written."""
        ),
        epilog=DATA_FORMATS,
        formatter_class=_Formatter,
    )
    embed.add_argument("model", metavar="MODEL", help="model file written by 'sktriplet fit'")
    embed.add_argument("data", metavar="DATA", help="data to embed (see data formats)")
    embed.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="embeddings file (.npy/.csv/.parquet)"
    )
    embed.add_argument(
        "--device", metavar="DEVICE", default="auto", help="auto, cpu, cuda or cuda:N"
    )
    _add_reader_options(embed)
    _add_image_options(embed, "embed")
    embed.set_defaults(func=cmd_embed)



def _add_evaluate_command(sub) -> None:
    """The ``evaluate`` command."""
    from sktriplet.triplets.distances import DISTANCES

    evaluate = sub.add_parser(
        "evaluate",
        help="print retrieval scores (precision@k, recall@k, R-precision, MAP@R)",
        description=textwrap.dedent(
            """\
            Embed the labelled DATA with MODEL and print retrieval scores: each
            sample queries all the others (leave-one-out), or the --gallery
            samples when given. precision_at_k is the fraction of the k nearest
            sharing the query's label, recall_at_k whether any does,
            r_precision and map_at_r score the first R neighbours (R: samples
            of the query's class). All lie in [0, 1], higher is better."""
        ),
        epilog=DATA_FORMATS,
        formatter_class=_Formatter,
    )
    evaluate.add_argument("model", metavar="MODEL", help="model file written by 'sktriplet fit'")
    evaluate.add_argument("data", metavar="DATA", help="labelled query data (see data formats)")
    evaluate.add_argument(
        "--gallery", metavar="DATA", default=None, help="labelled data to retrieve from"
    )
    evaluate.add_argument(
        "--k",
        metavar="K",
        type=_positive_int,
        nargs="+",
        default=[1, 5, 10],
        help="k of precision/recall@k",
    )
    evaluate.add_argument(
        "--distance",
        choices=DISTANCES,
        default=None,
        help="ranking distance (default: the model's)",
    )
    evaluate.add_argument(
        "--output", metavar="FILE", default=None, help="also write the scores (.json or .csv)"
    )
    evaluate.add_argument(
        "--device", metavar="DEVICE", default="auto", help="auto, cpu, cuda or cuda:N"
    )
    _add_reader_options(evaluate)
    _add_image_options(evaluate, "evaluate")
    evaluate.set_defaults(func=cmd_evaluate)


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
        return args.func(args)
    except CLIError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
    except (ValueError, ImportError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
