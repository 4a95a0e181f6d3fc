"""Exported embedding networks reproduce ``TripletEmbedder.transform``."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline

from sktriplet import TripletEmbedder
from sktriplet.datasets import load_digit_images
from sktriplet.evaluation.neighbors import OpenSetKNeighborsClassifier
from sktriplet.io.export import export_onnx, export_program, export_torchscript

ATOL = 1e-5


@pytest.fixture(scope="module")
def tabular(digits):
    X, y = digits
    emb = TripletEmbedder(
        n_components=8,
        max_epochs=1,
        batch_size=64,
        device="cpu",
        random_state=0,
        precision="32",  # the exports run in float32: compare with float32
        module__hidden_units=(32,),
    )
    emb.fit(X[:300], y[:300])
    return emb, X[300:340]


@pytest.fixture(scope="module")
def images():
    X, y = load_digit_images()
    emb = TripletEmbedder(
        n_components=8,
        max_epochs=1,
        batch_size=64,
        device="cpu",
        random_state=0,
        precision="32",  # the exports run in float32: compare with float32
        module__channels=(4, 8),
    )
    emb.fit(X[:200], y[:200])
    return emb, X[200:233]  # uint8, (n, 8, 8)


def _load_torchscript(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def _run(model, X):
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(X))).numpy()


def test_torchscript_tabular_matches_transform(tabular, tmp_path):
    emb, X = tabular
    expected = emb.transform(X)
    model = _load_torchscript(export_torchscript(emb, tmp_path / "m.pt"))
    np.testing.assert_allclose(_run(model, X), expected, atol=ATOL)
    # The batch size is free (traced with 2 rows).
    np.testing.assert_allclose(_run(model, X[:1]), expected[:1], atol=ATOL)
    np.testing.assert_allclose(_run(model, X[:7]), expected[:7], atol=ATOL)


def test_export_leaves_the_estimator_alone(tabular, tmp_path):
    emb, X = tabular
    before = emb.transform(X)
    params = [p.clone() for p in emb.net_.module_.parameters()]
    export_torchscript(emb, tmp_path / "m.pt")
    assert all(p.requires_grad for p in emb.net_.module_.parameters())
    for a, b in zip(params, emb.net_.module_.parameters(), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(emb.transform(X), before)


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_torchscript_images_match_transform(images, tmp_path, dtype):
    emb, X = images
    expected = emb.transform(X)
    model = _load_torchscript(export_torchscript(emb, tmp_path / "m.pt", dtype=dtype))
    X4 = X[:, None] if dtype == "uint8" else X[:, None].astype(np.float32)
    np.testing.assert_allclose(_run(model, X4), expected, atol=ATOL)


def test_export_program_matches_transform(images, tmp_path):
    emb, X = images
    path = export_program(emb, tmp_path / "m.pt2", dtype="uint8")
    model = torch.export.load(str(path)).module()
    np.testing.assert_allclose(_run(model, X[:, None]), emb.transform(X), atol=ATOL)
    np.testing.assert_allclose(_run(model, X[:5, None]), emb.transform(X[:5]), atol=ATOL)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda emb, X, y: make_pipeline(FrozenEstimator(emb), OpenSetKNeighborsClassifier()).fit(
            X, y
        ),
        lambda emb, X, y: OpenSetKNeighborsClassifier(embedder=FrozenEstimator(emb)).fit(X, y),
        lambda emb, X, y: FrozenEstimator(emb),
    ],
    ids=["pipeline", "classifier", "frozen"],
)
def test_export_finds_the_embedder_inside_wrappers(tabular, tmp_path, wrap, digits):
    emb, X = tabular
    holder = wrap(emb, digits[0][:50], digits[1][:50])
    model = _load_torchscript(export_torchscript(holder, tmp_path / "m.pt"))
    np.testing.assert_allclose(_run(model, X), emb.transform(X), atol=ATOL)


def test_export_errors(tabular, tmp_path):
    emb, _ = tabular
    with pytest.raises(ValueError, match="dtype='uint8' is for image models"):
        export_torchscript(emb, tmp_path / "m.pt", dtype="uint8")
    with pytest.raises(ValueError, match="dtype='float16' is not supported"):
        export_torchscript(emb, tmp_path / "m.pt", dtype="float16")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        export_torchscript(TripletEmbedder(), tmp_path / "m.pt")


@pytest.mark.parametrize("kind", ["tabular", "images"])
def test_onnx_matches_transform(request, tmp_path, kind):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    emb, X = request.getfixturevalue(kind)
    dtype = "uint8" if kind == "images" else "float32"
    X_in = X[:, None] if kind == "images" else X
    path = export_onnx(emb, tmp_path / "m.onnx", dtype=dtype)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    out = session.run(None, {"input": np.ascontiguousarray(X_in)})[0]
    np.testing.assert_allclose(out, emb.transform(X), atol=ATOL)
    out = session.run(None, {"input": np.ascontiguousarray(X_in[:3])})[0]
    np.testing.assert_allclose(out, emb.transform(X[:3]), atol=ATOL)
