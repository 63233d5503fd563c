"""Losses on hard or soft targets: cross-entropy, focal, soft macro F1, and their sum.

Every loss here takes class indices or probability rows (what CutMix and Mixup produce), so a recipe can mix
images with any loss. The rare `>=60` classes are where focal and F1 losses earn their place: plain
cross-entropy is dominated by the frequent classes, while macro F1, the competition metric, weighs all alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from foldtrain.config.schema import LOSSES
from foldtrain.user_error import UserError


def soft_targets(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Probability rows for `target` (indices or rows), with label smoothing spread over all classes.

    Smoothing moves a share of each row's own mass, so a row without a label (all zeros: an unlabeled image of
    `distill.data`) stays without one."""
    rows = F.one_hot(target, num_classes).float() if target.dim() == 1 else target.float()
    if not smoothing:
        return rows
    return rows * (1.0 - smoothing) + rows.sum(1, keepdim=True) * (smoothing / num_classes)


def balanced_weights(counts: np.ndarray) -> torch.Tensor:
    """Per-class weights n / (k * count_c), as scikit-learn's `class_weight="balanced"` (absent classes: 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


class ClassificationLoss(torch.nn.Module):
    """One of `ce`, `focal`, `f1`, `ce+f1`.

    Args:
        name: the loss.
        label_smoothing: mass moved from the target class to all classes.
        class_weights: per-class weights of the cross-entropy and focal terms, or None.
        gamma: focal exponent; 2 as in the focal loss paper.
    """

    def __init__(self, name: str = "ce", label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None,
                 gamma: float = 2.0):
        super().__init__()
        if name not in LOSSES:
            raise UserError(f"unknown train.loss {name!r}; choose one of {', '.join(LOSSES)}")
        self.name = name
        self.label_smoothing = label_smoothing
        self.gamma = gamma
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = soft_targets(target, logits.shape[1], self.label_smoothing)
        log_p = F.log_softmax(logits, dim=1)
        if self.name == "f1":
            return soft_f1_loss(log_p.exp(), target)
        per_class = -target * log_p
        if self.name == "focal":
            per_class = per_class * (1.0 - log_p.exp()).pow(self.gamma)
        loss = self._weighted_mean(per_class, target)
        return loss + soft_f1_loss(log_p.exp(), target) if self.name == "ce+f1" else loss

    def _weighted_mean(self, per_class: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.class_weights is None:
            return per_class.sum(1).mean()
        weights = self.class_weights.to(per_class.device)
        # Normalised by the targets' total weight, as torch's weighted cross-entropy does.
        return (per_class * weights).sum() / (target * weights).sum().clamp(min=1e-8)


def loss_factory(name: str, label_smoothing: float = 0.0,
                 class_weights: str = "none") -> Callable[[np.ndarray], ClassificationLoss]:
    """A function from class counts to the loss (`train.loss`, `train.label_smoothing`, `train.class_weights`);
    heads call it once per head with that head's counts."""
    def make(counts: np.ndarray) -> ClassificationLoss:
        weights = balanced_weights(counts) if class_weights == "balanced" else None
        return ClassificationLoss(name, label_smoothing, weights)

    return make


def soft_f1_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - macro F1 computed with probabilities instead of hard counts (differentiable)."""
    tp = (probs * target).sum(0)
    fp = (probs * (1 - target)).sum(0)
    fn = ((1 - probs) * target).sum(0)
    f1 = 2 * tp / (2 * tp + fp + fn + eps)
    return 1 - f1.mean()
