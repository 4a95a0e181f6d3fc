"""Normalised softmax and ArcFace against their papers' formulas, by loops."""

import math

import numpy as np
import pytest
import torch

from sktriplet.triplets.proxy_losses import ArcFaceLoss, NormalizedSoftmaxLoss
from tests.reference import reference_arcface, reference_normalized_softmax

TOL = {"rel": 2e-5, "abs": 2e-5}


def batch(seed, n=20, dim=6, n_classes=5):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return torch.tensor(z, dtype=torch.float32), torch.from_numpy(rng.integers(0, n_classes, n))


def miners_tuple(seed, n):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, n, (12,), generator=g) for _ in range(3))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_normalized_softmax_is_the_papers_cross_entropy(seed, temperature):
    z, y = batch(seed)
    loss = NormalizedSoftmaxLoss(5, 6, temperature=temperature)
    w = loss.weight.detach().numpy()
    expected = reference_normalized_softmax(z.numpy(), w, y.numpy(), temperature)
    assert loss(z, y).item() == pytest.approx(expected, **TOL)
    t = miners_tuple(seed, len(z))
    expected = reference_normalized_softmax(z.numpy(), w, y.numpy(), temperature, t)
    assert loss(z, y, indices_tuple=t).item() == pytest.approx(expected, **TOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("scale", "margin"), [(64.0, 0.5), (16.0, 0.2)])
def test_arcface_is_the_papers_additive_angular_margin(seed, scale, margin):
    z, y = batch(seed)
    loss = ArcFaceLoss(5, 6, scale=scale, angular_margin=margin)
    with torch.no_grad():  # some embeddings beyond pi - m from their class: the other branch
        loss.weight[y[0]] = -z[0]
        loss.weight[y[1]] = -z[1] + 0.01 * z[2]
    w = loss.weight.detach().numpy()
    expected = reference_arcface(z.numpy(), w, y.numpy(), scale, margin)
    assert loss(z, y).item() == pytest.approx(expected, **TOL)
    t = miners_tuple(seed, len(z))
    expected = reference_arcface(z.numpy(), w, y.numpy(), scale, margin, t)
    assert loss(z, y, indices_tuple=t).item() == pytest.approx(expected, **TOL)


def test_gradients_stay_finite_where_an_embedding_points_at_its_class():
    z, y = batch(3, n=6)
    loss = ArcFaceLoss(5, 6)
    with torch.no_grad():
        loss.weight[y] = z * 3.0  # cos(theta) = 1 exactly: acos' is infinite there
    z = z.clone().requires_grad_()
    value = loss(z, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    assert torch.isfinite(loss.weight.grad).all()


@pytest.mark.parametrize("cls", [NormalizedSoftmaxLoss, ArcFaceLoss])
def test_one_class_and_empty_batches_are_finite(cls):
    loss = cls(3, 4)
    z = torch.nn.functional.normalize(torch.randn(5, 4), dim=1).requires_grad_()
    for emb, labels in [(z, torch.zeros(5, dtype=torch.long)), (z[:0], torch.zeros(0).long())]:
        value = loss(emb, labels)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("cls", [NormalizedSoftmaxLoss, ArcFaceLoss])
def test_class_weights_are_parameters_and_labels_are_required(cls):
    loss = cls(n_classes=4, n_components=3)
    assert [name for name, _ in loss.named_parameters()] == ["weight"]
    assert loss.weight.shape == (4, 3) and loss.requires_labels
    z = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match="needs class labels"):
        loss(z, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ValueError, match=r"class codes in \[0, 3\]"):
        loss(z, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="n_classes >= 1"):
        cls(n_classes=0, n_components=3)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="temperature"):
        NormalizedSoftmaxLoss(3, 2, temperature=0)
    with pytest.raises(ValueError, match="angular_margin"):
        ArcFaceLoss(3, 2, angular_margin=2.0)


def test_normalized_softmax_matches_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    miners = pytest.importorskip("pytorch_metric_learning.miners")
    z, y = batch(4, n=32, n_classes=6)
    ours = NormalizedSoftmaxLoss(6, 6, temperature=0.05)
    theirs = losses.NormalizedSoftmaxLoss(6, 6, temperature=0.05)
    theirs.W.data = ours.weight.detach().T.clone()  # PML stores (embedding_size, num_classes)
    assert ours(z, y).item() == pytest.approx(theirs(z, y).item(), **TOL)
    mined = miners.MultiSimilarityMiner()(z, y)
    assert ours(z, y, indices_tuple=mined).item() == pytest.approx(
        theirs(z, y, mined).item(), **TOL
    )


def test_arcface_matches_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    miners = pytest.importorskip("pytorch_metric_learning.miners")
    z, y = batch(5, n=32, n_classes=6)
    ours = ArcFaceLoss(6, 6, scale=64.0, angular_margin=0.5)
    theirs = losses.ArcFaceLoss(6, 6, margin=math.degrees(0.5), scale=64.0)
    theirs.W.data = ours.weight.detach().T.clone()
    assert ours(z, y).item() == pytest.approx(theirs(z, y).item(), **TOL)
    mined = miners.TripletMarginMiner(margin=0.2)(z, y)
    assert ours(z, y, indices_tuple=mined).item() == pytest.approx(
        theirs(z, y, mined).item(), **TOL
    )
