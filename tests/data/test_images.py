"""Decoding: every image mode PIL opens comes out as the 8-bit RGB picture it shows, or a named error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foldtrain.data.images import ImageReadError, load_rgb

GREY = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))  # 4 x 16 ramp: every value class of an 8-bit range
WHITE = 255


def rgb(path: Path) -> np.ndarray:
    return np.asarray(load_rgb(path), dtype=np.int32)


def as_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None].astype(np.int32), 3, axis=2)


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_8_bit_grey(tmp_path: Path):
    assert (rgb(save(Image.fromarray(GREY, "L"), tmp_path / "l.png")) == as_rgb(GREY)).all()


def test_16_bit_grey_keeps_its_values_instead_of_clipping_to_white(tmp_path: Path):
    wide = GREY.astype(np.uint16) * 257  # the same picture stored in 16 bits
    path = save(Image.fromarray(wide), tmp_path / "i16.png")
    assert Image.open(path).mode in ("I;16", "I")
    assert (rgb(path) == as_rgb(GREY)).all()


def test_32_bit_grey_in_16_bit_range_and_out_of_it(tmp_path: Path):
    wide = GREY.astype(np.int32) * 257
    assert (rgb(save(Image.fromarray(wide, "I"), tmp_path / "i32.tif")) == as_rgb(GREY)).all()
    with pytest.raises(ImageReadError, match=r"i32big\.tif.*outside 0..65535"):
        load_rgb(save(Image.fromarray(wide * 1000, "I"), tmp_path / "i32big.tif"))


def test_float_grey_in_unit_range_and_out_of_it(tmp_path: Path):
    unit = GREY.astype(np.float32) / 255
    assert (rgb(save(Image.fromarray(unit, "F"), tmp_path / "f.tif")) == as_rgb(GREY)).all()
    with pytest.raises(ImageReadError, match=r"fbig\.tif.*outside \[0, 1\]"):
        load_rgb(save(Image.fromarray(unit * 300, "F"), tmp_path / "fbig.tif"))


def test_1_bit(tmp_path: Path):
    bits = GREY >= 128
    expected = np.where(bits, WHITE, 0).astype(np.uint8)
    assert (rgb(save(Image.fromarray(bits).convert("1"), tmp_path / "one.png")) == as_rgb(expected)).all()


def test_transparency_composites_on_white(tmp_path: Path):
    colour = np.zeros((4, 16, 4), dtype=np.uint8)
    colour[..., :3] = (200, 40, 10)
    colour[..., 3] = GREY  # alpha ramp
    alpha = GREY[..., None].astype(np.float64) / 255
    expected = np.rint(np.array([200, 40, 10]) * alpha + WHITE * (1 - alpha))
    assert np.abs(rgb(save(Image.fromarray(colour, "RGBA"), tmp_path / "rgba.png")) - expected).max() <= 1
    la = np.stack([np.full((4, 16), 90, np.uint8), GREY], axis=2)
    expected_la = np.rint(90 * alpha + WHITE * (1 - alpha)).repeat(3, axis=2)
    assert np.abs(rgb(save(Image.fromarray(la, "LA"), tmp_path / "la.png")) - expected_la).max() <= 1


def test_palette_with_a_transparent_index(tmp_path: Path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    path = save(image, tmp_path / "p.png", transparency=0)
    out = rgb(path)
    assert tuple(out[1, 1]) == (255, 0, 0) and tuple(out[0, 0]) == (WHITE, WHITE, WHITE)
    assert tuple(rgb(save(image, tmp_path / "opaque.png"))[0, 0]) == (0, 0, 0)


def test_cmyk(tmp_path: Path):
    cmyk = Image.new("CMYK", (4, 4), (255, 0, 0, 0))  # full cyan
    assert tuple(rgb(save(cmyk, tmp_path / "c.jpg", quality=100))[0, 0]) == pytest.approx((0, 255, 255), abs=3)


def test_exif_orientation_is_applied(tmp_path: Path):
    array = np.zeros((2, 4, 3), dtype=np.uint8)
    array[0, 0] = (255, 0, 0)  # red top-left
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display after turning 90 degrees clockwise
    out = rgb(save(image, tmp_path / "o.png", exif=exif))
    assert out.shape == (4, 2, 3) and tuple(out[0, 1]) == (255, 0, 0)  # now top-right


def test_bytes_decode_like_the_file(tmp_path: Path):
    path = save(Image.fromarray(as_rgb(GREY).astype(np.uint8)), tmp_path / "x.jpg", quality=90)
    assert (np.asarray(load_rgb(path.read_bytes())) == rgb(path)).all()
    with pytest.raises(ImageReadError, match="upload.jpg"):
        load_rgb(b"not an image", name="upload.jpg")


def test_an_image_above_the_pixel_budget_is_refused_before_it_is_decoded(tmp_path):
    import resource

    from foldtrain.data.images import DEFAULT_PIXEL_BUDGET, set_pixel_budget

    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb, optimize=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageReadError, match=r"bomb.png is 12000x12000 \(144 Mpx\), above the 40 Mpx"):
        load_rgb(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB: nothing was decoded
    set_pixel_budget(1000)
    try:
        Image.new("RGB", (40, 40)).save(tmp_path / "small.png")
        with pytest.raises(ImageReadError, match="data.max_pixels"):
            load_rgb(tmp_path / "small.png")
    finally:
        set_pixel_budget(DEFAULT_PIXEL_BUDGET)
