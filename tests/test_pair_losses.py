"""Contrastive and multi-similarity losses against their papers' formulas, by loops.

References (tests/reference.py) are transcriptions of the papers' equations
with explicit loops over anchors and pairs in float64; where
pytorch-metric-learning is installed, its losses with matching settings give
the same values too.
"""

import numpy as np
import pytest
import torch

from sktriplet.triplets.losses import TripletLoss
from sktriplet.triplets.pair_losses import NEG_MARGINS, ContrastiveLoss, MultiSimilarityLoss
from sktriplet.triplets.pair_mining import (
    IndexPairs,
    as_index_pairs,
    miner_weights,
    pair_masks,
)
from tests.reference import (
    distance,
    reference_anchored_triplets,
    reference_contrastive,
    reference_ms_mining,
    reference_multi_similarity,
    reference_pairs,
)

TOL = {"rel": 2e-5, "abs": 2e-6}


def batch(seed, n=18, dim=6, n_classes=5, normalise=True):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, dim))
    if normalise:
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    labels = rng.integers(0, n_classes, size=n)
    return torch.tensor(z, dtype=torch.float32), torch.from_numpy(labels)


def pairs_of(a, b):
    return list(zip(a.tolist(), b.tolist(), strict=True))


def random_pairs(seed, n, n_pos=15, n_neg=25):
    """A miner's choice: arbitrary positive and negative pairs (indices need not match labels)."""
    g = torch.Generator().manual_seed(seed)
    a1, p = torch.randint(0, n, (2, n_pos), generator=g)
    a2, neg = torch.randint(0, n, (2, n_neg), generator=g)
    keep = a1 != p
    return a1[keep], p[keep], a2, neg


# --------------------------------------------------------------- contrastive
@pytest.mark.parametrize("kind", ["sqeuclidean", "euclidean", "cosine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contrastive_with_labels_is_hadsells_loss_over_every_pair(kind, seed):
    z, y = batch(seed)
    loss = ContrastiveLoss(distance=kind, pos_margin=0.1, neg_margin=0.9)
    pos, neg = reference_pairs(y)
    expected = reference_contrastive(z.numpy(), pos, neg, kind, 0.1, 0.9)
    assert loss(z, y).item() == pytest.approx(expected, **TOL)


@pytest.mark.parametrize("kind", ["sqeuclidean", "euclidean", "cosine"])
def test_contrastive_with_index_tuples(kind):
    z, y = batch(3, normalise=False)
    loss = ContrastiveLoss(distance=kind, pos_margin=0.2, neg_margin=NEG_MARGINS[kind] * 2)
    a1, p, a2, n = random_pairs(0, len(z))
    pos, neg = (
        list(zip(a1.tolist(), p.tolist(), strict=True)),
        list(zip(a2.tolist(), n.tolist(), strict=True)),
    )
    expected = reference_contrastive(z.numpy(), pos, neg, kind, 0.2, NEG_MARGINS[kind] * 2)
    assert loss(z, indices_tuple=(a1, p, a2, n)).item() == pytest.approx(expected, **TOL)
    # Triplets (a, p, n) read as the pairs (a, p) and (a, n).
    t = (a1, p, a2[: len(a1)])
    pos, neg = (
        list(zip(a1.tolist(), p.tolist(), strict=True)),
        list(zip(a1.tolist(), t[2].tolist(), strict=True)),
    )
    expected = reference_contrastive(z.numpy(), pos, neg, kind, 0.2, NEG_MARGINS[kind] * 2)
    assert loss(z, y, indices_tuple=t).item() == pytest.approx(expected, **TOL)


def test_contrastive_default_margin_is_one_unit_apart_in_every_distance():
    a, b = np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3) / 2])  # Euclidean distance 1
    for kind in ("sqeuclidean", "euclidean", "cosine"):
        assert ContrastiveLoss(distance=kind).neg_margin == pytest.approx(distance(a, b, kind))


# ----------------------------------------------------------- multi-similarity
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_multi_similarity_mines_and_scores_as_the_paper(seed):
    z, y = batch(seed, n=20, n_classes=4)
    loss = MultiSimilarityLoss(alpha=2.0, beta=10.0, base=0.4, epsilon=0.1)
    pos, neg = reference_ms_mining(z.numpy(), y, 0.1)
    mined = loss.mine(z, y)
    assert sorted(zip(mined[0].tolist(), mined[1].tolist(), strict=True)) == sorted(pos)
    assert sorted(zip(mined[2].tolist(), mined[3].tolist(), strict=True)) == sorted(neg)
    expected = reference_multi_similarity(z.numpy(), pos, neg, 2.0, 10.0, 0.4, len(z))
    assert loss(z, y).item() == pytest.approx(expected, **TOL)


