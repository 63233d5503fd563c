"""Decoded image cache: every image decoded and resized once into a uint8 array on disk, memory-mapped after.

Decoding a 384x512 JPEG costs more than a small model's forward pass on a CPU; doing it once per data set
instead of once per epoch and fold is the largest single speed-up of the loop. The cache file is named by a key
over the image files (path, size, mtime) and the preprocessing, so a changed image or setting builds a new one.
A CRC-32 of every row, written beside it, is checked whenever the cache is opened for a run, so a file damaged or
overwritten anywhere after it was built is rebuilt instead of silently training on wrong pixels.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from foldtrain.cpus import available_cores
from foldtrain.data.images import ImageReadError, load_rgb
from foldtrain.files import StorageError, atomic_path, fingerprint, write_json

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: a CRC-32 per row in the .json beside the cache


def cache_key(paths: list[Path], size_hw: tuple[int, int], settings: dict | None = None) -> str:
    """A short hash of the files (path, byte size, mtime), the stored size and any other preprocessing settings."""
    return fingerprint(paths, [FORMAT_VERSION, list(size_hw), settings or {}])


def build_cache(paths: list[Path], size_hw: tuple[int, int], cache_dir: str | Path, settings: dict | None = None,
                threads: int | None = None, check_every_row: bool = True) -> Path:
    """The path of a valid `.npy` cache of `paths` decoded to `size_hw`, building it if needed.

    Safe to call from every process after the main one built it (`main_process_first`): a valid cache is
    only validated, never rewritten. `check_every_row=False` checks the shape and three rows only, for
    processes that open a cache the main process checked in full a moment before.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(paths, size_hw, settings)
    target = cache_dir / f"images-{key}.npy"
    threads = threads or available_cores()
    if is_valid(target, len(paths), size_hw, threads if check_every_row else 0):
        return target
    if target.exists():
        log.warning("decoded image cache %s is damaged; rebuilding it", target)
    check_room(cache_dir, len(paths) * size_hw[0] * size_hw[1] * 3)
    with atomic_path(target, suffix=".npy") as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *size_hw, 3))
        _reserve(tmp)

        def fill(index: int) -> str | None:
            try:
                array[index] = decode_resized(paths[index], size_hw)
            except ImageReadError as err:
                return str(err)
            return None

        # PIL releases the GIL while decoding and resizing, so threads use every core without pickling arrays.
        with ThreadPoolExecutor(max_workers=threads) as pool:
            errors = [e for e in pool.map(fill, range(len(paths))) if e]
        if errors:
            listed = "\n  ".join(errors[:10])
            more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
            raise ImageReadError(f"{len(errors)} image(s) could not be read:\n  {listed}{more}")
        array.flush()
        write_json(target.with_suffix(".json"), {"count": len(paths), "size_hw": list(size_hw),
                                                 "crc32": _row_crcs(open_cache(tmp), range(len(paths)), threads)})
    return target


def check_room(folder: Path, needed: int) -> None:
    """Fail before writing anything when the cache cannot fit on its disk, naming the size it needs.

    Raises:
        StorageError: with the bytes needed and free, and what to do.
    """
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise StorageError(errno.ENOSPC, f"the decoded image cache needs {needed / 2**30:.1f} GiB in {folder} but "
                                         f"{free / 2**30:.1f} GiB are free: lower data.image_size, free disk space, "
                                         f"or point data.cache_dir at a larger disk")


def _reserve(path: Path) -> None:
    """Allocate the whole file now: a memory map written on a full disk kills the process (SIGBUS) instead of
    raising, while a failed reservation raises ENOSPC, which becomes a clear error."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows
        return
    with open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)


def decode_resized(source: Path | bytes, size_hw: tuple[int, int], name: str | None = None) -> np.ndarray:
    """One image (a file or its bytes) as an HxWx3 uint8 array of exactly `size_hw`.

    The first step of all preprocessing: the decoded cache, `ensemble.predict` and the served model share it.
    """
    height, width = size_hw
    image = load_rgb(source, draft_size=(width, height), name=name)
    return np.asarray(image.resize((width, height), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)


def open_cache(path: str | Path) -> np.ndarray:
    """The cache as a read-only memory map (cheap: pages load on first touch and are shared across processes)."""
    return np.load(path, mmap_mode="r")


def is_valid(path: Path, count: int, size_hw: tuple[int, int], threads: int = 1) -> bool:
    """True when the file exists with the expected shape and its rows match the CRC-32s written beside it.

    `threads` > 0 checks every row on that many threads (1.8 s on 2 threads for the competition's 18,900 images
    at 224 px, benchmarks/bench_cache_check.py; it also leaves the pages in memory for the first epoch); 0 checks
    three rows.
    """
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        array = open_cache(path)
        if array.shape != (count, *size_hw, 3) or array.dtype != np.uint8 or len(meta.get("crc32", ())) != count:
            return False
        rows = range(count) if threads else sorted({0, count // 2, count - 1} if count else set())
        return [meta["crc32"][i] for i in rows] == _row_crcs(array, rows, max(threads, 1))
    except (ValueError, OSError, json.JSONDecodeError):
        return False


def _row_crcs(array: np.ndarray, rows, threads: int) -> list[int]:
    # zlib releases the GIL on large buffers, so threads checksum rows in parallel.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda i: zlib.crc32(array[i]), rows))

