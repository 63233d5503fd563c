"""Reading image files: which files count as images, and decoding every mode PIL opens to the right 8-bit RGB.

`Image.convert("RGB")` alone is wrong for several modes: 16-bit greyscale clips to white, transparency turns black.
`load_rgb` handles each mode explicitly and refuses what it cannot represent, naming the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
TRANSPARENT_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class ImageReadError(RuntimeError):
    """An image file is missing or cannot be decoded; the message names the file."""


# Pixels an image may have before it is decoded: a 17 KB 1-bit PNG of 12000x12000 decodes to 432 MB of RGB (and
# more on the way), under PIL's own bomb limit. Photos of this kind of data set are 384x512 (0.2 Mpx); a phone
# photo is about 12 Mpx. `data.max_pixels` sets it for a run, its prediction and its served model.
DEFAULT_PIXEL_BUDGET = 40_000_000
_pixel_budget = DEFAULT_PIXEL_BUDGET


def set_pixel_budget(pixels: int) -> None:
    """The largest width x height any decode in this process accepts (`data.max_pixels`)."""
    global _pixel_budget
    _pixel_budget = int(pixels)


def check_pixels(img: Image.Image, label: str) -> None:
    """Refuse an opened (not yet decoded) image above the pixel budget, naming it.

    Raises:
        ImageReadError: with its size, the budget and what to do.
    """
    width, height = img.size
    if width * height > _pixel_budget:
        raise ImageReadError(f"image {label} is {width}x{height} ({width * height / 1e6:.0f} Mpx), above the "
                             f"{_pixel_budget / 1e6:.0f} Mpx decode budget: shrink it, or raise data.max_pixels")


def is_image_file(path: str | Path) -> bool:
    """True for a visible file with an image suffix.

    Hidden files are never images: real competition folders carry macOS `._mask1.jpg` resource forks
    that have an image suffix but hold no picture.
    """
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))


def load_rgb(source: str | Path | bytes, draft_size: tuple[int, int] | None = None,
             name: str | None = None) -> Image.Image:
    """Decode an image (a file or its bytes) as 8-bit RGB, upright by its EXIF orientation.

    Greyscale of 1, 8, 16 or 32 bits, palettes, transparency (composited on white), CMYK and float images in
    [0, 1] all come out as the RGB picture they show.

    Args:
        source: an image file, or the encoded bytes of one.
        draft_size: (width, height) the caller will shrink to; lets the JPEG decoder skip detail (DCT scaling)
            while staying at least this large, which makes decoding for small inputs several times faster.
        name: what to call `source` in messages when it is bytes.

    Raises:
        ImageReadError: the file is missing, not a decodable image, or holds values no 8-bit picture can show.
    """
    label = name or (f"{len(source)} bytes of image data" if isinstance(source, bytes) else str(source))
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ImageReadError(f"image not found: {source} (check data.root and the table that lists it)")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            check_pixels(img, label)  # the header is read, nothing decoded yet
            if draft_size is not None and img.format == "JPEG":
                img.draft(img.mode, draft_size)  # DCT scaling only; the mode stays as stored
            img.load()
            return to_rgb(ImageOps.exif_transpose(img), label)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"cannot decode image {label}: {err}. Replace or remove the file (and its row in "
                             f"the table).") from err


def to_rgb(img: Image.Image, label: str) -> Image.Image:
    """An opened image of any mode as the 8-bit RGB picture it shows."""
    if img.mode in SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        return Image.fromarray(_wide_to_uint8(np.asarray(img), img.mode, label), mode="L").convert("RGB")
    if img.mode in TRANSPARENT_MODES or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency on white rather than letting convert() turn it black.
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _wide_to_uint8(array: np.ndarray, mode: str, label: str) -> np.ndarray:
    """16-bit, 32-bit integer or float greyscale as 8 bits, scaled from the range the mode stores."""
    if mode == "F":
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or np.isnan(array).any()):
            raise ValueError(f"float image {label} holds values outside [0, 1]; save it as an 8- or 16-bit image")
        return np.rint(array * 255).astype(np.uint8)
    wide = array.astype(np.int64)
    if wide.size and (wide.min() < 0 or wide.max() > 65535):
        raise ValueError(f"32-bit greyscale image {label} holds values outside 0..65535; save it as an 8- or "
                         f"16-bit image")
    # 16-bit range (PIL also opens 16-bit PNGs as mode I): 0..65535 -> 0..255, rounded.
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def load_rgb_array(path: str | Path) -> np.ndarray:
    """`load_rgb` as an HxWx3 uint8 array."""
    return np.asarray(load_rgb(path), dtype=np.uint8)
