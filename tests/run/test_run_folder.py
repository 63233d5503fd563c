"""The run folder: one writer at a time, resumes that keep the recipe, checks before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from foldtrain.config import build_config
from foldtrain.run.folder import RunFolder, RunFolderError
from foldtrain.run.lock import RunLock
from foldtrain.run.recipe import check_same_recipe, recipe_differences
from foldtrain.run.start import check_start
from tests.conftest import REPO


def test_a_second_writer_is_refused_with_the_holders_pid_and_host(tmp_path: Path):
    holder = RunLock(tmp_path).acquire()
    code = ("import sys\nfrom foldtrain.run.lock import RunLock\n"
            "try:\n    RunLock(sys.argv[1]).acquire()\nexcept Exception as err:\n    print(err)\n    sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                            timeout=60)
    assert result.returncode == 3
    assert f"pid {os.getpid()} on host {os.uname().nodename}" in result.stdout and "run.name" in result.stdout
    (tmp_path / ".lock").unlink()  # deleting the file that names the holder lets no second writer in
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                            timeout=60)
    assert result.returncode == 3 and "in use by another process" in result.stdout
    holder.release()
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, timeout=60).returncode == 0


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path):
    code = "import os, sys\nfrom foldtrain.run.lock import RunLock\nRunLock(sys.argv[1]).acquire()\nos._exit(0)\n"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=REPO, timeout=60)
    RunLock(tmp_path).acquire().release()


def test_resume_recipe_differences_list_both_values():
    saved = build_config([], ["model.name=resnet10t", "data.image_size=96"])
    same = build_config([], ["train.resume=true", "data.num_workers=3", "train.gradcam=4", "mlflow.experiment=x",
                             "cv.only=[1]"])
    assert recipe_differences(saved, same) == []
    other = build_config([], ["model.name=resnet18", "data.image_size=64", "cv.seed=7", "facecrop.min_prob=0.5",
                              "train.lr=0.01", "train.epochs=20", "aug.hflip=0", "cv.parallel=folds"])
    differences = recipe_differences(saved, other)
    assert "model.name: 'resnet10t' in the run, 'resnet18' now" in differences
    # a restored optimizer and schedule would keep the old lr and length: half applied, so refused
    assert {d.split(":")[0] for d in differences} == {"model.name", "data.image_size", "cv.seed", "facecrop.min_prob",
                                                     "train.lr", "train.epochs", "aug.hflip", "cv.parallel"}
    with pytest.raises(RunFolderError) as refused:
        check_same_recipe(saved, other, "runs/x/config.yaml")
    assert "'resnet18' now" in str(refused.value) and "data.image_size: 96 in the run, 64 now" in str(refused.value)


def test_a_start_over_results_needs_resume(tmp_path: Path):
    folder = RunFolder(tmp_path / "run")
    (folder.path / "fold0").mkdir(parents=True)
    check_start(build_config([], []), folder)
    (folder.path / "fold0" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(RunFolderError, match="already holds results.*train.resume=true"):
        check_start(build_config([], []), folder)
    (folder.path / "config.yaml").write_text("model:\n  name: resnet18\n")
    with pytest.raises(RunFolderError, match="resnet18"):
        check_start(build_config([], ["train.resume=true"]), folder)
