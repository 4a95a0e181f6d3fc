"""Cross-batch memory: a FIFO of past embeddings that pair-based losses mine against."""

import numpy as np
import pytest
import torch

from sktriplet.triplets.losses import TripletLoss
from sktriplet.triplets.memory import CrossBatchMemory, check_memory_loss
from sktriplet.triplets.pair_losses import ContrastiveLoss, MultiSimilarityLoss
from sktriplet.triplets.proxy_losses import ArcFaceLoss
from tests.reference import (
    reference_anchored_triplets,
    reference_contrastive,
    reference_ms_mining,
    reference_multi_similarity,
    reference_pairs,
    reference_triplet_loss,
)

TOL = {"rel": 2e-5, "abs": 2e-6}


def batches(seed, n_batches=3, size=8, dim=5, n_classes=6):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        z = torch.nn.functional.normalize(torch.randn(size, dim, generator=g), dim=1)
        out.append((z, torch.randint(0, n_classes, (size,), generator=g)))
    return out


def test_the_memory_is_a_fifo_of_fixed_size_buffers():
    memory = CrossBatchMemory(TripletLoss(), n_components=5, memory_size=10)
    state = memory.state_dict()
    assert {"memory_embeddings", "memory_labels", "memory_pointer", "memory_filled"} <= set(state)
    assert state["memory_embeddings"].shape == (10, 5) and state["memory_labels"].shape == (10,)
    seen_z, seen_y = [], []
    for z, y in batches(0, n_batches=4, size=4):
        memory.enqueue(z, y)
        seen_z.append(z)
        seen_y.append(y)
    # 16 seen, 10 kept: the newest, oldest first.
    z, y = memory.memory()
    torch.testing.assert_close(z, torch.cat(seen_z)[-10:])
    assert torch.equal(y, torch.cat(seen_y)[-10:])
    assert int(memory.memory_filled) == 10 and int(memory.memory_pointer) == 6
    assert memory.memory_embeddings.shape == (10, 5)  # never grows
    memory.memory_size = 4  # resizing keeps the newest
    torch.testing.assert_close(memory.memory()[0], torch.cat(seen_z)[-4:])
    memory.memory_size = 12
    assert int(memory.memory_filled) == 4 and memory.memory_embeddings.shape == (12, 5)
    torch.testing.assert_close(memory.memory()[0], torch.cat(seen_z)[-4:])
    memory.reset_memory()
    assert int(memory.memory_filled) == 0 and memory.memory()[0].shape == (0, 5)


def test_a_batch_larger_than_the_memory_keeps_its_last_samples():
    memory = CrossBatchMemory(ContrastiveLoss(), n_components=5, memory_size=3)
    ((z, y),) = batches(1, n_batches=1, size=8)
    memory.enqueue(z, y)
    torch.testing.assert_close(memory.memory()[0], z[-3:])
    assert torch.equal(memory.memory()[1], y[-3:])


def _fill(memory, seed):
    *earlier, (z, y) = batches(seed)
    for zi, yi in earlier:
        memory(zi, yi)  # training mode: each batch is enqueued after its loss
    return z, y


def _everything(memory, z, y):
    past_z, past_y = memory.memory()
    return torch.cat([z, past_z]).numpy(), torch.cat([y, past_y]).numpy()


@pytest.mark.parametrize("mining", ["semihard", "hard"])
def test_triplets_mined_against_batch_and_memory(mining):
    memory = CrossBatchMemory(TripletLoss(mining=mining, margin=0.3), 5, memory_size=12)
    z, y = _fill(memory, 2)
    emb, labels = _everything(memory, z, y)
    triplets = reference_anchored_triplets(emb, labels, mining, "sqeuclidean", len(z))
    expected = reference_triplet_loss(
        emb, list(zip(*triplets, strict=True)), 0.3, "none", "sqeuclidean", False
    )
    assert memory(z, y).item() == pytest.approx(expected, **TOL)


def test_contrastive_pairs_against_batch_and_memory():
    memory = CrossBatchMemory(ContrastiveLoss(distance="euclidean"), 5, memory_size=12)
    z, y = _fill(memory, 3)
    emb, labels = _everything(memory, z, y)
    pos, neg = reference_pairs(labels, n_anchors=len(z))
    expected = reference_contrastive(emb, pos, neg, "euclidean", 0.0, 1.0)
    assert memory(z, y).item() == pytest.approx(expected, **TOL)


