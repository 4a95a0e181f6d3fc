"""The loss on explicit index triplets and the index-tuple seam of the miners.

Checked against the loop oracles of ``tests/reference.py``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from sktriplet.triplets.losses import TripletLoss, triplet_loss
from sktriplet.triplets.mining import (
    IndexTriplets,
    mine_batch_negatives,
    mine_triplets,
)

from .reference import reference_loss, reference_triplet_choice, reference_triplet_loss

DISTANCES = ["sqeuclidean", "euclidean", "cosine"]
EXPLICIT = ["none", "semihard", "hard"]


def _triplets(seed, n=30, n_triplets=40, dim=5, normalize=True):
    """Random embeddings and random triplets (a != p, n not in {a, p})."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim))
    if normalize:
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = [rng.choice(n, size=3, replace=False) for _ in range(n_triplets)]
    a, p, neg = (np.array(c) for c in zip(*rows, strict=True))
    return emb, (a, p, neg)


def _torch(triplets):
    return tuple(torch.tensor(t) for t in triplets)


@pytest.mark.parametrize(
    ("mining", "distance", "soft"), list(itertools.product(EXPLICIT, DISTANCES, [False, True]))
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explicit_loss_matches_brute_force(mining, distance, soft, seed):
    emb, trip = _triplets(seed, normalize=seed != 2)
    margin = [0.2, 0.5, 1.0][seed]
    got = triplet_loss(
        torch.tensor(emb),
        triplets=_torch(trip),
        margin=margin,
        mining=mining,
        distance=distance,
        soft=soft,
    )
    want = reference_triplet_loss(emb, trip, margin, mining, distance, soft)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want, abs=1e-9, rel=1e-9)


@pytest.mark.parametrize("mining", ["semihard", "hard"])
@pytest.mark.parametrize("distance", DISTANCES)
def test_mined_negatives_match_brute_force_in_small_blocks(mining, distance):
    emb, trip = _triplets(3, n=25, n_triplets=60)
    # Shared anchors and a negative equal to another triplet's anchor/positive.
    trip[2][:5] = trip[0][5:10]
    got = mine_batch_negatives(
        torch.tensor(emb),
        IndexTriplets(*_torch(trip)),
        mining=mining,
        distance=distance,
        block_elements=7,
    )
    want = reference_triplet_choice(emb, trip, mining, distance)
    assert got.negative.tolist() == want
    assert got.valid.all()


def test_triplet_without_candidate_is_left_out():
    # The only candidate of the first triplet is its own positive.
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], dtype=torch.float64)
    trip = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([3, 3]))
    mined = mine_batch_negatives(emb, IndexTriplets(*trip), mining="hard")
    assert mined.valid.tolist() == [True, False]
    want = reference_triplet_loss(emb.numpy(), trip, 0.2, "hard", "sqeuclidean", False)
    assert want == pytest.approx(max(1 - 9 + 0.2, 0.0))
    got = triplet_loss(emb, triplets=trip, mining="hard")
    assert got.item() == pytest.approx(want)


def test_semihard_falls_back_to_the_farthest_candidate():
    emb = torch.tensor([[0.0], [5.0], [1.0], [2.0]])
    trip = IndexTriplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    trip = IndexTriplets(torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([2, 3]))
    mined = mine_batch_negatives(emb, trip, mining="semihard")
    # Nothing is farther than d(0, 1) = 25: the farthest candidate, 3 (d = 4).
    assert mined.negative.tolist() == [3, 3]
    assert mined.fallback.tolist() == [True, True]


@pytest.mark.parametrize("mining", ["semihard", "hard"])
@pytest.mark.parametrize("distance", DISTANCES)
def test_mined_index_tuples_reproduce_the_labelled_loss(mining, distance):
    rng = np.random.default_rng(4)
    emb = torch.tensor(rng.normal(size=(24, 4)))
    labels = torch.tensor(rng.integers(0, 4, size=24))
    trip = mine_triplets(emb, labels, mining=mining, distance=distance)
    want = reference_loss(emb.numpy(), labels.numpy(), 0.3, mining, distance, False)
    got = triplet_loss(emb, triplets=trip, mining="none", margin=0.3, distance=distance)
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    precomputed = mine_triplets(
        torch.cdist(emb, emb) ** (2 if distance == "sqeuclidean" else 1),
        labels,
        mining=mining,
        distance="precomputed",
    )
    if distance != "cosine":
        assert all(torch.equal(x, y) for x, y in zip(precomputed, trip, strict=True))


def test_mine_all_lists_every_valid_triplet():
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    got = mine_triplets(torch.randn(6, 3), labels, mining="all")
    want = [
        (a, p, n)
        for a in range(6)
        for p in range(6)
        for n in range(6)
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]
    ]
    assert list(zip(*(t.tolist() for t in got), strict=True)) == want


