"""Integrity through the real CLIs, case by case: what an adversary or a careless user slips in, and the answer.

Every case states its expected outcome: the exit status, the key or file the one-line message names, that no
traceback is printed, that a planted pickle never runs, and that nothing is written or changed that should not be.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from foldtrain.demo import generate_demo
from tests.conftest import REPO, cli_env, no_traceback, run_main, run_module

pytestmark = pytest.mark.slow

TRAIN = ["model.name=resnet10t", "data.image_size=32", "train.epochs=2", "train.batch_size=16", "cv.folds=3",
         "data.num_workers=0"]


class Planted:
    """A pickle that creates a marker file if anything ever unpickles it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A 12-person competition-layout set and a working folder with its own MLflow store."""
    work = tmp_path_factory.mktemp("integrity")
    generate_demo(work / "data", persons=12, seed=5)
    return work


def args(work: Path, name: str, *extra: str) -> list[str]:
    return [f"data.root={work / 'data'}", *TRAIN, f"run.name={name}", f"mlflow.tracking_uri=sqlite:///{work}/m.db",
            *extra]


@pytest.fixture(scope="module")
def finished(work: Path) -> Path:
    result = run_main(args(work, "base"), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "runs" / "base"


@pytest.fixture(scope="module")
def interrupted(work: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """A run stopped by SIGTERM after fold 0 saved its first epoch's resume state."""
    run = work / "runs" / "cut"
    process = subprocess.Popen([sys.executable, str(REPO / "foldtrain" / "main.py"),
                                *args(work, "cut", "train.epochs=4", "cv.only=[0]")], cwd=work, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "fold0" / "state" / "state.json").exists():
        assert process.poll() is None and time.time() < deadline, "the run never saved a resume state"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    return run, subprocess.CompletedProcess(process.args, process.returncode, out, err)


