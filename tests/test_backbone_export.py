"""A network with a BackboneEmbedder exports (TorchScript, torch.export, ONNX) faithfully."""

import types
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sktriplet.inputs.spec import InputSpec
from sktriplet.io.export import export_onnx, export_program, export_torchscript
from sktriplet.networks import BackboneEmbedder, Standardize


def fitted_stand_in(embedder, size):
    """What export reads from a fitted TripletEmbedder: net_.module_ and input_spec_."""
    mean = torch.tensor(embedder.input_mean or (0.5,) * 3).reshape(3, 1, 1) * 255
    std = torch.tensor(embedder.input_std or (0.25,) * 3).reshape(3, 1, 1) * 255
    module = nn.Sequential(Standardize(mean, std), embedder).eval()
    est = types.SimpleNamespace(
        net_=types.SimpleNamespace(module_=module),
        input_spec_=InputSpec("images", (3, size, size), dtype="uint8"),
    )
    return est, module


def run_exported(fmt, path, x):
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path))(x).numpy()
    if fmt == "program":
        return torch.export.load(str(path)).module()(x).numpy()
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]


EXPORTERS = {"torchscript": export_torchscript, "program": export_program, "onnx": export_onnx}
SUFFIX = {"torchscript": ".pt", "program": ".pt2", "onnx": ".onnx"}


@pytest.mark.parametrize("fmt", list(EXPORTERS))
def test_tiny_backbone_exports(fmt, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3))
    est, module = fitted_stand_in(BackboneEmbedder(trunk, n_components=4, image_size=16), 16)
    path = EXPORTERS[fmt](est, tmp_path / f"m{SUFFIX[fmt]}", dtype="uint8")
    x = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)  # another batch size
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(run_exported(fmt, path, x), expected, atol=1e-5)


def test_efficientnet_lite0_exports_to_onnx(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("onnx")
    emb = BackboneEmbedder("efficientnet_lite0", n_components=8, image_size=64)
    est, module = fitted_stand_in(emb, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package's padding arithmetic warns when traced
        path = export_onnx(est, tmp_path / "lite0.onnx", dtype="uint8")
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(run_exported("onnx", path, x), expected, atol=1e-4)
