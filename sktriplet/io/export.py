"""Export a trained embedding network for serving outside scikit-learn.

The exported model is ``net_.module_`` of a fitted
:class:`~sktriplet.TripletEmbedder`: the input standardisation learnt in
``fit`` followed by the network, in evaluation mode, on the CPU. It maps a
batch to embeddings exactly as ``transform`` does, with these input
conventions:

* tabular data: ``float32`` arrays of shape ``(batch, n_features)`` (columns
  in the order of ``fit``);
* images: ``(batch, C, H, W)`` with the channel axis present even for grey
  images (``transform`` also accepts ``(batch, H, W)``), ``float32`` by
  default or ``uint8`` when exported with ``dtype="uint8"`` (raw pixel
  values, as given to ``fit``; the model converts them itself).

The batch size is free. Every export carries its input contract (dtype,
layout, channels, size, value range and, for image files, the resize and
crop policy) as JSON metadata, read back by :func:`read_input_contract`
(see :mod:`sktriplet.io.contract`); for photos,
:func:`sktriplet.vision.transforms.preprocess_images` builds exactly the
batch the export takes. Three formats:

:func:`export_torchscript`
    A TorchScript file for ``torch.jit.load`` (Python) or libtorch (C++).
    TorchScript is deprecated from PyTorch 2.9 but still loads everywhere.
:func:`export_program`
    A ``torch.export`` program (``.pt2``) for ``torch.export.load``, the
    successor of TorchScript.
:func:`export_onnx`
    An ONNX model (input ``"input"``, output ``"embedding"``) for
    onnxruntime and other ONNX runtimes. Needs the optional ``onnx`` package
    (``pip install 'sktriplet[export]'``).

Warnings that the libraries raise while exporting and that are known to be
harmless are silenced around these calls only (:func:`_harmless_export_warnings`
says which and why); any other warning still shows.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from sktriplet.io.contract import (
    EXTRA_FILE,
    METADATA_KEY,
    build_contract,
    contract_json,
    read_input_contract,
)

__all__ = [
    "export_onnx",
    "export_program",
    "export_torchscript",
    "input_contract",
    "read_input_contract",
]

_DTYPES = {"float32": torch.float32, "uint8": torch.uint8}


def _fitted_embedder(estimator: Any) -> Any:
    """The fitted TripletEmbedder inside ``estimator`` (unwrapping common wrappers)."""
    seen = estimator
    for _ in range(4):
        if hasattr(seen, "net_"):
            break
        if hasattr(seen, "embedder_"):  # OpenSetKNeighborsClassifier(embedder=...)
            seen = seen.embedder_
        elif hasattr(seen, "estimator") and not hasattr(seen, "steps"):  # FrozenEstimator
            seen = seen.estimator
        elif hasattr(seen, "steps"):  # Pipeline: its first step
            seen = seen.steps[0][1]
        else:
            break
    if not hasattr(seen, "net_"):
        check_is_fitted(seen, "net_")
    return seen


def input_contract(estimator: Any, dtype: str = "float32") -> dict[str, Any]:
    """What an export of ``estimator`` takes and returns (stored in every export).

    Parameters
    ----------
    estimator : TripletEmbedder
        A fitted embedder (or a fitted pipeline / classifier / frozen
        estimator holding one).
    dtype : {"float32", "uint8"}, default="float32"
        The input dtype of the export.

    Returns
    -------
    dict
        JSON-able: ``dtype``, ``layout``, ``shape``, ``value_range``,
        ``summary``, ``output_width``, ``distance``, ..., and for image files
        ``resize`` and ``preprocess`` (see
        :func:`sktriplet.io.contract.build_contract`).

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet import TripletEmbedder
    >>> from sktriplet.io.export import input_contract
    >>> X, y = np.random.default_rng(0).normal(size=(40, 5)), np.repeat([0, 1], 20)
    >>> emb = TripletEmbedder(n_components=4, max_epochs=1, device="cpu").fit(X, y)
    >>> contract = input_contract(emb)
    >>> contract["shape"], contract["output_width"], contract["summary"]
    ([None, 5], 4, 'float32 (batch, 5) feature rows, raw values in the order of fit')
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {list(_DTYPES)}.")
    return build_contract(_fitted_embedder(estimator), dtype)


