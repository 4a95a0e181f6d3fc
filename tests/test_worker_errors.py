"""An error raised in a data-loader worker comes out as itself: its type, its one-line message.

Issue 31, item 3: torch re-raises a worker's exception with the worker's whole
traceback in the message ("Caught ImageFileError in DataLoader worker process
0. Original Traceback ...", 2,000 characters), the file name and the fix at
the very end. Every loader the net makes now re-raises the original message;
torch's error, with the worker's traceback, stays as ``__cause__``.
"""

import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sktriplet import TripletEmbedder
from sktriplet.networks import BackboneEmbedder
from sktriplet.runtime.loader_errors import clean_loader_errors, one_line, unwrap_worker_error
from sktriplet.vision.decode import ImageFileError

FIX = "Check or re-save the file, or leave it out of the input."


class _Failing(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise ValueError("sample 2 is gone")
        return torch.tensor([i])


def test_a_worker_error_is_re_raised_as_its_type_with_its_message():
    loader = DataLoader(_Failing(), batch_size=1, num_workers=1)
    with pytest.raises(ValueError) as wrapped:
        list(loader)
    assert str(wrapped.value).startswith("Caught ValueError in DataLoader worker process 0")
    clean = unwrap_worker_error(wrapped.value)
    assert type(clean) is ValueError and clean.args == ("sample 2 is gone",)
    assert one_line(wrapped.value) == "sample 2 is gone"
    wrapper = clean_loader_errors(loader)
    assert len(wrapper) == 4 and wrapper.num_workers == 1
    with pytest.raises(ValueError) as info:
        list(wrapper)
    assert info.value.args == ("sample 2 is gone",)
    assert "Traceback" in str(info.value.__cause__)  # the worker's traceback is kept
    assert [int(b) for b in clean_loader_errors(DataLoader(range(3)))] == [0, 1, 2]


@pytest.fixture
def photos(tmp_path):
    """3 classes x 4 PNGs; the last file of class 1 is truncated."""
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for c in range(3):
        for i in range(4):
            path = tmp_path / f"c{c}_{i}.png"
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
            paths.append(str(path))
            labels.append(c)
    whole = open(paths[7], "rb").read()
    open(paths[7], "wb").write(whole[: len(whole) // 3])
    return paths, np.array(labels)


def _assert_one_line(exc, path):
    message = str(exc)
    assert "\n" not in message and "Caught" not in message and "Traceback" not in message
    assert message.startswith(f"{path}: cannot read this image file")
    assert message.endswith(FIX)
    assert "Traceback" in str(exc.__cause__)


def test_a_backbone_fit_names_the_bad_file_in_one_line(photos):
    paths, y = photos
    torch.manual_seed(0)
    est = TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
        module__input_mean=(0.5, 0.5, 0.5),  # no input statistics: workers read first
        module__input_std=(0.25, 0.25, 0.25),
        image_size=12,
        max_epochs=1,
        batch_size=6,
        samples_per_class=2,
        random_state=0,
        iterator_train__num_workers=1,
        iterator_valid__num_workers=1,
    )
    with pytest.raises(ImageFileError) as info:
        est.fit(paths, y)
    _assert_one_line(info.value, paths[7])
    assert not hasattr(est, "net_")


def test_transform_names_the_bad_file_in_one_line(photos):
    paths, y = photos
    good = [p for i, p in enumerate(paths) if i != 7]
    est = TripletEmbedder(
        image_size=12, max_epochs=1, batch_size=6, samples_per_class=2, random_state=0,
        iterator_train__num_workers=0, iterator_valid__num_workers=1,
    ).fit(good, np.delete(y, 7))
    with pytest.raises(ImageFileError, match=re.escape(paths[7])) as info:
        est.transform(paths)
    _assert_one_line(info.value, paths[7])
