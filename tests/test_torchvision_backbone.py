"""``BackboneEmbedder("<torchvision name>")`` against the real torchvision.

torchvision's compiled ops do not load beside the CPU torch the main test
environment uses, so these tests skip there. ``.ci/run`` runs them in a
second environment with a torch + torchvision pair that load together and
sets ``SKTRIPLET_REQUIRE_TORCHVISION=1``, which turns the skip into a
failure: CI cannot pass while silently skipping them.
"""

import os

import numpy as np
import pytest
import torch
from torch import nn


def _torchvision_models():
    try:
        import torchvision.models as models
    except Exception as exc:  # ImportError, or "operator torchvision::nms does not exist"
        if os.environ.get("SKTRIPLET_REQUIRE_TORCHVISION") == "1":
            raise
        pytest.skip(
            f"torchvision does not import beside this torch: {exc}", allow_module_level=True
        )
    return models


models = _torchvision_models()

from sktriplet import TripletEmbedder, export_torchscript, load, save  # noqa: E402
from sktriplet.networks import BackboneEmbedder  # noqa: E402
from sktriplet.networks.backbone import find_blocks  # noqa: E402


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty torch hub directory standing in for torchvision's cache."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    return tmp_path / "checkpoints"


def _cache_resnet18(hub_checkpoints, seed=0):
    """Put a (seeded, untrained) resnet18 state dict where its ImageNet weights would lie."""
    torch.manual_seed(seed)
    source = models.resnet18()
    weights = models.ResNet18_Weights.IMAGENET1K_V1
    torch.save(source.state_dict(), hub_checkpoints / os.path.basename(weights.url))
    return source, weights


def test_resnet18_loses_its_fc_and_embeds_at_its_width(no_network):
    net = BackboneEmbedder("resnet18", weights="random", image_size=32).eval()
    assert isinstance(net.backbone.fc, nn.Identity)
    assert net.n_features == 512
    z = net(torch.rand(2, 3, 32, 32))
    assert z.shape == (2, 512)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
    # freeze=k counts ResNet's top-level stages: layer4 is the last block.
    blocks = find_blocks(net.backbone)
    assert blocks[-1] is net.backbone.layer4 and blocks[-2] is net.backbone.layer3


def test_freeze_one_block_trains_only_layer4_of_resnet18():
    net = BackboneEmbedder("resnet18", weights="random", freeze=1, image_size=32)
    trained = {n.split(".")[0] for n, p in net.backbone.named_parameters() if p.requires_grad}
    assert trained == {"layer4"}


@pytest.mark.parametrize(
    ("name", "width"), [("mobilenet_v3_small", 576), ("efficientnet_b0", 1280)]
)
def test_classifier_sequential_is_removed(name, width):
    net = BackboneEmbedder(name, weights="random", n_components=8, image_size=32).eval()
    assert isinstance(net.backbone.classifier, nn.Identity)
    assert net.n_features == width
    assert net(torch.rand(3, 3, 32, 32)).shape == (3, 8)


def test_cached_imagenet_weights_load_with_imagenet_normalisation(hub, no_network):
    source, weights = _cache_resnet18(hub)
    net = BackboneEmbedder("resnet18", weights="IMAGENET1K_V1", image_size=32)
    torch.testing.assert_close(net.backbone.conv1.weight, source.conv1.weight)
    transform = weights.transforms()
    assert net.input_mean == pytest.approx(tuple(transform.mean))
    assert net.input_std == pytest.approx(tuple(transform.std))
    assert net.input_mean == pytest.approx((0.485, 0.456, 0.406))
    default = BackboneEmbedder("resnet18", image_size=32)  # weights=None: DEFAULT, cached
    torch.testing.assert_close(default.backbone.conv1.weight, source.conv1.weight)


def test_uncached_weights_are_not_downloaded(hub, no_network):
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        BackboneEmbedder("resnet18", weights="IMAGENET1K_V1", image_size=32)
    with pytest.raises(ValueError, match="not a weights name"):
        BackboneEmbedder("resnet18", weights="IMAGENET9K", image_size=32)


def test_fit_save_load_offline_and_export(hub, tmp_path, no_network):
    _cache_resnet18(hub)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 8)
    X = np.clip(
        rng.normal(110, 40, (32, 3, 32, 32)) + 60 * np.eye(4, 3)[y][:, :, None, None], 0, 255
    )
    X = X.astype(np.uint8)
    emb = TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone="resnet18",
        max_epochs=2,
        batch_size=16,
        samples_per_class=4,
        random_state=0,
        precision="32",  # the export runs in float32: compare with float32
    ).fit(X, y)
    Z = emb.transform(X)
    assert Z.shape == (32, 512)
    standardize = emb.net_.module_[0]
    torch.testing.assert_close(
        standardize.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]) * 255
    )
    path = tmp_path / "resnet.skt"
    save(emb, path)
    for cached in hub.iterdir():  # the file must hold every weight itself
        cached.unlink()
    again = load(path)
    np.testing.assert_allclose(again.transform(X), Z, atol=1e-6)
    scripted = export_torchscript(again, tmp_path / "resnet.pt", dtype="uint8")
    out = torch.jit.load(str(scripted))(torch.from_numpy(X[:5])).numpy()
    np.testing.assert_allclose(out, Z[:5], atol=1e-5)


def test_cli_fit_with_a_torchvision_name_is_the_python_route(hub, tmp_path, no_network, capsys):
    # `sktriplet fit --backbone resnet18` builds TripletEmbedder(module=BackboneEmbedder,
    # module__backbone="resnet18", image_size=...) and reads the cached weights.
    from PIL import Image

    from sktriplet.cli import main
    from sktriplet.datasets import list_image_folder

    _cache_resnet18(hub)
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    model = tmp_path / "m.sktriplet"
    flags = ["--backbone", "resnet18", "--image-size", "32", "--max-epochs", "1"]
    code = main(["fit", str(root), "-o", str(model), *flags, "--workers", "0", "--verbose", "0"])
    assert code == 0, capsys.readouterr().err
    paths, labels, _ = list_image_folder(root)
    python = TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone="resnet18",
        image_size=32,
        max_epochs=1,
        random_state=0,
        iterator_train__num_workers=0,
        iterator_valid__num_workers=0,
    ).fit(paths, labels)
    loaded = load(model)
    assert loaded.n_components_ == 512
    np.testing.assert_allclose(loaded.transform(paths), python.transform(paths), atol=1e-6)
