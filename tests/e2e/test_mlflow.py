"""MLflow as a user meets it: a self-contained store, true fold timings, context, a dataset input, and the fold
ensemble served by a real `mlflow models serve` answering with the classes `ensemble.predict` writes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import cli_env, free_port, run_main, run_module

pytestmark = pytest.mark.slow

TINY = ["model.name=resnet10t", "data.image_size=32", "train.batch_size=16", "cv.folds=3", "train.epochs=2",
        "data.num_workers=0"]


@pytest.fixture(scope="module")
def tracked(demo_root: Path, tmp_path_factory) -> dict:
    """A run started from an empty working folder, its store elsewhere, its model registered."""
    work, store = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("store") / "team"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    result = run_main([f"data.root={demo_root}", *TINY, "run.dir=../runs", "run.name=bars",
                       "mlflow.registered_model=bars-mask", "mlflow.experiment=served", "mlflow.model_max_rows=100",
                       "data.max_pixels=20000000"], cwd=work,
                      MLFLOW_TRACKING_URI=uri)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"work": work, "store": store, "uri": uri, "run": work.parent / "runs" / "bars"}


def children(client: MlflowClient, parent_id: str) -> list:
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_id}'")


def test_store_is_self_contained_and_runs_carry_context(tracked: dict):
    assert not (tracked["work"] / "mlruns").exists() and not (tracked["work"] / "mlflow.db").exists()
    tracking = json.loads((tracked["run"] / "tracking.json").read_text())
    summary = json.loads((tracked["run"] / "summary.json").read_text())
    assert tracking["model_uri"] == summary["model_uri"] and tracking["model_uri"].startswith("models:/")
    client = MlflowClient(tracking_uri=tracked["uri"])
    parent = client.get_run(tracking["parent_id"])
    assert parent.info.artifact_uri.startswith((tracked["store"] / "mlartifacts").as_uri())
    assert parent.data.params["mlflow.tracking_uri"] == tracked["uri"]
    assert parent.inputs.dataset_inputs and parent.data.tags["mlflow.note.content"].startswith("resnet10t")
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "fold_f1")] == [0, 1, 2]
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    folds = sorted(children(client, parent.info.run_id), key=lambda r: int(r.data.tags["fold"]))
    assert [r.data.tags["fold"] for r in folds] == ["0", "1", "2"]
    for run in folds:
        assert run.data.tags.get("mlflow.source.name") and run.data.params["model.name"] == "resnet10t"
        assert {"best_val_f1", "best_epoch"} <= set(run.data.metrics) and run.inputs.dataset_inputs
    for before, after in zip(folds, folds[1:], strict=False):
        assert before.info.end_time <= after.info.start_time  # fold k+1 starts after fold k ends


def test_served_model_answers_with_the_classes_of_ensemble_predict(tracked: dict, demo_root: Path):
    info = pd.read_csv(demo_root / "eval" / "info.csv").head(6)
    out = tracked["work"] / "sub.csv"
    predicted = run_module("ensemble.predict", ["--run", str(tracked["run"]), "--out", str(out)],
                           cwd=tracked["work"], MLFLOW_TRACKING_URI=tracked["uri"])
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    expected = pd.read_csv(out).set_index("ImageID").loc[info["ImageID"], "ans"].tolist()
    port = free_port()
    env = cli_env(MLFLOW_TRACKING_URI=tracked["uri"],
                  PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/bars-mask/1",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], cwd=tracked["work"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        images = [base64.b64encode((demo_root / "eval" / "images" / i).read_bytes()).decode() for i in info["ImageID"]]
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[image] for image in images]}}).encode()
        deadline, answer = time.time() + 180, None
        while answer is None:
            assert server.poll() is None and time.time() < deadline, "mlflow models serve did not come up"
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as response:
                    answer = json.loads(response.read())["predictions"]
            except OSError:
                time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert [row["class"] for row in answer] == expected
    assert {"label", "prob_0", "prob_17"} <= set(answer[0])
    assert sum(row[f"prob_{i}"] for i in range(18) for row in answer[:1]) == pytest.approx(1.0)


def test_a_moved_store_still_shows_its_artifacts(tracked: dict, tmp_path: Path):
    moved = tmp_path / "moved"
    shutil.copytree(tracked["store"], moved)
    shutil.move(str(tracked["store"]), str(tmp_path / "gone"))  # the old place no longer exists
    try:
        result = run_module("foldtrain.track.store", [str(moved / "mlflow.db")], cwd=tmp_path)
        assert result.returncode == 0 and "artifact paths now point into" in result.stdout
        client = MlflowClient(tracking_uri=f"sqlite:///{moved / 'mlflow.db'}")
        parent_id = json.loads((tracked["run"] / "tracking.json").read_text())["parent_id"]
        assert {"oof.csv", "summary.json"} <= {a.path for a in client.list_artifacts(parent_id)}
        local = client.download_artifacts(parent_id, "summary.json", str(tmp_path))
        assert json.loads(Path(local).read_text())["run_name"] == "bars"
    finally:
        shutil.move(str(tmp_path / "gone"), str(tracked["store"]))


def test_the_served_model_bounds_what_one_request_can_cost(tracked: dict, tmp_path: Path):
    """A 12000x12000 1-bit PNG (a few KB) is refused before it is decoded, a frame above mlflow.model_max_rows is
    refused, an empty frame gets an empty answer, all in a process that stays small."""
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb, optimize=True)
    assert bomb.stat().st_size < 100_000
    code = (
        "import base64, resource, sys\n"
        "import mlflow.pyfunc, pandas as pd\n"
        "model = mlflow.pyfunc.load_model('models:/bars-mask/1')\n"
        "print('loaded_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
        "empty = model.predict(pd.DataFrame({'image': pd.Series([], dtype=str)}))\n"
        "print('empty', len(empty), 'class' in empty.columns)\n"
        "bomb = base64.b64encode(open(sys.argv[1], 'rb').read()).decode()\n"
        "for frame in (pd.DataFrame({'image': [bomb]}), pd.DataFrame({'image': ['x'] * 300})):\n"
        "    try:\n"
        "        model.predict(frame)\n"
        "        print('answered')\n"
        "    except Exception as err:\n"
        "        print('refused:', str(err).splitlines()[-1][:300])\n"
        "print('maxrss_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    result = subprocess.run([sys.executable, "-c", code, str(bomb)], cwd=tracked["work"],
                            env=cli_env(MLFLOW_TRACKING_URI=tracked["uri"]), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "empty 0 True" in lines
    refusals = [line for line in lines if line.startswith("refused:")]
    assert len(refusals) == 2, result.stdout
    assert "12000x12000" in refusals[0] and "above the 20 Mpx decode budget" in refusals[0]
    assert "300 rows" in refusals[1] and "mlflow.model_max_rows" in refusals[1]
    # the bomb (432 MB as RGB) was never decoded: the requests add next to nothing to the loaded model's peak
    loaded = int(next(line for line in lines if line.startswith("loaded_mb")).split()[-1])
    assert int(lines[-1].split()[-1]) - loaded < 100
