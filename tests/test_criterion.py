"""The loss seam: ``criterion=`` takes a registered name or the user's loss class."""

import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from torch import nn

from sktriplet import TripletEmbedder, load, save
from sktriplet.training.criterion import build_criterion
from sktriplet.triplets.classification import WithClassification
from sktriplet.triplets.losses import TripletLoss, triplet_loss
from sktriplet.triplets.mining import mine_triplets
from sktriplet.triplets.registry import LOSSES, loss_names, resolve_loss

FAST = dict(max_epochs=2, random_state=0, device="cpu", n_components=8, batch_size=64)


class CenterPull(nn.Module):
    """A user's loss: pull each sample to its class mean, push class means apart.

    It knows nothing of sktriplet: ``forward(embeddings, labels)`` -> scalar.
    """

    calls = 0

    def __init__(self, alpha=1.0, gap=0.5):
        super().__init__()
        self.alpha = alpha
        self.gap = gap

    def forward(self, embeddings, labels):
        CenterPull.calls += 1
        classes = labels.unique()
        groups = [embeddings[labels == c] for c in classes]
        means = torch.stack([g.mean(0) for g in groups])
        pull = torch.stack([((g - g.mean(0)) ** 2).sum(1).mean() for g in groups]).mean()
        d = torch.cdist(means, means)
        off = ~torch.eye(len(classes), dtype=torch.bool)
        push = torch.relu(self.gap - d[off]).mean() if off.any() else d.sum() * 0
        return self.alpha * pull + push


class ProxyLoss(nn.Module):
    """A loss with learnable weights sized by the fit (``n_classes``, ``n_components``)."""

    def __init__(self, n_classes, n_components, scale=8.0):
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(n_classes, n_components))
        self.scale = scale

    def forward(self, embeddings, labels):
        logits = self.scale * embeddings @ nn.functional.normalize(self.proxies, dim=1).T
        return nn.functional.cross_entropy(logits, labels.long())


def test_registered_names_resolve_and_satisfy_the_interface():
    assert "triplet" in loss_names() and resolve_loss("triplet") is TripletLoss
    with pytest.raises(ValueError, match=r"'nope' is not a registered loss; use one of"):
        resolve_loss("nope")
    with pytest.raises(TypeError, match="torch.nn.Module subclass"):
        resolve_loss(dict)
    assert TripletEmbedder._parameter_constraints["criterion"][0].options == set(LOSSES)


def test_a_user_loss_trains_with_its_own_arguments(small_digits):
    X, y = small_digits
    CenterPull.calls = 0
    est = TripletEmbedder(criterion=CenterPull, criterion__alpha=3.0, **FAST).fit(X, y)
    criterion = est.net_.criterion_
    assert type(criterion) is CenterPull and (criterion.alpha, criterion.gap) == (3.0, 0.5)
    assert CenterPull.calls >= 2  # it was the loss of the training batches
    assert est.net_.history[-1, "train_loss"] != est.net_.history[0, "train_loss"]
    untrained = TripletEmbedder(criterion=CenterPull, **{**FAST, "max_epochs": 0}).fit(X, y)
    assert not np.allclose(est.transform(X), untrained.transform(X))
    assert "criterion__alpha" in est.get_params()


def test_gridsearch_tunes_the_users_loss_arguments(small_digits):
    X, y = small_digits
    search = GridSearchCV(
        TripletEmbedder(criterion=CenterPull, **{**FAST, "max_epochs": 1}),
        {"criterion__alpha": [0.0, 2.0], "criterion": [CenterPull, "triplet"]},
        cv=2,
    )
    # alpha only exists for CenterPull: the grid pairs it with the triplet loss
    # too, which refuses it by name.
    search.set_params(error_score="raise")
    with pytest.raises(TypeError, match=r"could not build criterion=triplet.*alpha"):
        search.fit(X, y)
    search = GridSearchCV(
        TripletEmbedder(criterion=CenterPull, **{**FAST, "max_epochs": 1}),
        [{"criterion__alpha": [0.0, 2.0]}, {"criterion": ["triplet"]}],
        cv=2,
        error_score="raise",
    ).fit(X, y)
    tried = [p.get("criterion__alpha", p.get("criterion")) for p in search.cv_results_["params"]]
    assert tried == [0.0, 2.0, "triplet"]
    best = search.best_estimator_.net_.criterion_
    if "criterion__alpha" in search.best_params_:
        assert best.alpha == search.best_params_["criterion__alpha"]
    else:
        assert type(best) is TripletLoss


