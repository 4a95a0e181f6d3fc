"""Interruption and resume: a stopped fit keeps its last completed epoch, and
a resumed fit ends with exactly the weights of an uninterrupted one, and two
fits with the same seed give bitwise-identical embeddings (CPU)."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, Checkpoint

from sktriplet import TripletEmbedder

FAST = {
    "batch_size": 32,
    "samples_per_class": 4,
    "n_components": 8,
    "random_state": 0,
    "device": "cpu",
    "module__hidden_units": (32,),
}


@pytest.fixture(scope="module")
def data(small_digits):
    X, y = small_digits
    return X[:160], y[:160]


class InterruptAt(Callback):
    """Raise KeyboardInterrupt once, after batch ``batch`` of epoch ``epoch`` (1-based)."""

    def __init__(self, epoch, batch=2, exc=KeyboardInterrupt):
        self.epoch = epoch
        self.batch = batch
        self.exc = exc

    def on_epoch_begin(self, net, **kwargs):
        self.seen_ = 0

    def on_batch_end(self, net, training=False, **kwargs):
        self.seen_ += 1
        if len(net.history) == self.epoch and self.seen_ == self.batch:
            if not getattr(self, "fired_", False):
                self.fired_ = True
                raise self.exc("stop")


def _weights(est):
    return {k: v.detach().clone() for k, v in est.net_.module_.state_dict().items()}


def assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_interrupt_mid_epoch_keeps_last_completed_epoch(data):
    X, y = data
    two = TripletEmbedder(max_epochs=2, **FAST).fit(X, y)
    cut = TripletEmbedder(max_epochs=4, callbacks=[InterruptAt(epoch=3)], **FAST)
    with pytest.warns(UserWarning, match=r"interrupted in epoch 3.*end of epoch 2"):
        cut.fit(X, y)
    # The batches of epoch 3 ran (and changed the weights) before the rollback.
    assert len(cut.net_.history) == 2
    assert_same_weights(cut, two)
    np.testing.assert_array_equal(cut.transform(X), two.transform(X))
    assert np.isfinite(cut.transform(X)).all()


def test_interrupt_in_first_epoch_keeps_initial_weights(data):
    X, y = data
    untrained = TripletEmbedder(max_epochs=0, **FAST).fit(X, y)
    cut = TripletEmbedder(max_epochs=3, callbacks=[InterruptAt(epoch=1)], **FAST)
    with pytest.warns(UserWarning, match=r"interrupted in epoch 1"):
        cut.fit(X, y)
    assert len(cut.net_.history) == 0
    assert_same_weights(cut, untrained)


def test_interrupted_then_warm_started_fit_equals_uninterrupted(data):
    X, y = data
    full = TripletEmbedder(max_epochs=4, **FAST).fit(X, y)
    cut = TripletEmbedder(max_epochs=4, callbacks=[InterruptAt(epoch=3)], **FAST)
    with pytest.warns(UserWarning, match="interrupted"):
        cut.fit(X, y)
    cut.set_params(warm_start=True, max_epochs=2, callbacks=None).fit(X, y)
    assert len(cut.net_.history) == 4
    assert_same_weights(cut, full)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_warm_start_resume_is_bitwise_equal_to_uninterrupted(data, dropout):
    X, y = data
    params = {**FAST, "module__dropout": dropout}
    full = TripletEmbedder(max_epochs=4, **params).fit(X, y)
    part = TripletEmbedder(max_epochs=2, warm_start=True, **params).fit(X, y)
    part.fit(X, y)  # two more epochs on the same network
    assert len(part.net_.history) == 4
    assert_same_weights(part, full)
    np.testing.assert_array_equal(part.transform(X), full.transform(X))
    # Sanity: the comparison can fail (a different seed gives other weights).
    other = TripletEmbedder(max_epochs=4, **{**params, "random_state": 1}).fit(X, y)
    assert not np.array_equal(other.transform(X), full.transform(X))


def test_checkpoint_and_load_params_resume_equals_uninterrupted(data, tmp_path):
    X, y = data
    full = TripletEmbedder(max_epochs=4, **FAST).fit(X, y)
    # A first process trains 2 epochs, checkpointing every epoch.
    cp = Checkpoint(dirname=str(tmp_path), monitor=None)
    TripletEmbedder(max_epochs=2, callbacks=[cp], **FAST).fit(X, y)
    # A second process builds the same network (0 epochs), loads the
    # checkpoint (module, optimizer, history) and continues.
    resumed = TripletEmbedder(max_epochs=0, **FAST).fit(X, y)
    resumed.net_.load_params(checkpoint=Checkpoint(dirname=str(tmp_path), monitor=None))
    assert len(resumed.net_.history) == 2
    resumed.set_params(warm_start=True, max_epochs=2).fit(X, y)
    assert len(resumed.net_.history) == 4
    assert_same_weights(resumed, full)


def test_failed_warm_start_fit_rolls_the_network_back(data):
    X, y = data
    fail = InterruptAt(epoch=2, exc=FloatingPointError)
    emb = TripletEmbedder(max_epochs=1, warm_start=True, callbacks=[fail], **FAST).fit(X, y)
    before = _weights(emb)
    net = emb.net_
    # The warm fit fails in its first epoch, after two optimizer steps.
    with pytest.raises(FloatingPointError, match="stop"):
        emb.set_params(max_epochs=3).fit(X, y)
    assert emb.net_ is net and len(net.history) == 1
    for key, value in _weights(emb).items():
        assert torch.equal(value, before[key]), key


class StopAtEpochEnd(Callback):
    """Raise KeyboardInterrupt at the end of an epoch, as skorch's EarlyStopping does."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt


def test_interrupt_at_epoch_end_keeps_that_epoch_without_warning(data, recwarn):
    X, y = data
    two = TripletEmbedder(max_epochs=2, **FAST).fit(X, y)
    stopped = TripletEmbedder(max_epochs=4, callbacks=[StopAtEpochEnd(2)], **FAST).fit(X, y)
    assert not [w for w in recwarn if "interrupted" in str(w.message)]
    assert len(stopped.net_.history) == 2
    assert_same_weights(stopped, two)


# ------------------------------------------------------------ reproducibility
def test_same_seed_gives_bitwise_identical_embeddings_for_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(48, 10, 10), dtype=np.uint8)
    labels = np.repeat(np.arange(6), 8)
    params = {**FAST, "max_epochs": 2, "batch_size": 16, "module__channels": (4, 8)}
    del params["module__hidden_units"]
    a = TripletEmbedder(**params).fit_transform(images, labels)
    b = TripletEmbedder(**params).fit_transform(images, labels)
    assert np.array_equal(a, b)
    c = TripletEmbedder(**{**params, "random_state": 1}).fit_transform(images, labels)
    assert not np.array_equal(a, c)


def test_same_seed_gives_bitwise_identical_embeddings_with_dropout(data):
    X, y = data
    params = {**FAST, "max_epochs": 2, "module__dropout": 0.3}
    a = TripletEmbedder(**params).fit_transform(X, y)
    b = TripletEmbedder(**params).fit_transform(X, y)
    assert np.array_equal(a, b)
