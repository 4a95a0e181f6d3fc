"""``TripletEmbedder.fit(X, y, sample_weight=w)``: a weight per sample in the mined loss.

Unit weights train bitwise as no weights on every labelled route (rows,
images in memory, image files through a cached frozen backbone,
``freeze="auto"``'s cached top blocks); weights that matter change the fit;
zero weights on one class's anchors stop its samples being pulled together;
scikit-learn's searches split the weights with the samples (compared with a
manual split); bad weights and compositions that cannot take weights are
refused before anything is fitted. The loss itself is checked against loop
oracles in ``test_sample_weights_loss.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from torch import nn

import sktriplet.training.top_blocks as top_blocks
from sktriplet import TripletEmbedder
from sktriplet.networks import BackboneEmbedder
from sktriplet.training.checkpoints import CheckpointMismatchError

from .test_top_blocks import PARAMS as BLOCK_PARAMS
from .test_top_blocks import X as BLOCK_X
from .test_top_blocks import Y as BLOCK_Y

FAST = dict(
    max_epochs=3, batch_size=32, samples_per_class=4, n_components=8, random_state=0,
    device="cpu", module__hidden_units=(16,),
)
pytestmark = pytest.mark.filterwarnings("ignore::sktriplet.training.callbacks.CollapseWarning")


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 12)
    X = (rng.normal(size=(48, 6)) + 1.5 * np.eye(4, 6)[y]).astype(np.float32)
    w = rng.choice([0.5, 1.0, 3.0], size=len(y))
    return X, y, w


def test_unit_weights_train_bitwise_as_no_weights(rows):
    X, y, _ = rows
    plain = TripletEmbedder(**FAST).fit(X, y)
    ones = TripletEmbedder(**FAST).fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(ones.transform(X), plain.transform(X))
    np.testing.assert_array_equal(
        ones.net_.history[:, "train_loss"], plain.net_.history[:, "train_loss"]
    )


@pytest.mark.parametrize("extra", [{"classification_weight": 0.5}, {"mining": "all"},
                                   {"mining": "hard", "validation_fraction": 0.5}])
def test_unit_weights_train_bitwise_as_no_weights_with_other_settings(rows, extra):
    X, y, _ = rows
    plain = TripletEmbedder(**FAST, **extra).fit(X, y)
    ones = TripletEmbedder(**FAST, **extra).fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(ones.transform(X), plain.transform(X))


def test_weights_that_matter_change_the_fit(rows):
    X, y, w = rows
    plain = TripletEmbedder(**FAST).fit(X, y)
    weighted = TripletEmbedder(**FAST).fit(X, y, sample_weight=w)
    assert np.abs(weighted.transform(X) - plain.transform(X)).max() > 1e-3
    # Scaling every weight by the same factor changes nothing (a weighted mean).
    scaled = TripletEmbedder(**FAST).fit(X, y, sample_weight=4 * w)
    np.testing.assert_allclose(scaled.transform(X), weighted.transform(X), atol=1e-5)


def _spread(Z, members):
    """Mean squared distance between the samples of one class."""
    d = ((Z[members][:, None] - Z[members][None]) ** 2).sum(-1)
    n = len(members)
    return d.sum() / (n * (n - 1))


def test_zero_weights_on_a_class_leave_its_samples_apart():
    """Nothing pulls class 0 together when its anchors weigh 0; the others still are.

    The references are the untrained network and the unweighted fit. With
    the other classes' anchors only, no term pulls class 0's samples together
    (they enter the loss only as negatives, pushed away from the other
    classes): class 0 stays far wider than in the unweighted fit and than the
    other classes, which tighten as they do without weights.
    """
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 16)
    X = (rng.normal(size=(64, 8)) + 1.0 * np.eye(4, 8)[y]).astype(np.float32)
    params = {**FAST, "max_epochs": 15, "n_components": 4, "lr": 0.05}
    start = TripletEmbedder(**{**params, "max_epochs": 0}).fit(X, y).transform(X)
    plain = TripletEmbedder(**params).fit(X, y).transform(X)
    w = np.where(y == 0, 0.0, 1.0)
    weighted = TripletEmbedder(**params).fit(X, y, sample_weight=w).transform(X)
    spread = {
        name: np.array([_spread(Z, np.flatnonzero(y == c)) for c in range(4)])
        for name, Z in [("start", start), ("plain", plain), ("weighted", weighted)]
    }
    assert (spread["plain"] < 0.8 * spread["start"]).all()  # training tightens every class
    assert (spread["weighted"][1:] < 0.8 * spread["start"][1:]).all()
    assert spread["weighted"][0] > 2 * spread["plain"][0]  # class 0 is not pulled together
    assert spread["weighted"][0] > spread["weighted"][1:].max()


@pytest.mark.filterwarnings("ignore:The scoring TripletEmbedder.score does not support")
def test_cross_val_score_splits_the_weights_as_a_manual_split(rows):
    X, y, w = rows
    est = TripletEmbedder(**FAST)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(est, X, y, cv=cv, params={"sample_weight": w})
    manual = [
        clone(est).fit(X[tr], y[tr], sample_weight=w[tr]).score(X[te], y[te])
        for tr, te in cv.split(X, y)
    ]
    np.testing.assert_array_equal(scores, manual)
    unweighted = cross_val_score(est, X, y, cv=cv)
    assert not np.array_equal(scores, unweighted)
    grid = GridSearchCV(est, {"margin": [0.2, 0.5]}, cv=cv).fit(X, y, sample_weight=w)
    assert grid.best_params_["margin"] in (0.2, 0.5)


@pytest.mark.parametrize(
    ("params", "weights", "match"),
    [
        ({}, np.ones(5), "one weight per sample"),
        ({}, -np.ones(48), "non-negative"),
        ({}, np.full(48, np.nan), "non-negative"),
        ({}, np.zeros(48), "all zero"),
        ({}, np.ones((48, 1)), "one weight per sample"),
        ({"memory_size": 64}, np.ones(48), "memory_size=64.*Switch memory_size off"),
        ({"criterion": "contrastive"}, np.ones(48), "criterion='contrastive' does not"),
    ],
)
def test_bad_weights_get_a_clear_error_and_fit_nothing(rows, params, weights, match):
    X, y, _ = rows
    est = TripletEmbedder(**FAST, **params)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y, sample_weight=weights)
    assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]


def test_images_in_memory_unit_weights_train_as_none():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    X = (rng.random((24, 1, 10, 10)) * 80 + 60 * y[:, None, None, None]).astype(np.uint8)
    params = dict(max_epochs=2, batch_size=12, samples_per_class=4, n_components=4,
                  random_state=0, device="cpu")
    plain = TripletEmbedder(**params).fit(X, y)
    ones = TripletEmbedder(**params).fit(X, y, sample_weight=np.ones(24))
    np.testing.assert_array_equal(ones.transform(X), plain.transform(X))
    weighted = TripletEmbedder(**params).fit(X, y, sample_weight=np.arange(24) % 3)
    assert np.abs(weighted.transform(X) - plain.transform(X)).max() > 1e-3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """3 classes x 6 JPEGs (class = brightness), then a file of random bytes at position 4."""
    root = tmp_path_factory.mktemp("weighted_photos")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for c in range(3):
        for i in range(6):
            pixels = (rng.random((16, 14, 3)) * 200 + 15 * c).astype(np.uint8)  # overlapping
            path = root / f"c{c}_{i}.jpg"
            Image.fromarray(pixels).save(path, quality=90)
            paths.append(str(path))
            labels.append(c)
    bad = root / "random.jpg"
    bad.write_bytes(rng.bytes(300))
    paths.insert(4, str(bad))
    labels.insert(4, 0)
    return paths, np.array(labels)


def _cached_backbone(**extra):
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    return TripletEmbedder(
        module=BackboneEmbedder, module__backbone=trunk, module__freeze=True, image_size=12,
        max_epochs=2, batch_size=12, samples_per_class=3, random_state=0, device="cpu",
        iterator_train__num_workers=0, iterator_valid__num_workers=0, **extra,
    )


@pytest.mark.filterwarnings("ignore::sktriplet.vision.folders.LeftOutWarning")
def test_image_files_on_a_cached_backbone_take_the_weights_of_the_files_kept(files):
    paths, y = files
    good = [i for i in range(len(paths)) if i != 4]
    w = np.random.default_rng(2).choice([0.2, 1.0, 4.0], size=len(paths))
    kept = [paths[i] for i in good]
    plain = _cached_backbone().fit(kept, y[good])
    ones = _cached_backbone().fit(kept, y[good], sample_weight=np.ones(len(good)))
    np.testing.assert_array_equal(ones.transform(kept), plain.transform(kept))
    # on_error="skip" leaves the bad file out, and its weight with it.
    skipped = _cached_backbone(on_error="skip").fit(paths, y, sample_weight=w)
    direct = _cached_backbone(on_error="skip").fit(kept, y[good], sample_weight=w[good])
    np.testing.assert_array_equal(skipped.transform(kept), direct.transform(kept))
    assert np.abs(direct.transform(kept) - plain.transform(kept)).max() > 1e-3


def test_freeze_auto_top_blocks_take_the_weights(monkeypatch):
    monkeypatch.setattr(top_blocks, "AUTO_MIN_GAIN", -1.0)  # keep the blocks
    monkeypatch.setattr(top_blocks, "_plan_epochs", lambda *args: 2)  # not the clock
    params = {**BLOCK_PARAMS, "max_epochs": 2}
    plain = TripletEmbedder(**params).fit(BLOCK_X, BLOCK_Y)
    assert plain.freeze_ >= 1  # the top blocks trained
    ones = TripletEmbedder(**params).fit(BLOCK_X, BLOCK_Y, sample_weight=np.ones(len(BLOCK_Y)))
    np.testing.assert_array_equal(ones.transform(BLOCK_X), plain.transform(BLOCK_X))
    w = np.where(BLOCK_Y % 3 == 0, 3.0, 1.0)
    weighted = TripletEmbedder(**params).fit(BLOCK_X, BLOCK_Y, sample_weight=w)
    assert np.abs(weighted.transform(BLOCK_X) - plain.transform(BLOCK_X)).max() > 1e-3


def test_a_checkpoint_directory_of_a_fit_with_other_sample_weights_is_refused(rows, tmp_path):
    X, y, w = rows
    params = {**FAST, "max_epochs": 1}
    TripletEmbedder(**params, checkpoint_dir=tmp_path).fit(X, y, sample_weight=np.ones(len(y)))
    est = TripletEmbedder(**params, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="the data differ"):
        est.fit(X, y, sample_weight=w)
    assert not hasattr(est, "net_")