def test_a_loss_gets_the_fit_sizes_and_its_weights_are_trained_and_saved(small_digits, tmp_path):
    X, y = small_digits
    est = TripletEmbedder(criterion=ProxyLoss, criterion__scale=4.0, **FAST).fit(X, y)
    proxies = est.net_.criterion_.proxies
    assert proxies.shape == (10, 8)  # n_classes x n_components, from the fit
    in_optimizer = {id(p) for g in est.net_.optimizer_.param_groups for p in g["params"]}
    assert id(proxies) in in_optimizer
    save(est, tmp_path / "m.sktriplet")
    loaded = load(tmp_path / "m.sktriplet")
    assert loaded.criterion is ProxyLoss and loaded.get_params()["criterion__scale"] == 4.0
    torch.testing.assert_close(loaded.net_.criterion_.proxies, proxies)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def test_a_loss_class_defined_in_a_function_is_refused_by_save_with_the_fix(small_digits, tmp_path):
    class Local(CenterPull):
        pass

    est = TripletEmbedder(criterion=Local, **{**FAST, "max_epochs": 1}).fit(*small_digits)
    with pytest.raises(ValueError, match="cannot save criterion=.*move it to an importable"):
        save(est, tmp_path / "m.sktriplet")


def test_model_files_without_a_criterion_load_as_the_triplet_loss(small_digits, tmp_path):
    X, y = small_digits
    est = TripletEmbedder(margin=0.3, **{**FAST, "max_epochs": 1}).fit(X, y)
    save(est, tmp_path / "m.sktriplet")
    # The file as sktriplet wrote it before criterion existed: no such parameter.
    with zipfile.ZipFile(tmp_path / "m.sktriplet") as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    assert config["params"].pop("criterion") == "triplet"
    members["config.json"] = json.dumps(config).encode()
    checksums = json.loads(members["sha256.json"])
    checksums["config.json"] = hashlib.sha256(members["config.json"]).hexdigest()
    members["sha256.json"] = json.dumps(checksums).encode()
    with zipfile.ZipFile(tmp_path / "old.sktriplet", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    loaded = load(tmp_path / "old.sktriplet")
    assert loaded.criterion == "triplet" and type(loaded.net_.criterion_) is TripletLoss
    assert loaded.net_.criterion_.margin == 0.3
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def test_classification_is_a_composition_around_any_loss():
    params = {
        "criterion": CenterPull,
        "criterion__alpha": 2.0,
        "margin": 0.2,
        "mining": "semihard",
        "distance": "sqeuclidean",
        "soft": False,
        "classification_weight": 0.5,
    }
    criterion = build_criterion(params, n_classes=3, width=4)
    assert isinstance(criterion, WithClassification) and type(criterion.loss) is CenterPull
    assert criterion.alpha == 2.0  # the wrapped loss's settings read through
    z = nn.functional.normalize(torch.randn(9, 4), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    ce = nn.functional.cross_entropy(criterion.logits(z), labels)
    expected = CenterPull(alpha=2.0)(z, labels) + 0.5 * ce
    torch.testing.assert_close(criterion(z, labels), expected)


def test_triplet_mode_needs_a_loss_that_takes_index_tuples():
    T = np.random.default_rng(0).normal(size=(30, 3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="takes no indices_tuple"):
        TripletEmbedder(triplets=True, criterion=CenterPull, **FAST).fit(T)


def test_the_triplet_loss_takes_a_miners_index_tuple():
    rng = torch.Generator().manual_seed(0)
    z = nn.functional.normalize(torch.randn(12, 3, generator=rng), dim=1)
    labels = torch.arange(12) % 4
    for mining in ("semihard", "hard"):
        mined = mine_triplets(z, labels, mining=mining)
        via_miner = TripletLoss(mining=mining)(z, labels, indices_tuple=mined)
        torch.testing.assert_close(via_miner, triplet_loss(z, labels, mining=mining))


def test_warm_start_applies_changed_loss_arguments_and_refuses_another_loss(small_digits):
    X, y = small_digits
    est = TripletEmbedder(criterion=CenterPull, warm_start=True, **{**FAST, "max_epochs": 1})
    est.fit(X, y).set_params(criterion__alpha=5.0).fit(X, y)
    assert est.net_.criterion_.alpha == 5.0 and len(est.net_.history) == 2
    est = TripletEmbedder(criterion=CenterPull, warm_start=True, **{**FAST, "max_epochs": 1})
    net = est.fit(X, y).net_
    with pytest.raises(ValueError, match="cannot change the criterion from CenterPull to Triplet"):
        est.set_params(criterion="triplet").fit(X, y)
    assert est.net_ is net and len(net.history) == 1 and type(net.criterion_) is CenterPull


# ------------------------------------------------------ the registered families
@pytest.mark.parametrize(
    ("criterion", "memory_size"),
    [
        ("contrastive", None),
        ("multi_similarity", None),
        ("normalized_softmax", None),
        ("arcface", None),
        ("triplet", 64),
        ("contrastive", 64),
        ("multi_similarity", 64),
    ],
)
def test_each_loss_trains_and_its_state_is_saved_and_loaded(
    small_digits, tmp_path, criterion, memory_size
):
    X, y = small_digits
    est = TripletEmbedder(criterion=criterion, memory_size=memory_size, **FAST).fit(X, y)
    Z = est.transform(X)
    assert np.isfinite(Z).all() and np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    state = est.net_.criterion_.state_dict()
    if criterion in ("normalized_softmax", "arcface"):
        assert state["weight"].shape == (10, 8)  # n_classes x n_components, from the fit
        in_optimizer = {id(p) for g in est.net_.optimizer_.param_groups for p in g["params"]}
        assert id(est.net_.criterion_.weight) in in_optimizer
        assert not any(p.shape == (10, 8) for p in est.net_.module_.parameters())
    if memory_size:
        assert state["memory_embeddings"].shape == (64, 8)
        assert int(state["memory_filled"]) == 64
    save(est, tmp_path / "m.sktriplet")
    loaded = load(tmp_path / "m.sktriplet")
    assert loaded.criterion == criterion and loaded.memory_size == memory_size
    for key, value in state.items():
        torch.testing.assert_close(loaded.net_.criterion_.state_dict()[key], value)
    np.testing.assert_array_equal(loaded.transform(X), Z)


def test_warm_start_keeps_class_weights_and_memory(small_digits):
    X, y = small_digits
    fast = {**FAST, "max_epochs": 1, "warm_start": True}
    est = TripletEmbedder(criterion="arcface", **fast).fit(X, y)
    weight = est.net_.criterion_.weight
    before = weight.detach().clone()
    est.set_params(criterion__scale=30.0).fit(X, y)
    assert est.net_.criterion_.weight is weight and not torch.equal(weight.detach(), before)
    assert est.net_.criterion_.scale == 30.0
    est = TripletEmbedder(memory_size=32, **fast).fit(X, y)
    newest = est.net_.criterion_.memory()[0][-16:].clone()
    est.set_params(memory_size=16)
    est.net_.criterion_.memory_size = 16  # what the next fit does first
    torch.testing.assert_close(est.net_.criterion_.memory()[0], newest)
    est.fit(X, y)
    assert est.net_.criterion_.memory_size == 16 and len(est.net_.history) == 2


def test_memory_composes_with_the_classification_auxiliary():
    params = {**TripletEmbedder().get_params(), "memory_size": 16, "classification_weight": 0.5}
    criterion = build_criterion(params, n_classes=3, width=4)
    assert type(criterion).__name__ == "WithClassification"
    assert type(criterion.loss).__name__ == "CrossBatchMemory"
    z = nn.functional.normalize(torch.randn(9, 4), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    criterion(z, labels)
    assert int(criterion.memory_filled) == 9  # the batch only; the classifier sees the batch


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"triplets": True, "criterion": "arcface"}, "needs class labels"),
        ({"triplets": True, "criterion": "normalized_softmax"}, "needs class labels"),
        ({"triplets": True, "memory_size": 32}, "memory_size needs class labels"),
        ({"criterion": "arcface", "memory_size": 32}, "memory_size needs a pair-based loss"),
        ({"criterion": CenterPull, "memory_size": 32}, "CenterPull has no mine"),
        ({"mining": "all", "memory_size": 32}, "mining='all'"),
    ],
)
def test_what_does_not_fit_is_refused_before_training(small_digits, params, match):
    X, y = small_digits
    T = np.random.default_rng(0).normal(size=(30, 3, 4)).astype(np.float32)
    est = TripletEmbedder(**{**FAST, **params})
    with pytest.raises(ValueError, match=match):
        est.fit(T) if params.get("triplets") else est.fit(X, y)
    assert not hasattr(est, "net_")


@pytest.mark.parametrize("criterion", ["contrastive", "multi_similarity"])
def test_pair_losses_train_on_given_triplets(criterion):
    rng = np.random.default_rng(0)
    T = rng.normal(size=(60, 3, 4)).astype(np.float32)
    est = TripletEmbedder(triplets=True, mining="none", criterion=criterion, **FAST).fit(T)
    assert np.isfinite(est.transform(T[:, 0])).all()
