"""The default networks: shapes, the skip path of ``MLPEmbedder``, pooling of ``ConvEmbedder``."""

import numpy as np
import pytest
import torch

from sktriplet.networks import MLPEmbedder


def _cosine(X: np.ndarray) -> np.ndarray:
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X @ X.T


@pytest.mark.parametrize("n_features, n_components", [(10, 10), (10, 16)])
def test_untrained_skip_path_keeps_the_input_angles(n_features, n_components):
    # An orthogonal map with n_components >= n_features is an isometry, and
    # the hidden path starts at zero: the untrained embedding has the input's
    # cosine similarities (numpy reference on the raw rows).
    torch.manual_seed(0)
    net = MLPEmbedder(n_features, n_components).eval()
    X = np.random.default_rng(0).normal(size=(20, n_features))
    with torch.no_grad():
        Z = net(torch.from_numpy(X).float()).numpy()
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(Z @ Z.T, _cosine(X), atol=1e-5)


def test_untrained_skip_path_is_an_orthogonal_projection_for_wide_input():
    torch.manual_seed(0)
    net = MLPEmbedder(n_features=50, n_components=8).eval()
    W = net.skip.weight.detach().numpy().astype(np.float64)
    np.testing.assert_allclose(W @ W.T, np.eye(8), atol=1e-5)
    X = np.random.default_rng(1).normal(size=(5, 50))
    with torch.no_grad():
        Z = net(torch.from_numpy(X).float()).numpy()
    P = X @ W.T
    np.testing.assert_allclose(Z, P / np.linalg.norm(P, axis=1, keepdims=True), atol=1e-5)


def test_skip_path_trains_and_hidden_path_gets_gradients():
    # The last hidden layer starts at zero but still receives a gradient, so
    # after one step the hidden path contributes.
    torch.manual_seed(0)
    net = MLPEmbedder(n_features=6, n_components=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    out = net(torch.randn(8, 6))
    out[:, 0].sum().backward()
    assert net.layers[-1].weight.grad.abs().sum() > 0
    assert net.skip.weight.grad.abs().sum() > 0
    opt.step()
    assert net.layers[-1].weight.abs().sum() > 0


def test_skip_false_and_linear_networks_have_no_skip_path():
    plain = MLPEmbedder(n_features=6, n_components=4, skip=False)
    linear = MLPEmbedder(n_features=6, n_components=4, hidden_units=())
    assert plain.skip is None and linear.skip is None
    # Without the skip path the last layer keeps torch's default (non-zero) init.
    assert plain.layers[-1].weight.abs().sum() > 0
    assert linear(torch.randn(3, 6)).shape == (3, 4)


def test_normalize_false_returns_unnormalised_rows():
    torch.manual_seed(0)
    net = MLPEmbedder(n_features=6, n_components=6, normalize=False).eval()
    x = torch.randn(4, 6)
    with torch.no_grad():
        out = net(x)
    # Untrained: an orthogonal map of the input, so norms are kept.
    torch.testing.assert_close(out.norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=0)


def test_estimator_routes_skip_to_the_default_mlp():
    from sktriplet import TripletEmbedder

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 5)), np.repeat([0, 1], 8)
    on = TripletEmbedder(max_epochs=0, random_state=0, device="cpu").fit(X, y)
    off = TripletEmbedder(max_epochs=0, random_state=0, device="cpu", module__skip=False).fit(X, y)
    assert isinstance(on.net_.module_[1].skip, torch.nn.Linear)
    assert off.net_.module_[1].skip is None


@pytest.mark.parametrize("pooling", ["avgmax", "avg", "max"])
def test_conv_embedder_global_pooling_matches_numpy(pooling):
    # Reference: the last feature map pooled in numpy (mean and/or max per
    # channel), then the head's affine map and L2 normalisation by hand.
    from sktriplet.networks import ConvEmbedder

    torch.manual_seed(0)
    net = ConvEmbedder(in_channels=2, n_components=5, image_size=(12, 10), pooling=pooling)
    net.eval()
    x = torch.rand(3, 2, 12, 10)
    with torch.no_grad():
        out = net(x).numpy().astype(np.float64)
        fmap = net.features(x).numpy().astype(np.float64)
    parts = {"avg": [fmap.mean(axis=(2, 3))], "max": [fmap.max(axis=(2, 3))]}
    parts["avgmax"] = parts["avg"] + parts["max"]
    pooled = np.concatenate(parts[pooling], axis=1)
    assert net.head.in_features == pooled.shape[1] == fmap.shape[1] * len(parts[pooling])
    W = net.head.weight.detach().numpy().astype(np.float64)
    b = net.head.bias.detach().numpy().astype(np.float64)
    ref = pooled @ W.T + b
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_conv_embedder_rejects_unknown_pooling():
    from sktriplet.networks import ConvEmbedder

    expected = r"pooling must be one of 'avgmax', 'avg', 'max'; got 'mean'"
    with pytest.raises(ValueError, match=expected):
        ConvEmbedder(in_channels=1, pooling="mean")


