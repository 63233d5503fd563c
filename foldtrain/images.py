"""Reading image files: which files count as images, and decoding them the same way everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageReadError(RuntimeError):
    """An image file is missing or cannot be decoded; the message names the file."""


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


def load_rgb(path: str | Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image as 8-bit RGB with its EXIF orientation applied.

    Grayscale, RGBA and palette images are converted, so every caller sees the same 3-channel picture.

    Args:
        path: the image file.
        draft_size: (width, height) the caller will shrink to; lets the JPEG decoder skip detail (DCT scaling)
            while staying at least this large, which makes decoding for small inputs several times faster.

    Raises:
        ImageReadError: the file is missing or not a decodable image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path} (check data.root and the table that lists it)")
    try:
        with Image.open(path) as img:
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", draft_size)
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                # Composite transparency on white rather than letting convert() turn it black.
                rgba = img.convert("RGBA")
                background = Image.new("RGB", rgba.size, (255, 255, 255))
                background.paste(rgba, mask=rgba.getchannel("A"))
                return background
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"cannot decode image {path}: {err}. Replace or remove the file (and its row in the table)."
        ) from err


def load_rgb_array(path: str | Path) -> np.ndarray:
    """`load_rgb` as an HxWx3 uint8 array."""
    return np.asarray(load_rgb(path), dtype=np.uint8)
