"""Loader throughput: the seeds' PIL-per-epoch pipeline against foldtrain's decoded cache (cold and warm).

    python benchmarks/bench_loader.py [--data DIR] [--rounds 3] [--workers 2 0]

Every variant yields the same thing per epoch: the training images as 96x96 float batches of 32 after a random
resized crop and a horizontal flip. Images/s is one full epoch over all training images in steady state:

- seeds: a Dataset that opens each JPEG with PIL on every access + torchvision.transforms (as in the seed notes);
  non-persistent workers, so each epoch starts its workers again, as the seeds' DataLoader does;
- cold: `build_cache` into a fresh folder, then the first epoch (what fold 0, epoch 0 of a new run pays);
- warm: an epoch over an existing cache with foldtrain's loader (persistent workers already started) and
  `DeviceNormalize` applied to each batch, as the training loop does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

import common
from foldtrain.data.cache import build_cache
from foldtrain.data.loaders import CachedImageDataset, build_loader
from foldtrain.data.transforms import DeviceNormalize, build_train_transform, working_size

SIZE = (96, 96)
BATCH = 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # resnet10t's (ImageNet) statistics


class SeedsDataset(Dataset):
    """The seeds' `MaskDataset`: `Image.open` + transform on every access (decode cost paid every epoch)."""

    def __init__(self, paths: list[Path], labels: list[int], transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        # convert("RGB"): the demo mixes PNG in; the seeds' data was all JPEG, so this costs them nothing extra.
        image = self.transform(Image.open(self.paths[index]).convert("RGB"))
        return image, torch.tensor(self.labels[index])


def seeds_transform() -> T.Compose:
    """Squash 384x512 to 128x96 (keeps the 4:3 portrait), random crop to 96x96, flip, tensor, normalise."""
    return T.Compose([T.Resize((128, 96)), T.RandomResizedCrop(SIZE, scale=(0.7, 1.0)), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(MEAN, STD)])


def epoch(loader, normalize=None) -> int:
    """Drain one epoch; returns the images seen (normalising on the 'device' like the training loop)."""
    seen = 0
    for batch in loader:
        images = batch[0]
        if normalize is not None:
            images = normalize(images)
        seen += images.shape[0]
    return seen


def seeds_rate(paths, labels, workers: int) -> float:
    loader = DataLoader(SeedsDataset(paths, labels, seeds_transform()), batch_size=BATCH, shuffle=True,
                        num_workers=workers)
    start = time.perf_counter()
    seen = epoch(loader)
    return seen / (time.perf_counter() - start)


def ours_loader(cache_path: Path, labels, workers: int) -> DataLoader:
    dataset = CachedImageDataset(cache_path, np.arange(len(labels)), labels, build_train_transform(SIZE))
    # train=False keeps every image (train=True drops the last partial batch), so all variants see 420 images;
    # shuffling does not change the cost of reading a memory map that fits in the page cache.
    return build_loader(dataset, BATCH, train=False, workers=workers, pin_memory=False)


def cold_rate(paths, labels, workers: int) -> float:
    normalize = DeviceNormalize(MEAN, STD)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        start = time.perf_counter()
        cache_path = build_cache(paths, working_size(SIZE), tmp)
        seen = epoch(ours_loader(cache_path, labels, workers), normalize)
        return seen / (time.perf_counter() - start)


def warm_rate(loader, normalize) -> float:
    start = time.perf_counter()
    seen = epoch(loader, normalize)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="demo/competition data root (default: generate demo data in a temp folder)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions per variant (median)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 0], help="loader worker counts to compare")
    args = parser.parse_args(argv)

    with common.demo_root(args.data) as root, tempfile.TemporaryDirectory(prefix="bench-warm-") as warm_dir:
        paths, labels = common.train_table(root)
        epoch(DataLoader(SeedsDataset(paths, labels, seeds_transform()), batch_size=BATCH))  # page-cache the files
        warm_cache = build_cache(paths, working_size(SIZE), warm_dir)
        normalize = DeviceNormalize(MEAN, STD)
        rows = []
        for workers in args.workers:
            print(f"{len(paths)} images, {workers} workers:", flush=True)
            warm_loader = ours_loader(warm_cache, labels, workers)
            epoch(warm_loader)  # starts the persistent workers: the timed passes are epochs 2, 3, ...
            results = common.interleaved({
                "seeds": lambda w=workers: seeds_rate(paths, labels, w),
                "cold": lambda w=workers: cold_rate(paths, labels, w),
                "warm": lambda loader=warm_loader: warm_rate(loader, normalize),
                # Same pass without the main-process normalisation: shows what DeviceNormalize costs on a CPU.
                "warm_raw": lambda loader=warm_loader: warm_rate(loader, None),
            }, args.rounds)
            med = {name: common.median(values) for name, values in results.items()}
            for name, label in (("seeds", "seeds: PIL decode + torchvision every epoch"),
                                ("cold", "ours cold: build_cache + first epoch"),
                                ("warm", "ours warm: epoch over the cache + DeviceNormalize"),
                                ("warm_raw", "(ours warm, loader only, no DeviceNormalize)")):
                rows.append([label, workers, f"{med[name]:.0f}", common.spread(results[name]),
                             f"{med[name] / med['seeds']:.1f}x"])
            del warm_loader
    print()
    print(common.markdown_table(["pipeline", "workers", "images/s (median)", "range", "vs seeds"], rows))
    print(f"\n{len(paths)} training images, output {SIZE[0]}x{SIZE[1]}, batch {BATCH}, {args.rounds} rounds "
          f"interleaved; target: warm / seeds >= 5x")
    print(common.machine())


if __name__ == "__main__":
    main()
