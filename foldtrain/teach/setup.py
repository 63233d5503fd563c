"""Wiring a taught run: open its teacher before the run claims a folder, then, once the data is read, check the
split row by row and add what the teacher brings to the session (the unlabeled images of `distill.data`, the
labelled pool of `pseudo.teacher`)."""

from __future__ import annotations

import dataclasses

from foldtrain.config import Config, fits_all_data
from foldtrain.teach.teacher_run import (
    TeacherError,
    TeacherRun,
    check_same_folds,
    check_same_split_settings,
    check_taught_folds,
    open_teacher,
)
from foldtrain.train.session import Session


def open_teacher_of(cfg: Config) -> TeacherRun | None:
    """The run named by `distill.teacher` or `pseudo.teacher` (None when neither), checked to split as this run."""
    key = "distill.teacher" if cfg.distill.teacher else "pseudo.teacher" if cfg.pseudo.teacher else None
    if key is None:
        return None
    teacher = open_teacher(cfg.distill.teacher or cfg.pseudo.teacher, key)
    check_same_split_settings(teacher, cfg)
    if cfg.pseudo.warm_start and (teacher.cfg.model.name, teacher.cfg.model.heads) != (cfg.model.name,
                                                                                          cfg.model.heads):
        raise TeacherError(f"pseudo.warm_start=true (the default) starts each fold from the teacher's weights: it "
                           f"needs the teacher's model.name={teacher.cfg.model.name} and model.heads="
                           f"{teacher.cfg.model.heads}; set pseudo.warm_start=false to train another model from "
                           f"scratch")
    return teacher


def taught_session(session: Session, teacher: TeacherRun, folds: list[int]) -> Session:
    """The session with the teacher's split checked against the data and the teacher's extras added."""
    cfg, data, accelerator = session.cfg, session.data, session.accelerator
    check_same_folds(teacher, cfg, data.frame, data.classes)
    check_taught_folds(teacher, folds)
    if cfg.distill.data:
        from foldtrain.teach.distill import unlabeled_cache

        session = dataclasses.replace(session, unlabeled=unlabeled_cache(cfg, data.size_hw, accelerator,
                                                                         data.face_fallback))
    if cfg.pseudo.teacher:
        from foldtrain.teach.pseudo import ALL_DATA, check_calibration, label_pool

        fits = folds + ([ALL_DATA] if fits_all_data(cfg) else [])
        check_calibration(cfg, teacher, fits)
        session = dataclasses.replace(session, pool=label_pool(cfg, teacher, session.folder, fits, data.size_hw,
                                                               data.face_fallback, accelerator, session.heads.name))
    return session


NAIVE_NOTE = ("pseudo.naive=true: every fold's pool was labelled by the whole teacher ensemble, whose other folds "
              "trained on this fold's validation persons (a clean round: pseudo.naive=false)")


def inherited_optimism(cfg: Config, teacher: TeacherRun) -> str | None:
    """Why every out-of-fold estimate of a taught run reads high whatever its own epoch rule (a naive pseudo-label
    pool, or a teacher that was already optimistic on the rows the student is scored on), or None."""
    naive = NAIVE_NOTE if cfg.pseudo.teacher and cfg.pseudo.naive else None
    return "; ".join(filter(None, [naive, teacher.optimism()])) or None


def mark_inherited_optimism(summary: dict, cfg: Config, teacher: TeacherRun) -> None:
    """When a taught run inherits a leak: mark its summary as any optimistic epoch rule is (the headline, caveats,
    blending and tuning read `oof_rule_note`), and withdraw the estimates that no epoch rule of its own can make
    honest (`oof_f1_last`, `oof_f1_honest` become null, the reason in `estimate_notes`, `estimates_optimistic`)."""
    leak = inherited_optimism(cfg, teacher)
    if not leak:
        return
    summary["oof_rule_note"] = "; ".join(filter(None, [leak, summary.get("oof_rule_note")]))
    summary["estimates_optimistic"] = leak
    for key in ("oof_f1_last", "oof_f1_honest"):
        summary[key] = None
        summary.pop(f"{key}_ci", None)
        summary.setdefault("estimate_notes", {})[key] = "the run inherits a leak (oof_rule_note) no epoch rule undoes"