def test_multi_similarity_without_mining_and_with_given_pairs():
    z, y = batch(5, n=16)
    loss = MultiSimilarityLoss(alpha=3.0, beta=20.0, base=0.3, epsilon=None)
    pos, neg = reference_pairs(y)
    expected = reference_multi_similarity(z.numpy(), pos, neg, 3.0, 20.0, 0.3, len(z))
    assert loss(z, y).item() == pytest.approx(expected, **TOL)
    a1, p, a2, n = random_pairs(1, len(z))
    pos, neg = (
        list(zip(a1.tolist(), p.tolist(), strict=True)),
        list(zip(a2.tolist(), n.tolist(), strict=True)),
    )
    expected = reference_multi_similarity(z.numpy(), pos, neg, 3.0, 20.0, 0.3, len(z))
    assert loss(z, indices_tuple=(a1, p, a2, n)).item() == pytest.approx(expected, **TOL)


# ------------------------------------------- mining with anchors, one rule each
@pytest.mark.parametrize("mining", ["semihard", "hard"])
@pytest.mark.parametrize("kind", ["sqeuclidean", "cosine"])
def test_triplet_mining_anchored_on_a_batch_before_a_memory(mining, kind):
    z, y = batch(7, n=30, n_classes=6)
    got = TripletLoss(mining=mining, distance=kind).mine(z, y, n_anchors=10)
    expected = reference_anchored_triplets(z.numpy(), y, mining, kind, 10)
    assert sorted(zip(*(t.tolist() for t in got), strict=True)) == sorted(expected)
    full = TripletLoss(mining=mining, distance=kind).mine(z, y)
    assert sorted(zip(*(t.tolist() for t in full), strict=True)) == sorted(
        reference_anchored_triplets(z.numpy(), y, mining, kind, len(z))
    )


def test_pair_mining_anchored_on_a_batch_before_a_memory():
    z, y = batch(8, n=25, n_classes=4)
    pos, neg = reference_pairs(y, n_anchors=9)
    got = ContrastiveLoss().mine(z, y, n_anchors=9)
    assert sorted(zip(got[0].tolist(), got[1].tolist(), strict=True)) == sorted(pos)
    assert sorted(zip(got[2].tolist(), got[3].tolist(), strict=True)) == sorted(neg)
    assert got.n_anchors == 9
    pos, neg = reference_ms_mining(z.numpy(), y, 0.1, n_anchors=9)
    got = MultiSimilarityLoss().mine(z, y, n_anchors=9)
    assert sorted(zip(got[0].tolist(), got[1].tolist(), strict=True)) == sorted(pos)
    assert sorted(zip(got[2].tolist(), got[3].tolist(), strict=True)) == sorted(neg)
    # Per-anchor losses average over the anchors only.
    expected = reference_multi_similarity(z.numpy(), pos, neg, 2.0, 50.0, 0.5, 9)
    assert MultiSimilarityLoss()(z, y, indices_tuple=got).item() == pytest.approx(expected, **TOL)


