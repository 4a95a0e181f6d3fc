"""TripletEmbedder on image files: any size and mode, lazily, in every entry point."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from sktriplet import OpenSetKNeighborsClassifier, TripletEmbedder, load, save
from sktriplet.vision.decode import ImageFileError

MODES = ["RGB", "L", "RGBA", "P", "CMYK", "I;16"]
FAST = dict(
    image_size=12, max_epochs=2, batch_size=12, samples_per_class=3, random_state=0,
    iterator_train__num_workers=0, iterator_valid__num_workers=0,
)


def _save(img: Image.Image, path: str) -> None:
    if img.mode == "CMYK":
        img.save(path, format="JPEG")
    else:
        img.save(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 classes x 6 files of mixed sizes, modes and formats; class = brightness."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for c in range(4):
        for i in range(6):
            h, w = (int(v) for v in rng.integers(14, 50, 2))
            base = (rng.random((h, w, 3)) * 40 + 30 + 50 * c).astype(np.uint8)
            mode = MODES[(c + i) % len(MODES)]
            if mode == "I;16":
                img = Image.fromarray(base[..., 0].astype(np.uint16) * 257)
            else:
                img = Image.fromarray(base).convert(mode)
            ext = "jpg" if mode in ("CMYK", "RGB") else "png"
            path = os.path.join(root, f"c{c}_{i}.{ext}")
            _save(img, path)
            paths.append(path)
            labels.append(f"class{c}")
    return paths, np.array(labels)


@pytest.fixture(scope="module")
def fitted(folder):
    paths, y = folder
    return TripletEmbedder(**FAST).fit(paths, y)


def test_fit_transform_on_mixed_sizes_and_modes(fitted, folder):
    paths, y = folder
    Z = fitted.transform(paths)
    assert Z.shape == (len(paths), 64) and Z.dtype == np.float32
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    assert fitted.input_spec_.kind == "paths"
    assert fitted.input_shape_ == (3, 12, 12)  # colour files present: RGB
    # Brightness classes are easy: retrieval must be far above chance (0.25).
    assert fitted.score(paths, y) > 0.6


def test_list_array_series_and_dataframe_embed_identically(fitted, folder):
    paths, _ = folder
    Z = fitted.transform(paths)
    for X in (np.array(paths), pd.Series(paths), pd.DataFrame({"path": paths}), tuple(paths)):
        np.testing.assert_array_equal(fitted.transform(X), Z)


def test_saved_model_embeds_files_identically(fitted, folder, tmp_path):
    paths, _ = folder
    save(fitted, tmp_path / "m.sktriplet")
    loaded = load(tmp_path / "m.sktriplet")
    assert loaded.input_spec_ == fitted.input_spec_
    np.testing.assert_array_equal(loaded.transform(paths), fitted.transform(paths))


def test_workers_do_not_change_the_result(folder):
    paths, y = folder
    params = {**FAST, "iterator_train__num_workers": 2, "iterator_valid__num_workers": 2}
    with_workers = TripletEmbedder(**params).fit(paths, y)
    without = TripletEmbedder(**FAST).fit(paths, y)
    np.testing.assert_allclose(with_workers.transform(paths), without.transform(paths), atol=1e-6)


def test_grey_folder_gives_one_channel(tmp_path):
    paths = []
    for i in range(8):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((10 + i, 12, 3), 20 * i, np.uint8)).convert("L").save(p)
        paths.append(str(p))
    emb = TripletEmbedder(**FAST).fit(paths, [0, 0, 0, 0, 1, 1, 1, 1])
    assert emb.input_shape_ == (1, 12, 12)


def test_missing_file_is_named_before_training(folder, tmp_path):
    paths, y = folder
    missing = str(tmp_path / "nope.jpg")
    est = TripletEmbedder(**FAST)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        est.fit([*paths, missing], [*y, "class0"])
    assert not hasattr(est, "net_")  # nothing half-fitted


def test_corrupt_file_is_named(folder, tmp_path):
    paths, y = folder
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    est = TripletEmbedder(**FAST)
    with pytest.raises(ImageFileError, match="broken.jpg"):
        est.fit([*paths, str(bad)], [*y, "class0"])
    assert not hasattr(est, "net_")


def test_on_error_skip_warns_and_trains(folder, tmp_path):
    paths, y = folder
    missing = str(tmp_path / "gone.png")
    with pytest.warns(UserWarning, match="gone.png"):
        est = TripletEmbedder(**FAST, on_error="skip").fit([*paths, missing], [*y, "class1"])
    assert est.transform(paths[:3]).shape == (3, 64)


def test_transform_needs_files_when_fitted_on_files(fitted):
    with pytest.raises(ValueError, match="file paths"):
        fitted.transform(np.zeros((2, 3, 12, 12), np.float32))


def test_paths_to_a_model_fitted_on_arrays_get_the_right_hint(folder):
    paths, _ = folder
    rng = np.random.default_rng(0)
    est = TripletEmbedder(max_epochs=1, random_state=0).fit(
        rng.normal(size=(20, 4)), np.repeat([0, 1], 10)
    )
    with pytest.raises(ValueError, match="fit it on image files"):
        est.transform(paths)


def test_pipeline_grid_search_and_open_set_on_files(folder):
    paths, y = folder
    paths = np.array(paths)
    pipe = make_pipeline(TripletEmbedder(**{**FAST, "max_epochs": 1}), KNeighborsClassifier(3))
    grid = GridSearchCV(pipe, {"tripletembedder__margin": [0.1, 0.3]}, cv=2).fit(paths, y)
    assert grid.best_params_["tripletembedder__margin"] in (0.1, 0.3)
    assert grid.predict(paths[:4]).shape == (4,)
    clf = OpenSetKNeighborsClassifier(
        embedder=TripletEmbedder(**{**FAST, "max_epochs": 1}), n_neighbors=1
    )
    clf.fit(paths, y)
    assert clf.predict(paths[:4]).shape == (4,)


def test_clone_keeps_image_parameters():
    est = TripletEmbedder(image_size=(16, 24), channels=1, on_error="skip")
    assert clone(est).get_params()["image_size"] == (16, 24)


def test_bad_image_parameters_are_refused(folder):
    paths, y = folder
    with pytest.raises(ValueError, match="image_size"):
        TripletEmbedder(image_size=(0, 5)).fit(paths, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="channels"):
            TripletEmbedder(channels=2).fit(paths, y)
