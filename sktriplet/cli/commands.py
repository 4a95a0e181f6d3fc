"""What each ``sktriplet`` command does: ``fit``, ``embed`` and ``evaluate``.

Every command reads and checks all its inputs, and its output's format,
before the long work (training, embedding), so a user error costs seconds.
:data:`COMMANDS` maps a command's name to its function, which takes the
parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sktriplet.cli.messages import CLIError, one_line, print_warning
from sktriplet.cli.options import backbone_params, fit_params, image_file_params
from sktriplet.cli.outputs import (
    Progress,
    check_output,
    format_table,
    write_embeddings,
    write_scores,
)
from sktriplet.cli.readers import (
    Data,
    file_paths,
    keep_readable_files,
    read_data,
    read_image_folder,
    require_labels,
    require_pyarrow,
)
from sktriplet.cli.saved_model import load_model, model_input, prepare_image_files

__all__ = ["COMMANDS", "cmd_embed", "cmd_evaluate", "cmd_fit", "embed_folder", "print_left_out"]


def cmd_fit(args: argparse.Namespace) -> int:
    """Train on the data and save the model."""
    from sktriplet import TripletEmbedder, save

    out = check_output(args.output, (".sktriplet",), "model file")
    data = read_data(args.data, args)
    y = require_labels(data, args.data, args)
    params = fit_params(args)
    if data.paths:
        params.update(image_file_params(args))
        params.update(backbone_params(args))
        if "module__backbone" in params:
            _check_backbone(params)
        data = _usable_folder(data, args, params.get("image_size"))
        y = data.y
    else:
        print_left_out(args.command, data)  # a folder of .npy arrays
        for flag, value in (("--image-size", args.image_size), ("--backbone", args.backbone)):
            if value is not None:
                raise CLIError(
                    f"{args.data}: {flag} applies to folders of image files; arrays keep "
                    f"their size, so leave {flag} out."
                )
    # With --on-error skip the files were decoded once already (_usable_folder):
    # the estimator need not decode them again; the model records the option.
    estimator = TripletEmbedder(**{**params, "on_error": "raise"} if data.paths else params)
    estimator.fit(data.X, y)
    if data.paths:
        estimator.set_params(on_error=params["on_error"])
    save(estimator, out)
    if args.verbose:
        n_classes = len(estimator.classes_)
        print(
            f"trained on {len(y)} samples of {n_classes} classes; saved the model to {out}",
            file=sys.stderr,
        )
    return 0


def _usable_folder(data: Data, args: argparse.Namespace, size) -> Data:
    """The folder's files that fit can use, after one line on what was left out.

    With ``--on-error skip`` files that do not decode are left out. Fewer
    than two classes is an error (one line, with what was left out);
    otherwise what was left out is one warning line, and files enlarged
    more than twice to ``size`` another.
    """
    from sktriplet.inputs.validation import DEFAULT_IMAGE_SIZE
    from sktriplet.vision.transforms import UpscaleWarning, warn_small_images

    if args.on_error == "skip":
        data = keep_readable_files(data, args.data)
    classes = np.unique(data.y)
    left = f"; {data.left_out.summary()}" if data.left_out else ""
    if len(classes) < 2:
        raise CLIError(
            f"{args.data}: only the class folder {str(classes[0])!r} holds images, and fit "
            f"needs at least 2 classes (one sub-folder of images per class){left}."
        )
    if data.left_out:
        print_warning(args.command, data.left_out.summary())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UpscaleWarning)
        warn_small_images(file_paths(data), DEFAULT_IMAGE_SIZE if size is None else size)
    for w in caught:
        print_warning(args.command, w.message)
    return data


def _check_backbone(params: dict) -> None:
    """Build the backbone once, so a missing package, name or weights file stops at once."""
    from sktriplet.networks import BackboneEmbedder

    name = params["module__backbone"]
    try:
        BackboneEmbedder(
            name, weights=params.get("module__weights"), image_size=params["image_size"]
        )
    except (ImportError, ValueError, OSError, RuntimeError) as exc:
        raise CLIError(f"--backbone {name}: {one_line(exc)}") from None


def print_left_out(command: str, data: Data) -> None:
    """One warning line on what reading a folder left out, if anything."""
    if data.left_out:
        print_warning(command, data.left_out.summary())


def embed_folder(args: argparse.Namespace, out: Path) -> int:
    """``sktriplet embed`` on a folder: ``--chunk-size`` files per transform, written as it goes."""
    from sktriplet.io.writers import open_embedding_writer

    if out.suffix.lower() in (".parquet", ".pq"):
        require_pyarrow(out, "writing")
    estimator = load_model(args.model, args.device)
    data = read_image_folder(Path(args.data))
    if data.paths:
        data = prepare_image_files(estimator, data, args, args.data)
    print_left_out(args.command, data)
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


def cmd_embed(args: argparse.Namespace) -> int:
    """Write the embeddings of the data."""
    out = check_output(args.output, (".npy", ".csv", ".parquet", ".pq"), "embeddings")
    if Path(args.data).is_dir():
        return embed_folder(args, out)
    estimator = load_model(args.model, args.device)
    data = _read_for_model(estimator, args.data, args)
    Z = estimator.transform(model_input(estimator, data, args.data, args))
    write_embeddings(Z, data, out, [str(c) for c in estimator.get_feature_names_out()])
    print(f"wrote {Z.shape[0]} embeddings of width {Z.shape[1]} to {out}", file=sys.stderr)
    return 0


def _read_for_model(estimator, path: str, args: argparse.Namespace) -> Data:
    data = read_data(path, args)
    if data.paths:
        data = prepare_image_files(estimator, data, args, path)
    print_left_out(args.command, data)
    return data


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Print retrieval scores of the model's embeddings."""
    from sktriplet.evaluation.metrics import retrieval_scores

    out = check_output(args.output, (".json", ".csv"), "metrics") if args.output else None
    estimator = load_model(args.model, args.device)
    data = _read_for_model(estimator, args.data, args)
    y = require_labels(data, args.data, args)
    X = model_input(estimator, data, args.data, args)
    gallery = gallery_labels = None
    if args.gallery:  # read and check everything before the embedding work
        g = _read_for_model(estimator, args.gallery, args)
        gallery_labels = require_labels(g, args.gallery, args)
        gallery = model_input(estimator, g, args.gallery, args)
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
    print(format_table(scores))
    if out is not None:
        write_scores(scores, out)
    return 0


#: Command name -> the function that runs it.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "fit": cmd_fit,
    "embed": cmd_embed,
    "evaluate": cmd_evaluate,
}
