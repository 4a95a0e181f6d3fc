"""The image_size policy: centre crop for evaluation, random resized crop for training."""

import math

import numpy as np
import pytest
from PIL import Image

from sktriplet.vision.transforms import (
    RandomResizedCrop,
    ResizeCenterCrop,
    as_image_size,
    augmentation_rng,
)


def test_as_image_size():
    assert as_image_size(5) == (5, 5)
    assert as_image_size((3, 7)) == (3, 7)
    assert as_image_size(np.int64(4)) == (4, 4)
    for bad in [0, (0, 3), (2.5, 3), True, "64", (1, 2, 3), None]:
        with pytest.raises(ValueError, match="image_size"):
            as_image_size(bad)


@pytest.mark.parametrize(
    ("size", "hw", "box"),
    [
        (4, (8, 16), (4, 0, 12, 8)),  # wide: shorter side 8 -> 4, centre 8 of 16 columns
        (4, (16, 8), (0, 4, 8, 12)),  # tall
        (4, (4, 10), (3, 0, 7, 4)),  # already the right height: a plain crop
        ((4, 8), (10, 10), (0, 2, 10, 7)),  # 1:2 target: 5 of 10 rows, offset round(2.5) = 2
        (6, (6, 6), (0, 0, 6, 6)),  # already the right size: untouched
        (8, (4, 4), (0, 0, 4, 4)),  # upscaling: the whole image
    ],
)
def test_centre_crop_boxes_by_hand(size, hw, box):
    assert ResizeCenterCrop(size).box(*hw) == tuple(float(b) for b in box)


def test_centre_crop_without_resizing_cuts_the_middle_columns(tmp_path):
    a = np.tile(np.arange(10, dtype=np.uint8) * 20, (4, 1))  # 4 x 10, value = 20 * column
    Image.fromarray(a).save(tmp_path / "a.png")
    out = ResizeCenterCrop(4)(tmp_path / "a.png", channels=1)
    np.testing.assert_array_equal(out[0], np.tile([60, 80, 100, 120], (4, 1)))


def test_centre_crop_equals_resize_shorter_side_then_crop(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(8, 16, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    out = ResizeCenterCrop(4)(tmp_path / "a.png")
    resized = np.asarray(Image.fromarray(a).resize((8, 4), Image.Resampling.BILINEAR))
    expected = np.moveaxis(resized[:, 2:6], -1, 0)  # then the centre 4 of 8 columns
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_random_crops_respect_the_scale_and_ratio_ranges():
    policy = RandomResizedCrop((20, 40), scale=(0.3, 0.8), ratio=(0.5, 1.5))
    flips = 0
    for i in range(300):
        (left, top, right, bottom), flipped = policy.draw(120, 90, augmentation_rng(1, 0, i))
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 90 and 0 <= top < bottom <= 120
        assert w == int(w) and h == int(h)
        assert 0.3 - 0.03 <= w * h / (120 * 90) <= 0.8 + 0.03
        aspect = (w / h) / (40 / 20)  # relative to the target's aspect ratio
        assert 0.5 * 0.9 <= aspect <= 1.5 * 1.1
        flips += flipped
    assert 110 < flips < 190  # about half
    no_flip = RandomResizedCrop(8, flip=False)
    assert not any(no_flip.draw(30, 30, augmentation_rng(0, 0, i))[1] for i in range(50))


def test_random_crop_falls_back_to_the_centre_when_nothing_fits():
    policy = RandomResizedCrop(4, scale=(0.9, 1.0), ratio=(1.0, 1.0))
    # a 1 x 100 strip: no square crop of 90 % of its area fits; the largest
    # square of the allowed aspect, centred, is 1 x 1 at column 49 or 50
    box, _ = policy.draw(1, 100, augmentation_rng(0, 0, 0))
    assert box == (49.0, 0.0, 50.0, 1.0)


def test_full_crop_and_flip_by_hand(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    whole = RandomResizedCrop(12, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    seen = set()
    for i in range(12):
        rng_i = augmentation_rng(0, 0, i)
        _, flipped = whole.draw(12, 12, augmentation_rng(0, 0, i))
        out = whole(tmp_path / "a.png", rng_i)
        expected = np.moveaxis(a[:, ::-1] if flipped else a, -1, 0)
        np.testing.assert_array_equal(out, expected)
        seen.add(flipped)
    assert seen == {True, False}


def test_augmentation_is_a_function_of_seed_epoch_index_repeat(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    policy = RandomResizedCrop(16)

    def crop(*key):
        return policy(tmp_path / "a.png", augmentation_rng(*key))

    np.testing.assert_array_equal(crop(3, 1, 5, 0), crop(3, 1, 5, 0))
    for other in [(4, 1, 5, 0), (3, 2, 5, 0), (3, 1, 6, 0), (3, 1, 5, 1)]:
        assert not np.array_equal(crop(3, 1, 5, 0), crop(*other))


def test_bad_ranges():
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="ratio"):
        RandomResizedCrop(8, ratio=(2.0, 1.0))
    assert math.isclose(RandomResizedCrop(8).ratio[1], 4 / 3)


def test_preprocess_images_reads_files_images_and_arrays_as_transform_reads_files(tmp_path):
    import warnings

    from sktriplet.vision.transforms import preprocess_images

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(30, 45, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    Image.fromarray(photo[:, :, 0]).save(tmp_path / "g.png")
    expected = np.stack([ResizeCenterCrop(16)(tmp_path / n) for n in ("a.png", "g.png")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = preprocess_images([tmp_path / "a.png", str(tmp_path / "g.png")], 16)
    assert batch.dtype == np.float32 and batch.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(batch, expected)  # raw 0-255 values, not scaled
    assert batch.max() > 1
    with Image.open(tmp_path / "a.png") as img:
        np.testing.assert_array_equal(preprocess_images(img, 16)[0], expected[0])
    np.testing.assert_array_equal(preprocess_images(photo, 16, dtype="uint8")[0], expected[0])
    np.testing.assert_array_equal(
        preprocess_images([photo[:, :, :1]], 16, channels=1)[0],
        ResizeCenterCrop(16)(tmp_path / "g.png", channels=1),
    )
    with pytest.raises(ValueError, match="uint8 photos"):
        preprocess_images([photo.astype(np.float32) / 255], 16)
    with pytest.raises(ValueError, match="dtype must be"):
        preprocess_images([photo], 16, dtype="float64")


def test_small_images_are_found_from_headers_and_warned_about_once(tmp_path):
    import warnings

    from sktriplet.vision.transforms import UpscaleWarning, find_small_images, warn_small_images

    sizes = [(1, 1), (100, 100), (40, 200), (33, 33), (31, 80), (10, 10), (5, 7)]
    paths = []
    for i, (h, w) in enumerate(sizes):
        Image.new("L", (w, h)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    paths.append(str(tmp_path / "missing.png"))
    # Enlarged more than 2x to cover 64 x 64: scale max(64 / h, 64 / w) > 2.
    expected = [(i, s) for i, s in enumerate(sizes) if max(64 / s[0], 64 / s[1]) > 2]
    assert [i for i, _ in expected] == [0, 4, 5, 6]
    assert find_small_images(paths, 64) == expected
    with pytest.warns(UpscaleWarning) as caught:
        assert warn_small_images(paths, 64) == 4
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("4 of 8 image files will be enlarged more than 2x to cover")
    assert f"{paths[0]!r} (1 x 1)" in message and message.count(" x ") == 4  # 3 shown
    assert "and 1 more" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_small_images(paths[1:4], 64) == 0
