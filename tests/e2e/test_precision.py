"""bf16 mixed precision on the CPU through Accelerate's own setting: the preset the README points CPUs with
AVX512-BF16 to trains under autocast, says so, and keeps fp32 weights and finite scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from tests.conftest import REPO, cli_env, run_module

pytestmark = pytest.mark.slow


def test_the_cpu_bf16_preset_trains_under_autocast_with_fp32_weights(demo_root: Path, tmp_path: Path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "launch" / "accelerate" / "cpu_bf16.yaml"), str(REPO / "foldtrain" / "main.py"),
           f"data.root={demo_root}", "data.image_size=32", "train.batch_size=16", "cv.folds=3", "train.epochs=2",
           "data.num_workers=0", "run.name=bf16", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
           "mlflow.log_model=false"]
    result = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mixed precision bf16" in result.stderr
    assert "precision: bf16 autocast" in result.stderr  # the line saying which precision runs (native or emulated)
    assert "were not passed to `accelerate launch`" not in result.stderr  # the preset names every value
    run = tmp_path / "runs" / "bf16"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mixed_precision"] == "bf16" and np.isfinite(summary["oof_f1"])
    for fold in range(3):
        with safe_open(str(run / f"fold{fold}" / "model.safetensors"), "pt") as weights:
            assert {weights.get_tensor(k).dtype for k in weights.keys()} <= {torch.float32, torch.int64}
        with np.load(run / f"fold{fold}" / "val_scores.npz", allow_pickle=False) as scores:
            assert all(np.isfinite(scores[k]).all() for k in scores.files if scores[k].dtype.kind == "f")
    predicted = run_module("ensemble.predict", ["--run", str(run)], cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
