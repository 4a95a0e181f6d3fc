"""The learning-rate schedule follows its formula, epoch by epoch."""

import math

import numpy as np
import pytest
from skorch.callbacks import Callback

from sktriplet import TripletEmbedder
from sktriplet.training.schedules import CosineLR, cosine_factor

FAST = {"batch_size": 64, "samples_per_class": 4, "random_state": 0, "n_components": 8}


class LrSpy(Callback):
    """Record the optimizer's learning rate at every training batch (over fits)."""

    def __init__(self):
        self.seen_ = []

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            self.seen_.append((len(net.history), net.optimizer_.param_groups[0]["lr"]))


def expected_cosine(lr, max_epochs):
    """Independent formula: half ``lr`` in epoch 0, then cosine from ``lr`` to 0."""
    out = [lr / 2]
    for e in range(1, max_epochs):
        out.append(lr / 2 * (1 + np.cos(np.pi * (e - 1) / (max_epochs - 1))))
    return np.array(out)


def lr_per_epoch(spy):
    """The one learning rate used by every batch of each epoch (1-based epochs)."""
    epochs = sorted({e for e, _ in spy.seen_})
    per_epoch = []
    for epoch in epochs:
        lrs = {lr for e, lr in spy.seen_ if e == epoch}
        assert len(lrs) == 1, f"lr changed within epoch {epoch}: {lrs}"
        per_epoch.append(lrs.pop())
    return np.array(per_epoch)


def test_cosine_factor_matches_formula():
    assert cosine_factor(0, 10) == 1.0
    for e in range(10):
        assert cosine_factor(e, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * e / 10)))
    assert [cosine_factor(e, 5, warmup_epochs=2) for e in range(2)] == [1 / 3, 2 / 3]
    assert cosine_factor(2, 5, warmup_epochs=2) == 1.0
    assert 0 < cosine_factor(4, 5, warmup_epochs=2) < cosine_factor(3, 5, warmup_epochs=2)


@pytest.mark.parametrize("max_epochs", [1, 2, 6])
def test_cosine_schedule_per_epoch(small_digits, max_epochs):
    X, y = small_digits
    spy = LrSpy()
    emb = TripletEmbedder(
        max_epochs=max_epochs, lr=0.01, lr_schedule="cosine", callbacks=[spy], **FAST
    ).fit(X, y)
    want = expected_cosine(0.01, max_epochs)
    np.testing.assert_allclose(lr_per_epoch(spy), want, rtol=1e-12)
    np.testing.assert_allclose(emb.net_.history[:, "lr"], want, rtol=1e-12)
    # The optimizer gets the base lr back at the end.
    assert emb.net_.optimizer_.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("schedule", ["constant", None, "auto"])
def test_constant_schedule_keeps_lr(small_digits, schedule):
    X, y = small_digits
    spy = LrSpy()
    emb = TripletEmbedder(max_epochs=3, lr=0.01, lr_schedule=schedule, callbacks=[spy], **FAST)
    emb.fit(X, y)
    np.testing.assert_array_equal(lr_per_epoch(spy), [0.01] * 3)
    assert "lr" not in emb.net_.history[-1]


def test_warm_start_runs_the_schedule_again(small_digits):
    X, y = small_digits
    spy = LrSpy()
    emb = TripletEmbedder(
        max_epochs=3, lr=0.01, lr_schedule="cosine", warm_start=True, callbacks=[spy], **FAST
    )
    emb.fit(X, y)
    emb.set_params(max_epochs=4, lr=0.02).fit(X, y)
    got = lr_per_epoch(spy)
    assert len(got) == 7
    np.testing.assert_allclose(got[:3], expected_cosine(0.01, 3), rtol=1e-12)
    np.testing.assert_allclose(got[3:], expected_cosine(0.02, 4), rtol=1e-12)
    # Switching the schedule off for a further warm fit keeps the lr constant.
    emb.set_params(max_epochs=2, lr_schedule="constant").fit(X, y)
    np.testing.assert_array_equal(lr_per_epoch(spy)[7:], [0.02, 0.02])


