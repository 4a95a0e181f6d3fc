"""Decoding image files with Pillow: formats, modes, EXIF orientation, draft, bad files."""

import re

import numpy as np
import pytest
from PIL import Image

from sktriplet.vision.decode import ImageFileError, decode_image, is_grey_image


def rgb_pattern(h, w, seed=0):
    """A smooth colour image (JPEG-friendly) with distinct rows and columns."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = 40 + 170 * xx / max(w - 1, 1)
    g = 40 + 170 * yy / max(h - 1, 1)
    b = 120 + 60 * np.sin(xx / 7.0 + seed)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def chw(hwc):
    return np.moveaxis(hwc, -1, 0)


@pytest.mark.parametrize(
    ("ext", "options", "tol"),
    [
        (".png", {}, 0),
        (".bmp", {}, 0),
        (".tif", {}, 0),
        (".webp", {"lossless": True}, 0),
        (".gif", {}, None),
        (".jpg", {"quality": 95}, 4.0),
        (".webp", {"quality": 95}, 4.0),
    ],
)
@pytest.mark.parametrize("shape", [(23, 41), (50, 17)])
def test_formats_decode_to_the_saved_pixels(tmp_path, ext, options, tol, shape):
    a = rgb_pattern(*shape)
    if ext == ".gif":  # a palette format: use colours that survive quantisation
        a = np.zeros((*shape, 3), np.uint8)
        a[: shape[0] // 2] = (200, 10, 30)
        a[shape[0] // 2 :] = (0, 90, 250)
        tol = 0
    path = tmp_path / f"img{ext}"
    Image.fromarray(a).save(path, **options)
    out = decode_image(path)
    assert out.shape == (3, *shape) and out.dtype == np.uint8
    err = np.abs(out.astype(float) - chw(a)).mean()
    assert err <= tol


def test_grey_1bit_and_grey_to_rgb(tmp_path):
    bits = np.zeros((9, 12), bool)
    bits[::2, 3:] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    out = decode_image(tmp_path / "b.png", channels=1)
    np.testing.assert_array_equal(out[0], np.where(bits, 255, 0))
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    out = decode_image(tmp_path / "l.png", channels=3)
    np.testing.assert_array_equal(out, np.stack([grey] * 3))


def test_rgb_to_grey_uses_the_601_luma(tmp_path):
    a = rgb_pattern(8, 9)
    Image.fromarray(a).save(tmp_path / "c.png")
    out = decode_image(tmp_path / "c.png", channels=1)[0].astype(float)
    luma = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    assert np.abs(out - luma).max() <= 1.0


def over_white(colour, alpha):
    a = alpha.astype(float)[..., None] / 255
    return colour.astype(float) * a + 255 * (1 - a)


def test_rgba_and_la_are_composited_over_white(tmp_path):
    colour = rgb_pattern(7, 11)
    alpha = np.tile(np.linspace(0, 255, 11).round().astype(np.uint8), (7, 1))
    Image.fromarray(np.dstack([colour, alpha]), "RGBA").save(tmp_path / "rgba.png")
    out = decode_image(tmp_path / "rgba.png")
    assert np.abs(out.astype(float) - chw(over_white(colour, alpha))).max() <= 1.0
    assert (out[:, :, 0] == 255).all()  # fully transparent column reads white
    grey = colour[..., 1]
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    out = decode_image(tmp_path / "la.png", channels=1)[0]
    expected = over_white(grey[..., None], alpha)[..., 0]
    assert np.abs(out.astype(float) - expected).max() <= 1.0


def test_palette_with_and_without_transparency(tmp_path):
    palette = [10, 20, 30, 200, 100, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    index = np.array([[0, 1, 2, 1], [2, 2, 0, 1]], np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette(palette)
    img.save(tmp_path / "p.png")
    lut = np.array(palette, np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(decode_image(tmp_path / "p.png"), chw(lut[index]))
    img.save(tmp_path / "pt.png", transparency=0)  # palette entry 0 transparent
    expected = lut[index].copy()
    expected[index == 0] = 255
    np.testing.assert_array_equal(decode_image(tmp_path / "pt.png"), chw(expected))
    img.save(tmp_path / "pt.gif", transparency=0)
    np.testing.assert_array_equal(decode_image(tmp_path / "pt.gif"), chw(expected))


def test_cmyk(tmp_path):
    cmyk = np.zeros((2, 3, 4), np.uint8)
    cmyk[0, :, 0] = [0, 100, 255]  # cyan only: R = 255 - C
    cmyk[1, :, 3] = [0, 100, 255]  # black only: R = G = B = 255 - K
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=100)
    expected = np.full((2, 3, 3), 255, np.uint8)
    expected[0, :, 0] = [255, 155, 0]
    expected[1] = np.array([255, 155, 0])[:, None]
    np.testing.assert_array_equal(decode_image(tmp_path / "c.tif"), chw(expected))
    assert np.abs(decode_image(tmp_path / "c.jpg").astype(float) - chw(expected)).max() <= 3


def test_16_bit_32_bit_and_float_are_scaled_to_8_bits(tmp_path):
    x16 = np.array([[0, 128, 129, 257, 30000, 65535]], np.uint16)
    Image.fromarray(x16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    # round(x / 257) computed by hand
    np.testing.assert_array_equal(
        decode_image(tmp_path / "g16.png", channels=1)[0], [[0, 0, 1, 1, 117, 255]]
    )
    np.testing.assert_array_equal(
        decode_image(tmp_path / "g16.png", channels=3)[2], [[0, 0, 1, 1, 117, 255]]
    )
    x32 = np.array([[-5, 0, 257, 65535, 70000]], np.int32)
    Image.fromarray(x32, "I").save(tmp_path / "g32.tif")
    np.testing.assert_array_equal(
        decode_image(tmp_path / "g32.tif", channels=1)[0], [[0, 0, 1, 255, 255]]
    )
    xf = np.array([[-1.0, 0.0, 0.5, 1.0, 3.0, np.nan]], np.float32)
    Image.fromarray(xf, "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(
        decode_image(tmp_path / "f.tif", channels=1)[0], [[0, 0, 128, 255, 255, 0]]
    )


def exif_with_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


@pytest.mark.parametrize(("ext", "tol"), [(".png", 0), (".jpg", 4.0)])
def test_exif_orientation_6_is_applied(tmp_path, ext, tol):
    a = rgb_pattern(30, 50)  # stored 30 high, 50 wide
    path = tmp_path / f"o{ext}"
    Image.fromarray(a).save(path, exif=exif_with_orientation(6), quality=95)
    out = decode_image(path)
    rotated = np.rot90(a, k=-1)  # orientation 6: display rotated 90 degrees clockwise
    assert out.shape == (3, 50, 30)
    assert np.abs(out.astype(float) - chw(rotated)).mean() <= tol


def test_exif_orientation_with_draft_crops_the_oriented_image(tmp_path):
    a = rgb_pattern(400, 800)
    path = tmp_path / "o.jpg"
    Image.fromarray(a).save(path, exif=exif_with_orientation(6), quality=95)
    rotated = np.ascontiguousarray(np.rot90(a, k=-1))  # 800 high, 400 wide

    def top_half(h, w):
        return (0.0, 0.0, float(w), h / 2)

    out = decode_image(path, size=(40, 50), crop=top_half)
    reference = np.asarray(
        Image.fromarray(rotated).resize((50, 40), Image.Resampling.BILINEAR, box=(0, 0, 400, 400))
    )
    assert out.shape == (3, 40, 50)
    assert np.abs(out.astype(float) - chw(reference)).mean() < 3.0


def test_draft_decodes_big_jpegs_at_a_reduced_scale_with_the_same_result(tmp_path, monkeypatch):
    a = rgb_pattern(900, 1300)
    path = tmp_path / "big.jpg"
    Image.fromarray(a).save(path, quality=95)
    from PIL import JpegImagePlugin

    requested = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        requested.append((size, None if result is None else self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    fast = decode_image(path, size=(64, 64))
    assert requested and requested[0][1][1] < 900  # decoded at 1/2..1/8 scale
    assert min(requested[0][1]) >= 64  # still at least the output's pixels
    slow = decode_image(path, size=(64, 64), draft=False)
    assert fast.shape == slow.shape == (3, 64, 64)
    assert np.abs(fast.astype(float) - slow).mean() < 2.0


def test_size_resizes_any_image_to_the_output(tmp_path):
    for i, shape in enumerate([(13, 70), (70, 13), (5, 5), (200, 150)]):
        Image.fromarray(rgb_pattern(*shape)).save(tmp_path / f"{i}.png")
        assert decode_image(tmp_path / f"{i}.png", size=(16, 24)).shape == (3, 16, 24)


def test_missing_corrupt_truncated_and_non_image_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.jpg"))):
        decode_image(tmp_path / "nope.jpg")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "notes.png").write_text("not an image")
    Image.fromarray(rgb_pattern(300, 300)).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(rgb_pattern(300, 300)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    for name in ["noise.jpg", "notes.png", "cut.jpg", "cut.png"]:
        with pytest.raises(ImageFileError, match=re.escape(str(tmp_path / name))):
            decode_image(tmp_path / name, size=(32, 32))
    with pytest.raises(ImageFileError, match="truncated"):
        decode_image(tmp_path / "cut.jpg")
    assert issubclass(ImageFileError, ValueError)


def test_bad_arguments(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="channels must be 1"):
        decode_image(tmp_path / "a.png", channels=4)
    with pytest.raises(ValueError, match="needs an output size"):
        decode_image(tmp_path / "a.png", crop=lambda h, w: (0, 0, w, h))
    with pytest.raises(ValueError, match="not a non-empty region"):
        decode_image(tmp_path / "a.png", size=(2, 2), crop=lambda h, w: (0, 0, w + 1, h))


def test_is_grey_image_reads_the_mode(tmp_path):
    Image.new("L", (3, 3)).save(tmp_path / "l.png")
    Image.fromarray(np.zeros((3, 3), np.uint16)).save(tmp_path / "i16.png")
    Image.new("RGB", (3, 3), (9, 9, 9)).save(tmp_path / "rgb.png")
    grey_palette = Image.new("P", (3, 3))
    grey_palette.putpalette([v for g in range(256) for v in (g, g, g)])
    grey_palette.save(tmp_path / "pg.png")
    colour_palette = Image.new("P", (3, 3))
    colour_palette.putpalette([1, 2, 3] * 256)
    colour_palette.save(tmp_path / "pc.png")
    got = {
        n: is_grey_image(tmp_path / n) for n in ["l.png", "i16.png", "rgb.png", "pg.png", "pc.png"]
    }
    assert got == {
        "l.png": True,
        "i16.png": True,
        "rgb.png": False,
        "pg.png": True,
        "pc.png": False,
    }


def test_a_pillow_image_reads_as_its_file_and_is_left_unchanged(tmp_path):
    a = rgb_pattern(30, 50)
    path = tmp_path / "o.jpg"
    Image.fromarray(a).save(path, exif=exif_with_orientation(6), quality=95)
    with Image.open(path) as img:
        from_image = decode_image(img, size=(20, 12), crop=lambda h, w: (0.0, 0.0, w, h))
        assert img.size == (50, 30) and img.mode == "RGB"  # not rotated in place
    # draft=False: a Pillow image is never drafted, the file is read the same way
    from_file = decode_image(path, size=(20, 12), crop=lambda h, w: (0.0, 0.0, w, h), draft=False)
    np.testing.assert_array_equal(from_image, from_file)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    np.testing.assert_array_equal(decode_image(rgba), np.full((3, 4, 4), 255, np.uint8))
    assert rgba.mode == "RGBA"


def test_read_image_size_and_find_unreadable(tmp_path):
    from sktriplet.vision.decode import find_unreadable, read_image_size

    Image.fromarray(rgb_pattern(300, 500)).save(tmp_path / "o.jpg", exif=exif_with_orientation(6))
    Image.fromarray(rgb_pattern(7, 9)).save(tmp_path / "p.png")
    whole = (tmp_path / "o.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # header intact, pixels cut
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    names = ["o.jpg", "p.png", "cut.jpg", "noise.jpg", "gone.png"]
    paths = [tmp_path / n for n in names]
    assert [read_image_size(p) for p in paths] == [(500, 300), (7, 9), (500, 300), None, None]
    bad = find_unreadable(paths)
    assert [names[i] for i, _ in bad] == ["cut.jpg", "noise.jpg", "gone.png"]
    assert "truncated" in bad[0][1] and bad[1][1].startswith("UnidentifiedImageError")
    assert bad[2][1] == "missing"
