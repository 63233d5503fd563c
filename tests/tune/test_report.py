"""The selection-corrected estimate: the best trial is chosen without the fold it is scored on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foldtrain.tune.report import objective_value, selection_corrected

PERSONS, FOLDS, CLASSES = 12, 3, 2


def rows() -> pd.DataFrame:
    persons = np.repeat(np.arange(PERSONS), 2)
    return pd.DataFrame({"path": [f"p{p:02d}/{i}.jpg" for p, i in zip(persons, np.tile([0, 1], PERSONS), strict=True)],
                         "person": [f"p{p:02d}" for p in persons], "label": persons % CLASSES,
                         "fold": persons % FOLDS})


def trial(tmp_path: Path, name: str, right_on: set[int], note: str | None = None) -> Path:
    """A run whose predictions are right on the folds in `right_on` and wrong elsewhere."""
    table = rows()
    right = table["fold"].isin(right_on).to_numpy()
    table["pred"] = np.where(right, table["label"], 1 - table["label"])
    run = tmp_path / name
    run.mkdir()
    table[["path", "label", "fold", "pred"]].to_csv(run / "oof.csv", index=False)
    table[["path", "person", "label", "fold"]].to_csv(run / "folds.csv", index=False)
    (run / "summary.json").write_text(json.dumps({"classes": ["a", "b"], "oof_rule_note": note}))
    return run


def test_each_fold_is_scored_by_the_trial_chosen_on_the_other_folds(tmp_path: Path):
    # a: right on folds 0 and 1; b: right on fold 2 only; c: right on folds 1 and 2
    a, b, c = trial(tmp_path, "a", {0, 1}), trial(tmp_path, "b", {2}), trial(tmp_path, "c", {1, 2})
    nested = selection_corrected([a, b, c])
    # fold 0 held out: c (right on 1 and 2) wins on the rest and is wrong on fold 0;
    # fold 1 held out: a and c tie on folds 0 and 2 (one right fold each), the earlier trial a is taken, right on 1;
    # fold 2 held out: a wins on folds 0 and 1 and is wrong on fold 2
    assert nested["chosen"] == {0: "c", 1: "a", 2: "a"}
    assert nested["f1"] == pytest.approx(1 / 3)  # one fold of three right, both classes alike
    low, high = nested["ci"]
    assert low <= nested["f1"] <= high and nested["optimistic_sources"] == []


def test_one_trial_has_no_choice_to_correct_and_other_rows_are_refused(tmp_path: Path):
    a = trial(tmp_path, "a", {0})
    assert selection_corrected([a]) is None
    other = trial(tmp_path, "other", {0})
    table = pd.read_csv(other / "oof.csv")
    table.iloc[:-2].to_csv(other / "oof.csv", index=False)
    with pytest.raises(ValueError, match="do not share their images"):
        selection_corrected([a, other])


def test_the_objective_is_the_honest_figure_of_the_kept_epochs():
    assert objective_value({"oof_f1": 0.6, "oof_f1_honest": 0.5, "oof_rule_note": None}) == 0.6  # last: honest
    assert objective_value({"oof_f1": 0.7, "oof_f1_honest": 0.5, "oof_rule_note": "best epochs"}) == 0.5
    assert objective_value({"oof_f1": 0.7, "oof_f1_honest": None, "oof_rule_note": "best epochs"}) == 0.7
