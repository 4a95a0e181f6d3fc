"""Block boundaries of backbones, the split into a cached bottom and a trained top,
the backbone's L2-SP anchor, and the fixed views that caching keeps."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sktriplet.networks import BackboneEmbedder, Standardize
from sktriplet.networks.blocks import backbone_blocks, declares_blocks, find_blocks
from sktriplet.networks.layers import ParameterAnchor, regularization_loss
from sktriplet.networks.split import boundary_shape, split_at_block
from sktriplet.vision.transforms import RandomResizedCrop, ResizeCenterCrop
from sktriplet.vision.views import FixedViews, draw_views


def trunk():
    """Stem conv, four stages (two with BatchNorm), a trailing 1x1 conv."""
    torch.manual_seed(3)
    stage = lambda i, o, s=1: nn.Sequential(  # noqa: E731
        nn.Conv2d(i, o, 3, stride=s, padding=1), nn.BatchNorm2d(o), nn.ReLU()
    )
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(stage(4, 6), nn.Dropout(0.5), stage(6, 8, 2), stage(8, 8), stage(8, 10, 2)),
        nn.Conv2d(10, 12, 1),
    )


X = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _randomise_batchnorm(net):
    """Non-trivial running statistics, so that BatchNorm in eval mode is not an identity."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


# ------------------------------------------------------------------ boundaries
def test_sequential_chain_blocks_are_the_stages_with_parameters():
    net = trunk()
    parts = backbone_blocks(net)
    stages = net[2]
    assert parts.blocks == [stages[0], stages[2], stages[3], stages[4]]
    assert find_blocks(net) == parts.blocks
    with torch.no_grad():
        net.eval()
        for k in range(5):
            torch.testing.assert_close(parts.run(parts.run(X, stop=k), start=k), net(X))


@pytest.mark.parametrize("n_trained", [0, 1, 2, 4])
def test_top_of_bottom_equals_the_embedder_exactly(n_trained):
    net = BackboneEmbedder(trunk(), n_components=5, freeze=n_trained, image_size=16)
    _randomise_batchnorm(net)
    model = nn.Sequential(Standardize(torch.full((3, 1, 1), 0.5), torch.full((3, 1, 1), 0.25)), net)
    model.eval()
    bottom, top = split_at_block(model, n_trained)
    with torch.no_grad():
        a = bottom(X)
        assert torch.equal(top(a), model(X))
    # the bottom's rows are the feature maps at the boundary, flattened
    c, h, w = boundary_shape(net, n_trained)
    assert a.shape == (4, c * h * w)


def test_boundary_shapes_of_a_known_trunk():
    net = BackboneEmbedder(trunk(), image_size=16)
    # stages: 6 ch at 16 px, 8 at 8 px, 8 at 8 px, 10 at 4 px; stem 4 ch at 16 px
    expected = {4: (4, 16, 16), 3: (6, 16, 16), 2: (8, 8, 8), 1: (8, 8, 8), 0: (10, 4, 4)}
    assert {k: boundary_shape(net, k) for k in expected} == expected


def test_top_shares_parameters_and_names_with_the_embedder():
    net = BackboneEmbedder(trunk(), n_components=5, freeze=2, image_size=16)
    _, top = split_at_block(net, 2)
    assert dict(top.named_parameters()).keys() <= dict(net.named_parameters()).keys()
    trained = {n for n, p in top.named_parameters() if p.requires_grad}
    assert trained == {n for n, p in net.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.") for n in trained)
    before = net.backbone[3].weight.clone()
    opt = torch.optim.SGD([p for p in top.parameters() if p.requires_grad], lr=0.1)
    top.train()(torch.rand(4, *boundary_shape(net, 2))).sum().backward()
    opt.step()
    assert not torch.equal(net.backbone[3].weight, before)  # the embedder's own conv moved


def test_trained_top_keeps_batchnorm_statistics_and_frozen_blocks_stay_in_eval():
    net = BackboneEmbedder(trunk(), freeze=2, image_size=16)
    bottom, top = split_at_block(net, 2)
    top.train()
    bns = [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(bn.training for bn in bns)
    stats = [bn.running_mean.clone() for bn in bns]
    top(torch.rand(8, *boundary_shape(net, 2)) * 3)
    assert all(torch.equal(bn.running_mean, s) for bn, s in zip(bns, stats, strict=True))
    net.train()
    stages = net.backbone[2]
    assert not stages[0].training and not stages[2].training  # frozen blocks
    assert stages[3][0].training  # a trained block's convolution
    assert stages[1].training  # a parameterless layer between blocks (not a block)


def test_bad_n_trained_is_refused():
    net = BackboneEmbedder(trunk(), image_size=16)
    with pytest.raises(ValueError, match="between 0 and 4"):
        split_at_block(net, 5)
    with pytest.raises(ValueError, match="needs a BackboneEmbedder"):
        split_at_block(nn.Linear(2, 2), 1)


# ------------------------------------------------------------------ declared and known layouts
class Declared(nn.Module):
    """A backbone of one's own that declares its blocks (the documented interface)."""

    def __init__(self, wrong_end=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stages = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1) for _ in range(3)])
        self.last = nn.Conv2d(4, 6, 1)
        self.wrong_end = wrong_end

    def blocks(self):
        return list(self.stages)

    def forward_stem(self, x):
        return torch.relu(self.stem(x))

    def forward_block(self, index, x):
        return x + torch.relu(self.stages[index](x))  # residual: more than blocks[i](x)

    def forward_end(self, x):
        return self.last(x) + (1.0 if self.wrong_end else 0.0)

    def forward(self, x):
        x = self.forward_stem(x)
        for i in range(3):
            x = x + torch.relu(self.stages[i](x))
        return self.last(x)


