"""list_image_folder: a class-folder tree to paths, labels and class names, and what it left out."""

import os
import re
import warnings

import numpy as np
import pytest

from sktriplet.datasets import list_image_folder
from sktriplet.vision.folders import LeftOutWarning, scan_image_folder


def touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_lists_image_files_sorted_with_labels(tmp_path):
    touch(
        tmp_path,
        "zebra/b.PNG",
        "zebra/a.jpeg",
        "ant/x.TIFF",
        "ant/w.webp",
        "ant/v.GIF",
        "ant/u.pgm",
        "ant/t.ppm",
        "ant/s.bmp",
        "ant/r.tif",
        "ant/q.jpg",
        "ant/readme.txt",  # not an image
        "ant/.hidden.jpg",  # hidden file
        ".git/c.jpg",  # hidden folder
        "ant/nested/deep.jpg",  # sub-sub-folder: not read
        "empty_class/notes.md",  # no image: not a class
        "loose.jpg",  # not in a class folder
    )
    with pytest.warns(LeftOutWarning) as caught:
        paths, labels, class_names = list_image_folder(tmp_path)
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    assert class_names == ["ant", "zebra"]
    assert rel == [
        "ant/q.jpg", "ant/r.tif", "ant/s.bmp", "ant/t.ppm", "ant/u.pgm", "ant/v.GIF",
        "ant/w.webp", "ant/x.TIFF", "zebra/a.jpeg", "zebra/b.PNG",
    ]  # fmt: skip
    np.testing.assert_array_equal(labels, [0] * 8 + [1] * 2)
    assert labels.dtype == np.int64 and all(type(p) is str for p in paths)
    assert scan_image_folder(str(tmp_path))[0].tolist() == paths.tolist()
    # What was left out, in one line, hidden entries not counted.
    (message,) = [str(w.message) for w in caught]
    assert message == (
        f"left out of {tmp_path}: 1 empty class folder ('empty_class'); "
        "2 files without an image extension ('ant/readme.txt', 'empty_class/notes.md'); "
        "1 folder inside a class folder ('ant/nested'); "
        "1 file outside the class folders ('loose.jpg')"
    )


def test_extensions_can_be_chosen(tmp_path):
    touch(tmp_path, "a/1.jpg", "a/2.png", "b/3.PNG", "b/4.raw")
    with pytest.warns(LeftOutWarning, match=r"1 file without an image extension \('a/1.jpg'\)"):
        paths, labels, names = list_image_folder(tmp_path, extensions=["png", ".RAW"])
    assert [os.path.basename(p) for p in paths] == ["2.png", "3.PNG", "4.raw"]
    assert labels.tolist() == [0, 1, 1] and names == ["a", "b"]
    with pytest.raises(ValueError, match="extensions"):
        list_image_folder(tmp_path, extensions=[])


def test_empty_and_missing_trees_are_explained(tmp_path):
    touch(tmp_path, "loose.jpg", "a/notes.txt")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}/<class>/<file>")):
        list_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        list_image_folder(tmp_path / "nowhere")


def test_a_clean_tree_lists_silently_and_long_lists_are_cut(tmp_path):
    touch(tmp_path, "a/1.jpg", "b/2.png", ".DS_Store", "a/.thumbs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list_image_folder(tmp_path)[0]) == 2
    for c in "cdefg":
        (tmp_path / c).mkdir()
    with pytest.warns(LeftOutWarning) as caught:
        list_image_folder(tmp_path)
    assert len(caught) == 1
    assert str(caught[0].message).endswith("5 empty class folders ('c', 'd', 'e' and 2 more)")
