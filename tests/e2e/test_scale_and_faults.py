"""Scaling out and surviving faults, through the real `accelerate launch` CLI with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from tests.conftest import REPO, accelerate_launch, cli_env, free_port

pytestmark = pytest.mark.slow

TINY = ["model.name=resnet10t", "data.image_size=32", "train.batch_size=16", "cv.folds=5", "cv.seed=3",
        "data.num_workers=0", "train.epochs=2"]


def mlflow_runs(uri: str, experiment: str) -> tuple[list, dict[str, list]]:
    """(top-level runs, {parent id: children}) of an experiment."""
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
                for p in parents}
    return parents, children


def assert_each_val_image_once(run: Path, folds: list[int]) -> None:
    split = pd.read_csv(run / "folds.csv")
    expected = set(split.loc[split["fold"].isin(folds), "path"])
    oof = pd.read_csv(run / "oof.csv")
    assert oof["path"].is_unique and set(oof["path"]) == expected


def test_ddp_two_processes(demo_root: Path, tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = accelerate_launch([f"data.root={demo_root}", *TINY, "cv.only=[0]", "run.name=ddp",
                                "mlflow.experiment=ddp", f"mlflow.tracking_uri={uri}"], cwd=tmp_path, processes=2)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "runs" / "ddp"
    assert_each_val_image_once(run, [0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["effective_batch_size"] == 32
    assert summary["mixed_precision"] == "no"
    parents, children = mlflow_runs(uri, "ddp")
    assert len(parents) == 1 and len(children[parents[0].info.run_id]) == 1
    assert parents[0].data.params["world_size"] == "2"


def test_fold_parallel_two_processes(demo_root: Path, tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = accelerate_launch([f"data.root={demo_root}", *TINY, "cv.only=[0,1]", "cv.parallel=folds",
                                "run.name=par", "mlflow.experiment=par", f"mlflow.tracking_uri={uri}"],
                               cwd=tmp_path, processes=2)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "runs" / "par"
    assert_each_val_image_once(run, [0, 1])
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    parents, children = mlflow_runs(uri, "par")
    assert len(parents) == 1
    kids = children[parents[0].info.run_id]
    assert sorted(k.data.tags["fold"] for k in kids) == ["0", "1"]
    client = MlflowClient(tracking_uri=uri)
    for kid in kids:  # the fold trained by rank 1 has its per-epoch metrics too
        assert kid.info.status == "FINISHED"
        assert len(client.get_metric_history(kid.info.run_id, "val_f1")) == 2


def test_sigkill_then_resume(demo_root: Path, tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [f"data.root={demo_root}", *TINY, "train.epochs=4", "run.name=killed", "mlflow.experiment=kill",
            f"mlflow.tracking_uri={uri}"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "foldtrain" / "main.py"), *args]
    run = tmp_path / "runs" / "killed"
    launcher = subprocess.Popen(launch, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run / "fold1" / "state" / "state.json").exists():  # fold 1 has finished an epoch
        assert launcher.poll() is None and time.time() < deadline, "fold 1 never started"
        time.sleep(0.2)
    launcher.send_signal(signal.SIGKILL)  # the launcher alone, as a preempted job's parent would die
    launcher.wait()
    fold0 = (run / "fold0" / "model.safetensors").read_bytes()
    time.sleep(3)  # the orphaned worker must notice and stop, not write on
    assert not (run / "fold1" / "result.json").exists()

    result = accelerate_launch([*args, "train.resume=true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "fold 1: resuming after epoch" in result.stderr
    assert (run / "fold0" / "model.safetensors").read_bytes() == fold0
    for k in range(5):
        assert json.loads((run / f"fold{k}" / "result.json").read_text())["finished"]
        assert not (run / f"fold{k}" / "state").exists()
    assert_each_val_image_once(run, [0, 1, 2, 3, 4])
    parents, children = mlflow_runs(uri, "kill")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    kids = children[parents[0].info.run_id]
    assert len(kids) == 5 and all(k.info.status == "FINISHED" for k in kids)
    fold1 = next(k for k in kids if k.data.tags["fold"] == "1")
    steps = [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(fold1.info.run_id, "val_f1")]
    assert sorted(set(steps)) == [0, 1, 2, 3]


def start_mlflow_server(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts"), "--workers", "1"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError("mlflow server did not come up")


def test_mlflow_server_up_then_down(demo_root: Path, tmp_path: Path):
    server, url = start_mlflow_server(tmp_path)
    try:
        result = accelerate_launch([f"data.root={demo_root}", *TINY, "cv.only=[0,1]", "run.name=live",
                                    "mlflow.experiment=server", f"mlflow.tracking_uri={url}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-4000:]
        parents, children = mlflow_runs(url, "server")
        assert len(parents) == 1 and len(children[parents[0].info.run_id]) == 2
        artifacts = {a.path for a in MlflowClient(tracking_uri=url).list_artifacts(parents[0].info.run_id)}
        assert {"oof.csv", "summary.json", "confusion_matrix.png"} <= artifacts
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()

    result = accelerate_launch([f"data.root={demo_root}", *TINY, "cv.only=[0,1]", "run.name=dead",
                                "mlflow.experiment=server", f"mlflow.tracking_uri={url}"], cwd=tmp_path,
                               MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "runs" / "dead"
    assert (run / "fold0" / "model.safetensors").exists() and (run / "fold1" / "model.safetensors").exists()
    assert (run / "summary.json").exists() and len(pd.read_csv(run / "fold1" / "metrics.csv")) == 2
    assert "MLflow tracking failed" in result.stderr


FAILING_RANK = """
import sys
import foldtrain.main as entry
from foldtrain.train import fit

