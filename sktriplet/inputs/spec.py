"""What ``X`` is: the input spec that validation computes and everything downstream reads.

``fit`` validates its input once and records an :class:`InputSpec`: the kind
of input (feature rows or images, and, as they are added, image files and
triplets), the shape of one sample, the dtype it is kept in, the feature
names and the layout it arrived in. Network sizing, input scaling, datasets,
persistence, export and the command line read the spec (or a torch
``Dataset`` built from it), never a raw array's ``.shape`` or ``.ndim``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FILE_KINDS", "KINDS", "LAYOUTS", "InputSpec"]

#: Kinds of input :class:`InputSpec` describes.
KINDS = ("rows", "images", "paths", "boxes")

#: The kinds whose samples are image files, decoded as batches are drawn.
FILE_KINDS = ("paths", "boxes")

#: How images may be laid out in an array (``image_layout`` parameter).
LAYOUTS = ("auto", "channels_first", "channels_last")


@dataclass(frozen=True)
class InputSpec:
    """Description of the samples a network takes.

    Parameters
    ----------
    kind : {"rows", "images", "paths", "boxes"}
        Feature rows (one 1-D sample each), images (``(C, H, W)`` samples in
        an array), image files (decoded lazily to ``(C, H, W)``) or image
        files with a crop box each (a table with columns ``path, x_1, y_1,
        x_2, y_2``, see :mod:`sktriplet.inputs.boxes`).
    sample_shape : tuple of int
        Shape of one sample as the network sees it: ``(n_features,)`` or
        ``(C, H, W)``.
    dtype : {"float32", "uint8"}, default="float32"
        How samples are kept in memory and fed to the network (uint8 images
        are converted to float32 batch by batch by the network's first layer).
    feature_names : tuple of str or None, default=None
        Column names, when ``X`` was a DataFrame with string column names.
    layout : {"channels_first", "channels_last"} or None, default=None
        For images: the layout of the arrays ``fit`` received. Channels-last
        arrays are read as channels-first, in ``fit`` and ``transform`` alike.

    Examples
    --------
    >>> from sktriplet.inputs.spec import InputSpec
    >>> spec = InputSpec("images", (1, 8, 8), dtype="uint8", layout="channels_first")
    >>> spec.n_features, spec.channels, spec.image_size
    (64, 1, (8, 8))
    >>> InputSpec.from_dict(spec.to_dict()) == spec
    True
    """

    kind: str
    sample_shape: tuple[int, ...]
    dtype: str = "float32"
    feature_names: tuple[str, ...] | None = None
    layout: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"InputSpec kind must be one of {KINDS}; got {self.kind!r}.")
        object.__setattr__(self, "sample_shape", tuple(int(s) for s in self.sample_shape))
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", tuple(str(n) for n in self.feature_names))

    @property
    def is_image(self) -> bool:
        """Whether samples are images ``(C, H, W)`` (in an array or in files)."""
        return self.kind == "images" or self.reads_files

    @property
    def reads_files(self) -> bool:
        """Whether samples are image files, decoded (in data-loader workers) as read."""
        return self.kind in FILE_KINDS

    @property
    def n_features(self) -> int:
        """Number of values per sample (for images ``C * H * W``)."""
        n = 1
        for s in self.sample_shape:
            n *= s
        return n

    @property
    def channels(self) -> int | None:
        """Number of image channels (``None`` for rows)."""
        return self.sample_shape[0] if self.is_image else None

    @property
    def image_size(self) -> tuple[int, int] | None:
        """Image height and width (``None`` for rows)."""
        return (self.sample_shape[1], self.sample_shape[2]) if self.is_image else None

    def describe(self) -> str:
        """A short description for error messages, e.g. ``"images of shape (1, 8, 8)"``."""
        if self.kind == "boxes":
            return f"crop boxes of image files read as {self.sample_shape} (C, H, W) images"
        if self.kind == "paths":
            return f"image files read as {self.sample_shape} (C, H, W) images"
        if self.is_image:
            return f"images of shape {self.sample_shape} (as (C, H, W))"
        return f"2-D X with {self.sample_shape[0]} features"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for model files)."""
        out = asdict(self)
        out["sample_shape"] = list(self.sample_shape)
        out["feature_names"] = None if self.feature_names is None else list(self.feature_names)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        """Rebuild a spec written by :meth:`to_dict`.

        Parameters
        ----------
        data : dict
            The output of :meth:`to_dict`.

        Returns
        -------
        InputSpec
            The spec.
        """
        names = data.get("feature_names")
        return cls(
            kind=data["kind"],
            sample_shape=tuple(data["sample_shape"]),
            dtype=data.get("dtype", "float32"),
            feature_names=None if names is None else tuple(names),
            layout=data.get("layout"),
        )

    @classmethod
    def from_input_shape(cls, input_shape: tuple[int, ...], feature_names: Any = None) -> InputSpec:
        """The spec of a model file written before specs were saved (0.1.0).

        Parameters
        ----------
        input_shape : tuple of int
            The fitted ``input_shape_``: ``(n_features,)`` or ``(C, H, W)``.
        feature_names : sequence of str, default=None
            The fitted ``feature_names_in_``, if any.

        Returns
        -------
        InputSpec
            Rows for a 1-D shape, float32 images otherwise.
        """
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 1:
            names = None if feature_names is None else tuple(str(n) for n in feature_names)
            return cls("rows", shape, feature_names=names)
        return cls("images", shape, layout="channels_first")
