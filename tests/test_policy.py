import numpy as np
import pytest
from torch import nn

from sktriplet.inputs.spec import InputSpec
from sktriplet.training.policy import (
    AUTO_BATCH_SIZE,
    FEW_CLASS_LR_BUDGET,
    FEW_CLASSES,
    MAX_TRIPLET_STEPS,
    few_class_lr,
    is_pixel_like,
    resolve_batch_size,
    resolve_lr,
    resolve_scaling,
    training_steps,
)


def _grey(rng, n=30, d=64, top=255):
    return rng.integers(0, top + 1, size=(n, d)).astype(np.float64)


@pytest.mark.parametrize("top", [1, 16, 255])
def test_grey_levels_are_pixel_like(top):
    rng = np.random.default_rng(0)
    X = _grey(rng, top=top)
    X[:, :10] = 0  # always-blank border pixels do not matter
    assert is_pixel_like(X)
    assert resolve_scaling("auto", X) == "global"


def test_unit_interval_floats_are_pixel_like():
    X = np.random.default_rng(1).uniform(0, 1, size=(20, 32))
    assert is_pixel_like(X)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.normal(size=(30, 64)),  # signed
        lambda rng: rng.uniform(0, 5, size=(30, 64)),  # non-integer beyond [0, 1]
        lambda rng: _grey(rng, d=8),  # too few columns for an image
        # columns in different units: most columns far below the largest range
        lambda rng: _grey(rng, d=64, top=3) * np.r_[np.ones(60), np.full(4, 1000.0)],
        lambda rng: np.zeros((10, 64)),  # nothing varies
    ],
)
def test_other_rows_are_not_pixel_like(make):
    X = make(np.random.default_rng(2))
    assert not is_pixel_like(X)
    assert resolve_scaling("auto", X) == "feature"


def test_resolve_scaling_keeps_explicit_choices_and_images():
    rng = np.random.default_rng(3)
    grey = _grey(rng)
    for choice in ("feature", "global", None):
        assert resolve_scaling(choice, grey) == choice
    images = rng.integers(0, 256, size=(5, 1, 8, 8)).astype(np.float32)
    assert resolve_scaling("auto", images) == "feature"


def test_training_steps_counts_batches_with_the_floor():
    # 1078 samples in batches of 128: ceil = 9 per epoch.
    assert training_steps(1078, batch_size=128, max_epochs=20) == 180
    assert training_steps(40, batch_size=128, max_epochs=30) == 30
    assert training_steps(40, batch_size=128, max_epochs=30, min_batches=4) == 120
    assert training_steps(1078, batch_size=128, max_epochs=0) == 0


def test_few_class_lr_spends_the_budget():
    assert few_class_lr(100, lr=1e-3, budget=5e-3) == pytest.approx(5e-5)
    assert few_class_lr(2, lr=1e-3, budget=5e-3) == 1e-3  # never above lr
    assert few_class_lr(0, lr=1e-3) == 1e-3
    # lr * steps never exceeds the budget
    for steps in (1, 7, 180, 10_000):
        assert few_class_lr(steps, lr=1e-3) * steps <= FEW_CLASS_LR_BUDGET * (1 + 1e-12)


def test_resolve_lr_only_for_few_classes_on_rows():
    rows, images = InputSpec("rows", (64,)), InputSpec("images", (1, 8, 8))
    auto = {"lr": "auto", "module": None, "batch_size": 64, "max_epochs": 20}
    few = np.repeat(np.arange(FEW_CLASSES - 4), 90)  # 540 samples: 9 batches of 64
    enough = np.repeat(np.arange(FEW_CLASSES), 54)
    assert resolve_lr(auto, rows, few) == pytest.approx(FEW_CLASS_LR_BUDGET / 180)
    assert resolve_lr(auto, rows, enough) == 1e-3
    assert resolve_lr(auto, images, few) == 2e-3  # a conv net starts from random features
    assert resolve_lr({**auto, "module": nn.Linear}, rows, few) == 1e-3
    assert resolve_lr(auto, rows, None) == 1e-3  # a loaded model: no labels
    assert resolve_lr({**auto, "lr": 0.05}, rows, few) == 0.05
    # A class with a single sample forms no pair and does not count.
    assert resolve_lr(auto, rows, np.r_[few, np.arange(10, 14)]) < 1e-3


def _steps(n_triplets, batch, epochs):
    """Optimizer steps of a triplet fit, one batch at a time (last batch smaller)."""
    per_epoch, left = 0, n_triplets
    while left > 0:
        per_epoch, left = per_epoch + 1, left - batch
    return epochs * per_epoch


def _auto(epochs, triplets=True):
    return {"batch_size": "auto", "max_epochs": epochs, "triplets": triplets}


@pytest.mark.parametrize("epochs", [1, 5, 30, 300])
@pytest.mark.parametrize("n_triplets", [10, 6_000, 93_599, 198_639, 283_770])
def test_auto_batch_is_the_smallest_that_keeps_the_step_bound(n_triplets, epochs):
    """``"auto"``: the least batch of at least 128 triplets within MAX_TRIPLET_STEPS steps."""
    batch = resolve_batch_size(_auto(epochs), n_triplets)
    assert batch >= AUTO_BATCH_SIZE == 128
    assert _steps(n_triplets, batch, epochs) <= MAX_TRIPLET_STEPS == 2000
    if batch > AUTO_BATCH_SIZE:  # one triplet fewer per batch would break the bound
        assert _steps(n_triplets, batch - 1, epochs) > MAX_TRIPLET_STEPS


def test_auto_batch_bounds_the_steps_of_huge_triplet_sets():
    for n_triplets in (10**6, 10**8, 10**10):
        batch = resolve_batch_size(_auto(30), n_triplets)
        assert 30 * -(-n_triplets // batch) <= MAX_TRIPLET_STEPS
    # more epochs than the bound: one batch an epoch (the user asked for the epochs)
    assert resolve_batch_size(_auto(5000), 10**6) == 10**6


def test_auto_batch_is_128_with_labels_and_explicit_batches_are_kept():
    assert resolve_batch_size(_auto(30, triplets=False), 10**7) == 128
    assert resolve_batch_size(_auto(30, triplets=False)) == 128
    assert resolve_batch_size({**_auto(30), "batch_size": 64}, 10**7) == 64
    # the digits check (6,000 triplets, 30 epochs: 1,410 steps) keeps 128
    assert resolve_batch_size(_auto(30), 6_000) == 128
