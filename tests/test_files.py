"""The "paths" input kind: recognising paths, checking files, the lazy ImageFileDataset."""

import os
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_files
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from sktriplet.inputs.files import (
    ImageFileDataset,
    as_paths,
    check_files,
    infer_channels,
    sample_channel_stats,
)
from sktriplet.vision.decode import ImageFileError
from sktriplet.vision.transforms import ResizeCenterCrop


@pytest.fixture
def photo_folder(tmp_path):
    """Two class folders of images of mixed sizes, modes and formats."""
    rng = np.random.default_rng(0)
    specs = [
        ("a", "0.jpg", "RGB", (40, 30)),
        ("a", "1.png", "RGBA", (25, 60)),
        ("a", "2.png", "L", (33, 33)),
        ("b", "3.png", "P", (50, 20)),
        ("b", "4.tif", "CMYK", (16, 45)),
        ("b", "5.png", "I;16", (30, 31)),
        ("b", "6.webp", "RGB", (64, 48)),
    ]
    paths, labels = [], []
    for label, name, mode, (h, w) in specs:
        (tmp_path / label).mkdir(exist_ok=True)
        if mode == "I;16":
            img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
        elif mode == "P":
            img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert("P")
        else:
            channels = {"RGB": 3, "RGBA": 4, "L": 1, "CMYK": 4}[mode]
            a = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
            img = Image.fromarray(a[..., 0] if channels == 1 else a, mode)
        img.save(tmp_path / label / name)
        paths.append(str(tmp_path / label / name))
        labels.append(0 if label == "a" else 1)
    return tmp_path, paths, np.array(labels)


# ------------------------------------------------------------------ as_paths
def test_every_sequence_of_paths_gives_the_same_paths(photo_folder):
    root, paths, _ = photo_folder
    expected = np.array(paths, dtype=object)
    variants = [
        paths,
        tuple(paths),
        np.array(paths),
        np.array(paths, dtype=object),
        np.array(paths)[:, None],
        [Path(p) for p in paths],
        [os.fsencode(p) for p in paths],
        pd.Series(paths),
        pd.Series(paths, dtype="string"),
        pd.DataFrame({"file": paths}),
    ]
    for X in variants:
        got = as_paths(X)
        assert got is not None and got.dtype == object, type(X)
        np.testing.assert_array_equal(got, expected)
        assert all(type(p) is str for p in got)
    ds = load_files(root, load_content=False, shuffle=False)
    np.testing.assert_array_equal(as_paths(ds.filenames), np.array(sorted(paths), dtype=object))


def test_numbers_are_not_paths():
    for X in [
        np.zeros((3, 4)),
        [[1.0, 2.0], [3.0, 4.0]],
        [1, 2, 3],
        np.zeros((2, 8, 8), np.uint8),
        pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}),
        pd.DataFrame({"a": [1.0, 2.0]}),
        pd.Series([1.0, 2.0]),
        [],
    ]:
        assert as_paths(X) is None


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (["a.jpg", 3.5], "X mixes file paths and other values: X[1] is 3.5"),
        (pd.Series(["a.jpg", None]), "X mixes file paths and other values: X[1] is "),
        (["a.jpg", "", "b.jpg", ""], "X holds 2 empty path(s), at position(s) 1, 3"),
        (np.array([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"]]), "array of shape (2, 2)"),
        (pd.DataFrame({"p": ["a.jpg"], "q": ["b.jpg"]}), "DataFrame with 2 columns"),
        ("a.jpg", "X is a single path"),
        (Path("a.jpg"), "X is a single path"),
    ],
)
def test_bad_path_sequences_are_explained(X, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        as_paths(X)


# --------------------------------------------------------------- check_files
def test_missing_files_are_listed_first_five_and_a_count(photo_folder):
    _, paths, _ = photo_folder
    missing = [f"/nowhere/{i}.jpg" for i in range(7)]
    with pytest.raises(FileNotFoundError) as info:
        check_files(paths + missing)
    message = str(info.value)
    assert "7 of 14 image files are missing" in message
    assert all(repr(m) in message for m in missing[:5]) and "and 2 more" in message
    assert repr(missing[5]) not in message and "on_error='skip'" in message
    with pytest.warns(UserWarning, match=re.escape("'/nowhere/0.jpg'")):
        keep = check_files(missing[:1] + paths, on_error="skip")
    np.testing.assert_array_equal(keep, [False] + [True] * len(paths))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_files(paths).all()
    with pytest.raises(ValueError, match="on_error"):
        check_files(paths, on_error="ignore")


def test_decode_check_finds_corrupt_and_truncated_files(photo_folder):
    root, paths, _ = photo_folder
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    data = Path(paths[0]).read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 2])
    bad = [str(root / "bad.jpg"), str(root / "cut.jpg")]
    assert check_files(paths + bad).all()  # existence only
    with pytest.raises(ImageFileError, match=re.escape(bad[0])) as info:
        check_files(paths + bad, decode=True)
    assert bad[1] in str(info.value) and "2 of 9 image files cannot be read" in str(info.value)
    with pytest.warns(UserWarning, match="cannot be read"):
        keep = check_files(bad + paths, on_error="skip", decode=True)
    np.testing.assert_array_equal(keep, [False, False] + [True] * len(paths))


