"""Distillation's parts: fold k's student is taught by the teacher's fold k alone (teacher folds that each answer
one constant class), the teacher sees the student's own pixels whatever the two normalisations, the loss's two
terms, and a teacher split otherwise refused naming the first difference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from foldtrain.config import build_config
from foldtrain.data.transforms import DeviceNormalize
from foldtrain.model.factory import build_model
from foldtrain.model.fold_ensemble import FoldScorer
from foldtrain.model.weights import save_weights
from foldtrain.teach.distill import DistillLoss, EnsembleTeacher
from foldtrain.teach.teacher_run import TeacherError, check_same_folds, check_taught_folds, open_teacher
from tests.teach.runs import CLASSES, SIZE, batch, teacher_run


def test_each_student_fold_is_taught_by_its_own_teacher_fold_and_the_final_student_by_all(tmp_path: Path):
    teacher = open_teacher(teacher_run(tmp_path)[0], "distill.teacher")
    student = DeviceNormalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    inputs = student(batch())
    for fold in range(3):
        taught = EnsembleTeacher(teacher.models_for(fold), "hflip", torch.device("cpu"), SIZE)
        scores = taught(inputs, student.mean, student.std)
        assert (scores.argmax(1) == (fold + 1) % 4).all(), f"fold {fold} was taught by another teacher fold"
    everyone = EnsembleTeacher(teacher.models_for(-1), "none", torch.device("cpu"), SIZE)
    scores = everyone(inputs, student.mean, student.std)
    # the mean of folds answering classes 1, 2 and 3: class 0 gets nothing, the others a third each
    assert torch.allclose(scores[0], torch.tensor([0.0, 10 / 3, 10 / 3, 10 / 3]), atol=1e-4)


def test_a_missing_teacher_fold_is_refused_before_training(tmp_path: Path):
    teacher = open_teacher(teacher_run(tmp_path, trained=[0, 2])[0], "distill.teacher")
    with pytest.raises(TeacherError, match="not fold 1"):
        check_taught_folds(teacher, [0, 1, 2])
    with pytest.raises(TeacherError, match="not fold 1"):
        teacher.models_for(1)
    check_taught_folds(teacher, [0, 2])


def test_the_teacher_sees_the_students_pixels_through_its_own_normalisation(tmp_path: Path):
    run, _ = teacher_run(tmp_path, mean=(0.1, 0.6, 0.3), std=(0.4, 0.2, 0.3))
    teacher = open_teacher(run, "distill.teacher")
    fold = teacher.models_for(0)
    torch.manual_seed(0)
    save_weights(build_model("resnet10t", 4).eval().state_dict(), fold[0].path, fold[0].meta)  # a non-constant net
    images = batch()
    direct = FoldScorer(fold[0], "hflip", torch.device("cpu")).eval()(images)
    student = DeviceNormalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    through = EnsembleTeacher(fold, "hflip", torch.device("cpu"), SIZE)(student(images), student.mean, student.std)
    assert torch.allclose(direct, through, atol=1e-3), (direct - through).abs().max()


def test_the_loss_weighs_the_hard_labels_against_the_teacher():
    hard = torch.nn.CrossEntropyLoss()
    logits = torch.randn(5, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0])
    teacher = torch.randn(5, 4)
    only_hard = DistillLoss(hard, lambda x: x, temperature=2.0, alpha=1.0)
    assert torch.isclose(only_hard(logits, (labels, teacher)), hard(logits, labels))
    only_teacher = DistillLoss(hard, lambda x: x, temperature=2.0, alpha=0.0)
    assert only_teacher(logits.detach(), (labels, logits.detach())).abs() < 1e-6  # a student equal to its teacher
    loss = only_teacher(logits, (labels, teacher))
    loss.backward()
    with torch.no_grad():  # one step down the gradient moves the student towards the teacher
        assert only_teacher(logits - 0.1 * logits.grad, (labels, teacher)) < loss
    half = DistillLoss(hard, lambda x: x, temperature=2.0, alpha=0.5)(logits, (labels, teacher))
    assert torch.isclose(half, 0.5 * hard(logits, labels) + 0.5 * loss)


@pytest.mark.parametrize(("change", "message"), [
    ("label", "has label"), ("fold", "has fold"), ("image", "only in"), ("folds", "cv.folds=3"),
    ("classes", "classes")])
def test_a_student_split_otherwise_is_refused_naming_the_first_difference(tmp_path: Path, change: str,
                                                                         message: str):
    run, frame = teacher_run(tmp_path)
    teacher = open_teacher(run, "distill.teacher")
    cfg = build_config([], ["cv.folds=3", "data.root=data"])
    classes = list(CLASSES)
    check_same_folds(teacher, cfg, frame, classes)  # the same split passes
    frame = frame.copy()
    if change == "label":
        frame.loc[4, "label"] = 3
    elif change == "fold":
        frame.loc[4, "fold"] = 2
    elif change == "image":
        frame.loc[4, "path"] = "elsewhere.jpg"
    elif change == "folds":
        cfg = build_config([], ["cv.folds=4", "data.root=data"])
    else:
        classes = classes[::-1]
    with pytest.raises(TeacherError, match=message) as err:
        check_same_folds(teacher, cfg, frame, classes)
    assert "\n" not in str(err.value)


def test_an_unfinished_or_absent_teacher_is_one_line(tmp_path: Path):
    with pytest.raises(TeacherError, match="not a folder"):
        open_teacher(tmp_path / "nothing", "distill.teacher")
    (tmp_path / "half").mkdir()
    with pytest.raises(TeacherError, match="did not finish"):
        open_teacher(tmp_path / "half", "distill.teacher")


def test_unlabeled_images_have_no_hard_label_and_the_hard_loss_skips_them(tmp_path: Path):
    from PIL import Image

    from foldtrain.data.cache import build_cache
    from foldtrain.data.loaders import CachedImageDataset
    from foldtrain.model.losses import ClassificationLoss, balanced_weights
    from foldtrain.teach.distill import with_unlabeled

    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((8, 8, 3), i * 40, dtype=np.uint8)).save(paths[-1])
    labelled = CachedImageDataset(build_cache(paths[:3], (8, 8), tmp_path / "c"), np.arange(3), np.array([0, 2, 1]))
    data = with_unlabeled(labelled, build_cache(paths[3:], (8, 8), tmp_path / "c"), None, 4)
    targets = torch.stack([data[i][1] for i in range(len(data))])
    assert len(data) == 5 and targets[:3].argmax(1).tolist() == [0, 2, 1] and (targets[3:] == 0).all()
    hard = ClassificationLoss("ce", class_weights=balanced_weights(np.array([1, 1, 1, 1])))
    logits = torch.randn(5, 4)
    assert torch.isclose(hard(logits, targets), hard(logits[:3], targets[:3]))  # the unlabeled rows add nothing
    smoothed = ClassificationLoss("ce", label_smoothing=0.1, class_weights=balanced_weights(np.ones(4)))
    assert torch.isclose(smoothed(logits, targets), smoothed(logits[:3], targets[:3]))
