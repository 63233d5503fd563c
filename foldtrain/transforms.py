"""Image transforms on uint8 CHW tensors, plus the normalisation that runs batch-wise on the device.

Augmenting uint8 tensors (torchvision.transforms.v2) is cheaper than PIL round trips, and normalising on the
device after the transfer moves a quarter of the bytes a float batch would.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import v2


def working_size(size_hw: tuple[int, int], margin: float = 1.125) -> tuple[int, int]:
    """The size images are cached at: a little above the model input so random crops keep detail."""
    return (math.ceil(size_hw[0] * margin), math.ceil(size_hw[1] * margin))


def build_train_transform(size_hw: tuple[int, int], hflip: float = 0.5, scale_min: float = 0.7) -> v2.Transform:
    """Random resized crop (aspect ratio of the target kept within 3/4..4/3) and horizontal flip."""
    aspect = size_hw[1] / size_hw[0]
    steps = [v2.RandomResizedCrop(size_hw, scale=(scale_min, 1.0), ratio=(aspect * 3 / 4, aspect * 4 / 3),
                                  antialias=True)]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    return v2.Compose(steps)


def build_eval_transform(size_hw: tuple[int, int]) -> v2.Transform:
    """Deterministic resize to the model input; training validation and the ensemble both use it."""
    return v2.Resize(size_hw, antialias=True)


class DeviceNormalize(torch.nn.Module):
    """uint8 NCHW batch -> normalised float batch in channels_last layout (faster convolutions on GPU and CPU)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.mean.device, non_blocking=True)
        out = (images.float() - self.mean) / self.std
        return out.contiguous(memory_format=torch.channels_last)
