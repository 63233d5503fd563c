"""Normalisation constants: the model's own (timm), ImageNet's, or measured on a fold's training images (once per
fold, saved in the fold's folder, so a resumed fold reuses them and no fold sees its validation images' pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foldtrain.data.cache import open_cache
from foldtrain.files import read_json, write_json

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
Stats = tuple[tuple[float, ...], tuple[float, ...]]


def resolve_normalization(mode: str, model_norm: Stats, cache_path: Path, rows: np.ndarray, stats_file: Path) -> Stats:
    """(mean, std) for `data.normalize`: `model`, `imagenet`, or `dataset` (measured on `rows` once, saved in
    `stats_file`)."""
    if mode == "model":
        return model_norm
    if mode == "imagenet":
        return IMAGENET
    saved = read_json(stats_file)
    if saved:
        return tuple(saved["mean"]), tuple(saved["std"])
    mean, std = dataset_stats(cache_path, rows)
    write_json(stats_file, {"mean": list(mean), "std": list(std)})
    return mean, std


def dataset_stats(cache_path: Path, rows: np.ndarray, chunk: int = 256) -> Stats:
    """Per-channel mean and std of the cached images at `rows`, in [0, 1] units."""
    array = open_cache(cache_path)
    total = np.zeros(3)
    squares = np.zeros(3)
    for start in range(0, len(rows), chunk):
        part = array[np.sort(rows[start:start + chunk])].astype(np.float64) / 255.0
        total += part.sum((0, 1, 2))
        squares += (part ** 2).sum((0, 1, 2))
    count = len(rows) * array.shape[1] * array.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
    return tuple(mean.tolist()), tuple(std.tolist())
