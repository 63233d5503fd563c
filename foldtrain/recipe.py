"""The training recipe as components: config keys mapped to the loss, the batch preparation, and normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from timm.data.random_erasing import RandomErasing

from foldtrain import heads as heads_mod
from foldtrain.cache import open_cache
from foldtrain.config import Config
from foldtrain.losses import ClassificationLoss, balanced_weights
from foldtrain.mixing import BatchMixer
from foldtrain.runfolder import read_json, write_json
from foldtrain.transforms import DeviceNormalize

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def build_loss(cfg: Config, heads: str, labels: np.ndarray, num_classes: int) -> torch.nn.Module:
    """`train.loss` with smoothing and class weights; for three heads, one loss per head, summed."""
    counts = np.bincount(labels, minlength=num_classes)
    if heads != "multi":
        weights = balanced_weights(counts) if cfg.train.class_weights == "balanced" else None
        return ClassificationLoss(cfg.train.loss, cfg.train.label_smoothing, weights)
    grid = counts.reshape(heads_mod.HEAD_SIZES)
    marginals = (grid.sum((1, 2)), grid.sum((0, 2)), grid.sum((0, 1)))
    return heads_mod.MultiHeadLoss([
        ClassificationLoss(cfg.train.loss, cfg.train.label_smoothing,
                           balanced_weights(m) if cfg.train.class_weights == "balanced" else None)
        for m in marginals])


class BatchPrep(torch.nn.Module):
    """uint8 batch on the device -> normalised input (+ random erasing) and targets (+ CutMix / Mixup)."""

    def __init__(self, normalize: DeviceNormalize, erasing: float, mixer: BatchMixer | None, device: torch.device):
        super().__init__()
        self.normalize = normalize
        self.erase = RandomErasing(erasing, mode="pixel", device=str(device)) if erasing > 0 else None
        self.mixer = mixer if mixer is not None and mixer.enabled else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(images)
        if self.erase is not None:
            x = self.erase(x)
        if self.mixer is not None:
            x, labels = self.mixer(x, labels)
        return x, labels


def build_batch_prep(cfg: Config, normalize: DeviceNormalize, num_classes: int, device: torch.device,
                     seed: int) -> BatchPrep:
    """Training-time batch preparation from the `aug.*` keys."""
    mixer = BatchMixer(cfg.aug.cutmix, cfg.aug.mixup, cfg.aug.cutmix_mode, num_classes, seed=seed)
    return BatchPrep(normalize, cfg.aug.random_erasing, mixer, device)


def resolve_normalization(mode: str, model_norm: tuple, cache_path: Path, rows: np.ndarray,
                          stats_file: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std): the model's (timm), ImageNet's, or the training images' own (computed once, saved)."""
    if mode == "model":
        return model_norm
    if mode == "imagenet":
        return IMAGENET
    saved = read_json(stats_file)
    if saved:
        return tuple(saved["mean"]), tuple(saved["std"])
    array = open_cache(cache_path)
    total = np.zeros(3)
    squares = np.zeros(3)
    for start in range(0, len(rows), 256):
        chunk = array[np.sort(rows[start:start + 256])].astype(np.float64) / 255.0
        total += chunk.sum((0, 1, 2))
        squares += (chunk ** 2).sum((0, 1, 2))
    count = len(rows) * array.shape[1] * array.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
    write_json(stats_file, {"mean": mean.tolist(), "std": std.tolist()})
    return tuple(mean.tolist()), tuple(std.tolist())


def freeze_backbone(model: torch.nn.Module) -> None:
    """Train only the classifier (timm's `get_classifier()`)."""
    classifier = model.get_classifier()
    keep = {id(p) for p in classifier.parameters()}
    for param in model.parameters():
        param.requires_grad = id(param) in keep