# ---------------------------------------------------------- ImageFileDataset
def test_dataset_decodes_lazily_to_uint8_tensors(photo_folder):
    _, paths, labels = photo_folder
    for channels in (1, 3):
        ds = ImageFileDataset(paths, labels, image_size=(12, 10), channels=channels)
        assert len(ds) == len(paths)
        for i in range(len(ds)):
            image, label = ds[i]
            assert image.dtype == torch.uint8 and image.shape == (channels, 12, 10)
            assert int(label) == labels[i]
            expected = ResizeCenterCrop((12, 10))(paths[i], channels)
            np.testing.assert_array_equal(image.numpy(), expected)
        images, batch_labels = ds[[3, 0, 3]]
        assert images.shape == (3, channels, 12, 10)
        np.testing.assert_array_equal(batch_labels, labels[[3, 0, 3]])
    unlabelled = ImageFileDataset(paths, image_size=8, channels=3)
    np.testing.assert_array_equal(unlabelled.y, np.zeros(len(paths)))
    assert [unlabelled.path(i) for i in range(len(paths))] == paths
    assert len(ImageFileDataset([], image_size=8, channels=3)) == 0
    odd = ["caf\u00e9 \U0001f697.png", "\udcff.png"]  # non-ASCII and undecodable bytes
    assert [ImageFileDataset(odd, image_size=8, channels=3).path(i) for i in (0, 1)] == odd


def test_dataset_through_a_dataloader_with_workers_matches_in_process(photo_folder):
    _, paths, labels = photo_folder
    ds = ImageFileDataset(paths, labels, image_size=8, channels=3, train=True, seed=3)
    ds.set_epoch(2)

    def run(workers):
        sampler = BatchSampler(SequentialSampler(ds), 3, drop_last=False)
        loader = DataLoader(ds, sampler=sampler, batch_size=None, num_workers=workers)
        return torch.cat([x for x, _ in loader])

    np.testing.assert_array_equal(run(0), run(2))
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned worker gets
    np.testing.assert_array_equal(clone[[0, 4]][0], ds[[0, 4]][0])
    default_collate = DataLoader(ds, batch_size=4)
    assert next(iter(default_collate))[0].shape == (4, 3, 8, 8)


def test_training_augmentation_depends_on_seed_epoch_and_repeat(photo_folder):
    _, paths, labels = photo_folder
    ds = ImageFileDataset(paths, labels, image_size=16, channels=3, train=True, seed=0)
    first = ds[list(range(len(ds)))][0]
    np.testing.assert_array_equal(first, ds[list(range(len(ds)))][0])
    ds.set_epoch(1)
    assert not torch.equal(first, ds[list(range(len(ds)))][0])
    twice = ds[[6, 6]][0]  # a PK batch repeating a sample gets two different crops
    assert not torch.equal(twice[0], twice[1])
    other_seed = ImageFileDataset(paths, labels, image_size=16, channels=3, train=True, seed=1)
    assert not torch.equal(first, other_seed[list(range(len(ds)))][0])
    evaluation = ImageFileDataset(paths, labels, image_size=16, channels=3)
    evaluation.set_epoch(5)
    np.testing.assert_array_equal(evaluation[0][0], ResizeCenterCrop(16)(paths[0]))