@pytest.mark.parametrize(
    "loss",
    [
        TripletLoss(mining="semihard"),
        TripletLoss(mining="hard", distance="euclidean"),
        ContrastiveLoss(distance="cosine"),
        MultiSimilarityLoss(),
    ],
    ids=repr,
)
def test_a_loss_of_its_own_mined_tuple_is_its_labelled_loss(loss):
    z, y = batch(9, n=24, n_classes=5)
    z.requires_grad_()
    labelled = loss(z, y)
    (g1,) = torch.autograd.grad(labelled, z)
    given = loss(z, y, indices_tuple=loss.mine(z, y))
    (g2,) = torch.autograd.grad(given, z)
    torch.testing.assert_close(given, labelled, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------- nothing to mine, never NaN
def degenerate_batches():
    z = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    same = z[:1].repeat(6, 1)
    return {
        "one class": (z, torch.zeros(6, dtype=torch.long)),
        "no positives": (z, torch.arange(6)),
        "one sample": (z[:1], torch.zeros(1, dtype=torch.long)),
        "empty": (z[:0], torch.zeros(0, dtype=torch.long)),
        "coincident, one class": (same, torch.zeros(6, dtype=torch.long)),
        "coincident, two classes": (same, torch.tensor([0, 0, 0, 1, 1, 1])),
    }


@pytest.mark.parametrize("case", list(degenerate_batches()))
@pytest.mark.parametrize(
    "loss",
    [
        TripletLoss(),
        ContrastiveLoss(distance="euclidean"),
        ContrastiveLoss(),
        MultiSimilarityLoss(),
    ],
    ids=repr,
)
def test_degenerate_batches_give_finite_losses_and_gradients(case, loss):
    z, y = degenerate_batches()[case]
    z = z.clone().requires_grad_()
    value = loss(z, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    nothing_to_mine = case in ("one class", "no positives", "one sample", "empty")
    if nothing_to_mine and not isinstance(loss, ContrastiveLoss):
        # No triplet, no mined pair: exactly 0 and a zero gradient.
        assert value.item() == 0.0 and not z.grad.any()
    if case in ("one sample", "empty"):
        assert value.item() == 0.0 and not z.grad.any()


# ---------------------------------------------------------- index tuples
def test_index_pairs_unpack_like_a_miners_four_tuple_and_are_checked():
    pairs = IndexPairs(*torch.tensor([[0, 1], [1, 0], [0, 2], [2, 3]]), n_anchors=2)
    a1, p, a2, n = pairs
    assert pairs.negative is n and pairs.n_anchors == 2 and len(pairs) == 4
    import pickle

    again = pickle.loads(pickle.dumps(pairs))
    assert again.n_anchors == 2 and torch.equal(again[3], n)
    with pytest.raises(ValueError, match="out of range"):
        as_index_pairs((a1, p, a2, n + 5), 4, torch.device("cpu"))
    with pytest.raises(ValueError, match="first n_anchors=1"):
        as_index_pairs(IndexPairs(a1, p, a2, n, n_anchors=1), 4, torch.device("cpu"))
    with pytest.raises(ValueError, match="pairs or \\(anchor"):
        as_index_pairs((a1, p), 4, torch.device("cpu"))
    with pytest.raises(ValueError, match="integers"):
        as_index_pairs((a1.float(), p, a2, n), 4, torch.device("cpu"))


def test_pair_masks_and_miner_weights_by_hand():
    pos, neg = pair_masks(torch.tensor([0, 1, 0, 1]))
    assert pos.int().tolist() == [[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]]
    assert neg.int().tolist() == [[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
    t = (torch.tensor([0, 0, 1]), torch.tensor([2, 2, 3]), torch.tensor([0]), torch.tensor([1]))
    weights = miner_weights(t, 5, torch.device("cpu")).tolist()
    assert weights == pytest.approx([1.0, 2 / 3, 2 / 3, 1 / 3, 0.0])
    assert miner_weights(None, 3, torch.device("cpu")).tolist() == [1.0, 1.0, 1.0]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="distance="):
        ContrastiveLoss(distance="l1")
    with pytest.raises(ValueError, match="alpha and beta"):
        MultiSimilarityLoss(alpha=0)
    with pytest.raises(ValueError, match="epsilon"):
        MultiSimilarityLoss(epsilon=-1)
    z, y = batch(0)
    for loss in (ContrastiveLoss(), MultiSimilarityLoss()):
        with pytest.raises(ValueError, match="needs labels"):
            loss(z)
        with pytest.raises(ValueError, match="one label per embedding"):
            loss(z, y[:3])


# ------------------------------------------------------- pytorch-metric-learning
@pytest.mark.parametrize(("kind", "power"), [("euclidean", 1), ("sqeuclidean", 2)])
def test_contrastive_matches_pytorch_metric_learning(kind, power):
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    distances = pytest.importorskip("pytorch_metric_learning.distances")
    z, y = batch(11, n=32)
    theirs = losses.ContrastiveLoss(
        pos_margin=0.1, neg_margin=1.1, distance=distances.LpDistance(power=power)
    )
    ours = ContrastiveLoss(distance=kind, pos_margin=0.1, neg_margin=1.1)
    assert ours(z, y).item() == pytest.approx(theirs(z, y).item(), **TOL)
    t = random_pairs(2, len(z))
    assert ours(z, y, indices_tuple=t).item() == pytest.approx(theirs(z, y, t).item(), **TOL)


def test_multi_similarity_matches_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    miners = pytest.importorskip("pytorch_metric_learning.miners")
    for seed in range(3):
        z, y = batch(seed, n=32, n_classes=6)
        mined = miners.MultiSimilarityMiner(epsilon=0.1)(z, y)
        theirs = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)
        ours = MultiSimilarityLoss(alpha=2, beta=50, base=0.5, epsilon=0.1)
        assert ours(z, y).item() == pytest.approx(theirs(z, y, mined).item(), **TOL)
        assert ours(z, y, indices_tuple=mined).item() == pytest.approx(
            theirs(z, y, mined).item(), **TOL
        )
        unmined = MultiSimilarityLoss(epsilon=None)(z, y).item()
        assert unmined == pytest.approx(theirs(z, y).item(), **TOL)