def test_cosine_lr_callback_on_its_own(small_digits):
    X, y = small_digits
    spy = LrSpy()
    TripletEmbedder(
        max_epochs=4, lr=0.01, lr_schedule=None, callbacks=[CosineLR(), spy], **FAST
    ).fit(X, y)
    want = [0.01 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    np.testing.assert_allclose(lr_per_epoch(spy), want, rtol=1e-12)


def test_auto_is_cosine_for_images(small_digits):
    X, y = small_digits
    spy = LrSpy()
    images = X.reshape(-1, 8, 8)
    emb = TripletEmbedder(max_epochs=3, lr=0.01, callbacks=[spy], **FAST).fit(images, y)
    assert emb.lr_schedule == "auto"
    np.testing.assert_allclose(lr_per_epoch(spy), expected_cosine(0.01, 3), rtol=1e-12)


def test_cosine_schedule_survives_save_and_load(small_digits, tmp_path):
    from sktriplet import load, save

    X, y = small_digits
    emb = TripletEmbedder(max_epochs=2, lr_schedule="cosine", **FAST).fit(X, y)
    save(emb, tmp_path / "model")
    loaded = load(tmp_path / "model")
    assert loaded.lr_schedule == "cosine"
    np.testing.assert_allclose(loaded.transform(X[:20]), emb.transform(X[:20]), atol=1e-6)


def test_auto_lr_is_2e_3_for_images_and_1e_3_for_rows(small_digits):
    # The learning rates the optimizer actually applies, batch by batch.
    X, y = small_digits
    rows_spy, images_spy = LrSpy(), LrSpy()
    rows = TripletEmbedder(max_epochs=2, callbacks=[rows_spy], **FAST).fit(X, y)
    images = TripletEmbedder(max_epochs=3, callbacks=[images_spy], **FAST)
    images.fit(X.reshape(-1, 8, 8), y)
    assert rows.lr == images.lr == "auto"  # the parameter is left as given
    np.testing.assert_array_equal(lr_per_epoch(rows_spy), [1e-3, 1e-3])
    np.testing.assert_allclose(lr_per_epoch(images_spy), expected_cosine(2e-3, 3), rtol=1e-12)
    assert (rows.net_.lr, images.net_.lr) == (1e-3, 2e-3)


def test_explicit_lr_overrides_auto_and_warm_start_switches_to_it(small_digits):
    X, y = small_digits
    spy = LrSpy()
    emb = TripletEmbedder(max_epochs=2, warm_start=True, callbacks=[spy], **FAST).fit(X, y)
    emb.set_params(lr=5e-4).fit(X, y)
    emb.set_params(lr="auto").fit(X, y)
    np.testing.assert_array_equal(lr_per_epoch(spy), [1e-3] * 2 + [5e-4] * 2 + [1e-3] * 2)


@pytest.mark.parametrize("bad", ["fast", 0.0, -1e-3])
def test_bad_lr_is_rejected_before_fitting(small_digits, bad):
    X, y = small_digits
    emb = TripletEmbedder(max_epochs=1, lr=bad, **FAST)
    with pytest.raises(ValueError, match="'lr' parameter"):
        emb.fit(X, y)
    assert not hasattr(emb, "net_")


class GroupLrSpy(Callback):
    """Record every parameter group's learning rate at the first batch of each epoch."""

    def __init__(self):
        self.seen_ = {}

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            self.seen_.setdefault(len(net.history), [g["lr"] for g in net.optimizer_.param_groups])


def test_cosine_keeps_the_ratio_of_parameter_groups(small_digits):
    """A backbone's lower rate (optimizer__param_groups) is scaled, not overwritten."""
    X, y = small_digits
    spy = GroupLrSpy()
    emb = TripletEmbedder(
        max_epochs=3,
        lr=0.01,
        lr_schedule="cosine",
        callbacks=[spy],
        optimizer__param_groups=[("*layers.0.*", {"lr": 0.001})],
        module__hidden_units=(16,),
        **FAST,
    ).fit(X, y)
    want = [[lr / 10, lr] for lr in expected_cosine(0.01, 3)]
    np.testing.assert_allclose([spy.seen_[e] for e in (1, 2, 3)], want, rtol=1e-12)
    assert [g["lr"] for g in emb.net_.optimizer_.param_groups] == [0.001, 0.01]
