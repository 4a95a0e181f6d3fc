import numpy as np
import pytest
from torch import nn

from sktriplet.inputs.spec import InputSpec
from sktriplet.training.policy import (
    FEW_CLASS_LR_BUDGET,
    FEW_CLASSES,
    few_class_lr,
    is_pixel_like,
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
