"""A saved model in the ``sktriplet`` command: loading it, and fitting data to it.

``embed`` and ``evaluate`` load the model written by ``fit`` and check the
data read against what it was fitted on: image shapes and channels, the
feature columns of a table (put in the fitted order), and for folders of
image files the ``--color``, ``--workers`` and ``--on-error`` options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sktriplet.cli.messages import CLIError
from sktriplet.cli.options import COLOR, worker_params
from sktriplet.cli.readers import Data, keep_readable_files

__all__ = ["load_model", "model_input", "prepare_image_files"]

_CHANNEL_NAMES = {1: "grey (1 channel)", 3: "RGB (3 channels)"}


def load_model(path: str, device: str):
    """The model saved at ``path``, on ``device`` (``"auto"``: a GPU when present)."""
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


def model_input(estimator, data: Data, path: str, args: argparse.Namespace):
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


def _model_channels(estimator) -> int | None:
    return getattr(getattr(estimator, "input_spec_", None), "channels", None)


def prepare_image_files(estimator, data: Data, args: argparse.Namespace, path: str) -> Data:
    """Check ``--color`` against a saved model and set its workers for image files.

    A saved model decodes image files of any mode to the channels it was
    fitted with, so ``--color`` only has to agree with them. With
    ``--on-error skip`` unreadable files are left out (:func:`keep_readable_files`).
    """
    channels = _model_channels(estimator)
    wanted = COLOR.to_param(args.color)
    if wanted != "auto" and channels is not None and wanted != channels:
        fix = "gray" if channels == 1 else "rgb"
        raise CLIError(
            f"{args.model} reads {_CHANNEL_NAMES[channels]} images and converts every file "
            f"to that; use --color {fix} or leave --color out (to embed in "
            f"{_CHANNEL_NAMES[wanted]}, fit a model with --color {args.color})."
        )
    if args.workers is not None:
        estimator.set_params(**worker_params(args.workers))  # transform reads them
    if args.on_error == "skip":
        return keep_readable_files(data, path)
    return data
