"""`python -m ensemble.audit` through the real CLIs: a trained run is audited, a copied person is paired with its
original, the label fixes it writes (the run's own merged with the suspects') are what a new run's
data.label_fixes takes, and the tables reach MLflow. Which persons a briefly trained model suspects depends on its
arithmetic, so the method's recall and precision are tested on constructed scores (tests/ensemble/test_audit.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import run_main, run_module

pytestmark = pytest.mark.slow

TINY = ["model.name=resnet10t", "data.image_size=32", "train.batch_size=16", "cv.folds=3", "train.epochs=2",
        "data.num_workers=0", "mlflow.log_model=false"]


def test_a_run_is_audited_and_its_fixes_apply(demo_root: Path, tmp_path: Path):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    table = pd.read_csv(root / "train" / "train.csv", dtype={"id": str})
    original = table.iloc[1]
    copy_name = f"000999_{original['gender']}_{original['race']}_{original['age']}"
    (root / "train" / "images" / copy_name).mkdir()
    for photo in (root / "train" / "images" / original["path"]).iterdir():
        if not photo.name.startswith("._"):  # the same person under a new id, photos re-encoded
            Image.open(photo).convert("RGB").save(root / "train" / "images" / copy_name / f"{photo.stem}.jpg",
                                                  quality=85)
    extra = {"id": "000999", "gender": original["gender"], "race": original["race"], "age": original["age"],
             "path": copy_name}
    pd.concat([table, pd.DataFrame([extra])]).to_csv(root / "train" / "train.csv", index=False)
    earlier = tmp_path / "earlier_fixes.csv"
    earlier.write_text(f"id,fix\n{table['id'].iloc[3]},swap_incorrect_normal\n")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    trained = run_main([f"data.root={root}", *TINY, "run.name=audited", f"data.label_fixes={earlier}",
                        f"mlflow.tracking_uri={uri}"], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = tmp_path / "runs" / "audited"

    audited = run_module("ensemble.audit", ["--run", str(run)], cwd=tmp_path)
    assert audited.returncode == 0, audited.stderr[-3000:]
    out = run / "audit"
    issues = pd.read_csv(out / "label_issues.csv")
    assert list(issues.columns) == ["person", "kind", "given", "suggested", "score", "images"]
    assert set(issues["kind"]) <= {"gender", "age", "mask_swap"} and issues["score"].is_monotonic_decreasing
    for kind in ("gender", "age", "mask_swap"):  # one summary line per kind
        assert f"INFO ensemble: {kind}: " in audited.stderr
    pairs = pd.read_csv(out / "duplicates.csv")
    assert sorted(pairs[["person_a", "person_b"]].iloc[0]) == sorted([original["path"], copy_name])
    assert pairs["similarity"].iloc[0] == 1.0 and len(pairs) == 1
    folds = pd.read_csv(run / "folds.csv").groupby("person")["fold"].first()
    assert pairs["fold_a"].iloc[0] == folds[pairs["person_a"].iloc[0]]
    fixes = pd.read_csv(out / "label_fixes.csv", dtype={"id": str})
    assert table["id"].iloc[3] in set(fixes["id"])  # the run's own fix is kept (or undone by a suspected swap)
    assert (out / "suspects.png").exists() == (len(issues) > 0)

    parent = json.loads((run / "tracking.json").read_text())["parent_id"]
    logged = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(parent, "audit")}
    assert {"audit/label_issues.csv", "audit/duplicates.csv", "audit/label_fixes.csv"} <= logged

    again = run_main([f"data.root={root}", *TINY, "train.epochs=1", "cv.only=[0]", "run.name=fixed",
                      f"data.label_fixes={out / 'label_fixes.csv'}", f"mlflow.tracking_uri={uri}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"applied to {fixes['id'].nunique()} persons" in again.stderr


def test_a_missing_run_is_one_line(tmp_path: Path):
    result = run_module("ensemble.audit", ["--run", str(tmp_path / "nope")], cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ensemble.audit: error:")
