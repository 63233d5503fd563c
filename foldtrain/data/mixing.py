"""CutMix (box, or the seeds' horizontal band) and Mixup on device batches, with timm's target mixing.

timm's `Mixup` cuts boxes only; the seeds cut a band across the full width (faces are centred left to right,
so a band keeps the mixed region on the face). The partner of each image is the batch reversed, as in timm.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from timm.data.mixup import cutmix_bbox_and_lam, mixup_target

from foldtrain.config.schema import CUTMIX_MODES
from foldtrain.user_error import UserError


class BatchMixer:
    """Mixes a normalised batch and returns soft targets; with neither mix drawn it returns the batch as is.

    Args:
        cutmix: probability of CutMix for a batch.
        mixup: probability of Mixup for a batch (drawn when CutMix is not).
        cutmix_mode: `box` (area-correct random box, timm) or `band` (full-width horizontal band).
        num_classes: classes of the targets.
        alpha: Beta(alpha, alpha) draws the mixing ratio.
        seed: host-side RNG seed (host RNG avoids a device sync per step).
    """

    def __init__(self, cutmix: float, mixup: float, cutmix_mode: str, num_classes: int, alpha: float = 1.0,
                 seed: int = 0):
        if cutmix_mode not in CUTMIX_MODES:
            raise UserError(f"unknown aug.cutmix_mode {cutmix_mode!r}; choose box or band")
        self.cutmix, self.mixup, self.mode = cutmix, mixup, cutmix_mode
        self.num_classes, self.alpha = num_classes, alpha
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        """The random state, so a resumed fold draws the mixes an uninterrupted one would."""
        return {"python": self.rng.getstate(), "numpy": self.np_rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["python"])
        self.np_rng.bit_generator.state = state["numpy"]

    @property
    def enabled(self) -> bool:
        return self.cutmix > 0 or self.mixup > 0

    def __call__(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        draw = self.rng.random()
        if draw >= self.cutmix + self.mixup:
            return images, target
        lam = float(self.np_rng.beta(self.alpha, self.alpha))
        partner = images.flip(0)
        if draw < self.cutmix:
            (y1, y2, x1, x2), lam = self.cut_box(images.shape[-2:], lam)
            images = images.clone()
            images[:, :, y1:y2, x1:x2] = partner[:, :, y1:y2, x1:x2]
        else:
            images = images * lam + partner * (1.0 - lam)
        if target.dim() == 2:  # soft targets (pseudo-labels): timm's mixup_target takes class indices only
            return images, target * lam + target.flip(0) * (1.0 - lam)
        return images, mixup_target(target, self.num_classes, lam, smoothing=0.0)

    def cut_box(self, size_hw, lam: float) -> tuple[tuple[int, int, int, int], float]:
        """The region to paste (y1, y2, x1, x2) and the share of the image kept, corrected for clipping."""
        height, width = int(size_hw[0]), int(size_hw[1])
        if self.mode == "box":
            return cutmix_bbox_and_lam((1, 1, height, width), lam, correct_lam=True)
        band = int(round(height * (1.0 - lam)))
        top = self.rng.randint(0, height - band)
        return (top, top + band, 0, width), 1.0 - band / height