real = fit.train_one_epoch

def failing(*args, **kwargs):
    accelerator = args[5]
    if accelerator.process_index == 1 and "fold 1" in kwargs["description"]:
        raise RuntimeError("injected failure on rank 1")
    return real(*args, **kwargs)

fit.train_one_epoch = failing
sys.exit(entry.main())
"""


def test_one_failing_rank_stops_the_job(demo_root: Path, tmp_path: Path):
    script = tmp_path / "failing_main.py"
    script.write_text(FAILING_RANK)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
              "--main_process_port", str(free_port()), "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", str(script), f"data.root={demo_root}", *TINY, "cv.only=[0,1]",
              "run.name=fail", "mlflow.experiment=fail", f"mlflow.tracking_uri={uri}"]
    start = time.time()
    result = subprocess.run(launch, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert time.time() - start < 200  # no wait for a collective timeout (30 minutes by default)
    assert "injected failure on rank 1" in result.stderr
    run = tmp_path / "runs" / "fail"
    assert load_file(str(run / "fold0" / "model.safetensors"))  # finished work stays loadable
    parents, children = mlflow_runs(uri, "fail")
    assert len(parents) == 1 and parents[0].info.status in ("FAILED", "KILLED")
    statuses = {k.data.tags["fold"]: k.info.status for k in children[parents[0].info.run_id]}
    assert statuses["0"] == "FINISHED" and statuses["1"] in ("FAILED", "KILLED")


def test_mlflow_server_vanishing_mid_run(demo_root: Path, tmp_path: Path):
    server, url = start_mlflow_server(tmp_path)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "foldtrain" / "main.py"),
              f"data.root={demo_root}", *TINY, "train.epochs=3", "cv.only=[0,1]", "run.name=vanish",
              "mlflow.experiment=vanish", f"mlflow.tracking_uri={url}"]
    run = tmp_path / "runs" / "vanish"
    training = subprocess.Popen(launch, cwd=tmp_path, env=cli_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (run / "fold0" / "metrics.csv").exists():  # the first epoch has been logged to the server
            assert training.poll() is None and time.time() < deadline, "training never reached its first epoch"
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    _, stderr = training.communicate(timeout=300)
    assert training.returncode == 0, stderr[-4000:]
    assert "MLflow tracking failed" in stderr
    for fold in (0, 1):
        assert (run / f"fold{fold}" / "model.safetensors").exists()
        assert len(pd.read_csv(run / f"fold{fold}" / "metrics.csv")) == 3
    assert (run / "summary.json").exists() and (run / "oof.csv").exists()
