"""Output heads: one 18-way classifier, or three (mask 3, gender 2, age 3) decoded to the 18 classes.

Separate heads give each attribute the full gradient of its own loss. With one 18-way head a model trained
from scratch on a few hundred photos memorises persons (gender and age are fixed per person) long before it
learns whether a mask is worn; three heads learn the mask state as fast as a mask-only model does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from foldtrain.labels import NUM_CLASSES

HEAD_SIZES = (3, 2, 3)  # mask, gender, age group: the factors of the 18-class encoding


def resolve_heads(heads: str, data_format: str, num_classes: int) -> str:
    """`auto` picks `multi` for the competition's 18 classes and `single` otherwise."""
    if heads == "auto":
        return "multi" if data_format == "mask" and num_classes == NUM_CLASSES else "single"
    if heads == "multi" and num_classes != NUM_CLASSES:
        raise ValueError(f"model.heads=multi needs the 18 mask/gender/age classes; this data has {num_classes}. "
                         f"Use model.heads=single")
    return heads


def output_size(heads: str, num_classes: int) -> int:
    """Logits the model must produce."""
    return sum(HEAD_SIZES) if heads == "multi" else num_classes


def split(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-head logits as (mask, gender, age) logits."""
    return tuple(logits.split(HEAD_SIZES, dim=1))


def class_logits(logits: torch.Tensor, heads: str) -> torch.Tensor:
    """Scores over the classes: for `multi`, the joint log-probability of each (mask, gender, age).

    The argmax of the joint is the combination of each head's argmax, and averaging joint log-probabilities over
    folds and TTA views is a geometric mean of the heads' probabilities.
    """
    if heads != "multi":
        return logits
    mask, gender, age = (F.log_softmax(part.float(), dim=1) for part in split(logits))
    joint = mask[:, :, None, None] + gender[:, None, :, None] + age[:, None, None, :]
    return joint.flatten(1)


def head_targets(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """18-class targets (indices, or soft rows from CutMix/Mixup) as soft targets of the three heads."""
    if target.dim() == 1:
        target = F.one_hot(target, NUM_CLASSES).float()
    grid = target.view(-1, *HEAD_SIZES)
    return grid.sum((2, 3)), grid.sum((1, 3)), grid.sum((1, 2))


class MultiHeadLoss(torch.nn.Module):
    """The sum of the heads' losses, on targets marginalised from the 18 classes.

    Args:
        bases: one loss for all heads, or one per head (mask, gender, age), e.g. with per-head class weights.
    """

    def __init__(self, bases: Callable | list[Callable]):
        super().__init__()
        self.bases = list(bases) if isinstance(bases, list | tuple) else [bases] * len(HEAD_SIZES)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = zip(self.bases, split(logits), head_targets(target), strict=True)
        return sum(loss(part, t) for loss, part, t in parts)
