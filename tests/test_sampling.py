from collections import Counter

import numpy as np
import pytest

from sktriplet.training.sampling import PKSampler


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
