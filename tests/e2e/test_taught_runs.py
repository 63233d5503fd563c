"""Runs taught by another run, end to end through the real CLIs.

Distillation: a student run taught by a teacher run with the deployable all-data student (`distill.final`), its
record (summary, MLflow tags), prediction and export of the final student alone, and a student split otherwise
refused with one line before any folder is made. Pseudo-labels: a round on the teacher's eval images, its record
and pseudo-label table (also in MLflow), and prediction with the round's folds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import accelerate_launch, no_traceback, run_main, run_module

pytestmark = pytest.mark.slow

TINY = ["model.name=resnet10t", "data.image_size=32", "train.batch_size=16", "data.num_workers=0", "cv.folds=2",
        "train.epochs=1"]


@pytest.fixture(scope="module")
def teacher(demo_root: Path, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("taught")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    common = [f"data.root={demo_root}", *TINY, f"mlflow.tracking_uri={uri}"]
    result = accelerate_launch([*common, "run.name=teacher", "mlflow.log_model=false"], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    run = work / "runs" / "teacher"
    return {"work": work, "uri": uri, "common": common, "run": run,
            "id": json.loads((run / "tracking.json").read_text())["parent_id"]}


def test_a_student_learns_from_its_teacher_folds_and_ships_one_model(teacher: dict, demo_root: Path):
    tmp_path, uri, common, teacher_dir = teacher["work"], teacher["uri"], teacher["common"], teacher["run"]

    student = accelerate_launch([*common, "run.name=student", f"distill.teacher={teacher_dir}", "distill.final=true",
                                 "distill.temperature=3", "distill.alpha=0.3", "distill.tta=flips", "aug.cutmix=0.5",
                                 f"distill.data={demo_root / 'eval'}",
                                 "mlflow.log_model=false"], cwd=tmp_path)
    assert student.returncode == 0, student.stderr[-3000:]
    assert "deployable student" in student.stderr and "expected F1" in student.stderr
    run = tmp_path / "runs" / "student"
    summary = json.loads((run / "summary.json").read_text())
    teacher_id = teacher["id"]
    distill = summary["distill"]
    assert distill["teacher_run_id"] == teacher_id and distill["temperature"] == 3
    assert distill["unlabeled"] == str((demo_root / "eval").resolve())
    assert distill["final_expected_f1"] == summary["oof_f1"] and Path(distill["final_model"]).is_file()
    assert summary["folds_trained"] == [0, 1] and (run / "full" / "model.safetensors").is_file()
    tags = MlflowClient(uri).get_run(json.loads((run / "tracking.json").read_text())["parent_id"]).data.tags
    assert tags["foldtrain.kind"] == "distill" and tags["foldtrain.teacher_run_id"] == teacher_id

    out = tmp_path / "final.csv"
    alone = run_module("ensemble.predict", ["--run", str(run), "--full-only", "--tta", "none", "--out", str(out)],
                       cwd=tmp_path)
    assert alone.returncode == 0 and "x 1 folds x none TTA" in alone.stderr, alone.stderr[-3000:]
    info = pd.read_csv(demo_root / "eval" / "info.csv")
    assert pd.read_csv(out)["ImageID"].tolist() == info["ImageID"].tolist()
    onnx_file = tmp_path / "student.onnx"
    exported = run_module("ensemble.export", ["--run", str(run), "--fold", "full", "--tta", "none", "--out",
                                              str(onnx_file)], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    served = run_module("ensemble.predict", ["--onnx", str(onnx_file), "--data", str(demo_root / "eval"), "--out",
                                             str(tmp_path / "onnx.csv")], cwd=tmp_path)
    assert served.returncode == 0, served.stderr[-3000:]
    assert pd.read_csv(tmp_path / "onnx.csv").equals(pd.read_csv(out))  # the same class for every eval image

    # without the launcher, whose own traceback of a failed child would hide ours
    other = run_main([*common, "run.name=other", f"distill.teacher={teacher_dir}", "cv.seed=7"], cwd=tmp_path)
    assert other.returncode == 1 and no_traceback(other)
    assert [line for line in other.stderr.splitlines() if "error:" in line] == [other.stderr.strip().splitlines()[-1]]
    assert "cv.seed=42" in other.stderr and "share its teacher's folds" in other.stderr
    assert not (tmp_path / "runs" / "other").exists()


def test_a_pseudo_label_round_labels_fold_k_with_teacher_fold_k(teacher: dict, demo_root: Path):
    work, uri, common = teacher["work"], teacher["uri"], teacher["common"]
    result = accelerate_launch([*common, "run.name=round", f"pseudo.teacher={teacher['run']}", "pseudo.select=quantile",
                                "pseudo.quantile=0.3",
                                "pseudo.warm_start=true", "mlflow.log_model=false"], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    run = work / "runs" / "round"
    summary = json.loads((run / "summary.json").read_text())
    pseudo = summary["pseudo"]
    eval_images = len(pd.read_csv(demo_root / "eval" / "info.csv"))
    assert pseudo["teacher_run_id"] == teacher["id"] and pseudo["pool_images"] == eval_images
    assert pseudo["oof_note"].startswith("clean") and not summary.get("oof_rule_note")
    assert pseudo["pool_note"] in result.stderr and "will mostly answer those" in pseudo["pool_note"]
    table = pd.read_csv(run / "pseudo_labels.csv")
    assert sorted(table["fold"].unique()) == [0, 1]
    assert (table["teacher_folds"].astype(str) == table["fold"].astype(str)).all()  # fold k: teacher fold k alone
    assert 0 < table["kept"].sum() < len(table) and {str(k): v for k, v in pseudo["kept"].items()} == {
        str(k): int(v) for k, v in table.groupby("fold")["kept"].sum().items()}
    client = MlflowClient(uri)
    parent = json.loads((run / "tracking.json").read_text())["parent_id"]
    tags = client.get_run(parent).data.tags
    assert tags["foldtrain.kind"] == "pseudo" and tags["foldtrain.teacher_run_id"] == teacher["id"]
    assert "pseudo_labels.csv" in {a.path for a in client.list_artifacts(parent)}
    predicted = run_module("ensemble.predict", ["--run", str(run), "--out", str(work / "round.csv")], cwd=work)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    naive = accelerate_launch([*common, "run.name=naive", f"pseudo.teacher={teacher['run']}", "pseudo.naive=true",
                               "pseudo.soft=true", "pseudo.temperature=0.5", "pseudo.tta=none", "cv.only=[0]",
                               "pseudo.warm_start=false",
                               f"pseudo.data={demo_root / 'eval'}", "mlflow.log_model=false"], cwd=work)
    assert naive.returncode == 0, naive.stderr[-3000:]
    assert "oof_f1 is optimistic: pseudo.naive=true" in naive.stderr
    leaky = json.loads((work / "runs" / "naive" / "summary.json").read_text())
    assert leaky["oof_rule_note"] == leaky["pseudo"]["oof_note"] and leaky["pseudo"]["soft"]
    assert (pd.read_csv(work / "runs" / "naive" / "pseudo_labels.csv")["teacher_folds"] == "0 1").all()
    # the next round, taught by this one, keeps the labels its teacher's other folds vouch for
    second = accelerate_launch([*common, "run.name=round2", f"pseudo.teacher={run}", "pseudo.precision=0.3",
                                "pseudo.weight=0.5", "cv.only=[0]", "mlflow.log_model=false"], cwd=work)
    assert second.returncode == 0, second.stderr[-3000:]
    chained = json.loads((work / "runs" / "round2" / "summary.json").read_text())["pseudo"]
    second_table = pd.read_csv(work / "runs" / "round2" / "pseudo_labels.csv")
    assert chained["select"] == "precision" and chained["precision"] == 0.3 and chained["quantile"] is None
    assert chained["weight"] == 0.5
    assert chained["kept"] == {"0": int(second_table["kept"].sum())}
    reached = second_table["oof_precision"].dropna().unique()
    assert len(reached) <= 1 and chained.get("kept_oof_precision", {}).get("0") == (reached[0] if len(reached)
                                                                                     else None)
    lone = run_main([*common, "run.name=round3", f"pseudo.teacher={work / 'runs' / 'naive'}", "cv.only=[0]"],
                    cwd=work)  # the naive round scored fold 0 alone: nothing to set fold 0's thresholds on
    assert lone.returncode == 1 and no_traceback(lone) and "pseudo.select=quantile" in lone.stderr
    refused = run_main([*common, "run.name=other2", f"pseudo.teacher={teacher['run']}", "cv.folds=3"], cwd=work)
    assert refused.returncode == 1 and no_traceback(refused) and "cv.folds=2" in refused.stderr
    other_model = run_main([*common, "run.name=other3", f"pseudo.teacher={teacher['run']}", "model.name=resnet18"],
                           cwd=work)
    assert other_model.returncode == 1 and "set pseudo.warm_start=false" in other_model.stderr