def one_error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The `error:` line of a failed run, checked to name every needle, with no traceback anywhere."""
    assert result.returncode != 0, result.stderr[-2000:]
    assert no_traceback(result), result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_sigterm_says_where_it_stopped_and_how_to_go_on(interrupted):
    run, result = interrupted
    assert result.returncode == 128 + signal.SIGTERM and no_traceback(result)
    assert "interrupted after fold 1/3 epoch" in result.stderr and "train.resume=true" in result.stderr
    assert not temp_files(run)


@pytest.mark.parametrize("planted", ["state.json", "state.safetensors", "rng_0.json", "rng_0.safetensors"])
def test_a_pickle_planted_in_resume_state_never_runs(work, interrupted, planted: str):
    source, _ = interrupted
    run = work / "runs" / f"planted-{planted}"
    shutil.copytree(source, run)
    marker = work / f"marker-{planted}"
    (run / "fold0" / "state" / planted).write_bytes(pickle.dumps(Planted(marker)))
    result = run_main(args(work, run.name, "train.epochs=4", "cv.only=[0]", "train.resume=true"), cwd=work)
    assert not marker.exists()
    one_error_line(result, planted, "fold0")


def test_resume_after_the_interruption_finishes_the_fold(work, interrupted):
    source, _ = interrupted
    run = work / "runs" / "cut-resumed"
    shutil.copytree(source, run)
    result = run_main(args(work, run.name, "train.epochs=4", "cv.only=[0]", "train.resume=true"), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fold 0: resuming after epoch" in result.stderr
    assert len(pd.read_csv(run / "fold0" / "metrics.csv")) == 4 and not (run / "fold0" / "state").exists()


@pytest.mark.parametrize("bad_path", ["../../../etc", "/etc"])
def test_train_csv_paths_outside_the_root_are_refused(work, tmp_path, bad_path: str):
    root = tmp_path / "data"
    shutil.copytree(work / "data", root)
    persons = pd.read_csv(root / "train" / "train.csv", dtype=str)
    persons.loc[1, "path"] = bad_path
    persons.to_csv(root / "train" / "train.csv", index=False)
    result = run_main([f"data.root={root}", *TRAIN, "run.name=escape", f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"],
                      cwd=tmp_path)
    one_error_line(result, "train.csv", "row 2", bad_path)
    assert not (tmp_path / "runs" / "escape" / "folds.csv").exists()


def test_info_csv_escape_is_refused_and_nothing_is_submitted(finished, work, tmp_path):
    eval_dir = tmp_path / "eval"
    shutil.copytree(work / "data" / "eval", eval_dir)
    info = pd.read_csv(eval_dir / "info.csv")
    info.loc[3, "ImageID"] = "../../data/train/train.csv"
    info.to_csv(eval_dir / "info.csv", index=False)
    out = tmp_path / "sub.csv"
    result = run_module("ensemble.predict", ["--run", str(finished), "--data", str(eval_dir), "--out", str(out)],
                        cwd=work)
    one_error_line(result, "info.csv", "row 4", "../../data/train/train.csv")
    assert not out.exists() and not temp_files(tmp_path)


@pytest.mark.parametrize("damage", ["missing", "pickled", "truncated"])
def test_prediction_refuses_a_partial_or_broken_ensemble(finished, work, tmp_path, damage: str):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    weights = run / "fold1" / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    else:
        weights.unlink()
    if damage == "pickled":
        (run / "fold1" / "model.pt").write_bytes(pickle.dumps(Planted(tmp_path / "marker")))
    out = tmp_path / "sub.csv"
    result = run_module("ensemble.predict", ["--run", str(run), "--out", str(out)], cwd=work)
    one_error_line(result, "fold 1", str(weights))
    assert not out.exists() and not (tmp_path / "marker").exists()
    if damage == "missing":
        allowed = run_module("ensemble.predict", ["--run", str(run), "--out", str(out), "--allow-missing-folds"],
                             cwd=work)
        assert allowed.returncode == 0, allowed.stderr[-2000:]
        assert "WITHOUT fold 1" in allowed.stderr and len(pd.read_csv(out)) == len(pd.read_csv(
            work / "data" / "eval" / "info.csv"))


def test_out_naming_a_folder_is_refused(finished, work, tmp_path):
    result = run_module("ensemble.predict", ["--run", str(finished), "--out", str(tmp_path)], cwd=work)
    one_error_line(result, "--out", str(tmp_path), "folder")
    assert not temp_files(tmp_path)


def test_resume_with_another_recipe_changes_nothing(finished, work):
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file() and p.name != ".lock"}
    result = run_main(args(work, "base", "train.resume=true", "model.name=resnet18", "data.image_size=48"), cwd=work)
    one_error_line(result, "model.name", "resnet18", "data.image_size", "48")
    assert {p: p.read_bytes() for p in finished.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_of_two_starts_of_one_run_one_is_refused(work):
    command = [sys.executable, str(REPO / "foldtrain" / "main.py"), *args(work, "twice")]
    first = subprocess.Popen(command, cwd=work, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    time.sleep(1.0)
    second = subprocess.run(command, cwd=work, env=cli_env(), capture_output=True, text=True, timeout=600)
    out, err = first.communicate(timeout=600)
    outcomes = sorted([(first.returncode, err), (second.returncode, second.stderr)], key=lambda o: o[0])
    assert outcomes[0][0] == 0, outcomes[0][1][-2000:]
    refused = subprocess.CompletedProcess(command, outcomes[1][0], "", outcomes[1][1])
    one_error_line(refused, "is in use by pid", "host")
    run = work / "runs" / "twice"
    folds, oof = pd.read_csv(run / "folds.csv"), pd.read_csv(run / "oof.csv")
    assert oof["path"].is_unique and set(oof["path"]) == set(folds["path"])


@pytest.mark.parametrize("override, key", [("data.image_size=0", "data.image_size"),
                                           ("data.image_size=[100000,100000]", "data.image_size"),
                                           ("train.lr=.inf", "train.lr"),
                                           ("aug.scale_min=3", "aug.scale_min"), ("train.lr=-1", "train.lr")])
def test_out_of_range_values_stop_before_any_work(work, tmp_path, override: str, key: str):
    result = run_main([f"data.root={work / 'data'}", override], cwd=tmp_path)
    assert result.returncode == 2 and key in result.stderr and no_traceback(result)
    assert not list(tmp_path.iterdir())


def test_an_unwritable_run_dir_is_named_before_data_preparation(work, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_main([*args(work, "x"), f"run.dir={blocker}/runs", f"data.cache_dir={tmp_path}/cache"], cwd=tmp_path)
    one_error_line(result, str(blocker / "runs"))
    assert not (tmp_path / "cache").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_named_with_its_free_space(work, tmp_path, tiny_disk):
    result = run_main([*args(work, "full"), f"run.dir={tiny_disk}", f"data.cache_dir={tmp_path}/cache"],
                      cwd=tmp_path)
    one_error_line(result, "no space left writing", str(tiny_disk), "free")
    assert not temp_files(tiny_disk) and not temp_files(tmp_path / "cache")


def test_ctrl_c_says_how_to_resume(work):
    process = subprocess.Popen([sys.executable, str(REPO / "foldtrain" / "main.py"),
                                *args(work, "ctrlc", "train.epochs=6", "cv.only=[0]")], cwd=work, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = work / "runs" / "ctrlc"
    deadline = time.time() + 300
    while not (run / "fold0" / "state" / "state.json").exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT and "Traceback" not in err
    assert "interrupted after fold 1/3 epoch" in err and "train.resume=true" in err


def test_a_resume_after_config_yaml_was_deleted_still_keeps_the_recipe(work, interrupted):
    source, _ = interrupted
    run = work / "runs" / "no-config"
    shutil.copytree(source, run)
    (run / "config.yaml").unlink()
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())
    result = run_main(args(work, run.name, "train.epochs=4", "cv.only=[0]", "train.resume=true",
                           "model.name=resnet18"), cwd=work)
    one_error_line(result, "model.name: 'resnet10t' in the run, 'resnet18' now", "recorded in")
    assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()) == before


def test_deleting_the_lock_file_during_a_run_lets_no_second_writer_in(work):
    run = work / "runs" / "locked"
    first = subprocess.Popen([sys.executable, str(REPO / "foldtrain" / "main.py"),
                              *args(work, "locked", "train.epochs=6", "cv.only=[0]")], cwd=work, env=cli_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (run / "fold0" / "metrics.csv").exists():
            assert first.poll() is None and time.time() < deadline, "the first run ended before its first epoch"
            time.sleep(0.1)
        (run / ".lock").unlink()
        second = run_main(args(work, "locked", "train.epochs=6", "cv.only=[0]", "train.resume=true"), cwd=work)
        one_error_line(second, "is in use by")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)


def test_a_learning_rate_typed_as_1e_4_trains(work):
    result = run_main(args(work, "typed-lr", "train.lr=1e-4", "train.epochs=1", "cv.only=[0]",
                           "mlflow.log_model=false"), cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "lr: 0.0001" in (work / "runs" / "typed-lr" / "config.yaml").read_text()


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.pop("folds_trained"), "no valid folds_trained"),
    (lambda s: s.update(folds_trained=[0, 1]), "lists folds [0, 1] but folds [0, 1, 2] finished"),
])
def test_an_edited_summary_does_not_shrink_the_ensemble_silently(finished, work, tmp_path, edit, needle: str):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    summary = json.loads((run / "summary.json").read_text())
    edit(summary)
    (run / "summary.json").write_text(json.dumps(summary))
    result = run_module("ensemble.predict", ["--run", str(run), "--out", str(tmp_path / "sub.csv")], cwd=work)
    one_error_line(result, "summary.json", needle)


@pytest.mark.parametrize("damage, needle", [
    ("metrics", "metrics.csv is damaged"),
    ("scores", "val_scores.npz is not a validation-score file"),
])
def test_damaged_run_files_are_named_not_their_parsers(finished, work, damage: str, needle: str):
    run = work / "runs" / f"damaged-{damage}"
    shutil.copytree(finished, run)
    (run / "summary.json").unlink()
    if damage == "metrics":
        (run / "fold0" / "metrics.csv").write_text('a,b\n"unterminated\n')
    else:
        import numpy as np

        with open(run / "fold0" / "val_scores.npz", "wb") as handle:
            np.save(handle, np.array([Planted(work / "npz-marker")], dtype=object), allow_pickle=True)
    result = run_main(args(work, run.name, "train.resume=true"), cwd=work)
    one_error_line(result, needle)
    assert not (work / "npz-marker").exists()


def test_pretrained_weights_of_another_architecture_are_named_in_one_line(work, tmp_path):
    from safetensors.torch import save_file

    from foldtrain.model.factory import build_model

    other = tmp_path / "resnet18.safetensors"
    save_file(build_model("resnet18", 3).state_dict(), str(other))
    result = run_main(args(work, "other-arch", f"model.pretrained_file={other}", "cv.only=[0]"), cwd=work)
    one_error_line(result, "model.pretrained_file", "does not fit model.name resnet10t")


def test_explain_and_store_tools_answer_bad_input_in_one_line(finished, work, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_error_line(run_module("ensemble.explain", ["--run", str(finished), "--out", str(afile)], cwd=work),
                   "--out", "is a file")
    one_error_line(run_module("ensemble.explain", ["--run", str(finished), "--out", str(tmp_path / "e"), "--n", "2",
                                                   "--layer", "fc"], cwd=work), "--layer 'fc' has no spatial map")
    run = tmp_path / "nologit"
    shutil.copytree(finished, run)
    oof = pd.read_csv(run / "oof.csv")
    oof[["path", "label", "fold", "pred"]].to_csv(run / "oof.csv", index=False)
    one_error_line(run_module("ensemble.explain", ["--run", str(run), "--out", str(tmp_path / "e2")], cwd=work),
                   "oof.csv lacks the columns logit_0")
    text = tmp_path / "notes.db"
    text.write_text("these are notes, not a database\n" * 40)
    one_error_line(run_module("foldtrain.track.store", [str(text)], cwd=work), "not a readable SQLite database")
    import sqlite3

    with sqlite3.connect(tmp_path / "other.db") as con:
        con.execute("create table notes (a)")
    one_error_line(run_module("foldtrain.track.store", [str(tmp_path / "other.db")], cwd=work), "not an MLflow store")


@pytest.mark.parametrize("arguments, needle", [(["--persons", "0"], "persons must be at least 1"),
                                               (["--out", "FILE"], "is a file")])
def test_the_demo_generator_answers_bad_arguments_in_one_line(tmp_path, arguments: list[str], needle: str):
    afile = tmp_path / "afile"
    afile.write_text("x")
    arguments = [str(afile) if a == "FILE" else a for a in arguments]
    if "--out" not in arguments:
        arguments = ["--out", str(tmp_path / "demo"), *arguments]
    result = run_module("foldtrain.demo", arguments, cwd=tmp_path)
    assert result.returncode != 0 and no_traceback(result) and needle in result.stderr
