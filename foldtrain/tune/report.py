"""What a study found, honestly: `study.json`, `best.yaml` and the selection-corrected estimate.

The best trial's own out-of-fold F1 is the maximum over noisy trials, so it reads high by construction. The
corrected estimate repeats the choice without the rows it is scored on (nested, as blending's nested CV does): for
each fold k, the trial with the best macro F1 on the other folds' out-of-fold rows is chosen, and its predictions
on fold k's rows are kept; the pooled held-out predictions give the F1 of "tune, then take the best". Every trial
of a study shares its folds, so the rows line up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from foldtrain.files import read_json, write_json, write_text
from foldtrain.train import metrics

STUDY_FILE, BEST_FILE = "study.json", "best.yaml"


def fold_epochs(run_dir: Path) -> int:
    """Epochs trained in a trial's run folder, all folds together (a pruned trial's partial folds included)."""
    return sum(max(0, len(f.read_text().splitlines()) - 1) for f in run_dir.glob("fold*/metrics.csv"))


def objective_value(summary: dict) -> float:
    """The score a study maximises, the run's honest out-of-fold F1: `oof_f1` (the kept epochs' oof.csv) when its
    checkpoint rule chose no epoch on the rows it scores (`last`, `honest`), else the summary's `oof_f1_honest`
    (the `honest` rule's epochs), else `oof_f1` (a run where no honest figure exists, e.g. one fold)."""
    if not summary.get("oof_rule_note") or summary.get("oof_f1_honest") is None:
        return float(summary["oof_f1"])
    return float(summary["oof_f1_honest"])


def selection_corrected(run_dirs: list[Path], level: float = 0.9) -> dict | None:
    """`{f1, ci, chosen: {fold: run}, optimistic_sources}` of the nested choice among finished trials; None with
    fewer than two trials (there is no choice to correct)."""
    from foldtrain.track.intervals import f1_interval

    if len(run_dirs) < 2:
        return None
    tables = {run: pd.read_csv(run / "oof.csv").set_index("path").sort_index() for run in run_dirs}
    first = next(iter(tables.values()))
    for run, table in tables.items():
        if not table.index.equals(first.index):
            raise ValueError(f"{run}: its out-of-fold rows differ from the other trials': the trials do not share "
                             f"their images")
    summaries = {run: read_json(run / "summary.json") for run in run_dirs}
    num_classes = len(next(iter(summaries.values()))["classes"])
    folds = sorted(first["fold"].unique())
    labels = first["label"].to_numpy()
    kept = np.empty(len(first), dtype=np.int64)
    chosen = {}
    for fold in folds:
        inner = (first["fold"] != fold).to_numpy()
        scores = {run: metrics.macro_f1(labels[inner], t["pred"].to_numpy()[inner], num_classes)
                  for run, t in tables.items()}
        best = max(scores, key=lambda run: (scores[run], -run_dirs.index(run)))
        chosen[int(fold)] = best.name
        kept[~inner] = tables[best]["pred"].to_numpy()[~inner]
    persons = pd.read_csv(run_dirs[0] / "folds.csv").set_index("path").loc[first.index, "person"].to_numpy()
    optimistic = sorted(run.name for run, s in summaries.items() if s.get("oof_rule_note"))
    return {"f1": metrics.macro_f1(labels, kept, num_classes),
            "ci": f1_interval(labels, kept, persons, num_classes, level=level), "chosen": chosen,
            "optimistic_sources": optimistic}


def trial_row(trial) -> dict:
    """One trial of study.json."""
    attrs = trial.user_attrs
    return {"number": trial.number, "state": trial.state.name, "params": trial.params,
            "oof_f1_honest": attrs.get("oof_f1_honest"), "oof_f1": attrs.get("oof_f1"),
            "fold_epochs": attrs.get("fold_epochs"), "run_dir": attrs.get("run_dir"),
            **{k: attrs[k] for k in ("pruned", "error") if k in attrs}}


def write_report(study, out: Path, level: float = 0.9) -> dict:
    """study.json (and best.yaml once a trial has finished) in `out`; returns the report."""
    from optuna.trial import TrialState

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    finished = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("run_dir")]
    report: dict = {"study": study.study_name, "trials": [trial_row(t) for t in trials],
                    "fold_epochs": sum(t.user_attrs.get("fold_epochs") or 0 for t in trials),
                    "best": None, "selection_corrected_f1": None, "selection_corrected_f1_ci": None}
    if finished:
        best = max(finished, key=lambda t: (t.value, -t.number))
        run_dir = Path(best.user_attrs["run_dir"])
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config.setdefault("run", {})["name"] = None  # a rerun gets its own folder
        write_text(out / BEST_FILE, yaml.safe_dump(config, sort_keys=False))
        report["best"] = {"number": best.number, "oof_f1_honest": best.user_attrs.get("oof_f1_honest"),
                          "oof_f1": best.user_attrs.get("oof_f1"), "params": best.params,
                          "run_dir": str(run_dir), "config": str(out / BEST_FILE)}
        nested = selection_corrected([Path(t.user_attrs["run_dir"]) for t in finished], level)
        if nested:
            # Choosing a trial can only inflate its score, so the nested estimate is capped at the best trial's own:
            # a nested figure above it is noise of mixing trials fold by fold (kept as `nested_f1`).
            report["selection_corrected_f1"] = min(nested["f1"], best.value)
            report["selection_corrected_f1_ci"] = nested["ci"]
            report["nested_f1"], report["selection_chosen"] = nested["f1"], nested["chosen"]
            if nested["optimistic_sources"]:
                report["selection_note"] = ("trials whose out-of-fold epochs were chosen on the rows they score: "
                                            + ", ".join(nested["optimistic_sources"]))
    write_json(out / STUDY_FILE, report)
    return report
