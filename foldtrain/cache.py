"""Decoded image cache: every image decoded and resized once into a uint8 array on disk, memory-mapped after.

Decoding a 384x512 JPEG costs more than a small model's forward pass on a CPU; doing it once per data set
instead of once per epoch and fold is the largest single speed-up of the loop. The cache file is named by a key
over the image files (path, size, mtime) and the preprocessing, so a changed image or setting builds a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from foldtrain.cpus import available_cores
from foldtrain.images import ImageReadError, load_rgb

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def cache_key(paths: list[Path], size_hw: tuple[int, int], settings: dict | None = None) -> str:
    """A short hash of the files (path, byte size, mtime), the stored size and any other preprocessing settings."""
    digest = hashlib.sha256(json.dumps([FORMAT_VERSION, list(size_hw), settings or {}], sort_keys=True).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def build_cache(paths: list[Path], size_hw: tuple[int, int], cache_dir: str | Path, settings: dict | None = None,
                threads: int | None = None) -> Path:
    """The path of a valid `.npy` cache of `paths` decoded to `size_hw`, building it if needed.

    Safe to call from every process after the main one built it (`main_process_first`): a valid cache is
    only validated, never rewritten.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(paths, size_hw, settings)
    target = cache_dir / f"images-{key}.npy"
    if is_valid(target, len(paths), size_hw):
        return target
    if target.exists():
        log.warning("decoded image cache %s is damaged; rebuilding it", target)
    tmp = target.with_suffix(f".tmp{os.getpid()}.npy")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *size_hw, 3))

    def fill(index: int) -> str | None:
        try:
            array[index] = decode_resized(paths[index], size_hw)
        except ImageReadError as err:
            return str(err)
        return None

    # PIL releases the GIL while decoding and resizing, so threads use every core without pickling arrays.
    with ThreadPoolExecutor(max_workers=threads or available_cores()) as pool:
        errors = [e for e in pool.map(fill, range(len(paths))) if e]
    if errors:
        tmp.unlink(missing_ok=True)
        listed = "\n  ".join(errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ImageReadError(f"{len(errors)} image(s) could not be read:\n  {listed}{more}")
    array.flush()
    _write_meta(target, tmp, len(paths), size_hw)
    os.replace(tmp, target)
    return target


def decode_resized(path: Path, size_hw: tuple[int, int]) -> np.ndarray:
    """One image as an HxWx3 uint8 array of exactly `size_hw`."""
    height, width = size_hw
    image = load_rgb(path, draft_size=(width, height))
    return np.asarray(image.resize((width, height), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)


def open_cache(path: str | Path) -> np.ndarray:
    """The cache as a read-only memory map (cheap: pages load on first touch and are shared across processes)."""
    return np.load(path, mmap_mode="r")


def is_valid(path: Path, count: int, size_hw: tuple[int, int]) -> bool:
    """True when the file exists with the expected shape and its sampled rows match the checksums written."""
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        array = open_cache(path)
        if array.shape != (count, *size_hw, 3) or array.dtype != np.uint8:
            return False
        return meta.get("checksums") == _row_checksums(array)
    except (ValueError, OSError, json.JSONDecodeError):
        return False


def _row_checksums(array: np.ndarray) -> list[str]:
    # A few rows spread over the file catch truncation and overwrites without reading gigabytes at start-up.
    rows = sorted({0, len(array) // 2, len(array) - 1}) if len(array) else []
    return [hashlib.sha1(np.ascontiguousarray(array[i]).tobytes()).hexdigest() for i in rows]


def _write_meta(target: Path, written: Path, count: int, size_hw: tuple[int, int]) -> None:
    meta = {"count": count, "size_hw": list(size_hw), "checksums": _row_checksums(open_cache(written))}
    tmp = target.with_suffix(f".tmp{os.getpid()}.json")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, target.with_suffix(".json"))
