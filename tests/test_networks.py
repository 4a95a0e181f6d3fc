"""The default networks: shapes and the skip path of ``MLPEmbedder``."""

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