def test_bad_file_raises_or_is_replaced_by_one_of_its_class(photo_folder):
    root, paths, labels = photo_folder
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths = paths + [str(root / "b" / "broken.png")]
    labels = np.append(labels, 1)
    strict = ImageFileDataset(paths, labels, image_size=8, channels=3)
    with pytest.raises(ImageFileError, match=re.escape(paths[-1])):
        strict[len(paths) - 1]
    loader = DataLoader(strict, batch_size=4, num_workers=1)  # the worker's error, re-raised
    with pytest.raises(ImageFileError, match=re.escape(paths[-1])):
        list(loader)
    lenient = ImageFileDataset(paths, labels, image_size=8, channels=3, on_error="skip")
    with pytest.warns(UserWarning, match=re.escape(paths[-1])):
        image, label = lenient[len(paths) - 1]
    assert int(label) == 1
    first_of_b = int(np.flatnonzero(labels == 1)[0])  # the next one, cyclically
    np.testing.assert_array_equal(image, lenient[first_of_b][0])
    unlabelled = ImageFileDataset(paths, image_size=8, channels=3, on_error="skip")
    with pytest.raises(ImageFileError, match="without labels"):
        unlabelled[len(paths) - 1]


def test_dataset_argument_errors(photo_folder):
    _, paths, labels = photo_folder
    with pytest.raises(ValueError, match="shape"):
        ImageFileDataset(paths, labels[:2], image_size=8, channels=3)
    with pytest.raises(ValueError, match="LabelEncoder"):
        ImageFileDataset(paths, labels.astype(str), image_size=8, channels=3)
    with pytest.raises(ValueError, match="channels"):
        ImageFileDataset(paths, image_size=8, channels=2)
    with pytest.raises(ValueError, match="on_error"):
        ImageFileDataset(paths, image_size=8, channels=3, on_error="warn")
    with pytest.raises(ValueError, match="image_size"):
        ImageFileDataset(paths, image_size=0, channels=3)


# ----------------------------------------------------- statistics, channels
def test_channel_stats_match_numpy_on_all_images(photo_folder):
    _, paths, labels = photo_folder
    ds = ImageFileDataset(paths, labels, image_size=(9, 7), channels=3)
    stack = np.stack([ds[i][0].numpy() for i in range(len(ds))]).astype(np.float64)
    mean, std = sample_channel_stats(ds, max_samples=100)
    np.testing.assert_allclose(mean, stack.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, stack.std(axis=(0, 2, 3)), rtol=1e-9)


def test_channel_stats_read_a_bounded_sample():
    reads = []

    class Counting:
        def __len__(self):
            return 100_000

        def __getitem__(self, i):
            reads.append(i)
            return torch.full((2, 3, 3), float(i % 2)), 0

    mean, std = sample_channel_stats(Counting(), max_samples=50)
    assert len(reads) == 50 == len(set(reads))
    expected = np.mean([i % 2 for i in reads])
    np.testing.assert_allclose(mean, [expected, expected])
    np.testing.assert_allclose(std, np.sqrt(expected * (1 - expected)))
    with pytest.raises(ValueError, match="empty"):
        sample_channel_stats([])


def test_infer_channels(photo_folder, tmp_path):
    _, paths, _ = photo_folder
    assert infer_channels(paths) == 3
    grey = [p for p in paths if p.endswith(("2.png", "5.png"))]  # L and I;16
    assert infer_channels(grey) == 1
    Image.new("1", (5, 5)).save(tmp_path / "bits.png")
    assert infer_channels(grey + [str(tmp_path / "bits.png")]) == 1
    with pytest.raises(ValueError, match="at least one path"):
        infer_channels([])
