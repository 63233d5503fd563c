"""Knowledge distillation from a fold ensemble with TTA, on the student's own augmented batches.

The teacher runs online on each training batch, after the student's augmentation (crop, flip, erasing, CutMix or
Mixup): teacher and student see the same pixels. Cached teacher targets would be exact only without random
augmentation, and a student trained on fixed views loses most of what augmentation gives. The cost is the
teacher's forward passes: one per TTA view per teaching fold model, no backward pass.

timm's `DistillationTeacher` holds each teacher model and maps the student's normalised input to the teacher's
normalisation; the loss is timm's logit distillation (KL with temperature, scaled by T^2, batch mean) on the
class scores, weighted against the hard-label loss by `distill.alpha`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.task.distillation import DistillationTeacher
from torch.utils.data import ConcatDataset

from foldtrain.config import Config, cache_root
from foldtrain.data.cache import build_cache, open_cache
from foldtrain.data.loaders import CachedImageDataset, WithTargets
from foldtrain.data.transforms import working_size
from foldtrain.model.fold_ensemble import FoldModel, FoldScorer
from foldtrain.run.folder import WEIGHTS, RunFolder
from foldtrain.teach.teacher_run import TeacherRun
from foldtrain.train.batch import BatchPrep


class EnsembleTeacher(torch.nn.Module):
    """Mean class scores of some teacher fold models over their TTA views, on a batch normalised for the student.

    Args:
        models: the teaching fold models (fold k's alone for the student's fold k).
        tta: the teacher's TTA policy.
        device: where the teacher runs.
        size_hw: the student's input size; a teacher trained at another size sees the batch resized (bilinear,
            antialiased), which is close to, not exactly, its own preprocessing.
    """

    def __init__(self, models: list[FoldModel], tta: str, device: torch.device, size_hw: tuple[int, int]):
        super().__init__()
        self.size_hw = tuple(size_hw)
        self.teachers = torch.nn.ModuleList()
        self.sizes: list[tuple[int, int]] = []
        for fold in models:
            scorer = FoldScorer(fold, tta, device)
            teacher = DistillationTeacher(scorer.tta, device=device)
            # The fold's own normalisation (timm's default reads the model's pretrained config; a fold may have
            # measured its own with data.normalize=dataset). DeviceNormalize keeps both in 0-255 units, as does
            # the student's, so the affine map between them is exact.
            teacher.mean_kd, teacher.std_kd = scorer.normalize.mean.clone(), scorer.normalize.std.clone()
            teacher.requires_grad_(False)
            self.teachers.append(teacher)
            self.sizes.append(fold.size_hw)

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, student_mean: torch.Tensor, student_std: torch.Tensor) -> torch.Tensor:
        total = None
        for teacher, size in zip(self.teachers, self.sizes, strict=True):
            x = teacher.normalize_input(inputs, student_mean, student_std)
            if tuple(size) != tuple(x.shape[-2:]):
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            scores = teacher(x).float()
            total = scores if total is None else total + scores
        return total / len(self.teachers)


class DistillPrep(torch.nn.Module):
    """The student's batch preparation, plus the teacher's scores on the prepared batch as part of the targets."""

    def __init__(self, prep: BatchPrep, teacher: EnsembleTeacher, autocast: Callable = contextlib.nullcontext):
        super().__init__()
        self.prep, self.teacher, self.autocast = prep, teacher, autocast

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        inputs, targets = self.prep(images, labels)
        with self.autocast():
            taught = self.teacher(inputs, self.prep.normalize.mean, self.prep.normalize.std)
        return inputs, (targets, taught.float())


class DistillLoss(torch.nn.Module):
    """alpha x the hard-label loss + (1 - alpha) x T^2 x KL(teacher || student) on tempered class scores.

    Both sides are class scores (`Heads.class_scores`): logits for one head, joint log-probabilities for three heads,
    where tempering the joint equals tempering each head, so a one-head student can learn from a three-head teacher
    and back.
    """

    def __init__(self, hard_loss: Callable, class_scores: Callable, temperature: float, alpha: float):
        super().__init__()
        self.hard_loss, self.class_scores = hard_loss, class_scores
        self.temperature, self.alpha = temperature, alpha

    def forward(self, outputs: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        hard_target, teacher_scores = target
        t = self.temperature
        student = F.log_softmax(self.class_scores(outputs).float() / t, dim=1)
        teacher = F.log_softmax(teacher_scores.float() / t, dim=1)
        kd = F.kl_div(student, teacher, reduction="batchmean", log_target=True) * (t * t)
        if self.alpha == 0:
            return kd
        return self.alpha * self.hard_loss(outputs, hard_target) + (1 - self.alpha) * kd


def unlabeled_cache(cfg: Config, size_hw: tuple[int, int], accelerator, face_fallback: dict | None) -> Path:
    """`distill.data` decoded at the student's working size (face-cropped as training is), built by the main
    process first."""
    from foldtrain.data.prepare import source_root
    from foldtrain.data.tables import read_eval

    with accelerator.main_process_first():
        table = read_eval(source_root(cfg, Path(cfg.distill.data), face_fallback), cfg.data.follow_symlinks)
        return build_cache([Path(p) for p in table["path"]], working_size(size_hw), cache_root(cfg),
                           check_every_row=accelerator.is_main_process)


def with_unlabeled(labelled: CachedImageDataset, cache: Path, transform, num_classes: int) -> ConcatDataset:
    """A fit's labelled rows (one-hot targets) and the unlabeled images (all-zero targets: no hard label, so the
    hard-label loss skips them, and CutMix / Mixup mix in no label mass); the teacher's scores teach both."""
    count = len(open_cache(cache))
    pool = CachedImageDataset(cache, np.arange(count), None, transform)
    hard = np.eye(num_classes, dtype=np.float32)[labelled.labels]
    return ConcatDataset([WithTargets(labelled, hard), WithTargets(pool, np.zeros((count, num_classes), np.float32))])