@contextlib.contextmanager
def _harmless_export_warnings() -> Iterator[None]:
    """Silence the warnings that exporting is known to raise needlessly, and only those.

    - EfficientNet-Lite's "SAME" padding (``efficientnet_lite_pytorch``)
      computes its size in Python from the input's height and width, so the
      tracer warns that the padding is recorded as a constant. It is the
      padding of the exported ``image_size``, the one size the export takes
      (its contract says so), so the constant is right.
    - The deprecation notices of TorchScript (PyTorch 2.9+) and of the
      TorchScript-based ONNX exporter: they are what these exports use, on
      purpose (the dynamo exporter needs ``onnxscript``); the files they
      write load in every runtime.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"Converting a tensor to a Python (float|boolean|integer|index)",
            category=torch.jit.TracerWarning,
            module=r"efficientnet_lite_pytorch\.",
        )
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.(jit|onnx)")
        # Attributed to the caller (this module) by its stacklevel.
        warnings.filterwarnings(
            "ignore",
            message=r"You are using the legacy TorchScript-based ONNX export",
            category=DeprecationWarning,
        )
        yield


def _module_and_example(estimator: Any, dtype: str) -> tuple[nn.Module, torch.Tensor, Any]:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {list(_DTYPES)}.")
    emb = _fitted_embedder(estimator)
    spec = emb.input_spec_
    if dtype == "uint8" and not spec.is_image:
        raise ValueError(
            "dtype='uint8' is for image models; this one takes feature rows, export "
            "it with dtype='float32'."
        )
    module = copy.deepcopy(emb.net_.module_).cpu().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    example = torch.zeros((2, *spec.sample_shape), dtype=_DTYPES[dtype])
    return module, example, emb


def export_torchscript(estimator: Any, path: str | os.PathLike, *, dtype: str = "float32") -> Path:
    """Save the embedding network as TorchScript (traced).

    Parameters
    ----------
    estimator : TripletEmbedder
        A fitted embedder (or a fitted pipeline / classifier / frozen
        estimator holding one).
    path : str or path-like
        File to write (conventionally ``.pt``).
    dtype : {"float32", "uint8"}, default="float32"
        Input dtype the model is traced with; ``"uint8"`` for raw images.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sktriplet import TripletEmbedder
    >>> from sktriplet.io.export import export_torchscript
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 5)).astype(np.float32), np.repeat([0, 1], 20)
    >>> emb = TripletEmbedder(n_components=4, max_epochs=1, device="cpu", precision="32")
    >>> emb = emb.fit(X, y)  # the export runs in float32, as transform does with "32"
    >>> import os, tempfile
    >>> path = export_torchscript(emb, os.path.join(tempfile.mkdtemp(), "embedder.pt"))
    >>> model = torch.jit.load(path)
    >>> np.allclose(model(torch.from_numpy(X)).numpy(), emb.transform(X), atol=1e-5)
    True
    """
    module, example, emb = _module_and_example(estimator, dtype)
    extra = {EXTRA_FILE: contract_json(build_contract(emb, dtype))}
    with _harmless_export_warnings():
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files=extra)
    return Path(path)


def export_program(estimator: Any, path: str | os.PathLike, *, dtype: str = "float32") -> Path:
    """Save the embedding network as a ``torch.export`` program (``.pt2``).

    Load it with ``torch.export.load(path).module()``.

    Parameters
    ----------
    estimator : TripletEmbedder
        A fitted embedder (or a fitted pipeline / classifier / frozen
        estimator holding one).
    path : str or path-like
        File to write (conventionally ``.pt2``).
    dtype : {"float32", "uint8"}, default="float32"
        Input dtype; ``"uint8"`` for raw images.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    module, example, emb = _module_and_example(estimator, dtype)
    # Weights in channels-last memory (BackboneEmbedder's default, for speed)
    # are not contiguous, and torch.export.save warns "No complete tensor found
    # in the group!" for each; the program holds them contiguous instead (the
    # same values: the backbone converts its input to channels-last itself).
    module = module.to(memory_format=torch.contiguous_format)
    batch = torch.export.Dim("batch", min=1)
    with _harmless_export_warnings():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    extra = {EXTRA_FILE: contract_json(build_contract(emb, dtype))}
    torch.export.save(program, str(path), extra_files=extra)
    return Path(path)


def export_onnx(
    estimator: Any,
    path: str | os.PathLike,
    *,
    dtype: str = "float32",
    opset_version: int = 17,
) -> Path:
    """Save the embedding network as ONNX (input ``"input"``, output ``"embedding"``).

    Uses PyTorch's TorchScript-based exporter (``dynamo=False``), which needs
    only the ``onnx`` package; the batch axis is dynamic.

    Parameters
    ----------
    estimator : TripletEmbedder
        A fitted embedder (or a fitted pipeline / classifier / frozen
        estimator holding one).
    path : str or path-like
        File to write (conventionally ``.onnx``).
    dtype : {"float32", "uint8"}, default="float32"
        Input dtype of the graph; ``"uint8"`` for raw images.
    opset_version : int, default=17
        ONNX opset.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ImportError
        If the ``onnx`` package is missing.

    Examples
    --------
    >>> from sktriplet.io.export import export_onnx
    >>> export_onnx(emb, "embedder.onnx")  # doctest: +SKIP
    >>> import onnxruntime as ort  # doctest: +SKIP
    >>> sess = ort.InferenceSession("embedder.onnx")  # doctest: +SKIP
    >>> Z = sess.run(None, {"input": X})[0]  # doctest: +SKIP
    """
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "export_onnx needs the optional package 'onnx': pip install onnx "
            "(or pip install 'sktriplet[export]')"
        ) from exc
    module, example, emb = _module_and_example(estimator, dtype)
    with _harmless_export_warnings():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=opset_version,
            dynamo=False,
        )
    _write_onnx_contract(path, build_contract(emb, dtype))
    return Path(path)


def _write_onnx_contract(path: str | os.PathLike, contract: dict[str, Any]) -> None:
    """Store the contract in the ONNX model's metadata, its summary on the input."""
    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, contract_json(contract)
    model.graph.input[0].doc_string = contract["summary"]
    onnx.save(model, str(path))
