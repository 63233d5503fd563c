"""Pseudo-labels' parts: fold k's pool is labelled by the teacher's fold k alone (teacher folds that each answer one
constant class), the naive round by all of them, per-class selection keeps rare classes, soft targets, the
training set of a fit, and soft targets through CutMix / Mixup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from PIL import Image

from foldtrain.config import build_config
from foldtrain.data.mixing import BatchMixer
from foldtrain.run.folder import RunFolder
from foldtrain.teach.pseudo import ALL_DATA, label_pool
from foldtrain.teach.selection import keep_per_class, keep_per_head, soften
from foldtrain.teach.teacher_run import open_teacher
from tests.teach.runs import SIZE, teacher_run, write_oof


def pool_folder(root: Path, count: int = 10) -> Path:
    rng = np.random.default_rng(0)
    pool = root / "pool"
    pool.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(pool / f"u{i}.png")
    return pool


def labelled(tmp_path: Path, *overrides: str, oof=None):
    run = teacher_run(tmp_path)[0]
    if oof is not None:
        write_oof(run, *oof)
    teacher = open_teacher(run, "pseudo.teacher")
    cfg = build_config([], ["cv.folds=3", f"run.dir={tmp_path / 'runs'}", f"pseudo.data={pool_folder(tmp_path)}",
                            f"pseudo.teacher={teacher.folder.path}", f"data.image_size={SIZE[0]}", *overrides])
    folder = RunFolder(tmp_path / "student")
    folder.path.mkdir()
    return label_pool(cfg, teacher, folder, [0, 1, 2, ALL_DATA], SIZE, None, Accelerator(cpu=True)), folder


def test_fold_k_pool_labels_come_from_teacher_fold_k_alone(tmp_path: Path):
    pool, folder = labelled(tmp_path, "pseudo.select=quantile", "pseudo.quantile=0")
    table = pool.table
    for fold in range(3):
        mine = table[table["fold"] == fold]
        assert len(mine) == 10 and (mine["class"] == (fold + 1) % 4).all(), f"fold {fold} got another teacher"
        assert (mine["teacher_folds"].astype(str) == str(fold)).all() and mine["kept"].all()
    everyone = table[table["fold"] == ALL_DATA]
    assert (everyone["teacher_folds"] == "0 1 2").all()  # the all-data fit: every teacher fold
    assert (folder / "pseudo_labels.csv").is_file() and (folder / "pseudo_probs.npz").is_file()


def test_the_naive_round_labels_every_fold_with_the_whole_teacher(tmp_path: Path):
    pool, _ = labelled(tmp_path, "pseudo.naive=true")
    assert (pool.table["teacher_folds"] == "0 1 2").all()


def test_per_class_quantile_keeps_the_same_share_of_a_rare_class():
    rng = np.random.default_rng(0)
    common_rows = np.tile([0.9, 0.05, 0.05], (90, 1)) + rng.uniform(0, 0.05, (90, 3))
    rare_rows = np.tile([0.2, 0.5, 0.3], (10, 1)) + rng.uniform(0, 0.05, (10, 3))  # low confidence throughout
    probs = np.concatenate([common_rows, rare_rows])
    probs /= probs.sum(1, keepdims=True)
    kept = keep_per_class(probs, 0.5)
    assert kept[:90].mean() == pytest.approx(0.5, abs=0.02) and kept[90:].mean() == pytest.approx(0.5, abs=0.1)
    one_threshold = probs.max(1) >= np.quantile(probs.max(1), 0.5)
    assert not one_threshold[90:].any()  # what a single global threshold would have done to the rare class
    assert keep_per_class(probs, 0.0).all()


def test_soft_targets_sharpen_and_stay_distributions():
    probs = np.array([[0.6, 0.3, 0.1]])
    sharp = soften(probs, 0.5)
    assert sharp.sum() == pytest.approx(1.0) and sharp[0, 0] > 0.6 and sharp.argmax() == 0
    assert np.allclose(soften(probs, 1.0), probs)


@pytest.mark.parametrize(("soft", "weight"), [(False, 1.0), (True, 1.0), (False, 0.25), (True, 0.5)])
def test_a_fit_trains_on_its_rows_and_its_own_pool(tmp_path: Path, soft: bool, weight: float):
    from foldtrain.data.cache import build_cache
    from foldtrain.data.loaders import CachedImageDataset

    pool, _ = labelled(tmp_path, "pseudo.select=quantile", "pseudo.quantile=0.5",
                       f"pseudo.soft={str(soft).lower()}", f"pseudo.weight={weight}")
    images = sorted((tmp_path / "pool").glob("*.png"))[:4]
    cache = build_cache(images, (36, 36), tmp_path / "cache")
    rows = CachedImageDataset(cache, np.arange(4), np.array([0, 1, 2, 3]))
    data = pool.dataset(1, rows, None, 4)
    kept = int(pool.table[(pool.table["fold"] == 1)]["kept"].sum())
    assert len(data) == 4 + (10 if soft else kept)
    image, target, _ = data[len(data) - 1]  # a pool image, labelled by teacher fold 1 (class 2)
    if soft or weight != 1.0:  # target rows whose mass is the row's weight in the loss
        assert target.shape == (4,) and int(target.argmax()) == 2 and float(target.sum()) == pytest.approx(weight)
        assert data[0][1].tolist() == [1.0, 0.0, 0.0, 0.0]  # labelled rows as one-hot rows
    else:
        assert target == 2


def test_a_pool_row_of_weight_w_counts_w_times_in_the_loss():
    from foldtrain.model.losses import ClassificationLoss

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0]])
    one_hot = torch.eye(3)[[0, 1]]
    rows = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]), reduction="none")
    for weights in (None, torch.tensor([1.0, 2.0, 0.5])):
        loss = ClassificationLoss("ce", class_weights=weights)
        weighted = loss(logits, one_hot * torch.tensor([[1.0], [0.25]]))
        w = torch.tensor([1.0, 0.25]) * (weights[[0, 1]] if weights is not None else 1)
        expected = (rows * w).sum() / (w.sum() if weights is not None else 2)
        assert torch.isclose(weighted, expected)


def test_soft_targets_mix_like_the_images():
    mixer = BatchMixer(0.0, 1.0, "box", 3, seed=0)
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    _, mixed = mixer(torch.zeros(2, 3, 4, 4), target)
    # each row lam x itself + (1 - lam) x its partner (the batch reversed): still distributions, mass conserved
    assert torch.allclose(mixed.sum(1), torch.ones(2)) and torch.allclose(mixed[0] + mixed[1], target.sum(0))
    assert not torch.allclose(mixed, target)


def test_three_head_runs_select_per_head_so_a_rare_age_group_keeps_its_share():
    rng = np.random.default_rng(1)
    # mask, gender, age marginals per image; the age head is unsure of its rare group (index 2) throughout
    mask = rng.dirichlet([8, 1, 1], 100)
    gender = rng.dirichlet([5, 1], 100)
    age = np.where(np.arange(100)[:, None] < 10, rng.dirichlet([1, 2, 3], 100), rng.dirichlet([9, 1, 1], 100))
    joint = (mask[:, :, None, None] * gender[:, None, :, None] * age[:, None, None, :]).reshape(100, 18)
    kept = keep_per_head(joint, 0.5, (3, 2, 3))
    rare = age.argmax(1) == 2
    assert rare.any() and kept[rare].any()
    per_head = 1 - 0.5 ** (1 / 3)
    for head in (mask, gender, age):  # each kept image passes its own class's threshold on every head
        for c in np.unique(head.argmax(1)):
            rows = head.argmax(1) == c
            threshold = np.quantile(head.max(1)[rows], per_head)
            assert (head.max(1)[kept & rows] >= threshold).all()
    assert 0.3 < kept.mean() < 0.7  # about half kept overall, as with one head at quantile 0.5
    assert keep_per_head(joint, 0.0, (3, 2, 3)).all()
