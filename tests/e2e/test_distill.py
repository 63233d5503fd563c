"""Distillation end to end through the real CLIs: a teacher run, a student run taught by it with the deployable
all-data student (`distill.final`), the student's record (summary, MLflow tags), prediction and export of the final
student alone, and a student split otherwise refused with one line before any folder is made."""

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


def test_a_student_learns_from_its_teacher_folds_and_ships_one_model(demo_root: Path, tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = [f"data.root={demo_root}", *TINY, f"mlflow.tracking_uri={uri}"]
    teacher = accelerate_launch([*common, "run.name=teacher", "mlflow.log_model=false"], cwd=tmp_path)
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    teacher_dir = tmp_path / "runs" / "teacher"

    student = accelerate_launch([*common, "run.name=student", f"distill.teacher={teacher_dir}", "distill.final=true",
                                 "distill.temperature=3", "distill.alpha=0.3", "distill.tta=flips", "aug.cutmix=0.5",
                                 "mlflow.log_model=false"], cwd=tmp_path)
    assert student.returncode == 0, student.stderr[-3000:]
    assert "deployable student" in student.stderr and "expected F1" in student.stderr
    run = tmp_path / "runs" / "student"
    summary = json.loads((run / "summary.json").read_text())
    teacher_id = json.loads((teacher_dir / "tracking.json").read_text())["parent_id"]
    distill = summary["distill"]
    assert distill["teacher_run_id"] == teacher_id and distill["temperature"] == 3
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
