"""The recipe switches: losses, CutMix/Mixup, schedules, label fixes, age bins, normalisation."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from foldtrain.config import build_config
from foldtrain.layout import LayoutError, read_table
from foldtrain.losses import ClassificationLoss, balanced_weights, soft_f1_loss
from foldtrain.mixing import BatchMixer
from foldtrain.model import build_model
from foldtrain.optim import build_optimizer, build_scheduler
from foldtrain.recipe import build_loss, freeze_backbone
from foldtrain.transforms import build_train_transform


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
    combined = ClassificationLoss("ce+f1")(torch.randn(3, 3), torch.arange(3))
    assert combined > ClassificationLoss("ce")(torch.zeros(3, 3), torch.arange(3)) * 0  # finite and positive
    assert math.isfinite(float(combined))


def test_losses_take_soft_targets():
    logits = torch.randn(2, 4)
    soft = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.3, 0.7]])
    for name in ("ce", "focal", "f1", "ce+f1"):
        assert math.isfinite(float(ClassificationLoss(name)(logits, soft)))
    with pytest.raises(ValueError, match="train.loss"):
        ClassificationLoss("hinge")


def test_multi_head_loss_uses_per_head_class_weights():
    cfg = build_config([], ["train.class_weights=balanced", "train.loss=focal"])
    labels = np.array([0] * 10 + [17] * 2)
    loss = build_loss(cfg, "multi", labels, 18)
    weights = [b.class_weights for b in loss.bases]
    assert weights[0].shape == (3,) and weights[1].shape == (2,) and weights[2].shape == (3,)
    assert weights[0][2] > weights[0][0]  # the rarer mask state weighs more
    assert math.isfinite(float(loss(torch.randn(3, 8), torch.tensor([0, 17, 5]))))


def test_cutmix_band_spans_the_width_and_sets_lambda():
    mixer = BatchMixer(cutmix=1.0, mixup=0.0, cutmix_mode="band", num_classes=3, seed=0)
    images = torch.stack([torch.zeros(1, 40, 30), torch.ones(1, 40, 30)])
    mixed, target = mixer(images, torch.tensor([0, 2]))
    changed = (mixed[0, 0] != 0).float()  # rows of image 0 that now hold image 1
    rows = changed.mean(1)
    assert set(rows.tolist()) <= {0.0, 1.0}  # whole rows: a band across the full width
    band = int(rows.sum())
    top = int(rows.nonzero()[0, 0])
    assert band > 0 and torch.equal(rows.nonzero().flatten(), torch.arange(top, top + band))  # one contiguous band
    assert torch.allclose(target[0], torch.tensor([1 - band / 40, 0.0, band / 40]))


def test_cutmix_box_and_mixup_targets_sum_to_one():
    images = torch.randn(4, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 1])
    for mixer in (BatchMixer(1.0, 0.0, "box", 3, seed=1), BatchMixer(0.0, 1.0, "box", 3, seed=1)):
        mixed, target = mixer(images, labels)
        assert mixed.shape == images.shape and torch.allclose(target.sum(1), torch.ones(4))
    untouched, same = BatchMixer(0.0, 0.0, "box", 3)(images, labels)
    assert untouched is images and same is labels


def test_vflip_and_auto_augment_transforms():
    image = torch.zeros(3, 20, 20, dtype=torch.uint8)
    image[:, :10] = 255  # top half white
    flipped = build_train_transform((20, 20), hflip=0.0, scale_min=1.0, vflip=1.0)(image)
    assert flipped[:, -5:].float().mean() > 200
    out = build_train_transform((20, 20), auto_augment="rand-m9-mstd0.5", color_jitter=0.3)(image)
    assert out.shape == (3, 20, 20) and out.dtype == torch.uint8
    with pytest.raises(ValueError, match="auto_augment"):
        build_train_transform((20, 20), auto_augment="nonsense")


@pytest.mark.parametrize("name", ["cosine", "cosine_restarts", "onecycle", "step"])
def test_schedules_step_per_update(name: str):
    model = build_model("resnet10t", 2)
    optimizer = build_optimizer(model, "radam", lr=0.01, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, name, epochs=6, updates_per_epoch=5, warmup_epochs=0, lr=0.01, t0=2,
                                max_lr=0.05)
    lrs = []
    for update in range(1, 31):
        scheduler.step_update(update)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert len(set(np.round(lrs, 8))) > 2
    if name == "cosine_restarts":
        assert lrs[10] > lrs[8]  # back up at the start of the second period (update 10 = epoch 2)
    if name == "onecycle":
        assert max(lrs) == pytest.approx(0.05, rel=0.05)


def test_freeze_backbone_leaves_only_the_classifier():
    model = build_model("resnet10t", 3)
    freeze_backbone(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}


def copy_root(demo_root: Path, dst: Path) -> Path:
    shutil.copytree(demo_root, dst)
    return dst


def test_label_fixes_and_age_bins(demo_root: Path, tmp_path: Path):
    persons = pd.read_csv(demo_root / "train" / "train.csv", dtype={"id": str})
    male = persons[persons["gender"] == "male"].iloc[0]
    female = persons[persons["gender"] == "female"].iloc[0]
    fixes = tmp_path / "fixes.csv"
    pd.DataFrame({"id": [male["id"], female["id"]], "fix": ["to_female", "swap_incorrect_normal"]}).to_csv(
        fixes, index=False)
    table = read_table(demo_root, label_fixes=fixes, age_bins=(30, 58))
    frame = table.frame
    assert table.fixes_applied == 2
    fixed = frame[frame["person"] == male["path"]]
    assert (fixed["gender"] == 1).all() and ((fixed["label"] // 3) % 2 == 1).all()
    swapped = frame[frame["person"] == female["path"]]
    swapped = swapped.set_index(swapped["path"].map(lambda p: Path(p).stem))
    assert swapped.loc["incorrect_mask", "mask"] == 2 and swapped.loc["normal", "mask"] == 1
    late = frame[frame["age"].between(58, 59)]
    assert len(late) and (late["label"] % 3 == 2).all()  # 58 and 59 moved to the oldest group
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["999999"], "fix": ["to_male"]}).to_csv(bad, index=False)
    with pytest.raises(LayoutError, match="999999"):
        read_table(demo_root, label_fixes=bad)
