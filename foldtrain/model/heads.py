"""Output heads as objects: how many logits a model produces, its loss, and how logits become class scores.

`SingleHead` is one output per class. `MaskHeads` are three heads (mask 3, gender 2, age 3) decoded to the
competition's 18 classes: separate heads give each attribute the full gradient of its own loss. With one 18-way
head a model trained from scratch on a few hundred photos memorises persons (gender and age are fixed per person)
long before it learns whether a mask is worn; three heads learn the mask state as fast as a mask-only model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from foldtrain.data.labels import NUM_CLASSES
from foldtrain.user_error import UserError

LossFactory = Callable[[np.ndarray], torch.nn.Module]  # class counts -> a loss over those classes


class SingleHead:
    """One logit per class; the class scores are the logits."""

    name = "single"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    @property
    def outputs(self) -> int:
        """Logits the model must produce."""
        return self.num_classes

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """One score per class, comparable across models after `log_softmax`."""
        return logits

    def build_loss(self, make_loss: LossFactory, counts: np.ndarray) -> torch.nn.Module:
        """The training loss, from a factory that takes the training set's class counts (for class weights)."""
        return make_loss(counts)


class MaskHeads:
    """Mask (3), gender (2) and age (3) heads whose joint log-probability scores the 18 competition classes."""

    name = "multi"
    sizes = (3, 2, 3)  # the factors of the 18-class encoding: class = mask * 6 + gender * 3 + age

    def __init__(self, num_classes: int = NUM_CLASSES):
        if num_classes != NUM_CLASSES:
            raise UserError(f"model.heads=multi needs the 18 mask/gender/age classes; this data has {num_classes}. "
                             f"Use model.heads=single")
        self.num_classes = NUM_CLASSES

    @property
    def outputs(self) -> int:
        return sum(self.sizes)

    def split(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits as (mask, gender, age) logits."""
        return tuple(logits.split(self.sizes, dim=1))

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """The joint log-probability of each (mask, gender, age).

        Its argmax is the combination of each head's argmax, and averaging joint log-probabilities over folds and
        TTA views is a geometric mean of the heads' probabilities.
        """
        mask, gender, age = (F.log_softmax(part.float(), dim=1) for part in self.split(logits))
        return (mask[:, :, None, None] + gender[:, None, :, None] + age[:, None, None, :]).flatten(1)

    def targets(self, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """18-class targets (indices, or soft rows from CutMix/Mixup) as soft targets of the three heads."""
        if target.dim() == 1:
            target = F.one_hot(target, NUM_CLASSES).float()
        grid = target.view(-1, *self.sizes)
        return grid.sum((2, 3)), grid.sum((1, 3)), grid.sum((1, 2))

    def build_loss(self, make_loss: LossFactory, counts: np.ndarray) -> torch.nn.Module:
        """One loss per head, each made from that head's marginal class counts; summed."""
        grid = np.asarray(counts).reshape(self.sizes)
        marginals = (grid.sum((1, 2)), grid.sum((0, 2)), grid.sum((0, 1)))
        return MultiHeadLoss(self, [make_loss(m) for m in marginals])


class MultiHeadLoss(torch.nn.Module):
    """The sum of the heads' losses, on targets marginalised from the 18 classes."""

    def __init__(self, heads: MaskHeads, losses: list[Callable]):
        super().__init__()
        self.heads = heads
        self.losses = list(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = zip(self.losses, self.heads.split(logits), self.heads.targets(target), strict=True)
        return sum(loss(part, t) for loss, part, t in parts)


Heads = SingleHead | MaskHeads
HEAD_TYPES = {head.name: head for head in (SingleHead, MaskHeads)}


def resolve_heads(choice: str, data_format: str, num_classes: int) -> Heads:
    """The heads for `model.heads`: `auto` picks three heads for the competition's 18 classes, one otherwise."""
    if choice == "auto":
        choice = MaskHeads.name if data_format == "mask" and num_classes == NUM_CLASSES else SingleHead.name
    return heads_named(choice, num_classes)


def heads_named(name: str, num_classes: int) -> Heads:
    """Heads by their saved name (`single` or `multi`)."""
    if name not in HEAD_TYPES:
        raise UserError(f"unknown heads {name!r}; expected one of {', '.join(HEAD_TYPES)}")
    return HEAD_TYPES[name](num_classes)
