"""Test-time augmentation with ttach's transforms, run as one batched forward pass per batch.

ttach's `ClassificationTTAWrapper` runs its views one after another; stacking the views of a batch into one
forward pass keeps a GPU busy. The views and their de-augmentation are ttach's own transforms, so the result
equals ttach's (tests compare the two).
"""

from __future__ import annotations

import torch
import ttach

from foldtrain.config.schema import TTA
from foldtrain.user_error import UserError


def tta_transforms(name: str) -> ttach.Compose:
    """The ttach transforms of a TTA policy (`none` is the identity view alone)."""
    if name not in TTA:
        raise UserError(f"unknown TTA policy {name!r}; choose one of {', '.join(TTA)}")
    steps = {
        "none": [],
        "hflip": [ttach.HorizontalFlip()],
        "vflip": [ttach.VerticalFlip()],
        "flips": [ttach.HorizontalFlip(), ttach.VerticalFlip()],
        "d4": [ttach.HorizontalFlip(), ttach.Rotate90(angles=[0, 90, 180, 270])],
    }[name]
    return ttach.Compose(steps)


def views_per_pass(device: torch.device) -> int:
    """How many TTA views to stack into one forward pass on `device`.

    A GPU runs a batch of 2-8 views barely slower than one view; a CPU gains nothing from the bigger batch
    (benchmarks/bench_predict.py on 2 cores: stacked views 1.02x of one view at a time, within noise) and would
    only hold views x batch images in memory at once.
    """
    return 16 if device.type == "cuda" else 1


class BatchedTTA(torch.nn.Module):
    """Mean of a model's logits over TTA views, all views of a batch in one forward pass.

    Args:
        model: maps an image batch to logits.
        transforms: ttach transforms whose views are averaged.
        max_views_per_pass: views stacked into one forward; lower it when memory is short.
    """

    def __init__(self, model: torch.nn.Module, transforms: ttach.Compose, max_views_per_pass: int = 16):
        super().__init__()
        self.model = model
        self.transforms = list(transforms)
        self.max_views_per_pass = max(1, max_views_per_pass)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = [t.augment_image(images) for t in self.transforms]
        total = None
        for start in range(0, len(views), self.max_views_per_pass):
            chunk = views[start:start + self.max_views_per_pass]
            # Views of different shapes (e.g. 90-degree turns of a non-square input) cannot share a batch.
            groups = [chunk] if all(v.shape == chunk[0].shape for v in chunk) else [[v] for v in chunk]
            offset = start
            for group in groups:
                logits = self.model(torch.cat(group)).float().chunk(len(group))
                for out in logits:
                    deaugmented = self.transforms[offset].deaugment_label(out)
                    total = deaugmented if total is None else total + deaugmented
                    offset += 1
        return total / len(views)