def test_multi_similarity_against_batch_and_memory_averages_over_the_batch():
    memory = CrossBatchMemory(MultiSimilarityLoss(), 5, memory_size=12)
    z, y = _fill(memory, 4)
    emb, labels = _everything(memory, z, y)
    pos, neg = reference_ms_mining(emb, labels, 0.1, n_anchors=len(z))
    expected = reference_multi_similarity(emb, pos, neg, 2.0, 50.0, 0.5, len(z))
    assert memory(z, y).item() == pytest.approx(expected, **TOL)


def test_gradients_reach_the_batch_only_and_evaluation_does_not_write():
    memory = CrossBatchMemory(TripletLoss(), 5, memory_size=12)
    z, y = _fill(memory, 5)
    before = memory.memory_embeddings.clone()
    z = z.clone().requires_grad_()
    memory(z, y).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert not memory.memory_embeddings.requires_grad
    torch.testing.assert_close(memory.memory()[0][-8:], z.detach())  # enqueued after
    memory.eval()
    filled, pointer = int(memory.memory_filled), int(memory.memory_pointer)
    memory(z.detach(), y)
    assert (int(memory.memory_filled), int(memory.memory_pointer)) == (filled, pointer)
    assert not torch.equal(before, memory.memory_embeddings)


def test_an_empty_memory_gives_the_losss_own_value():
    ((z, y),) = batches(6, n_batches=1, size=12)
    for loss in (TripletLoss(), ContrastiveLoss(), MultiSimilarityLoss()):
        got = CrossBatchMemory(loss, 5, memory_size=4)(z, y)
        torch.testing.assert_close(got, loss(z, y))


def test_what_cannot_be_wrapped_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="memory_size needs a pair-based loss"):
        CrossBatchMemory(ArcFaceLoss(3, 5), 5)
    with pytest.raises(ValueError, match="mining='all'"):
        CrossBatchMemory(TripletLoss(mining="all"), 5)
    with pytest.raises(ValueError, match="mining='all'"):
        check_memory_loss(TripletLoss, "all")
    check_memory_loss(ContrastiveLoss, "all")  # contrastive takes no mining
    memory = CrossBatchMemory(TripletLoss(), 5, memory_size=4)
    ((z, y),) = batches(7, n_batches=1)
    with pytest.raises(ValueError, match="needs class labels"):
        memory(z)
    with pytest.raises(ValueError, match="mines its own"):
        memory(z, y, indices_tuple=(y, y, y))


def test_contrastive_memory_matches_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    ours = CrossBatchMemory(ContrastiveLoss(distance="euclidean"), 5, memory_size=20)
    distances = pytest.importorskip("pytorch_metric_learning.distances")
    # PML's memory holds the current batch too (enqueued before the loss): its
    # memory_size is ours plus the batch size.
    theirs = losses.CrossBatchMemory(
        losses.ContrastiveLoss(distance=distances.LpDistance(power=1)),
        embedding_size=5,
        memory_size=20 + 6,
    )
    for z, y in batches(8, n_batches=8, size=6):
        assert ours(z, y).item() == pytest.approx(theirs(z, y).item(), **TOL)


def test_memory_costs_rows_of_the_batch_not_a_square_of_the_memory():
    # Mining a batch of 16 against a memory of 4096 builds 16 x 4112 distances,
    # not 4112 x 4112: the largest tensor the loss allocates stays small.
    memory = CrossBatchMemory(TripletLoss(), 8, memory_size=4096)
    g = torch.Generator().manual_seed(0)
    memory.enqueue(torch.randn(4096, 8, generator=g), torch.randint(0, 50, (4096,), generator=g))
    z = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1)
    sizes = []
    with torch.profiler.profile(profile_memory=True) as prof:
        memory(z, torch.randint(0, 50, (16,), generator=g))
    for event in prof.key_averages():
        sizes.append(event.cpu_memory_usage)
    assert max(sizes) < 4112 * 4112 * 4 // 8, max(sizes)
    assert np.isfinite(sizes).all()
