"""`python -m foldtrain.track.register`: one clear line when a run cannot be registered."""

from __future__ import annotations

import json
from pathlib import Path

from foldtrain.track import register


def test_a_missing_run_or_a_run_without_a_model_is_one_line(tmp_path: Path, capsys):
    assert register.main([str(tmp_path / "nope"), "m"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no summary.json" in err
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"folds_trained": [0], "oof_f1": 0.5}))
    assert register.main([str(run), "m"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no logged MLflow model" in err and "mlflow.log_model=true" in err


def test_score_tags_name_each_figure_with_its_interval():
    tags = register.score_tags({"run_name": "r", "oof_rule": "last", "ci_level": 0.9, "oof_f1": 0.51234,
                                "oof_f1_ci": [0.41, 0.6], "oof_f1_honest": None})
    assert tags["oof_f1"] == "0.5123 [0.410, 0.600]" and tags["oof_f1_honest"] == "n/a"
    assert tags["ci_level"] == "90%" and tags["oof_rule"] == "last"


def test_a_relative_sqlite_store_is_recorded_absolute_and_the_ui_address_opens_model_training(tmp_path: Path,
                                                                                              monkeypatch):
    from foldtrain.track.mlflow_tracker import resolve_tracking_uri, ui_address

    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert ui_address("http://host:8080/", "3", "abc") == \
        "open http://host:8080/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert ui_address("sqlite:///mlflow.db", "1", "abc").startswith(
        f"run `mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve() / 'mlflow.db'}` and open "
        "http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning")
