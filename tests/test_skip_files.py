"""``on_error="skip"`` in ``fit``: files that do not decode are left out before anything reads them.

Issue 31, item 1: a truncated JPEG and a file of random bytes named ``.jpg``
stopped ``TripletEmbedder(on_error="skip").fit`` (the input statistics, the
feature-caching pass and the held-out set read files without labels, where
nothing can replace a bad file). Now validation decodes every file once,
small, and leaves out the bad ones with one warning naming them.
"""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import sktriplet.training.routine as routine_module  # the cached head caches there
from sktriplet import TripletEmbedder
from sktriplet.networks import BackboneEmbedder
from sktriplet.vision.decode import ImageFileError
from sktriplet.vision.folders import LeftOutWarning

FAST = dict(
    image_size=12, max_epochs=1, batch_size=12, samples_per_class=3, random_state=0,
    iterator_train__num_workers=0, iterator_valid__num_workers=0,
)


@pytest.fixture
def files(tmp_path):
    """4 classes x 6 JPEGs, then a truncated JPEG first in class 0 and random bytes in class 2.

    Returns the paths, their labels and the positions of the two bad files.
    """
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for c in range(4):
        for i in range(6):
            pixels = (rng.random((24, 20, 3)) * 60 + 40 * c).astype(np.uint8)
            path = tmp_path / f"c{c}_{i}.jpg"
            Image.fromarray(pixels).save(path, quality=90)
            paths.append(str(path))
            labels.append(f"class{c}")
    whole = open(paths[0], "rb").read()
    (tmp_path / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "random.jpg").write_bytes(rng.bytes(400))
    bad = {0: str(tmp_path / "truncated.jpg"), 13: str(tmp_path / "random.jpg")}
    for position, path in sorted(bad.items()):
        paths.insert(position, path)
        labels.insert(position, labels[position] if position < len(labels) else labels[-1])
    return paths, np.array(labels), sorted(bad)


def _left_out_warnings(caught, names):
    return [w for w in caught if any(n in str(w.message) for n in names)]


def _fit_recording(estimator, paths, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(paths, y)
    return caught


def test_skip_leaves_undecodable_files_out_of_a_small_cnn_fit_with_one_warning(files):
    paths, y, bad = files
    est = TripletEmbedder(
        **FAST, on_error="skip", validation_fraction=0.5, validation_split="class"
    )
    caught = _fit_recording(est, paths, y)
    (warning,) = _left_out_warnings(caught, ["truncated.jpg", "random.jpg"])
    assert warning.category is LeftOutWarning
    message = str(warning.message)
    assert "2 of 26 image files cannot be read" in message and "left out" in message
    assert paths[bad[0]] in message and paths[bad[1]] in message
    # validation_indices_ index the X given to fit: the held-out classes' good files
    held = est.validation_indices_
    assert not set(held) & set(bad)
    good = np.setdiff1d(np.arange(len(paths)), bad)
    expected = good[np.isin(y[good], np.unique(y[held]))]
    np.testing.assert_array_equal(np.sort(held), expected)
    assert len(np.unique(y[held])) == 2
    # transform keeps its rows: every file is needed, a bad one is named
    assert est.transform([paths[i] for i in good]).shape == (24, 64)
    with pytest.raises(ImageFileError, match="truncated.jpg"):
        est.transform(paths[:3])


def _tiny_trunk():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())


def test_skip_leaves_undecodable_files_out_of_a_cached_backbone_fit(files, monkeypatch):
    paths, y, bad = files
    cached = []

    def spy(extractor, dataset, **kwargs):
        cached.append(len(dataset))
        return real(extractor, dataset, **kwargs)

    real = routine_module.cache_features
    monkeypatch.setattr(routine_module, "cache_features", spy)
    est = TripletEmbedder(
        **FAST,
        module=BackboneEmbedder,
        module__backbone=_tiny_trunk(),
        module__freeze=True,
        on_error="skip",
    )
    caught = _fit_recording(est, paths, y)
    assert cached == [24]  # the frozen trunk's features, of the 24 good files only
    assert len(_left_out_warnings(caught, ["truncated.jpg", "random.jpg"])) == 1
    assert est.transform(paths[1:4]).shape == (3, 8)


def test_raise_still_stops_on_the_first_bad_file(files):
    paths, y, _ = files
    est = TripletEmbedder(**FAST)
    with pytest.raises(ImageFileError, match="truncated.jpg"):
        est.fit(paths, y)
    assert not hasattr(est, "net_")


def test_nothing_left_is_an_error(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        paths.append(str(path))
    with pytest.warns(LeftOutWarning), pytest.raises(ValueError, match="none of the 4"):
        TripletEmbedder(**FAST, on_error="skip").fit(paths, [0, 0, 1, 1])
