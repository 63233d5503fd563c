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
