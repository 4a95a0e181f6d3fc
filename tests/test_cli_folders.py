"""Odd photo folders in the command: what is left out is said in one line, and bad cases stop."""

import numpy as np
import pytest

import sktriplet

Image = pytest.importorskip("PIL.Image")

FAST = ["--max-epochs", "1", "--image-size", "16", "--verbose", "0", "--workers", "0"]


def _folder(root, classes=("a", "b"), per_class=4, size=(24, 20)):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    return root


def _warnings(err):
    return [line for line in err.splitlines() if line.startswith("sktriplet fit: warning: ")]


@pytest.fixture
def no_training(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(sktriplet.TripletEmbedder, "fit", never)


def test_one_usable_class_is_a_one_line_error(tmp_path, run_cli, no_training):
    root = _folder(tmp_path / "photos", classes=("a",))
    (root / "b").mkdir()
    (root / "c").mkdir()
    (root / "a" / "notes.txt").write_text("not a photo")
    model = tmp_path / "m.sktriplet"
    code, _, err = run_cli("fit", root, "-o", model, *FAST)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line == (
        f"sktriplet fit: error: {root}: only the class folder 'a' holds images, and fit needs "
        "at least 2 classes (one sub-folder of images per class); left out of "
        f"{root}: 2 empty class folders ('b', 'c'); 1 file without an image extension "
        "('a/notes.txt')."
    )
    assert not model.exists()
    for name in ("a", "b", "c"):  # no usable class at all
        for f in (root / name).iterdir():
            f.unlink()
    code, _, err = run_cli("fit", root, "-o", model, *FAST)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no images found" in err


def test_what_is_left_out_and_tiny_images_are_one_line_each(tmp_path, run_cli):
    root = _folder(tmp_path / "photos")
    (root / "empty").mkdir()
    (root / "b" / "Thumbs.db").write_bytes(b"\0")
    (root / "b" / ".hidden.jpg").write_bytes(b"\0")  # hidden: not reported
    Image.new("RGB", (1, 1)).save(root / "a" / "tiny.png")
    Image.new("RGB", (6, 5)).save(root / "a" / "small.png")
    model = tmp_path / "m.sktriplet"
    code, _, err = run_cli("fit", root, "-o", model, *FAST)
    assert code == 0, err
    assert _warnings(err) == [
        f"sktriplet fit: warning: left out of {root}: 1 empty class folder ('empty'); "
        "1 file without an image extension ('b/Thumbs.db')",
        "sktriplet fit: warning: 2 of 10 image files will be enlarged more than 2x to cover "
        f"image_size 16 x 16, which blurs them: '{root}/a/small.png' (6 x 5), "
        f"'{root}/a/tiny.png' (1 x 1); use a smaller image_size or leave them out.",
    ]
    assert len(sktriplet.load(model).classes_) == 2


def _corrupt(root):
    whole = (root / "a" / "0.jpg").read_bytes()
    (root / "a" / "zz_broken.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "b" / "zz_random.jpg").write_bytes(np.random.default_rng(1).bytes(400))


def test_skip_leaves_corrupt_files_out_of_fit_with_one_line(tmp_path, run_cli, monkeypatch):
    import sktriplet.inputs.files

    root = _folder(tmp_path / "photos", size=(120, 100))
    _corrupt(root)
    model = tmp_path / "m.sktriplet"

    def decoded_again(paths):
        raise AssertionError("the estimator decoded the files the command had checked")

    monkeypatch.setattr(sktriplet.inputs.files, "find_unreadable", decoded_again)
    code, _, err = run_cli("fit", root, "-o", model, *FAST, "--on-error", "skip")
    assert code == 0, err
    assert sktriplet.load(model).on_error == "skip"  # the model records the option
    (line,) = _warnings(err)
    assert line.startswith(
        f"sktriplet fit: warning: left out of {root}: 2 image files that cannot be read "
        "('a/zz_broken.jpg' (OSError: image file is truncated"
    )
    assert "'b/zz_random.jpg' (UnidentifiedImageError: cannot identify image file)" in line
    # raise (the default): the first bad file stops fit, in one line naming it
    code, _, err = run_cli("fit", root, "-o", tmp_path / "n.sktriplet", *FAST)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "zz_" in line and "cannot read this image file" in line


def test_an_error_in_a_data_loader_worker_is_one_line(tmp_path, run_cli):
    # torch re-raises a worker's exception with the worker's whole traceback in
    # its message; the command prints the original message only.
    root = _folder(tmp_path / "photos", size=(40, 30))
    model = tmp_path / "m.sktriplet"
    code, _, err = run_cli("fit", root, "-o", model, *FAST)
    assert code == 0, err
    _corrupt(root)
    out = tmp_path / "Z.npy"
    code, _, err = run_cli("embed", model, root, "-o", out, "--workers", "1")
    assert code == 2
    (line,) = [x for x in err.strip().splitlines() if "embedded" not in x]
    assert line.startswith(f"sktriplet embed: error: {root}/a/zz_broken.jpg: cannot read")
    assert line.endswith("Check or re-save the file, or leave it out of the input.")
    assert "Caught" not in err and "Traceback" not in err
