"""Losses on hard and soft targets, class weights, and the three heads' summed loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from foldtrain.config.schema import LOSSES
from foldtrain.model.heads import MaskHeads, SingleHead
from foldtrain.model.losses import ClassificationLoss, balanced_weights, loss_factory, soft_f1_loss
from foldtrain.user_error import UserError


def test_ce_and_focal_on_known_logits():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    target = torch.tensor([0])
    p = torch.softmax(logits, 1)[0, 0]
    assert torch.isclose(ClassificationLoss("ce")(logits, target), -torch.log(p))
    assert torch.isclose(ClassificationLoss("focal", gamma=2.0)(logits, target), -(1 - p) ** 2 * torch.log(p))
    # Focal down-weights an easy example far more than cross-entropy does.
    assert ClassificationLoss("focal")(logits, target) < 0.1 * ClassificationLoss("ce")(logits, target)


def test_label_smoothing_matches_torch():
    logits = torch.randn(6, 5)
    target = torch.randint(0, 5, (6,))
    expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    assert torch.isclose(ClassificationLoss("ce", label_smoothing=0.1)(logits, target), expected, atol=1e-6)


def test_balanced_weights_match_torch_weighted_ce():
    counts = np.array([8, 2, 0])
    weights = balanced_weights(counts)
    assert torch.allclose(weights, torch.tensor([10 / 16, 10 / 4, 0.0]))
    logits = torch.randn(4, 3)
    target = torch.tensor([0, 1, 1, 0])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weights)
    assert torch.isclose(ClassificationLoss("ce", class_weights=weights)(logits, target), expected, atol=1e-6)


def test_soft_f1_loss_is_zero_when_perfect_and_one_when_all_wrong():
    target = torch.eye(3)
    assert soft_f1_loss(torch.eye(3), target) < 1e-6
    assert torch.isclose(soft_f1_loss(torch.eye(3)[[1, 2, 0]], target), torch.tensor(1.0))
    logits, labels = torch.randn(3, 3), torch.arange(3)
    expected = ClassificationLoss("ce")(logits, labels) + soft_f1_loss(torch.softmax(logits, 1), target)
    assert torch.isclose(ClassificationLoss("ce+f1")(logits, labels), expected, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_takes_soft_targets_and_has_gradients(name: str):
    logits = torch.randn(2, 4, requires_grad=True)
    soft = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.3, 0.7]])
    loss = ClassificationLoss(name)(logits, soft)
    loss.backward()
    assert math.isfinite(float(loss)) and float(loss) > 0
    assert logits.grad.abs().sum() > 0
    if name == "ce":  # cross-entropy is linear in the target: a soft row is the mix of its one-hot losses
        rows = [0.5 * ClassificationLoss(name)(logits[:1].detach(), torch.tensor([k])) for k in (0, 1)]
        assert torch.isclose(ClassificationLoss(name)(logits[:1].detach(), soft[:1]), sum(rows), atol=1e-6)


def test_unknown_loss_is_named():
    with pytest.raises(UserError, match="train.loss"):
        ClassificationLoss("hinge")


def test_three_heads_use_per_head_class_weights():
    labels = np.array([0] * 10 + [17] * 2)
    loss = MaskHeads().build_loss(loss_factory("focal", 0.0, "balanced"), np.bincount(labels, minlength=18))
    weights = [part.class_weights for part in loss.losses]
    assert [w.shape for w in weights] == [(3,), (2,), (3,)]
    assert weights[0][2] > weights[0][0]  # the rarer mask state weighs more
    assert math.isfinite(float(loss(torch.randn(3, 8), torch.tensor([0, 17, 5]))))
    single = SingleHead(18).build_loss(loss_factory("ce", 0.0, "none"), np.bincount(labels, minlength=18))
    assert single.class_weights is None
