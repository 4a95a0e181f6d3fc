"""Exports say what input they take, and preprocess_images builds exactly that input."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from sktriplet import TripletEmbedder
from sktriplet.datasets import list_image_folder
from sktriplet.io.contract import EXTRA_FILE, METADATA_KEY
from sktriplet.io.export import (
    export_onnx,
    export_program,
    export_torchscript,
    input_contract,
    read_input_contract,
)
from sktriplet.vision.transforms import preprocess_images

SIZE = 16
EXPORTERS = {".pt": export_torchscript, ".pt2": export_program, ".onnx": export_onnx}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two classes of photos of other sizes, aspect ratios and modes than the model's."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P"]
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir()
        for i in range(6):
            h, w = 20 + 7 * i, 50 - 4 * i
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            pixels[..., c] //= 3  # a colour cast per class
            Image.fromarray(pixels).convert(modes[i % 4]).save(root / name / f"{i}.png")
    paths, labels, _ = list_image_folder(root)
    return paths, labels


@pytest.fixture(scope="module")
def fitted(photos):
    paths, labels = photos
    emb = TripletEmbedder(
        image_size=SIZE,
        n_components=4,
        max_epochs=1,
        batch_size=8,
        random_state=0,
        precision="32",  # the exports run in float32: compare with float32
        module__channels=(4, 8),
        iterator_valid__num_workers=0,
        iterator_train__num_workers=0,
    )
    return emb.fit(paths, labels)


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_preprocessed_photos_through_onnx_equal_transform(fitted, photos, tmp_path, dtype):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    paths, _ = photos
    path = export_onnx(fitted, tmp_path / "m.onnx", dtype=dtype)
    contract = read_input_contract(path)
    x = preprocess_images(paths, **contract["preprocess"])
    assert x.dtype == np.dtype(dtype) and x.shape == (len(paths), 3, SIZE, SIZE)
    session = ort.InferenceSession(str(path))
    assert session.get_inputs()[0].name == contract["input_name"]
    Z = session.run([contract["output_name"]], {contract["input_name"]: x})[0]
    np.testing.assert_allclose(Z, fitted.transform(paths), atol=1e-5)
    # What the contract warns against: pixels scaled to [0, 1] give other embeddings.
    wrong = session.run(None, {"input": (x / 255).astype(dtype)})[0]
    assert np.abs(wrong - Z).max() > 0.05


def test_the_contract_says_dtype_layout_range_size_and_policy(fitted):
    contract = input_contract(fitted, dtype="uint8")
    expected = {
        "input_name": "input",
        "dtype": "uint8",
        "kind": "image files",
        "layout": "NCHW",
        "shape": [None, 3, SIZE, SIZE],
        "channels": 3,
        "color": "RGB",
        "image_size": [SIZE, SIZE],
        "value_range": [0, 255],
        "preprocess": {"image_size": [SIZE, SIZE], "channels": 3, "dtype": "uint8"},
        "output_name": "embedding",
        "output_width": 4,
        "distance": "sqeuclidean",
    }
    assert {k: contract[k] for k in expected} == expected
    assert "ResizeCenterCrop" in contract["resize"] and "centre" in contract["resize"]
    assert contract["summary"].startswith("uint8 (batch, 3, 16, 16) RGB images, values 0-255")
    json.dumps(contract)  # JSON-able
    with pytest.raises(ValueError, match="dtype"):
        input_contract(fitted, dtype="float64")


@pytest.mark.parametrize("suffix", list(EXPORTERS))
def test_every_format_stores_the_contract_where_its_own_loader_finds_it(
    fitted, photos, tmp_path, suffix
):
    if suffix == ".onnx":
        onnx = pytest.importorskip("onnx")
    path = EXPORTERS[suffix](fitted, tmp_path / f"m{suffix}")
    contract = read_input_contract(path)
    assert contract == input_contract(fitted)
    # Independently of read_input_contract: each format's own API.
    if suffix == ".onnx":
        model = onnx.load(str(path))
        (entry,) = [p for p in model.metadata_props if p.key == METADATA_KEY]
        assert json.loads(entry.value) == contract
        assert model.graph.input[0].doc_string == contract["summary"]
        return
    files = {EXTRA_FILE: ""}
    if suffix == ".pt":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), _extra_files=files)
    else:
        model = torch.export.load(str(path), extra_files=files).module()
    assert json.loads(files[EXTRA_FILE]) == contract
    x = torch.from_numpy(preprocess_images(photos[0], **contract["preprocess"]))
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), fitted.transform(photos[0]), atol=1e-5)


def test_rows_and_image_arrays_have_contracts_without_a_resize_policy(digits, tmp_path):
    X, y = digits
    rows = TripletEmbedder(n_components=3, max_epochs=1, random_state=0).fit(X[:80], y[:80])
    contract = read_input_contract(export_torchscript(rows, tmp_path / "rows.pt"))
    assert contract["kind"] == "feature rows" and contract["shape"] == [None, 64]
    assert contract["layout"] == "NF" and contract["value_range"] is None
    assert contract["resize"] is None and contract["preprocess"] is None
    images = (X[:80].reshape(-1, 8, 8) * 16).astype(np.uint8)
    arrays = TripletEmbedder(n_components=3, max_epochs=1, random_state=0).fit(images, y[:80])
    contract = input_contract(arrays)
    assert contract["kind"] == "image arrays" and contract["shape"] == [None, 1, 8, 8]
    assert contract["value_range"] == [0, 255] and contract["color"] == "grey"
    assert contract["resize"] is None and contract["preprocess"] is None
    floats = TripletEmbedder(n_components=3, max_epochs=1, random_state=0)
    floats.fit(images.astype(np.float32) / 255, y[:80])
    assert input_contract(floats)["value_range"] is None


def test_a_file_without_a_contract_is_named(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2))
        torch.jit.save(model, str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="holds no sktriplet input contract"):
        read_input_contract(tmp_path / "other.pt")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not a model")
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="neither an ONNX model"):
        read_input_contract(tmp_path / "junk.onnx")
    with pytest.raises(FileNotFoundError):
        read_input_contract(tmp_path / "absent.onnx")