def test_estimator_routes_pooling_to_the_default_cnn():
    from sktriplet import TripletEmbedder

    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 255, (8, 16, 16), dtype=np.uint8), np.repeat([0, 1], 4)
    default = TripletEmbedder(max_epochs=0, random_state=0, device="cpu").fit(X, y)
    avg = TripletEmbedder(max_epochs=0, random_state=0, device="cpu", module__pooling="avg")
    avg.fit(X, y)
    assert default.net_.module_[1].pooling == "avgmax"
    assert avg.net_.module_[1].pooling == "avg"
    assert avg.net_.module_[1].head.in_features * 2 == default.net_.module_[1].head.in_features


@pytest.mark.parametrize(
    ("size", "min_size", "final"),
    [(28, 8, 14), (28, 4, 7), (32, 8, 8), (32, 4, 4), (8, 4, 4), (8, 8, 8), (105, 4, 13)],
)
def test_conv_embedder_pools_while_the_map_stays_min_size(size, min_size, final):
    # Known map sizes: three blocks, each halving (floor) only when the
    # result is still >= min_size.
    from sktriplet.networks import ConvEmbedder

    net = ConvEmbedder(in_channels=1, image_size=(size, size), min_size=min_size).eval()
    with torch.no_grad():
        fmap = net.features(torch.rand(2, 1, size, size))
    assert fmap.shape == (2, 128, final, final)


def test_conv_embedder_rejects_min_size_below_one():
    from sktriplet.networks import ConvEmbedder

    with pytest.raises(ValueError, match="min_size must be at least 1; got 0"):
        ConvEmbedder(in_channels=1, min_size=0)


def test_conv_embedder_builds_the_convolutions_per_block_it_is_given():
    # Known layer list: block b has convs[b] 3x3 convolutions, the first
    # from the previous block's width, each followed by BatchNorm and ReLU.
    from torch import nn

    from sktriplet.networks import ConvEmbedder

    net = ConvEmbedder(in_channels=2, image_size=(16, 16), channels=(4, 6, 8), convs=[1, 2, 3])
    convs = [(m.in_channels, m.out_channels) for m in net.features if isinstance(m, nn.Conv2d)]
    assert convs == [(2, 4), (4, 6), (6, 6), (6, 8), (8, 8), (8, 8)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.features) == 6
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.features) == 2  # 16 -> 8 -> 4, then stop
    one = ConvEmbedder(in_channels=1, image_size=(16, 16), convs=1)
    assert sum(isinstance(m, nn.Conv2d) for m in one.features) == 3


@pytest.mark.parametrize("convs", [0, [1, 2], [1, 0, 1], True, 1.5])
def test_conv_embedder_rejects_bad_convs(convs):
    from sktriplet.networks import ConvEmbedder

    with pytest.raises(ValueError, match="convs must be a positive integer or one"):
        ConvEmbedder(in_channels=1, convs=convs)


def test_conv_embedder_channels_last_computes_what_channels_first_does():
    # Reference: the same weights in the default (contiguous NCHW) layout.
    from sktriplet.networks import ConvEmbedder

    torch.manual_seed(0)
    fast = ConvEmbedder(in_channels=3, n_components=6, image_size=(12, 12), channels_last=True)
    plain = ConvEmbedder(in_channels=3, n_components=6, image_size=(12, 12), channels_last=False)
    plain.load_state_dict(fast.state_dict())
    conv = fast.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plain.features[0].weight.is_contiguous()
    x = torch.rand(5, 3, 12, 12)
    for net in (fast, plain):
        net.zero_grad()
        net(x)[:, 0].sum().backward()
    torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        fast.features[0].weight.grad, plain.features[0].weight.grad, atol=1e-4, rtol=1e-4
    )


def test_conv_embedder_learns_to_separate_two_patterns():
    # Two classes of noisy 12x12 images (a vertical or a horizontal bar at a
    # random place): a few Adam steps of semi-hard triplet loss put every
    # image nearer its own class than the other (1-NN by the cosine).
    from sktriplet.networks import ConvEmbedder
    from sktriplet.triplets.losses import TripletLoss

    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 12, 12, generator=g) * 0.3
    y = torch.arange(32) % 2
    where = torch.randint(2, 10, (32,), generator=g)
    for i in range(32):
        if y[i]:
            x[i, 0, :, where[i]] += 1.0
        else:
            x[i, 0, where[i], :] += 1.0
    torch.manual_seed(0)
    net = ConvEmbedder(in_channels=1, n_components=8, image_size=(12, 12))
    loss_fn = TripletLoss()

    def nearest_is_same_class() -> torch.Tensor:
        net.eval()
        with torch.no_grad():
            z = net(x)
        net.train()
        sim = z @ z.T - 2 * torch.eye(32)
        return y[sim.argmax(dim=1)] == y

    assert not bool(nearest_is_same_class().all())  # the untrained network mixes them
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    assert bool(nearest_is_same_class().all())


def test_conv_embedder_pickled_before_channels_last_still_embeds():
    # A network pickled by a version without the attribute (simulated by
    # deleting it) embeds as the plain channels-first network does.
    import pickle

    from sktriplet.networks import ConvEmbedder

    torch.manual_seed(0)
    plain = ConvEmbedder(in_channels=1, n_components=4, image_size=(8, 8), channels_last=False)
    old = pickle.loads(pickle.dumps(plain))
    del old.channels_last
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(old.eval()(x), plain.eval()(x))
