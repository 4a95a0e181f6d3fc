"""NaN-proof training: property tests of the loss, and divergence in ``fit``."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skorch.callbacks import Callback
from torch import nn

from sktriplet import TripletEmbedder
from sktriplet.triplets.losses import triplet_loss

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
# Largest magnitude (log10) per dtype at which embeddings *and their gradients*
# are representable. float16 tops out at 65504 and the gradient of a squared
# distance is 2 * (x_a - x_n): four float16 embeddings at +-2e4 already get
# gradients of 3e4, so float16 embeddings stay within about 1e3 (times a
# normal draw). The loss itself always computes in float32 or float64.
MAX_LOG10 = {"float64": 6, "float32": 6, "bfloat16": 6, "float16": 3}


@st.composite
def batches(draw):
    """Embeddings and labels with awkward structure."""
    n = draw(st.integers(1, 24))
    dim = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    pattern = draw(st.sampled_from(["random", "one-class", "singletons", "pairs"]))
    if pattern == "one-class":
        labels = np.zeros(n, dtype=np.int64)
    elif pattern == "singletons":
        labels = np.arange(n)
    elif pattern == "pairs":
        labels = np.arange(n) // 2
    else:
        n_classes = draw(st.integers(1, n))
        labels = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    log10 = draw(st.floats(-6, MAX_LOG10[dtype]))
    emb = rng.normal(size=(n, dim)) * 10.0**log10
    geometry = draw(st.sampled_from(["random", "duplicates", "all-equal", "zeros", "unit"]))
    if geometry == "duplicates":  # some embeddings coincide exactly
        emb[rng.integers(0, n, size=n // 2)] = emb[rng.integers(0, n, size=n // 2)]
    elif geometry == "all-equal":
        emb[:] = emb[0]
    elif geometry == "zeros":
        emb[:] = 0.0
    elif geometry == "unit":
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-300)
    return emb, labels, dtype


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    batch=batches(),
    mining=st.sampled_from(["semihard", "hard", "all"]),
    distance=st.sampled_from(["sqeuclidean", "euclidean", "cosine"]),
    soft=st.booleans(),
    margin=st.sampled_from([0.0, 0.2, 1.0, 10.0]),
)
def test_loss_and_gradients_are_always_finite(batch, mining, distance, soft, margin):
    emb_np, labels_np, dtype = batch
    emb = torch.tensor(emb_np).to(DTYPES[dtype]).requires_grad_(True)
    assert torch.isfinite(emb).all()  # the generator keeps inputs representable
    labels = torch.from_numpy(labels_np)
    loss = triplet_loss(emb, labels, margin=margin, mining=mining, distance=distance, soft=soft)
    assert loss.ndim == 0
    assert torch.isfinite(loss), (loss, dtype)
    assert loss.item() >= 0
    loss.backward()
    assert emb.grad is not None and emb.grad.dtype == emb.dtype
    assert torch.isfinite(emb.grad).all(), dtype
    # No valid triplet (one class, or all labels distinct): zero loss and gradient.
    counts = np.bincount(labels_np)
    if counts.max() < 2 or (counts > 0).sum() < 2:
        assert loss.item() == 0.0
        assert not emb.grad.any()


def test_property_test_can_fail():
    # The property is not vacuous: a naive sqrt distance gives NaN gradients on
    # coinciding embeddings, exactly what the generator produces.
    emb = torch.zeros(4, 3, requires_grad=True)
    naive = ((emb[:, None] - emb[None]) ** 2).sum(-1).sqrt().sum()
    naive.backward()
    assert not torch.isfinite(emb.grad).all()
    emb.grad = None
    triplet_loss(emb, torch.tensor([0, 0, 1, 1]), distance="euclidean").backward()
    assert torch.isfinite(emb.grad).all()


# ------------------------------------------------------------ divergence
FAST = {"batch_size": 32, "samples_per_class": 4, "random_state": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def data(small_digits):
    X, y = small_digits
    return X[:160], y[:160]


@pytest.mark.parametrize(
    "params",
    [
        {"lr": 1e3},
        {"lr": 1e3, "optimizer": torch.optim.SGD},
        {"lr": 1e6, "optimizer": torch.optim.SGD, "mining": "all", "soft": True},
        {"lr": 1e30, "optimizer": torch.optim.SGD, "module": nn.Linear(64, 64), "margin": 1e10},
    ],
    ids=["adam-1e3", "sgd-1e3", "sgd-1e6-soft", "linear-1e30"],
)
def test_fit_never_returns_nan_embeddings(data, params):
    X, y = data
    emb = TripletEmbedder(max_epochs=3, **FAST, **params)
    try:
        Z = emb.fit_transform(X, y)
    except FloatingPointError as exc:
        assert "Lower the learning rate" in str(exc)
        assert not hasattr(emb, "net_")
    else:
        assert np.isfinite(Z).all()


def test_divergence_names_epoch_and_lower_lr(data):
    X, y = data
    emb = TripletEmbedder(
        max_epochs=3,
        module=nn.Linear(64, 64),
        lr=1e30,
        optimizer=torch.optim.SGD,
        margin=1e10,
        **FAST,
    )
    with pytest.raises(FloatingPointError, match=r"in epoch 1: training diverged. Lower the "):
        emb.fit(X, y)


def test_overflow_on_the_last_step_is_caught(data):
    # One batch per epoch, one epoch: the loss of that batch is finite, and only
    # the optimizer step after it blows up the network. Without the checks at
    # the end of training, fit would return and transform would give NaN.
    X, y = data
    emb = TripletEmbedder(
        max_epochs=1,
        module=nn.Linear(64, 64),
        lr=1e38,
        optimizer=torch.optim.SGD,
        margin=1.0,
        iterator_train__min_batches=1,
        **{**FAST, "batch_size": 160},
    )
    with pytest.raises(
        FloatingPointError,
        match=r"after 1 epoch\(s\) .* non-finite embeddings: training diverged. Lower the "
        r"learning rate \(lr=1e\+38 now, try lr=1e\+37\)",
    ):
        emb.fit(X, y)
    assert not hasattr(emb, "net_")


class CorruptWeights(Callback):
    """Set one weight to inf after every batch of epoch ``epoch``."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_batch_end(self, net, training=False, **kwargs):
        if len(net.history) == self.epoch:
            with torch.no_grad():
                next(net.module_.parameters()).view(-1)[0] = float("inf")


def test_non_finite_weights_at_epoch_end_stop_training(data):
    X, y = data
    # One batch per epoch, so the corrupted weights meet no loss before the epoch ends.
    emb = TripletEmbedder(
        max_epochs=3,
        callbacks=[CorruptWeights(2)],
        iterator_train__min_batches=1,
        **{**FAST, "batch_size": 160},
    )
    with pytest.raises(
        FloatingPointError, match=r"weights stopped being finite in epoch 2: training diverged"
    ):
        emb.fit(X, y)
    assert not hasattr(emb, "net_")


def test_transform_refuses_to_return_non_finite_embeddings(data):
    X, y = data
    emb = TripletEmbedder(max_epochs=1, **FAST).fit(X, y)
    with torch.no_grad():
        next(emb.net_.module_.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite embeddings for samples 0 to 159"):
        emb.transform(X)
