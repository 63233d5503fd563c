"""A taught run inherits its teacher's optimism: a teacher already fitted or chosen on fold k's rows (a `best`
checkpoint, early stopping, a naive pseudo-label pool, or a leaky teacher of its own) makes every estimate of the
student optimistic, through any number of rounds, and the headline, caveats and tuning objective say so."""

from __future__ import annotations

import json
from pathlib import Path

from foldtrain.config import build_config
from foldtrain.teach.setup import mark_inherited_optimism
from foldtrain.teach.teacher_run import open_teacher
from foldtrain.track.results import caveats, headline
from foldtrain.tune.report import objective_value
from tests.teach.runs import teacher_run


def student_summary() -> dict:
    """A student's summary as write_results leaves it under the `last` rule: nothing chosen on its own rows."""
    return {"oof_f1": 0.8, "oof_f1_honest": 0.79, "oof_f1_honest_ci": [0.7, 0.85], "oof_f1_last": 0.8,
            "oof_rule": "last", "oof_rule_note": None, "cv_f1_mean": 0.8, "cv_f1_std": 0.01, "estimate_notes": {}}


def with_summary(run: Path, **extra) -> None:
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(summary | extra))


def test_a_clean_teacher_leaves_a_clean_round_clean(tmp_path: Path):
    run, _ = teacher_run(tmp_path)
    summary = student_summary()
    mark_inherited_optimism(summary, build_config([], [f"pseudo.teacher={run}"]), open_teacher(run, "pseudo.teacher"))
    assert summary == student_summary() and caveats(summary) == []
    assert objective_value(summary) == 0.8


def test_a_teacher_that_chose_its_epochs_on_fold_k_makes_every_student_estimate_optimistic(tmp_path: Path):
    run, _ = teacher_run(tmp_path)
    with_summary(run, oof_rule_note="each fold's epoch is its best by validation F1 on the rows it scores")
    for key in ("pseudo.teacher", "distill.teacher"):
        summary = student_summary()
        mark_inherited_optimism(summary, build_config([], [f"{key}={run}"]), open_teacher(run, key))
        assert "its best by validation F1" in summary["oof_rule_note"] and str(run) in summary["oof_rule_note"]
        assert summary["estimates_optimistic"] in summary["oof_rule_note"]
        assert "optimistic" in headline(summary)
        assert caveats(summary)[0].endswith("so is every estimate of this run")
        assert objective_value(summary) == 0.8  # not the honest figure: no epoch rule of the student undoes it
        assert summary["oof_f1_honest"] is None and "oof_f1_honest_ci" not in summary
        assert "oof_f1_honest is not reported" in " ".join(caveats(summary))


def test_a_naive_round_taints_every_later_round(tmp_path: Path):
    run, _ = teacher_run(tmp_path)
    naive = student_summary()
    mark_inherited_optimism(naive, build_config([], [f"pseudo.teacher={run}", "pseudo.naive=true"]),
                            open_teacher(run, "pseudo.teacher"))
    assert naive["estimates_optimistic"].startswith("pseudo.naive=true")
    second = tmp_path / "second"
    second.mkdir()
    second_run, _ = teacher_run(second)  # the naive round, now teaching a clean round
    with_summary(second_run, oof_rule_note=naive["oof_rule_note"])
    clean_of_naive = student_summary()
    mark_inherited_optimism(clean_of_naive, build_config([], [f"pseudo.teacher={second_run}"]),
                            open_teacher(second_run, "pseudo.teacher"))
    assert "pseudo.naive=true" in clean_of_naive["oof_rule_note"] and clean_of_naive["estimates_optimistic"]
