"""Batch preparation on the device: uint8 images -> normalised input (+ random erasing), labels -> targets
(+ CutMix / Mixup)."""

from __future__ import annotations

import torch
from timm.data.random_erasing import RandomErasing

from foldtrain.data.mixing import BatchMixer
from foldtrain.data.transforms import DeviceNormalize


class BatchPrep(torch.nn.Module):
    """uint8 batch on the device -> normalised input and targets, with the `aug.*` batch-level augmentations."""

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
