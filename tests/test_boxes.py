"""The input kind "boxes": a table of image files with crop boxes, cut out before resizing."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import sktriplet.embedder
from sktriplet import TripletEmbedder, load, save
from sktriplet.inputs.boxes import BOX_COLUMNS, as_box_table
from sktriplet.vision.decode import decode_image, header_size

FAST = dict(
    image_size=16,
    max_epochs=2,
    batch_size=12,
    samples_per_class=3,
    random_state=0,
    iterator_train__num_workers=0,
    iterator_valid__num_workers=0,
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """4 classes x 5 PNG photos: the object (brightness = class) in a noisy frame.

    Returns the box table, the labels, and the same regions saved as PNG files.
    """
    root = tmp_path_factory.mktemp("boxes")
    rng = np.random.default_rng(0)
    rows, labels, crops = [], [], []
    for c in range(4):
        for i in range(5):
            h, w = (int(v) for v in rng.integers(30, 60, 2))
            image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)  # clutter around it
            top, left = (int(v) for v in rng.integers(1, 8, 2))
            bottom, right = (
                top + int(rng.integers(12, h - 10)),
                left + int(rng.integers(12, w - 10)),
            )
            obj = rng.normal(60 * c + 40, 12, (bottom - top, right - left, 3))
            image[top:bottom, left:right] = np.clip(obj, 0, 255).astype(np.uint8)
            path = os.path.join(root, f"c{c}_{i}.png")
            Image.fromarray(image).save(path)
            crop = os.path.join(root, f"c{c}_{i}_crop.png")
            Image.fromarray(image[top:bottom, left:right]).save(crop)  # lossless
            rows.append((path, left, top, right, bottom))
            labels.append(c)
            crops.append(crop)
    table = pd.DataFrame(rows, columns=["path", *BOX_COLUMNS])
    return table, np.array(labels), crops


@pytest.fixture(scope="module")
def fitted(photos):
    table, y, _ = photos
    return TripletEmbedder(**FAST).fit(table, y)


def test_a_region_is_cut_out_before_resizing(tmp_path):
    # White everywhere but a black region: resizing the whole image with a
    # box would blend white into the region's border pixels; cutting it out
    # first does not.
    image = np.full((40, 60), 255, np.uint8)
    image[10:30, 20:44] = 0
    path = tmp_path / "frame.png"
    Image.fromarray(image).save(path)
    out = decode_image(path, channels=1, size=(5, 6), region=(20, 10, 44, 30))
    assert out.max() == 0
    Image.fromarray(image[10:30, 20:44]).save(tmp_path / "crop.png")
    whole = decode_image(tmp_path / "crop.png", channels=1, size=(5, 6))
    np.testing.assert_array_equal(out, whole)


def test_header_size_follows_the_exif_orientation(tmp_path):
    img = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: displayed as 30 high, 10 wide
    img.save(tmp_path / "r.jpg", exif=exif)
    assert header_size(tmp_path / "r.jpg") == (30, 10)
    assert decode_image(tmp_path / "r.jpg").shape[1:] == (30, 10)


def test_embeddings_equal_those_of_the_crops_saved_as_files(photos, fitted):
    table, y, crops = photos
    Z = fitted.transform(table)
    np.testing.assert_array_equal(Z, fitted.transform(crops))
    # Training on the crops as files gives the same network.
    on_crops = TripletEmbedder(**FAST).fit(crops, y)
    np.testing.assert_array_equal(on_crops.transform(crops), Z)
    assert fitted.input_spec_.kind == "boxes" and on_crops.input_spec_.kind == "paths"


def test_the_crop_changes_what_is_embedded(photos, fitted):
    table, _, _ = photos
    whole = fitted.transform(list(table["path"]))  # the same files, uncropped
    assert not np.allclose(whole, fitted.transform(table))


def test_scores_saves_and_loads(photos, fitted, tmp_path):
    table, y, _ = photos
    assert 0 <= fitted.score(table, y) <= 1
    # The checked table (what a caller such as the CLI may build first) works too.
    np.testing.assert_array_equal(fitted.transform(as_box_table(table)), fitted.transform(table))
    save(fitted, tmp_path / "m.sktriplet")
    loaded = load(tmp_path / "m.sktriplet")
    assert loaded.input_spec_ == fitted.input_spec_
    np.testing.assert_array_equal(loaded.transform(table), fitted.transform(table))


def test_some_but_not_all_box_columns_are_named():
    df = pd.DataFrame({"path": ["a.png"], "x_1": [0], "y_1": [0], "x_2": [3]})
    with pytest.raises(ValueError, match=r"but not 'y_2'"):
        as_box_table(df)
    with pytest.raises(ValueError, match=r"but not 'y_1', 'x_2', 'y_2'"):
        TripletEmbedder().fit(df[["path", "x_1"]], [0])


def test_a_path_column_alone_is_plain_files_and_other_columns_are_refused():
    assert as_box_table(pd.DataFrame({"path": ["a.png"]})) is None
    assert as_box_table(pd.DataFrame({"x": [1.0], "x_1": [2.0]})) is None  # feature rows
    df = pd.DataFrame({"path": ["a.png"], "label": [1], **{c: [1] for c in BOX_COLUMNS}})
    with pytest.raises(ValueError, match=r"'label'.*labels go to y"):
        as_box_table(df)


@pytest.mark.parametrize(
    "box, match",
    [
        ((2, 2, 2, 9), r"row 'b', .* is empty or inverted"),
        ((9, 2, 3, 8), r"row 'b', .* is empty or inverted"),
        ((1, np.nan, 5, 5), r"row 'b', .* is not finite"),
        ((1, 2, np.inf, 5), r"row 'b', .* is not finite"),
    ],
)
def test_empty_inverted_and_non_finite_boxes_name_the_row(box, match):
    df = pd.DataFrame(
        [("a.png", 0, 0, 4, 4), ("b.png", *box)], columns=["path", *BOX_COLUMNS], index=["a", "b"]
    )
    with pytest.raises(ValueError, match=match):
        as_box_table(df)


@pytest.mark.parametrize("box", [(-1, 0, 10, 10), (0, 0, 61, 10), (5, 5, 20, 999)])
def test_boxes_outside_the_image_are_refused_before_training(photos, monkeypatch, box):
    table, y, _ = photos
    bad = table.copy()
    bad.loc[7, list(BOX_COLUMNS)] = box
    width, height = Image.open(bad.loc[7, "path"]).size  # both below 60

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(sktriplet.embedder, "train", no_training)
    est = TripletEmbedder(**FAST)
    with pytest.raises(ValueError, match=rf"row 7, '.*c1_2.png': box .* in a {width}x{height}"):
        est.fit(bad, y)
    assert not hasattr(est, "net_")


def test_transform_checks_boxes_too_and_takes_whole_files(photos, fitted):
    table, _, crops = photos
    bad = table.iloc[:3].copy()
    bad.loc[1, "x_2"] = 10_000
    with pytest.raises(ValueError, match="lie outside their image: row 1, "):
        fitted.transform(bad)
    # A model fitted on whole files embeds crop boxes, and the other way round.
    on_files = TripletEmbedder(**{**FAST, "max_epochs": 1}).fit(crops, np.arange(len(crops)) % 4)
    np.testing.assert_array_equal(on_files.transform(table), on_files.transform(crops))
    assert fitted.transform(crops[:3]).shape == (3, fitted.n_components_)


def test_a_box_table_csv_fits_embeds_and_evaluates_in_the_cli(photos, tmp_path, capsys):
    """A CSV of ``path, x_1, y_1, x_2, y_2, label`` (paths relative to the CSV's folder)."""
    from sktriplet.cli import main

    table, y, crops = photos
    folder = os.path.dirname(table["path"].iloc[0])
    csv = os.path.join(folder, "boxes.csv")
    rel = table.assign(path=[os.path.basename(p) for p in table["path"]], label=y)
    rel.to_csv(csv, index=False)
    model = tmp_path / "boxes.sktriplet"
    argv = ["--max-epochs", "2", "--batch-size", "12", "--samples-per-class", "3"]
    argv += ["--image-size", "16", "--workers", "0", "--verbose", "0"]
    assert main(["fit", csv, "-o", str(model), *argv]) == 0, capsys.readouterr().err
    est = load(model)
    assert est.input_spec_.kind == "boxes"
    out = tmp_path / "Z.npy"
    assert main(["embed", str(model), csv, "-o", str(out)]) == 0, capsys.readouterr().err
    Z = np.load(out)
    # the crops are cut before resizing: the same regions saved as lossless files
    np.testing.assert_allclose(Z, est.transform(crops), rtol=1e-5, atol=1e-6)
    assert main(["evaluate", str(model), csv]) == 0, capsys.readouterr().err


def test_a_bad_box_in_a_csv_is_one_line_naming_the_row(photos, tmp_path, capsys):
    from sktriplet.cli import main

    table, y, _ = photos
    bad = table.assign(label=y)
    bad.loc[3, "x_2"] = bad.loc[3, "x_1"]  # an empty box
    csv = tmp_path / "bad.csv"
    bad.to_csv(csv, index=False)
    code = main(["fit", str(csv), "-o", str(tmp_path / "m.sktriplet"), "--verbose", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "3" in err and "bad.csv" in err
    assert not (tmp_path / "m.sktriplet").exists()

    extra = table.assign(label=y, note="x")
    extra.to_csv(csv, index=False)
    code = main(["fit", str(csv), "-o", str(tmp_path / "m.sktriplet"), "--verbose", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "['note']" in err and "--label" in err
