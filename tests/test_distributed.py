"""Global mining across processes equals one process on the concatenated batch.

The module-scoped fixture launches this file under ``torchrun`` with two CPU
processes (gloo backend); each process writes what it computed, and the
tests compare it with single-process references computed here.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

from sktriplet import TripletEmbedder
from sktriplet.training.distributed import (
    DistributedTripletLoss,
    ShardedPKSampler,
    all_gather_batch,
    is_distributed,
)
from sktriplet.training.sampling import PKSampler
from sktriplet.triplets.losses import triplet_loss

WORLD_SIZE = 2
CASES = [
    ("semihard", "sqeuclidean", False),
    ("hard", "sqeuclidean", False),
    ("all", "sqeuclidean", False),
    ("semihard", "euclidean", True),
]
FIT = dict(max_epochs=6, samples_per_class=8, lr=3e-3, device="cpu", random_state=0)


class LinearEmbedder(nn.Module):
    """A network without batch norm (whose statistics are per process)."""

    def __init__(self, n_features: int, n_components: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, 32), nn.Tanh(), nn.Linear(32, n_components))

    def forward(self, x):
        return F.normalize(self.body(x), dim=1)


def _fixed_batch():
    """25 samples: six classes of four and one singleton (shards of 13 and 12)."""
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(25, 10)).astype(np.float32))
    y = torch.from_numpy(np.r_[np.repeat(np.arange(6), 4), 6]).long()
    perm = torch.from_numpy(rng.permutation(25))
    return X[perm], y[perm]


def _model():
    torch.manual_seed(0)
    return LinearEmbedder(10, 8)


def _digits():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return X[:700], y[:700], X[700:1100], y[700:1100]


def _sample_weights(n):
    return np.random.default_rng(0).choice([0.5, 1.0, 3.0], size=n)


# ------------------------------------------------------------------ worker
def _worker(out: Path) -> None:
    from sktriplet.training.distributed import init_distributed

    torch.set_num_threads(1)
    rank, world = init_distributed()
    assert world == WORLD_SIZE and is_distributed()
    X, y = _fixed_batch()
    shard = np.array_split(np.arange(len(X)), world)[rank]
    result: dict = {"shard": shard, "cases": {}}
    for mining, distance, soft in CASES:
        # Parameter gradients after DDP's averaging (the default grad_scale).
        ddp = nn.parallel.DistributedDataParallel(_model())
        criterion = DistributedTripletLoss(mining=mining, distance=distance, soft=soft)
        loss = criterion(ddp(X[shard]), y[shard])
        loss.backward()
        grads = {n: p.grad.clone() for n, p in ddp.module.named_parameters()}
        # Embedding gradients with grad_scale=1: the local rows of the global gradient.
        emb = F.normalize(X[shard] @ torch.ones(10, 4), dim=1).requires_grad_()
        emb_loss = triplet_loss(
            *all_gather_batch(emb, y[shard], grad_scale=1.0),
            mining=mining,
            distance=distance,
            soft=soft,
        )
        emb_loss.backward()
        result["cases"][(mining, distance, soft)] = {
            "loss": loss.item(),
            "grads": grads,
            "emb_loss": emb_loss.item(),
            "emb_grad": emb.grad.clone(),
        }
    X_train, y_train, X_test, y_test = _digits()
    exact = TripletEmbedder(module=LinearEmbedder, n_components=16, batch_size=64, **FIT).fit(
        X_train, y_train
    )
    default = TripletEmbedder(batch_size=64, **FIT).fit(X_train, y_train)
    result["net_class"] = type(exact.net_).__name__
    result["exact_Z"] = exact.transform(X_test)
    result["exact_loss"] = exact.net_.history[:, "train_loss"]
    weighted = TripletEmbedder(module=LinearEmbedder, n_components=16, batch_size=64, **FIT)
    weighted.fit(X_train, y_train, sample_weight=_sample_weights(len(y_train)))
    result["weighted_Z"] = weighted.transform(X_test)
    result["default_map"] = default.score(X_test, y_test)
    result["pickle"] = pickle.dumps(default)
    result["pickled"] = pickle.loads(result["pickle"]).transform(X_test[:5])
    result["default_Z"] = default.transform(X_test[:5])
    # Validation and early stopping decide the same on every process.
    early = TripletEmbedder(
        batch_size=64, validation_fraction=0.3, n_iter_no_change=2, **{**FIT, "max_epochs": 8}
    ).fit(X_train, y_train)
    result["early"] = (early.best_epoch_, len(early.net_.history), early.transform(X_test[:5]))
    torch.save(result, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD_SIZE}",
        __file__,
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_loss_and_gradients_equal_single_process(ranks, case):
    mining, distance, soft = case
    X, y = _fixed_batch()
    model = _model()
    loss = triplet_loss(model(X), y, mining=mining, distance=distance, soft=soft)
    loss.backward()
    emb = F.normalize(X @ torch.ones(10, 4), dim=1).requires_grad_()
    emb_loss = triplet_loss(emb, y, mining=mining, distance=distance, soft=soft)
    emb_loss.backward()
    assert loss.item() > 0
    for rank in ranks:
        got = rank["cases"][case]
        assert got["loss"] == pytest.approx(loss.item(), rel=1e-6, abs=1e-7)
        assert got["emb_loss"] == pytest.approx(emb_loss.item(), rel=1e-6, abs=1e-7)
        for name, param in model.named_parameters():
            torch.testing.assert_close(got["grads"][name], param.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got["emb_grad"], emb.grad[rank["shard"]], rtol=1e-5, atol=1e-7)
    # The shards are disjoint and cover the batch, with unequal sizes.
    shards = [rank["shard"] for rank in ranks]
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(X)))
    assert [len(s) for s in shards] == [13, 12]


def test_distributed_fit_equals_single_process_with_global_batch(ranks):
    # Two processes with batch_size=64 draw the global batches of one process
    # with batch_size=128, so without batch norm they train the same network.
    X_train, y_train, X_test, _ = _digits()
    single = TripletEmbedder(module=LinearEmbedder, n_components=16, batch_size=128, **FIT)
    single.fit(X_train, y_train)
    assert type(single.net_).__name__ == "TripletNet"
    for rank in ranks:
        assert rank["net_class"] == "DistributedTripletNet"
        np.testing.assert_allclose(
            rank["exact_loss"], single.net_.history[:, "train_loss"], rtol=1e-4
        )
        np.testing.assert_allclose(rank["exact_Z"], single.transform(X_test), atol=1e-4)


def test_distributed_weighted_fit_gathers_the_weights_with_the_labels(ranks):
    # As above, with sample weights: each process's weights reach the global batch's loss.
    X_train, y_train, X_test, _ = _digits()
    single = TripletEmbedder(module=LinearEmbedder, n_components=16, batch_size=128, **FIT)
    single.fit(X_train, y_train, sample_weight=_sample_weights(len(y_train)))
    unweighted = ranks[0]["exact_Z"]
    assert np.abs(single.transform(X_test) - unweighted).max() > 1e-3
    for rank in ranks:
        np.testing.assert_allclose(rank["weighted_Z"], single.transform(X_test), atol=1e-4)


def test_distributed_fit_reaches_single_process_quality(ranks):
    # The default network has batch norm, whose statistics are per process:
    # not the same numbers, but the same retrieval quality.
    X_train, y_train, X_test, y_test = _digits()
    single = TripletEmbedder(batch_size=128, **FIT).fit(X_train, y_train)
    single_map = single.score(X_test, y_test)
    assert single_map > 0.5
    for rank in ranks:
        assert rank["default_map"] == pytest.approx(single_map, abs=0.05)
        np.testing.assert_array_equal(rank["pickled"], rank["default_Z"])
    assert ranks[0]["default_map"] == ranks[1]["default_map"]


def test_distributed_fit_unpickles_and_warm_starts_in_one_process(ranks):
    X_train, y_train, X_test, _ = _digits()
    est = pickle.loads(ranks[0]["pickle"])
    assert type(est.net_).__name__ == "DistributedTripletNet"
    # The workers run one thread, this process torch's default: equal up to
    # the rounding of a differently blocked matrix product.
    np.testing.assert_allclose(est.transform(X_test[:5]), ranks[0]["default_Z"], atol=1e-6)
    est.set_params(warm_start=True, max_epochs=1).fit(X_train, y_train)
    assert len(est.net_.history) == FIT["max_epochs"] + 1
    assert not np.array_equal(est.transform(X_test[:5]), ranks[0]["default_Z"])


def test_validation_and_early_stopping_agree_across_processes(ranks):
    (best0, epochs0, Z0), (best1, epochs1, Z1) = (rank["early"] for rank in ranks)
    assert (best0, epochs0) == (best1, epochs1)
    # Epoch 0 (the untrained network) competes too, so the best may be 0.
    assert 0 <= best0 <= epochs0 <= 8
    np.testing.assert_array_equal(Z0, Z1)


def test_sharded_sampler_partitions_global_batches():
    labels = np.repeat(np.arange(10), 7)
    pk = dict(batch_size=30, samples_per_class=5, random_state=3)
    shards = [ShardedPKSampler(labels, rank=r, world_size=3, **pk) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    for parts, batch in zip(zip(*shards, strict=True), PKSampler(labels, **pk), strict=True):
        assert sum(parts, []) == batch  # disjoint slices, union = the global batch
        assert all(len(p) == 10 for p in parts)
        # 6 classes x 5 samples over 3 processes: two whole classes each.
        assert all(len(set(labels[p])) == 2 for p in parts)


def test_single_process_is_a_no_op():
    emb = torch.randn(6, 3, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    out, out_labels = all_gather_batch(emb, labels)
    assert out is emb and torch.equal(out_labels, labels)
    loss = DistributedTripletLoss(mining="all")(emb, labels)
    assert loss.item() == pytest.approx(triplet_loss(emb, labels, mining="all").item())
    with pytest.raises(ValueError, match="rank=2"):
        ShardedPKSampler(labels.numpy(), batch_size=4, samples_per_class=2, rank=2, world_size=2)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