def test_a_declared_backbone_is_split_as_declared():
    net = BackboneEmbedder(Declared(), n_components=3, freeze=2, image_size=16).eval()
    assert declares_blocks(net.backbone) and len(find_blocks(net.backbone)) == 3
    bottom, top = split_at_block(net, 2)
    with torch.no_grad():
        assert torch.equal(top(bottom(X)), net(X))


def test_blocks_that_do_not_reproduce_forward_are_refused():
    with pytest.raises(ValueError, match="do not reproduce its forward"):
        split_at_block(BackboneEmbedder(Declared(wrong_end=True), image_size=16), 1)


def test_a_module_without_known_blocks_is_refused():
    class Opaque(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.b(self.a(x))

    with pytest.raises(ValueError, match="declare them"):
        split_at_block(BackboneEmbedder(Opaque(), image_size=8), 1)


class ResNetLayout(nn.Module):
    """torchvision ResNet's attribute layout and forward, in miniature."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(2)
        for i in range(1, 5):
            setattr(self, f"layer{i}", nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 10)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class FeaturesLayout(nn.Module):
    """torchvision EfficientNet / MobileNet's layout: features, avgpool, classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 5, 3, padding=1),
            nn.Conv2d(5, 6, 1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@pytest.mark.parametrize(
    ("layout", "stage_names"),
    [
        (ResNetLayout, ["layer1", "layer2", "layer3", "layer4"]),
        (FeaturesLayout, ["features.0", "features.2", "features.3"]),
    ],
)
def test_torchvision_layouts_get_their_stages(layout, stage_names):
    net = BackboneEmbedder(layout(), n_components=3, freeze=1, image_size=16).eval()
    names = {id(m): n for n, m in net.backbone.named_modules()}
    assert [names[id(b)] for b in find_blocks(net.backbone)] == stage_names
    for k in range(len(stage_names) + 1):
        bottom, top = split_at_block(net, k)
        with torch.no_grad():
            assert torch.equal(top(bottom(X)), net(X))


# ------------------------------------------------------------------ L2-SP on the blocks
def test_backbone_anchor_is_l2sp_over_the_trained_parameters():
    net = BackboneEmbedder(
        trunk(), n_components=5, freeze=1, backbone_anchor=0.3, head_anchor=0.0, image_size=16
    )
    _, top = split_at_block(net, 1)
    last_stage, end = net.backbone[2][4][0], net.backbone[3]
    frozen = net.backbone[0]
    assert regularization_loss(top).item() == 0.0
    with torch.no_grad():
        last_stage.weight.add_(0.1)  # trained: 0.1^2 per entry
        end.bias.sub_(1.0)  # trained (after the last block): 1 per entry
        frozen.weight.add_(5.0)  # frozen: not anchored
    expected = 0.3 * (0.01 * last_stage.weight.numel() + end.bias.numel())
    assert regularization_loss(top).item() == pytest.approx(expected, rel=1e-5)
    assert regularization_loss(net).item() == pytest.approx(expected, rel=1e-5)


def test_backbone_anchor_adds_no_state_and_set_freeze_moves_it():
    a = BackboneEmbedder(trunk(), freeze=2, backbone_anchor=1.0, image_size=16)
    b = BackboneEmbedder(trunk(), freeze=2, image_size=16)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert b.anchor.names == []  # strength 0 stores no copy
    c = BackboneEmbedder(trunk(), freeze=True, backbone_anchor=1.0, image_size=16)
    assert c.anchor.names == []
    c.set_freeze(1)
    assert set(c.anchor.names) == {n for n, p in c.backbone.named_parameters() if p.requires_grad}
    assert c.anchor.names and c.anchor.regularization_loss().item() == 0.0


def test_parameter_anchor_refuses_a_negative_strength():
    with pytest.raises(ValueError, match="strength"):
        ParameterAnchor(nn.Linear(2, 2), strength=-1)


# ------------------------------------------------------------------ EfficientNet-Lite0
@pytest.fixture(scope="module")
def lite():
    pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    return BackboneEmbedder("efficientnet_lite0", weights="random", freeze=5, image_size=64)


def test_efficientnet_lite0_declares_16_blocks_and_splits_exactly(lite):
    assert declares_blocks(lite.backbone) and len(find_blocks(lite.backbone)) == 16
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    lite.eval()
    for k in (0, 1, 5, 16):
        bottom, top = split_at_block(lite, k)
        with torch.no_grad():
            assert torch.equal(top(bottom(x)), lite(x))


def test_efficientnet_lite0_boundaries_at_128_px(lite):
    # EfficientNet-Lite0's stages: 112 channels at stride 16 before block 11,
    # 192 at stride 32 before blocks 12-15, 320 after the last block.
    assert boundary_shape(lite, 5, image_size=128) == (112, 8, 8)
    assert boundary_shape(lite, 1, image_size=128) == (192, 4, 4)
    assert boundary_shape(lite, 0, image_size=128) == (320, 4, 4)


def test_efficientnet_lite0_top_reproduces_drop_connect_in_training(lite):
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    bottom, top = split_at_block(lite, 5)
    lite.train()
    torch.manual_seed(7)
    whole = lite(x)
    with torch.no_grad():
        a = bottom(x)
    torch.manual_seed(7)
    split = top(a)
    lite.eval()
    assert torch.equal(whole, split)
    assert not torch.allclose(whole, lite(x))  # drop-connect did act in training mode


# ------------------------------------------------------------------ fixed views
@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "p.png"
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_views_are_the_centre_cut_its_mirror_and_seeded_crops(photo):
    views = FixedViews(16, n_views=4, seed=3)
    centre = ResizeCenterCrop(16)(photo)
    assert np.array_equal(views(photo, 0, index=2), centre)
    assert np.array_equal(views(photo, 1, index=2), centre[:, :, ::-1])
    crop = RandomResizedCrop(16)(photo, np.random.default_rng([3, 2, 2]))
    assert np.array_equal(views(photo, 2, index=2), crop)
    assert np.array_equal(views(photo, 3, index=2), views(photo, 3, index=2))
    assert not np.array_equal(views(photo, 2, index=2), views(photo, 3, index=2))
    with pytest.raises(ValueError, match="view must be in"):
        views(photo, 4)
    with pytest.raises(ValueError, match="n_views"):
        FixedViews(16, n_views=0)


def test_draw_views_is_uniform_and_seeded():
    v = draw_views(40000, 4, seed=1, epoch=2)
    np.testing.assert_allclose(np.bincount(v) / len(v), 0.25, atol=0.01)
    assert np.array_equal(v, draw_views(40000, 4, seed=1, epoch=2))
    assert not np.array_equal(v, draw_views(40000, 4, seed=1, epoch=3))


def test_flip_average_embeds_the_mean_of_an_image_and_its_mirror():
    plain = BackboneEmbedder(trunk(), n_components=5, flip_average=False, image_size=16)
    flip = BackboneEmbedder(trunk(), n_components=5, flip_average=True, image_size=16)
    flip.load_state_dict(plain.state_dict())
    plain.eval(), flip.eval()
    with torch.no_grad():
        head = lambda x: plain.head(plain.features(x))  # noqa: E731
        expected = torch.nn.functional.normalize(head(X) + head(X.flip(-1)), dim=1)
        torch.testing.assert_close(flip(X), expected)
        assert not torch.allclose(flip(X), plain(X))
    flip.train(), plain.train()
    torch.testing.assert_close(flip(X), plain(X))  # training embeds the image alone


def test_flip_average_auto_follows_freeze_auto():
    assert BackboneEmbedder(trunk(), image_size=16).flip_average is True  # freeze="auto"
    assert BackboneEmbedder(trunk(), freeze=True, image_size=16).flip_average is False
    assert BackboneEmbedder(trunk(), freeze=2, image_size=16).flip_average is False
    net = BackboneEmbedder(trunk(), flip_average=False, image_size=16)
    assert net.flip_average is False and net.freeze == "auto"
    # "auto" builds the backbone frozen, as True does
    assert not any(p.requires_grad for p in net.backbone.parameters())
    with pytest.raises(ValueError, match="freeze must be"):
        BackboneEmbedder(trunk(), freeze="some", image_size=16)
    with pytest.raises(ValueError, match="flip_average must be"):
        BackboneEmbedder(trunk(), flip_average="yes", image_size=16)
