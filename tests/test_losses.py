import itertools

import numpy as np
import pytest
import torch

from sktriplet.triplets.losses import TripletLoss, triplet_loss
from sktriplet.triplets.mining import semihard_triplets

from .reference import reference_loss

MININGS = ["semihard", "hard", "all"]
DISTANCES = ["sqeuclidean", "euclidean", "cosine"]


def _batch(seed, n=24, dim=5, n_classes=5, normalize=True):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim))
    if normalize:
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = rng.integers(0, n_classes, size=n)
    return emb, labels


@pytest.mark.parametrize(
    ("mining", "distance", "soft"), list(itertools.product(MININGS, DISTANCES, [False, True]))
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_matches_brute_force(mining, distance, soft, seed):
    emb, labels = _batch(seed, normalize=seed != 2)
    margin = [0.2, 0.5, 1.0][seed]
    got = triplet_loss(
        torch.tensor(emb),
        torch.tensor(labels),
        margin=margin,
        mining=mining,
        distance=distance,
        soft=soft,
    )
    want = reference_loss(emb, labels, margin, mining, distance, soft)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want, abs=1e-9, rel=1e-9)


@pytest.mark.parametrize("method", ["masked", "sorted"])
def test_semihard_methods_agree_with_reference(method):
    emb, labels = _batch(3, n=40, n_classes=3)
    dist = torch.cdist(torch.tensor(emb), torch.tensor(emb)) ** 2
    t = semihard_triplets(dist, torch.tensor(labels), method=method, block_elements=64)
    # Reference choice, pair by pair.
    for a, p, n, fb in zip(t.anchor, t.positive, t.negative, t.fallback, strict=True):
        negs = [k for k in range(40) if labels[k] != labels[a]]
        farther = [k for k in negs if dist[a, k] > dist[a, p]]
        want = (
            min(farther, key=lambda k: dist[a, k])
            if farther
            else max(negs, key=lambda k: dist[a, k])
        )
        assert int(n) == want
        assert bool(fb) == (not farther)
    n_pairs = sum(1 for a in range(40) for p in range(40) if a != p and labels[a] == labels[p])
    assert t.anchor.numel() == n_pairs


@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("labels", [[0] * 6, list(range(6)), [0, 0, 1, 1, 2, 2][:1]])
def test_no_valid_triplet_is_zero_with_zero_gradient(mining, labels):
    emb = torch.randn(len(labels), 4, requires_grad=True)
    loss = triplet_loss(emb, torch.tensor(labels), mining=mining)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(emb.grad, torch.zeros_like(emb))


@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("soft", [False, True])
def test_coinciding_embeddings_give_finite_gradients(mining, distance, soft):
    emb = torch.ones(8, 3, requires_grad=True)
    with torch.no_grad():
        emb[4:] = torch.tensor([1.0, -1.0, 0.0])
    loss = triplet_loss(
        emb, torch.tensor([0, 0, 1, 1, 0, 1, 0, 1]), mining=mining, distance=distance, soft=soft
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
@pytest.mark.parametrize("mining", MININGS)
def test_gradient_matches_finite_differences(mining, distance):
    emb, labels = _batch(4, n=12, dim=3, n_classes=3)
    x = torch.tensor(emb, requires_grad=True)
    y = torch.tensor(labels)
    torch.autograd.gradcheck(
        lambda e: triplet_loss(e, y, mining=mining, soft=True, distance=distance), (x,)
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_are_mined_in_float32(dtype):
    emb, labels = _batch(5, n=32)
    ref = reference_loss(emb, labels, 0.2, "semihard", "sqeuclidean", False)
    x = torch.tensor(emb, dtype=dtype, requires_grad=True)
    loss = triplet_loss(x, torch.tensor(labels))
    loss.backward()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref, abs=2e-2)
    assert torch.isfinite(x.grad.float()).all()


def test_autocast_does_not_change_the_loss():
    emb, labels = _batch(6, n=32)
    x = torch.tensor(emb, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = triplet_loss(x, torch.tensor(labels))
    assert loss.item() == pytest.approx(triplet_loss(x, torch.tensor(labels)).item(), rel=1e-6)


def test_criterion_module_equals_function():
    emb, labels = _batch(7)
    x, y = torch.tensor(emb), torch.tensor(labels)
    crit = TripletLoss(margin=0.3, mining="all", distance="cosine", soft=False)
    assert (
        crit(x, y).item() == triplet_loss(x, y, margin=0.3, mining="all", distance="cosine").item()
    )
    assert "mining='all'" in repr(crit)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mining": "semi"}, "mining='semi' is not supported"),
        ({"distance": "l1"}, "distance='l1' is not supported"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        triplet_loss(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        triplet_loss(torch.zeros(4), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="one label per embedding"):
        triplet_loss(torch.zeros(4, 2), torch.tensor([0, 0, 1]))


def _reference_stats(emb, labels, margin, mining):
    """Brute-force mining statistics (semihard and hard)."""
    from .reference import distance

    n = len(labels)
    d = np.array([[distance(emb[i], emb[j], "sqeuclidean") for j in range(n)] for i in range(n)])
    aps, ans, fbs = [], [], []
    for a in range(n):
        negs = [k for k in range(n) if labels[k] != labels[a]]
        poss = [p for p in range(n) if p != a and labels[p] == labels[a]]
        if not negs or not poss:
            continue
        if mining == "hard":
            aps.append(max(d[a, poss]))
            ans.append(min(d[a, negs]))
            continue
        for p in poss:
            farther = [d[a, k] for k in negs if d[a, k] > d[a, p]]
            aps.append(d[a, p])
            ans.append(min(farther) if farther else max(d[a, negs]))
            fbs.append(not farther)
    aps, ans = np.array(aps), np.array(ans)
    active = np.mean(aps - ans + margin > 0)
    return {
        "d_ap": aps.mean(),
        "d_an": ans.mean(),
        "active": active,
        "fallback": np.mean(fbs) if fbs else 0.0,
        "n_triplets": len(aps),
        "spread": d.sum() / (n * (n - 1)),
    }


@pytest.mark.parametrize("mining", ["semihard", "hard"])
def test_stats_match_brute_force(mining):
    emb, labels = _batch(8, n=30, n_classes=4)
    loss, stats = triplet_loss(
        torch.tensor(emb), torch.tensor(labels), mining=mining, margin=0.5, return_stats=True
    )
    want = _reference_stats(emb, labels, 0.5, mining)
    for key, value in want.items():
        assert stats[key].item() == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert loss.item() == pytest.approx(
        reference_loss(emb, labels, 0.5, mining, "sqeuclidean", False)
    )


def test_criterion_records_stats_only_when_asked():
    emb, labels = _batch(9)
    x, y = torch.tensor(emb), torch.tensor(labels)
    crit = TripletLoss()
    crit(x, y)
    assert crit.last_stats == {}
    crit = TripletLoss(record_stats=True, mining="all")
    crit(x, y)
    assert set(crit.last_stats) == {"n_triplets", "active", "fallback", "d_ap", "d_an", "spread"}
