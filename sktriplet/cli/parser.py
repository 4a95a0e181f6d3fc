"""The grammar of the ``sktriplet`` command: its commands, flags and help.

:func:`build_parser` returns the :class:`argparse.ArgumentParser`. The flags
that set estimator parameters come from :mod:`sktriplet.cli.options`, with
the estimator's defaults and choices; the other flags (files, keys, workers,
output) are declared here. The help texts are the command's manual
(``docs/cli.rst`` includes them).
"""

from __future__ import annotations

import argparse
import textwrap

from sktriplet.cli.messages import PROG
from sktriplet.cli.options import (
    COLOR,
    IMAGE_SIZE,
    ON_ERROR,
    TRAINING_OPTIONS,
    EstimatorOption,
    add_backbone_options,
    non_negative_int,
    positive_int,
)

__all__ = ["build_parser"]

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
  sktriplet fit photos/ -o photos.sktriplet --backbone efficientnet_lite0
  sktriplet fit photos/ -o photos.sktriplet --image-size 64 --workers 2
  sktriplet embed photos.sktriplet new_photos/ -o new_photos.npy
  sktriplet embed faces.sktriplet new_faces/ -o new_faces.parquet
  sktriplet evaluate faces.sktriplet test_faces/ --k 1 5 --output scores.json
  sktriplet fit table.csv --label species -o table.sktriplet
  python -m sktriplet fit digits.npz -o digits.sktriplet --margin 0.5

exit status:
  0 on success, 2 on a usage or data error (one line on stderr).
"""

#: ``--device`` of every command: where the network runs.
DEVICE = EstimatorOption("device", "auto, cpu, cuda or cuda:N", "DEVICE")


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


def _add_image_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Options for folders of image files (decoded lazily, batch by batch)."""
    group = parser.add_argument_group("image file options (folders of .jpg, .png, ...)")
    if command == "fit":
        COLOR.add_to(group)
        IMAGE_SIZE.add_to(group)
    else:
        COLOR.add_to(
            group,
            help="must match the model's channels if given; files of any mode are converted "
            "to the channels (and size) the model was fitted with",
        )
    group.add_argument(
        "--workers",
        metavar="N",
        type=non_negative_int,
        default=None,
        help="DataLoader worker processes decoding files (0: in this process). Default: "
        "the estimator's",
    )
    ON_ERROR.add_to(group)
    if command == "embed":
        group.add_argument(
            "--chunk-size",
            metavar="N",
            type=positive_int,
            default=1024,
            help="files embedded and written at a time (a parquet row group each)",
        )


def _subparser(sub, name: str, help: str, description: str, epilog: str):
    return sub.add_parser(
        name,
        help=help,
        description=textwrap.dedent(description),
        epilog=epilog,
        formatter_class=_Formatter,
    )


def _add_fit_command(sub) -> None:
    fit = _subparser(
        sub,
        "fit",
        "train on labelled data and save the model (.sktriplet file)",
        """\
        Train a TripletEmbedder on DATA and save it to the --output file with
        sktriplet.save (reload it in Python with sktriplet.load). Training
        draws class-balanced batches of batch-size // samples-per-class
        classes and mines triplets in each. With --verbose 1 a table of the
        loss and the fraction of active triplets is printed per epoch;
        --verbose 2 adds a progress bar over the batches. For photos,
        --backbone starts from an ImageNet-pretrained network (the best
        route on unseen classes in docs/transfer.md). What a folder's
        reading leaves out (empty class folders, other files, unreadable
        files with --on-error skip) is said in one line on stderr.""",
        DATA_FORMATS + "\n" + EXAMPLES,
    )
    fit.add_argument("data", metavar="DATA", help="training data (see data formats)")
    fit.add_argument(
        "-o", "--output", required=True, metavar="MODEL", help="model file to write (.sktriplet)"
    )
    group = fit.add_argument_group("training options")
    for option in TRAINING_OPTIONS:
        option.add_to(group)
    _add_reader_options(fit)
    _add_image_options(fit, "fit")
    add_backbone_options(fit)


def _add_embed_command(sub) -> None:
    embed = _subparser(
        sub,
        "embed",
        "write the embeddings of data with a saved model",
        """\
        Embed DATA with the model saved by 'sktriplet fit' and write the
        embeddings: .npy (a float32 array, one row per sample) or a .csv /
        .parquet table with columns tripletembedder0, tripletembedder1, ...,
        plus 'label' when the data has them. A FOLDER is embedded
        --chunk-size files at a time, each chunk written at once (a
        parquet row group), with a progress line on stderr; every row
        carries its file: a first column 'path' in tables, and for
        Z.npy a text file Z.paths.txt beside it, one path per line.
        The file appears under its name only once every row is written.""",
        DATA_FORMATS,
    )
    embed.add_argument("model", metavar="MODEL", help="model file written by 'sktriplet fit'")
    embed.add_argument("data", metavar="DATA", help="data to embed (see data formats)")
    embed.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="embeddings file (.npy/.csv/.parquet)"
    )
    DEVICE.add_to(embed)
    _add_reader_options(embed)
    _add_image_options(embed, "embed")


def _add_evaluate_command(sub) -> None:
    evaluate = _subparser(
        sub,
        "evaluate",
        "print retrieval scores (precision@k, recall@k, R-precision, MAP@R)",
        """\
        Embed the labelled DATA with MODEL and print retrieval scores: each
        sample queries all the others (leave-one-out), or the --gallery
        samples when given. precision_at_k is the fraction of the k nearest
        sharing the query's label, recall_at_k whether any does,
        r_precision and map_at_r score the first R neighbours (R: samples
        of the query's class). All lie in [0, 1], higher is better.""",
        DATA_FORMATS,
    )
    evaluate.add_argument("model", metavar="MODEL", help="model file written by 'sktriplet fit'")
    evaluate.add_argument("data", metavar="DATA", help="labelled query data (see data formats)")
    evaluate.add_argument(
        "--gallery", metavar="DATA", default=None, help="labelled data to retrieve from"
    )
    evaluate.add_argument(
        "--k",
        metavar="K",
        type=positive_int,
        nargs="+",
        default=[1, 5, 10],
        help="k of precision/recall@k",
    )
    # The saved model's distance unless given: None, not the estimator's default.
    EstimatorOption("distance", "ranking distance (default: the model's)", default=None).add_to(
        evaluate
    )
    evaluate.add_argument(
        "--output", metavar="FILE", default=None, help="also write the scores (.json or .csv)"
    )
    DEVICE.add_to(evaluate)
    _add_reader_options(evaluate)
    _add_image_options(evaluate, "evaluate")


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