def distill_summary(cfg: Config, teacher: TeacherRun, folder: RunFolder, summary: dict) -> dict:
    """summary.json's `distill`: the teacher, the settings, and what the student's figures estimate.

    The k-fold students' out-of-fold scores are clean (fold k's student learnt from the teacher's fold k alone,
    which never saw fold k's validation persons), unless that teacher was itself optimistic on them (then
    `oof_clean` is null and the summary's `estimates_optimistic` says why). The deployable student
    (`distill.final`) learnt from every fold and has no rows left to score it: its expected score is the k-fold
    students' estimate, stated as such.
    """
    d = cfg.distill
    out = {"teacher": str(teacher.folder.path), "teacher_run_id": teacher.run_id,
           "teacher_model": teacher.cfg.model.name, "teacher_oof_f1": teacher.summary.get("oof_f1"),
           "teacher_oof_f1_tta": teacher.summary.get("oof_f1_tta"), "temperature": d.temperature, "alpha": d.alpha,
           "tta": d.tta, "unlabeled": str(Path(d.data).resolve()) if d.data else None,
           "oof_clean": None if summary.get("estimates_optimistic") else
           "fold k's student learnt from the teacher's fold k model alone"}
    final = (folder.full / WEIGHTS).resolve()
    if d.final and final.is_file():
        key = "oof_f1_honest" if summary.get("oof_rule_note") and summary.get("oof_f1_honest") is not None else "oof_f1"
        expected, ci = summary[key], summary.get(f"{key}_ci")
        interval = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
        out |= {"final_model": str(final), "final_expected_f1": expected, "final_expected_f1_ci": ci,
                "final_expected_from": key,
                "final_note": f"deployable student {final}: expected F1 {expected:.4f}{interval}"
                              f"{', optimistic' if summary.get('estimates_optimistic') else ''}, the k-fold "
                              f"students' {key} (an estimate for it, not a score of it: it learnt from every "
                              f"teacher fold and has no held-out rows); predict with ensemble.predict --run "
                              f"{folder.path} --full-only --tta none"}
    return out
