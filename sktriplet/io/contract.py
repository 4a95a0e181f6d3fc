"""The input contract of an exported model: what to feed it, written into the file.

An exported network (:mod:`sktriplet.io.export`) holds the standardisation
fitted in ``fit`` but not the reading of files: it takes arrays of a fixed
dtype, layout, channel count, size and value range, and a wrong guess (pixels
divided by 255 fed to a model that expects 0-255) gives wrong embeddings
without any error. So every export carries its contract as JSON:

* ONNX: in the model's ``metadata_props`` under :data:`METADATA_KEY` (and a
  one-line summary as the input's ``doc_string``, which Netron shows);
* TorchScript and ``torch.export``: as the extra file :data:`EXTRA_FILE` of
  the archive (``torch.jit.load(path, _extra_files=...)``,
  ``torch.export.load(path, extra_files=...)``).

:func:`sktriplet.io.export.input_contract` builds it from a fitted
estimator (:func:`build_contract` here, once the embedder is unwrapped);
:func:`read_input_contract` reads it back from any of the three formats.
For image files, ``contract["preprocess"]`` holds the arguments of
:func:`sktriplet.vision.transforms.preprocess_images`, which turns photos into
exactly the batch the model takes.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

__all__ = [
    "CONTRACT_VERSION",
    "EXTRA_FILE",
    "METADATA_KEY",
    "build_contract",
    "contract_json",
    "read_input_contract",
]

#: Version of the contract's keys (raised when a key changes meaning).
CONTRACT_VERSION = 1
#: Key of the contract in an ONNX model's ``metadata_props``.
METADATA_KEY = "sktriplet.input_contract"
#: Name of the contract among the extra files of a TorchScript or ``torch.export`` archive.
EXTRA_FILE = "sktriplet_input_contract.json"

_RESIZE = (
    "EXIF orientation applied; scaled (Pillow bilinear, antialiased) keeping the aspect "
    "ratio so that it covers {h} x {w}, then the centre {h} x {w} cut "
    "(sktriplet.vision.transforms.ResizeCenterCrop)"
)


def _image_fields(spec, dtype: str) -> dict[str, Any]:
    channels, (h, w) = spec.channels, spec.image_size
    files = spec.reads_files
    pixels = files or spec.dtype == "uint8"
    fields: dict[str, Any] = {
        "kind": "image files" if files else "image arrays",
        "layout": "NCHW",
        "shape": [None, channels, h, w],
        "channels": channels,
        "color": {1: "grey", 3: "RGB"}.get(channels, f"{channels} channels"),
        "image_size": [h, w],
        "value_range": [0, 255] if pixels else None,
        "values": (
            "raw pixel values 0-255 (also as float32): do not divide by 255 or standardise, "
            "the model does it"
            if pixels
            else "float pixel values on the scale of the images given to fit"
        ),
        "resize": _RESIZE.format(h=h, w=w) if files else None,
        "preprocess": (
            {"image_size": [h, w], "channels": channels, "dtype": dtype} if files else None
        ),
    }
    scale = "0-255" if pixels else "as in fit"
    fields["summary"] = (
        f"{dtype} (batch, {channels}, {h}, {w}) {fields['color']} images, values {scale}"
        + (f"; photos: {fields['resize']}" if files else "")
    )
    return fields


def _row_fields(spec) -> dict[str, Any]:
    n = spec.sample_shape[0]
    return {
        "kind": "feature rows",
        "layout": "NF",
        "shape": [None, n],
        "feature_names": None if spec.feature_names is None else list(spec.feature_names),
        "value_range": None,
        "values": "raw feature values in the order of fit: the model standardises them",
        "resize": None,
        "preprocess": None,
        "summary": f"float32 (batch, {n}) feature rows, raw values in the order of fit",
    }


def build_contract(embedder: Any, dtype: str = "float32") -> dict[str, Any]:
    """What an export of a fitted embedder with ``dtype`` takes and returns, as a JSON-able dict.

    :func:`sktriplet.io.export.input_contract` is the public face (it also
    unwraps pipelines and classifiers).

    Parameters
    ----------
    embedder : TripletEmbedder
        A fitted embedder.
    dtype : {"float32", "uint8"}, default="float32"
        The input dtype of the export.

    Returns
    -------
    dict
        ``dtype``, ``layout`` (``"NCHW"`` or ``"NF"``), ``shape`` (``None``
        for the free batch axis), ``value_range`` (``[0, 255]`` for pixels,
        ``None`` when the scale is the training data's), ``values`` and
        ``summary`` (words), for images ``channels``, ``color`` and
        ``image_size``, for image files ``resize`` (the size policy) and
        ``preprocess`` (the arguments of
        :func:`~sktriplet.vision.transforms.preprocess_images`), for rows
        ``feature_names``; then ``input_name`` / ``output_name`` (the ONNX
        graph's), ``output_width``, ``distance`` (the one the embedding was
        trained for), ``contract_version`` and ``sktriplet_version``.
    """
    from sktriplet import __version__

    spec = embedder.input_spec_
    fields = _image_fields(spec, dtype) if spec.is_image else _row_fields(spec)
    return {
        "contract_version": CONTRACT_VERSION,
        "sktriplet_version": __version__,
        "input_name": "input",
        "dtype": dtype,
        **fields,
        "output_name": "embedding",
        "output_width": int(embedder.n_components_),
        "distance": embedder.distance,
    }


def contract_json(contract: dict[str, Any]) -> str:
    """The contract as the JSON text stored in an export."""
    return json.dumps(contract, indent=1, sort_keys=False)


def read_input_contract(path: str | os.PathLike) -> dict[str, Any]:
    """The input contract stored in an exported model (ONNX, TorchScript or ``torch.export``).

    Reads only the metadata: the model's weights are not loaded, and
    neither torch nor onnxruntime is needed for TorchScript and
    ``torch.export`` files (ONNX files need the ``onnx`` package).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`~sktriplet.io.export.export_onnx`,
        :func:`~sktriplet.io.export.export_torchscript` or
        :func:`~sktriplet.io.export.export_program`.

    Returns
    -------
    dict
        The contract (see :func:`sktriplet.io.export.input_contract`).

    Raises
    ------
    ValueError
        When the file holds no sktriplet contract (exported by another tool,
        or by an sktriplet release older than the contract).

    Examples
    --------
    >>> from sktriplet.io.contract import read_input_contract
    >>> contract = read_input_contract("photos.onnx")  # doctest: +SKIP
    >>> contract["summary"]  # doctest: +SKIP
    'float32 (batch, 3, 128, 128) RGB images, values 0-255; photos: EXIF orientation ...'
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {str(path)!r}.")
    if zipfile.is_zipfile(path):
        text = _archive_extra_file(path)
    else:
        text = _onnx_metadata(path)
    if text is None:
        raise ValueError(
            f"{path.name} holds no sktriplet input contract ({EXTRA_FILE} / {METADATA_KEY}); "
            "export the model again with sktriplet.export_onnx, export_torchscript or "
            "export_program."
        )
    return json.loads(text)


def _archive_extra_file(path: Path) -> str | None:
    """The contract among a TorchScript / ``torch.export`` zip archive's extra files."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if parts[-1] == EXTRA_FILE and len(parts) >= 2 and parts[-2] == "extra":
                return archive.read(name).decode("utf-8")
    return None


def _onnx_metadata(path: Path) -> str | None:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "reading an ONNX model's metadata needs the optional package 'onnx': "
            "pip install onnx (or pip install 'sktriplet[export]')."
        ) from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a non-ONNX file
        raise ValueError(
            f"{path.name} is neither an ONNX model nor a TorchScript / torch.export archive "
            f"({type(exc).__name__}: {exc})."
        ) from None
    return next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
