"""Training the head on cached features equals training it behind the frozen backbone."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sktriplet.inputs.loading import ArrayDataset
from sktriplet.networks import BackboneEmbedder, Standardize
from sktriplet.training.feature_cache import cache_features, split_for_caching
from sktriplet.training.net import TripletNet
from sktriplet.triplets.losses import TripletLoss


def tiny_network(freeze=True, batchnorm_head=False):
    torch.manual_seed(3)
    trunk = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv2d(6, 10, 3, stride=2),
    )
    embedder = BackboneEmbedder(
        trunk, n_components=5, freeze=freeze, batchnorm_head=batchnorm_head, image_size=12
    )
    return nn.Sequential(Standardize(100.0, 50.0), embedder)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(40, 3, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(5), 8)
    return X, y


def _train(module, X, y, epochs=3):
    net = TripletNet(
        module=module,
        criterion=TripletLoss,
        optimizer=torch.optim.SGD,
        lr=0.1,
        max_epochs=epochs,
        batch_size=10,
        samples_per_class=2,
        seed=0,
        train_split=None,
        verbose=0,
        device="cpu",
    )
    return net.fit(ArrayDataset(X, y))


@pytest.mark.parametrize("batchnorm_head", [False, True])
def test_cached_training_gives_the_same_head(data, batchnorm_head):
    X, y = data
    full = tiny_network(batchnorm_head=batchnorm_head)
    cached = copy.deepcopy(full)
    _train(full, X, y)

    extractor, head = split_for_caching(cached)
    features = cache_features(extractor, ArrayDataset(X, y), batch_size=7)
    assert features.shape == (40, 10) and features.dtype == np.float32
    _train(head, features, y)

    for (name, a), (_, b) in zip(
        full[1].head.state_dict().items(), cached[1].head.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert not torch.allclose(full[1].head[0].weight, tiny_network()[1].head[0].weight)
    with torch.no_grad():  # the network embeds with the head trained on the cache
        Xt = torch.from_numpy(X)
        torch.testing.assert_close(cached.eval()(Xt), full.eval()(Xt), atol=1e-5, rtol=1e-4)


def test_cached_features_are_the_frozen_backbones_in_eval_mode(data):
    X, y = data
    module = tiny_network()
    extractor, _ = split_for_caching(module)
    features = cache_features(extractor, ArrayDataset(X, y), batch_size=16)
    module.train()  # dropout would change features: a frozen backbone stays in eval
    with torch.no_grad():
        x = (torch.from_numpy(X).float() - 100) / 50
        expected = module[1].backbone(x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_large_caches_go_to_a_memory_map(data, tmp_path):
    X, y = data
    extractor, _ = split_for_caching(tiny_network())
    in_memory = cache_features(extractor, ArrayDataset(X, y))
    mapped = cache_features(extractor, ArrayDataset(X, y), max_bytes=100, directory=tmp_path)
    assert isinstance(mapped, np.memmap) and not isinstance(in_memory, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped), in_memory)
    assert list(tmp_path.iterdir()) == []  # the file is unlinked, nothing is left behind


def test_plain_tensor_datasets_are_read_in_order():
    x = torch.arange(12.0).reshape(6, 2)
    got = cache_features(
        nn.Linear(2, 1, bias=False)
        .requires_grad_(False)
        .apply(lambda m: nn.init.ones_(m.weight) if isinstance(m, nn.Linear) else None),
        TensorDataset(x),
        batch_size=4,
    )
    np.testing.assert_array_equal(got[:, 0], x.sum(dim=1).numpy())


def test_caching_refuses_what_it_cannot_reproduce():
    with pytest.raises(ValueError, match="needs a frozen backbone"):
        split_for_caching(tiny_network(freeze=False))
    with pytest.raises(ValueError, match="needs a BackboneEmbedder"):
        split_for_caching(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="empty dataset"):
        cache_features(nn.Identity(), TensorDataset(torch.zeros(0, 2)))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        cache_features(nn.Identity(), TensorDataset(torch.zeros(2, 2)), batch_size=0)
