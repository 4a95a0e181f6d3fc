from collections import Counter

import numpy as np
import pytest

from sktriplet.training.sampling import MIN_BATCHES_PER_EPOCH, PKSampler


def _labels(seed=0, n_classes=12, low=1, high=30):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(low, high, size=n_classes)
    return np.repeat(np.arange(n_classes), sizes)


def test_every_batch_has_p_classes_with_k_samples():
    labels = _labels()
    anchors = {c for c, n in Counter(labels).items() if n >= 2}
    sampler = PKSampler(labels, batch_size=32, samples_per_class=4, random_state=0)
    for batch in sampler:
        counts = Counter(labels[batch])
        multi = {c: n for c, n in counts.items() if n >= 2}
        assert len(multi) == 8
        assert set(multi.values()) == {4}
        assert set(multi) <= anchors


def test_singletons_only_as_negatives_and_once_per_epoch():
    labels = np.array([0] * 10 + [1] * 10 + [2, 3, 4])
    sampler = PKSampler(labels, batch_size=8, samples_per_class=4, random_state=1)
    seen = Counter()
    for batch in sampler:
        seen.update(int(i) for i in batch if labels[i] >= 2)
    assert seen == Counter({20: 1, 21: 1, 22: 1})


def test_epoch_is_about_one_pass_and_covers_the_data():
    labels = np.repeat(np.arange(20), 25)
    sampler = PKSampler(labels, batch_size=50, samples_per_class=5, random_state=0)
    assert len(sampler) == 10
    drawn = np.concatenate([np.asarray(b) for b in sampler])
    assert len(drawn) == 500
    # Classes are drawn by size and queues cycle: most samples appear.
    assert len(np.unique(drawn)) > 0.55 * 500


def test_small_classes_are_drawn_with_replacement():
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    sampler = PKSampler(labels, batch_size=8, samples_per_class=4, random_state=0)
    for batch in sampler:
        # two classes of four, although classes 0 and 2 have only two samples
        assert sorted(Counter(labels[batch]).values()) == [4, 4]


def test_fewer_classes_than_p_fills_the_batch():
    labels = np.repeat(np.arange(3), 40)
    sampler = PKSampler(labels, batch_size=60, samples_per_class=4, random_state=0)
    for batch in sampler:
        assert len(batch) == 60
        assert Counter(labels[batch]) == Counter({0: 20, 1: 20, 2: 20})


def test_reproducible_and_epochs_differ():
    labels = _labels(1)
    a = list(PKSampler(labels, batch_size=16, samples_per_class=4, random_state=3))
    b = list(PKSampler(labels, batch_size=16, samples_per_class=4, random_state=3))
    assert a == b
    s = PKSampler(labels, batch_size=16, samples_per_class=4, random_state=3)
    first, second = list(s), list(s)
    assert first != second
    # A sampler started at epoch 1 continues the sequence of one at epoch 0.
    assert (
        list(PKSampler(labels, batch_size=16, samples_per_class=4, random_state=3, epoch=1))
        == second
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples_per_class": 1}, "samples_per_class=1 must be at least 2"),
        ({"batch_size": 2, "samples_per_class": 4}, "batch_size=2 must be at least"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PKSampler([0, 0, 1, 1], **kwargs)


def test_all_singletons_is_refused():
    with pytest.raises(ValueError, match="every class has a single sample"):
        PKSampler([0, 1, 2, 3])


def test_min_batches_floors_a_tiny_epoch():
    labels = np.repeat(np.arange(5), 8)  # 40 samples: one batch of 128 would cover them
    assert len(PKSampler(labels, batch_size=128, samples_per_class=8, min_batches=1)) == 1
    sampler = PKSampler(labels, batch_size=128, samples_per_class=8, random_state=0)
    assert len(sampler) == MIN_BATCHES_PER_EPOCH >= 2
    batches = list(sampler)
    assert len(batches) == MIN_BATCHES_PER_EPOCH
    for batch in batches:  # every batch is a full PK batch (5 classes x 25)
        assert Counter(labels[batch]) == Counter({c: 25 for c in range(5)})


def test_min_batches_leaves_normal_sizes_alone():
    labels = _labels(2, n_classes=40, low=20, high=40)
    assert len(labels) > (MIN_BATCHES_PER_EPOCH - 1) * 128
    floored = list(PKSampler(labels, batch_size=128, random_state=4))
    plain = list(PKSampler(labels, batch_size=128, random_state=4, min_batches=1))
    assert floored == plain
    assert len(plain) == int(np.ceil(len(labels) / 128))
    # An explicit n_batches wins over the floor.
    pk = {"batch_size": 4, "samples_per_class": 2}
    assert len(PKSampler([0, 0, 1, 1], n_batches=1, min_batches=8, **pk)) == 1


def test_min_batches_must_be_positive():
    with pytest.raises(ValueError, match="min_batches=0 must be at least 1"):
        PKSampler([0, 0, 1, 1], min_batches=0)


def test_floor_trains_a_40_sample_fit_further():
    # 40 samples, 3 epochs: without a floor 3 optimizer steps, by default
    # 3 * MIN_BATCHES_PER_EPOCH, with a floor of 4 twelve; the fit with four
    # batches per epoch ends with a clearly lower training loss (measured:
    # about 0.12 against 0.02-0.05).

    from sktriplet import TripletEmbedder

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    X = rng.normal(size=(40, 16)).astype(np.float32)
    X[:, :2] += 1.5 * rng.normal(size=(4, 2))[y]

    def final_loss(**params):
        # lr given: "auto" would budget the steps of a fit on 4 classes.
        est = TripletEmbedder(max_epochs=3, random_state=0, device="cpu", lr=1e-3, **params)
        est.fit(X, y)
        steps = sum(len(row["batches"]) for row in est.net_.history)
        return est.net_.history[-1, "train_loss"], steps

    _, steps_default = final_loss()
    loss_floor, steps_floor = final_loss(iterator_train__min_batches=4)
    loss_none, steps_none = final_loss(iterator_train__min_batches=1)
    assert (steps_none, steps_default, steps_floor) == (3, 3 * MIN_BATCHES_PER_EPOCH, 12)
    assert loss_floor < 0.5 * loss_none
