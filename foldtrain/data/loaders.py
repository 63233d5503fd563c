"""Datasets and loaders over the decoded image cache."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from foldtrain.cpus import cores_per_process
from foldtrain.data.cache import open_cache


class CachedImageDataset(Dataset):
    """Rows of a decoded cache as (uint8 CHW image, label, row index).

    The row index travels with each sample so gathered predictions map back to exactly one table row.
    The memory map opens lazily in each worker process: a map opened before forking is not shared safely.
    """

    def __init__(self, cache_path: str, rows: np.ndarray, labels: np.ndarray | None, transform=None):
        self.cache_path = str(cache_path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self._array = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        if self._array is None:
            self._array = open_cache(self.cache_path)
        row = int(self.rows[i])
        image = torch.from_numpy(np.array(self._array[row])).permute(2, 0, 1)  # copy: the map is read-only
        if self.transform is not None:
            image = self.transform(image)
        label = -1 if self.labels is None else int(self.labels[i])
        return image, label, row


class WithTargets(Dataset):
    """A dataset's images with other targets (soft rows), row for row."""

    def __init__(self, base: CachedImageDataset, targets: np.ndarray):
        self.base, self.targets = base, targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, _, row = self.base[i]
        return image, torch.from_numpy(self.targets[i]), row


def default_workers(num_processes: int, gpu: bool) -> int:
    """Loader workers per process.

    On GPU: the cores this process gets, less one for the training loop itself. On CPU: none, since workers
    would compete with the model for the same cores, and reading the decoded cache costs ~0.3 ms per image
    (benchmarks/bench_loader.py: 0 workers beat 2 on a 2-core machine).
    """
    return min(8, cores_per_process(num_processes) - 1) if gpu else 0


def build_loader(dataset: Dataset, batch_size: int, train: bool, workers: int, pin_memory: bool,
                 seed: int = 0) -> DataLoader:
    """A loader with the defaults that keep the device fed: persistent workers, pinned memory on GPU."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        # A last batch of one breaks BatchNorm in training; validation keeps every image.
        drop_last=train and len(dataset) > batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        generator=generator,
    )
