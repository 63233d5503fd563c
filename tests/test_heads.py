import pytest
import torch

from foldtrain import heads, labels


def test_multi_head_decodes_to_the_competition_encoding():
    logits = torch.full((1, 8), -5.0)
    logits[0, 1] = 5  # mask: incorrect
    logits[0, 3 + 1] = 5  # gender: female
    logits[0, 5 + 2] = 5  # age: >= 60
    scores = heads.class_logits(logits, "multi")
    assert scores.shape == (1, 18)
    assert int(scores.argmax(1)) == labels.encode(1, 1, 2)
    assert torch.allclose(scores.exp().sum(1), torch.ones(1), atol=1e-5)  # a proper joint distribution


def test_single_head_passes_logits_through():
    logits = torch.randn(4, 18)
    assert heads.class_logits(logits, "single") is logits


def test_head_targets_marginalise_hard_and_soft_labels():
    mask, gender, age = heads.head_targets(torch.tensor([labels.encode(2, 0, 1)]))
    assert mask.tolist() == [[0, 0, 1]] and gender.tolist() == [[1, 0]] and age.tolist() == [[0, 1, 0]]
    soft = 0.7 * torch.nn.functional.one_hot(torch.tensor([0]), 18) + 0.3 * torch.nn.functional.one_hot(
        torch.tensor([17]), 18)
    mask, gender, age = heads.head_targets(soft.float())
    assert torch.allclose(mask, torch.tensor([[0.7, 0.0, 0.3]]))
    assert torch.allclose(gender, torch.tensor([[0.7, 0.3]]))


def test_multi_head_loss_is_the_sum_of_head_losses():
    logits = torch.randn(5, 8)
    target = torch.randint(0, 18, (5,))
    mask, gender, age = labels.decode(target)
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits[:, :3], mask) + ce(logits[:, 3:5], gender) + ce(logits[:, 5:], age)
    assert torch.allclose(heads.MultiHeadLoss(torch.nn.CrossEntropyLoss())(logits, target), expected)


def test_resolve_heads():
    assert heads.resolve_heads("auto", "mask", 18) == "multi"
    assert heads.resolve_heads("auto", "imagefolder", 2) == "single"
    with pytest.raises(ValueError, match="model.heads=multi"):
        heads.resolve_heads("multi", "csv", 5)
