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
    with torch.no_grad():
        width = module.eval()(torch.zeros(1, 3, size, size, dtype=torch.uint8)).shape[1]
    est = types.SimpleNamespace(
        net_=types.SimpleNamespace(module_=module),
        input_spec_=InputSpec("images", (3, size, size), dtype="uint8"),
        n_components_=width,
        distance="sqeuclidean",
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


@pytest.mark.parametrize("fmt", list(EXPORTERS))
def test_efficientnet_lite0_exports_faithfully_and_quietly(fmt, tmp_path):
    # The package's "SAME" padding is computed in Python from the input's size,
    # so tracing it raised 4 TracerWarnings per block, and torch.export.save
    # warned about its channels-last stem; exports now raise no warning at all.
    pytest.importorskip("efficientnet_lite_pytorch")
    if fmt == "onnx":
        pytest.importorskip("onnx")
    emb = BackboneEmbedder("efficientnet_lite0", weights="random", n_components=8, image_size=32)
    est, module = fitted_stand_in(emb, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = EXPORTERS[fmt](est, tmp_path / f"lite0{SUFFIX[fmt]}", dtype="uint8")
    assert [f"{w.category.__name__} ({w.filename}): {w.message}" for w in caught] == []
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(run_exported(fmt, path, x), expected, atol=1e-4)


def test_other_tracer_warnings_still_show(tmp_path):
    # Only the known, harmless warnings are silenced: a module of the user's
    # that converts a tensor to a Python number still warns.
    class Branchy(nn.Module):
        def forward(self, x):
            return x.float().mean(dim=(2, 3)) * float(x.float().mean())

    est, _ = fitted_stand_in(BackboneEmbedder(Branchy(), n_components=3, image_size=8), 8)
    with pytest.warns(torch.jit.TracerWarning, match="Converting a tensor to a Python float"):
        export_torchscript(est, tmp_path / "b.pt", dtype="uint8")
