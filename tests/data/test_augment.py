"""Augmentations: the train transform's flips and timm policies, CutMix (box and band) and Mixup."""

from __future__ import annotations

import torch

from foldtrain.data.mixing import BatchMixer
from foldtrain.data.transforms import build_train_transform


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
        assert not torch.equal(mixed, images)
    untouched, same = BatchMixer(0.0, 0.0, "box", 3)(images, labels)
    assert untouched is images and same is labels


def test_mixer_state_round_trips():
    first = BatchMixer(0.5, 0.5, "band", 3, seed=4)
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    first(images, labels)
    saved = first.state_dict()
    expected = first(images, labels)
    second = BatchMixer(0.5, 0.5, "band", 3, seed=99)
    second.load_state_dict(saved)
    again = second(images, labels)
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])


def test_vflip_and_auto_augment_transforms():
    image = torch.zeros(3, 20, 20, dtype=torch.uint8)
    image[:, :10] = 255  # top half white
    flipped = build_train_transform((20, 20), hflip=0.0, scale_min=1.0, vflip=1.0)(image)
    assert flipped[:, -5:].float().mean() > 200 and flipped[:, :5].float().mean() < 50
    out = build_train_transform((20, 20), auto_augment="rand-m9-mstd0.5", color_jitter=0.3)(image)
    assert out.shape == (3, 20, 20) and out.dtype == torch.uint8
