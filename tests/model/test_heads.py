"""Heads as objects: outputs, class scores and the targets and losses of the three mask/gender/age heads."""

import pytest
import torch

from foldtrain.data import labels
from foldtrain.model.heads import MaskHeads, MultiHeadLoss, SingleHead, heads_named, resolve_heads
from foldtrain.user_error import UserError


def test_three_heads_decode_to_the_competition_encoding():
    logits = torch.full((1, 8), -5.0)
    logits[0, 1] = 5  # mask: incorrect
    logits[0, 3 + 1] = 5  # gender: female
    logits[0, 5 + 2] = 5  # age: >= 60
    scores = MaskHeads().class_scores(logits)
    assert MaskHeads().outputs == 8 and scores.shape == (1, 18)
    assert int(scores.argmax(1)) == labels.encode(1, 1, 2)
    assert torch.allclose(scores.exp().sum(1), torch.ones(1), atol=1e-5)  # a proper joint distribution


def test_single_head_passes_logits_through():
    logits = torch.randn(4, 18)
    assert SingleHead(18).class_scores(logits) is logits and SingleHead(7).outputs == 7


def test_head_targets_marginalise_hard_and_soft_labels():
    heads = MaskHeads()
    mask, gender, age = heads.targets(torch.tensor([labels.encode(2, 0, 1)]))
    assert mask.tolist() == [[0, 0, 1]] and gender.tolist() == [[1, 0]] and age.tolist() == [[0, 1, 0]]
    soft = 0.7 * torch.nn.functional.one_hot(torch.tensor([0]), 18) + 0.3 * torch.nn.functional.one_hot(
        torch.tensor([17]), 18)
    mask, gender, age = heads.targets(soft.float())
    assert torch.allclose(mask, torch.tensor([[0.7, 0.0, 0.3]]))
    assert torch.allclose(gender, torch.tensor([[0.7, 0.3]]))


def test_multi_head_loss_is_the_sum_of_head_losses():
    logits = torch.randn(5, 8)
    target = torch.randint(0, 18, (5,))
    mask, gender, age = labels.decode(target)
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits[:, :3], mask) + ce(logits[:, 3:5], gender) + ce(logits[:, 5:], age)
    loss = MultiHeadLoss(MaskHeads(), [torch.nn.CrossEntropyLoss()] * 3)
    assert torch.allclose(loss(logits, target), expected)


def test_resolve_heads():
    assert resolve_heads("auto", "mask", 18).name == "multi"
    assert resolve_heads("auto", "imagefolder", 2).name == "single"
    assert heads_named("single", 3).outputs == 3
    with pytest.raises(UserError, match="model.heads=multi"):
        resolve_heads("multi", "csv", 5)
