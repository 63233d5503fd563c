from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from foldtrain.data.cache import build_cache, open_cache
from foldtrain.data.images import ImageReadError
from foldtrain.data.loaders import CachedImageDataset
from foldtrain.data.transforms import DeviceNormalize, build_eval_transform, build_train_transform


def make_images(folder: Path, n: int = 5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        array = np.full((40, 30, 3), i * 40, dtype=np.uint8)
        array[:, :15, 1] = 255  # left half green: shows a flip
        path = folder / f"{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(array).save(path, quality=95)
        paths.append(path)
    return paths


def test_cache_decodes_once_and_reuses(tmp_path: Path):
    paths = make_images(tmp_path / "img")
    first = build_cache(paths, (20, 16), tmp_path / "cache")
    array = open_cache(first)
    assert array.shape == (5, 20, 16, 3) and array.dtype == np.uint8
    assert abs(int(array[2, 10, 12, 0]) - 80) <= 3  # red channel of image 2
    mtime = first.stat().st_mtime_ns
    assert build_cache(paths, (20, 16), tmp_path / "cache") == first
    assert first.stat().st_mtime_ns == mtime


def test_changed_image_or_size_gives_a_new_cache(tmp_path: Path):
    paths = make_images(tmp_path / "img")
    first = build_cache(paths, (20, 16), tmp_path / "cache")
    assert build_cache(paths, (24, 16), tmp_path / "cache") != first
    Image.new("RGB", (30, 40), (1, 2, 3)).save(paths[0])
    assert build_cache(paths, (20, 16), tmp_path / "cache") != first


def test_damaged_cache_is_rebuilt(tmp_path: Path):
    paths = make_images(tmp_path / "img")
    first = build_cache(paths, (20, 16), tmp_path / "cache")
    good = np.array(open_cache(first))
    with open(first, "r+b") as handle:  # overwrite the last image's bytes
        handle.seek(-100, 2)
        handle.write(b"\xff" * 100)
    rebuilt = build_cache(paths, (20, 16), tmp_path / "cache")
    assert np.array_equal(np.array(open_cache(rebuilt)), good)


def test_a_changed_row_anywhere_is_caught_by_the_full_check(tmp_path: Path):
    paths = make_images(tmp_path / "img")
    first = build_cache(paths, (20, 16), tmp_path / "cache")
    good = np.array(open_cache(first))
    array = np.load(first, mmap_mode="r+")
    array[1, 5, 5] = 255 - array[1, 5, 5]  # one pixel of a middle row: not among the three spot-checked rows
    array.flush()
    del array
    # A process that opens a cache the main process checked a moment before only spot-checks it...
    assert not np.array_equal(np.array(open_cache(build_cache(paths, (20, 16), tmp_path / "cache",
                                                              check_every_row=False))), good)
    # ...the full check that opens every run finds the changed row and rebuilds.
    rebuilt = build_cache(paths, (20, 16), tmp_path / "cache")
    assert np.array_equal(np.array(open_cache(rebuilt)), good)


def test_dataset_returns_uint8_chw_label_and_row(tmp_path: Path):
    paths = make_images(tmp_path / "img")
    cache = build_cache(paths, (20, 16), tmp_path / "cache")
    dataset = CachedImageDataset(cache, np.array([3, 1]), np.array([7, 8]), build_eval_transform((16, 12)))
    image, label, row = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 12)
    assert (label, row) == (7, 3)
    train = CachedImageDataset(cache, np.arange(5), np.zeros(5), build_train_transform((16, 12), hflip=1.0))
    flipped, _, _ = train[0]
    assert flipped.shape == (3, 16, 12)
    assert flipped[1, :, -2:].float().mean() > 200  # green half moved to the right by the certain flip


def test_device_normalize():
    norm = DeviceNormalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    out = norm(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8))
    assert torch.allclose(out, torch.full_like(out, 2.0))
    assert out.is_contiguous(memory_format=torch.channels_last)  # the layout models run in
    plain = DeviceNormalize((0.5,) * 3, (0.25,) * 3, channels_last=False)
    assert plain(torch.zeros(2, 3, 4, 4, dtype=torch.uint8)).is_contiguous()


def test_unreadable_images_are_all_named(tmp_path: Path):
    paths = make_images(tmp_path / "img")
    paths[1].write_bytes(b"broken")
    paths[3].write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"2 image\(s\)") as caught:
        build_cache(paths, (20, 16), tmp_path / "cache")
    assert paths[1].name in str(caught.value) and paths[3].name in str(caught.value)
    assert not list((tmp_path / "cache").glob("*.npy"))  # no half-built cache left behind
