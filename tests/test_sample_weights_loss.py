"""Sample weights in the labelled loss: each mined term weighted by its anchor's weight.

The weighted loss is checked against brute-force loops written here (numpy,
float64) for semi-hard, batch-hard and batch-all mining, and integer weights
against the unweighted loss of each anchor's terms repeated by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sktriplet.triplets.classification import WithClassification
from sktriplet.triplets.losses import TripletLoss, triplet_loss


def _batch(seed=0, n=14, dim=3, n_classes=4):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    y = rng.integers(n_classes, size=n)
    y[:n_classes] = np.arange(n_classes)  # every class present
    w = rng.choice([0.0, 0.5, 1.0, 2.0, 3.0], size=n)
    return emb, y, w


def _hinge(x, margin, soft):
    return np.log1p(np.exp(x)) if soft else max(x + margin, 0.0)


def _triplets(D, y, mining):
    """The (a, p, n) each anchor's terms use under ``mining``, by loops over the batch."""
    n = len(y)
    for a in range(n):
        pos = [p for p in range(n) if p != a and y[p] == y[a]]
        neg = [q for q in range(n) if y[q] != y[a]]
        if not pos or not neg:
            continue
        if mining == "semihard":
            for p in pos:
                farther = [q for q in neg if D[a, q] > D[a, p]]
                pick = min if farther else max  # the farthest negative when none is farther
                yield a, p, pick(farther or neg, key=lambda q: D[a, q])
        elif mining == "hard":
            yield a, max(pos, key=lambda p: D[a, p]), min(neg, key=lambda q: D[a, q])
        else:  # all: every triplet
            yield from ((a, p, q) for p in pos for q in neg)


def oracle(emb, y, w, mining, margin=0.2, soft=False):
    """sum_t w[a_t] l_t / sum_t w[a_t] over the terms the mining keeps, by loops."""
    D = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    num = den = 0.0
    for a, p, q in _triplets(D, y, mining):
        term = _hinge(D[a, p] - D[a, q], margin, soft)
        if mining != "all" or soft or term > 0:  # batch-all's hinge: the non-zero terms
            num += w[a] * term
            den += w[a]
    return num / den if den > 0 else 0.0


CASES = [("semihard", False), ("hard", False), ("all", False), ("all", True), ("semihard", True)]


@pytest.mark.parametrize(("mining", "soft"), CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_labelled_loss_matches_the_loop_oracle(mining, soft, seed):
    emb, y, w = _batch(seed)
    got = triplet_loss(
        torch.tensor(emb), torch.tensor(y), mining=mining, margin=0.5, soft=soft,
        weights=torch.tensor(w),
    )
    expected = oracle(emb, y, w, mining, margin=0.5, soft=soft)
    assert expected > 0
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def _repeated_terms(z, y, w, mining, margin):
    """The unweighted mean of each anchor's terms, each repeated w[a] times, by hand."""
    D = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    terms = []
    for a, p, q in _triplets(D.detach().numpy(), y, mining):
        term = torch.relu(D[a, p] - D[a, q] + margin)
        if mining != "all" or term.item() > 0:  # batch-all averages its non-zero terms
            terms.extend([term] * int(w[a]))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("mining", ["semihard", "hard", "all"])
def test_integer_weights_equal_each_anchors_terms_repeated(mining):
    emb, y, _ = _batch(3)
    w = np.random.default_rng(3).integers(0, 4, size=len(y))
    w[0] = max(w[0], 1)
    z1 = torch.tensor(emb, requires_grad=True)
    z2 = torch.tensor(emb, requires_grad=True)
    weighted = TripletLoss(margin=0.5, mining=mining)(z1, torch.tensor(y), weights=torch.tensor(w))
    repeated = _repeated_terms(z2, y, w, mining, 0.5)
    torch.testing.assert_close(weighted, repeated)
    (g1,) = torch.autograd.grad(weighted, z1)
    (g2,) = torch.autograd.grad(repeated, z2)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize(("mining", "soft"), CASES)
def test_unit_weights_give_the_unweighted_loss_and_gradient_bitwise(mining, soft):
    emb, y, _ = _batch(4)
    z1 = torch.tensor(emb, dtype=torch.float32, requires_grad=True)
    z2 = torch.tensor(emb, dtype=torch.float32, requires_grad=True)
    criterion = TripletLoss(margin=0.5, mining=mining, soft=soft)
    plain = criterion(z1, torch.tensor(y))
    ones = criterion(z2, torch.tensor(y), weights=torch.ones(len(y)))
    assert torch.equal(plain, ones)
    assert torch.equal(torch.autograd.grad(plain, z1)[0], torch.autograd.grad(ones, z2)[0])


@pytest.mark.parametrize("mining", ["semihard", "hard"])
def test_a_miners_triplets_take_the_sample_weights_of_their_anchors(mining):
    emb, y, w = _batch(5)
    z, labels, weights = torch.tensor(emb), torch.tensor(y), torch.tensor(w)
    criterion = TripletLoss(margin=0.5, mining=mining)
    mined = criterion.mine(z, labels)
    given = criterion(z, labels, indices_tuple=mined, weights=weights)
    torch.testing.assert_close(given, criterion(z, labels, weights=weights))


def test_zero_weights_on_a_class_leave_its_anchors_terms_out_but_not_its_samples():
    emb, y, _ = _batch(6)
    w = np.where(y == 0, 0.0, 1.0)
    z = torch.tensor(emb, requires_grad=True)
    loss = triplet_loss(z, torch.tensor(y), mining="hard", margin=0.5, weights=torch.tensor(w))
    assert loss.item() == pytest.approx(oracle(emb, y, w, "hard", margin=0.5), rel=1e-10)
    # Class 0's samples still serve as negatives of other anchors: they get gradients.
    (grad,) = torch.autograd.grad(loss, z)
    assert grad[y == 0].abs().sum() > 0


def test_classification_cross_entropy_is_the_weighted_mean_over_samples():
    emb, y, w = _batch(7)
    torch.manual_seed(0)
    criterion = WithClassification(TripletLoss(margin=0.5), n_classes=4, n_components=3)
    z, labels = torch.tensor(emb, dtype=torch.float32), torch.tensor(y)
    got = criterion(z, labels, weights=torch.tensor(w))
    logits = criterion.logits(z).double().detach().numpy()
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ce = -(w * logp[np.arange(len(y)), y]).sum() / w.sum()
    base = oracle(emb, y, w, "semihard", margin=0.5)
    assert got.item() == pytest.approx(base + ce, rel=1e-5)


def test_labelled_weights_of_the_wrong_shape_are_refused():
    emb, y, w = _batch(8)
    with pytest.raises(ValueError, match="one weight per embedding"):
        triplet_loss(torch.tensor(emb), torch.tensor(y), weights=torch.tensor(w[:-1]))