def test_empty_triplets_give_zero_loss_and_zero_gradient():
    emb = torch.randn(5, 3, requires_grad=True)
    empty = torch.zeros(0, dtype=torch.long)
    for mining in EXPLICIT:
        loss = triplet_loss(emb, triplets=(empty, empty, empty), mining=mining)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.equal(emb.grad, torch.zeros_like(emb))


@pytest.mark.parametrize(
    ("mining", "distance", "soft"), list(itertools.product(EXPLICIT, DISTANCES, [False, True]))
)
def test_coinciding_embeddings_give_finite_gradients(mining, distance, soft):
    emb = torch.ones(6, 3, requires_grad=True)
    trip = (torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]), torch.tensor([4, 5, 0]))
    loss = triplet_loss(emb, triplets=trip, mining=mining, distance=distance, soft=soft)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("mining", EXPLICIT)
@pytest.mark.parametrize("distance", DISTANCES)
def test_explicit_gradient_matches_finite_differences(mining, distance):
    emb, trip = _triplets(5, n=10, n_triplets=12, dim=3)
    x = torch.tensor(emb, requires_grad=True)
    torch.autograd.gradcheck(
        lambda e: triplet_loss(
            e, triplets=_torch(trip), mining=mining, soft=True, distance=distance
        ),
        (x,),
    )


def test_low_precision_and_autocast_mine_in_float32():
    emb, trip = _triplets(6, n=32, n_triplets=50)
    want = reference_triplet_loss(emb, trip, 0.2, "semihard", "sqeuclidean", False)
    x = torch.tensor(emb, dtype=torch.bfloat16)
    loss = triplet_loss(x, triplets=_torch(trip), mining="semihard")
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(want, abs=3e-2)
    x32 = torch.tensor(emb, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = triplet_loss(x32, triplets=_torch(trip), mining="semihard")
    assert auto.item() == pytest.approx(want, rel=1e-5)


def test_criterion_takes_a_triplet_target():
    emb, trip = _triplets(7)
    x = torch.tensor(emb)
    target = torch.stack(_torch(trip), dim=1)  # (n_triplets, 3)
    for mining in EXPLICIT:
        crit = TripletLoss(margin=0.4, mining=mining, distance="euclidean")
        want = reference_triplet_loss(emb, trip, 0.4, mining, "euclidean", False)
        assert crit(x, target).item() == pytest.approx(want, rel=1e-9)
    labels = torch.tensor(np.arange(30) % 3)
    assert TripletLoss()(x, labels).item() == pytest.approx(
        reference_loss(emb, labels.numpy(), 0.2, "semihard", "sqeuclidean", False)
    )


def test_stats_of_explicit_triplets():
    emb, trip = _triplets(8, n=12, n_triplets=20)
    loss, stats = triplet_loss(
        torch.tensor(emb), triplets=_torch(trip), margin=0.5, return_stats=True
    )
    from .reference import distance

    d_ap = np.array(
        [distance(emb[a], emb[p], "sqeuclidean") for a, p, _ in zip(*trip, strict=True)]
    )
    d_an = np.array(
        [distance(emb[a], emb[n], "sqeuclidean") for a, _, n in zip(*trip, strict=True)]
    )
    assert stats["n_triplets"].item() == 20
    assert stats["d_ap"].item() == pytest.approx(d_ap.mean())
    assert stats["d_an"].item() == pytest.approx(d_an.mean())
    assert stats["active"].item() == pytest.approx(np.mean(d_ap - d_an + 0.5 > 0))
    assert loss.item() == pytest.approx(np.maximum(d_ap - d_an + 0.5, 0).mean())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of labels"),
        ({"labels": torch.zeros(4), "triplets": ([0], [1], [2])}, "got both"),
        ({"labels": torch.tensor([0, 0, 1, 1]), "mining": "none"}, 'mining="none" applies only'),
        ({"triplets": ([0], [1], [2]), "mining": "all"}, "not supported with explicit triplets"),
        ({"triplets": ([0], [1], [9])}, r"index 9 is out of range .* \[0, 3\]"),
        ({"triplets": ([0], [1], [-1])}, "index -1 is out of range"),
        ({"triplets": ([0, 1], [1], [2])}, "of one length"),
        ({"triplets": ([0.0], [1.0], [2.0])}, "must be integers"),
        ({"triplets": torch.zeros(3, 2, dtype=torch.long)}, r"shape \(n_triplets, 3\)"),
    ],
)
def test_bad_explicit_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        triplet_loss(torch.zeros(4, 2), **kwargs)


def test_criterion_refuses_unknown_mining():
    with pytest.raises(ValueError, match="mining='semi' is not supported"):
        TripletLoss(mining="semi")
