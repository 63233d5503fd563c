"""MLflow as a user meets it: a self-contained store, true fold timings, context, a dataset input, and the fold
ensemble served by a real `mlflow models serve` answering with the classes `ensemble.predict` writes."""

from __future__ import annotations

import base64
import json
import os
import re
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
    return {"work": work, "store": store, "uri": uri, "run": work.parent / "runs" / "bars", "log": result.stderr}


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
    # no fold's figure poses as the run's: the folds are a table artifact and metrics of their own runs
    assert not {"fold_f1", "best_epoch", "fold_f1_ci_low"} & set(parent.data.metrics)
    assert parent.data.metrics["oof_f1"] == pytest.approx(summary["oof_f1"])
    assert "fold_scores.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    folds = sorted(children(client, parent.info.run_id), key=lambda r: int(r.data.tags["fold"]))
    assert [r.data.tags["fold"] for r in folds] == ["0", "1", "2"]
    assert [r.info.run_name for r in folds] == ["fold0", "fold1", "fold2"]
    for k, run in enumerate(folds):
        assert run.data.tags.get("mlflow.source.name") and run.data.params["model.name"] == "resnet10t"
        assert {"best_val_f1", "best_epoch"} <= set(run.data.metrics) and run.inputs.dataset_inputs
        assert run.data.metrics["fold_f1"] == pytest.approx(summary["fold_f1"][str(k)])
        note = run.data.tags["mlflow.note.content"]
        assert note.startswith(f"fold {k + 1}/3: 2 of 2 epochs") and f"F1 {summary['fold_f1'][str(k)]:.4f}" in note
    for before, after in zip(folds, folds[1:], strict=False):
        assert before.info.end_time <= after.info.start_time  # fold k+1 starts after fold k ends


def test_the_log_counts_epochs_and_time_left_and_ends_with_the_ui_address(tracked: dict):
    lines = tracked["log"].splitlines()
    epochs = [line for line in lines if re.search(r"fold \d/3 epoch \d/2: ", line)]
    assert len(epochs) == 6 and "fold 1/3 epoch 1/2" in epochs[0] and "fold 3/3 epoch 2/2" in epochs[-1]
    assert all(re.search(r"\| \d+:\d\d in, fold ~\d+:\d\d left, run ~\d+:\d\d left$", line) for line in epochs)
    assert "Downloading artifacts" not in tracked["log"]  # MLflow's progress bars stay off during a run
    done = next(i for i, line in enumerate(lines) if "foldtrain: done: oof_f1" in line)
    assert "runs/bars" in lines[done] and "90% intervals" in lines[done]
    assert re.search(r"MLflow: run `mlflow ui --backend-store-uri sqlite:///.+` and open http://127\.0\.0\.1:5000/"
                     r"#/experiments/\d+/runs/[0-9a-f]{32}\?workflowType=machine_learning$", lines[done + 1])
    assert lines[done + 2].endswith("registered model: bars-mask version 1 (models:/bars-mask/1)")


def test_the_logged_model_and_its_registered_version_carry_the_scores(tracked: dict):
    summary = json.loads((tracked["run"] / "summary.json").read_text())
    assert summary["registered_model"] == {"name": "bars-mask", "version": "1"}
    client = MlflowClient(tracking_uri=tracked["uri"])
    model = client.get_logged_model(summary["model_id"])
    metrics = {m.key: m.value for m in model.metrics}
    assert metrics["oof_f1"] == pytest.approx(summary["oof_f1"])
    assert metrics["oof_f1_honest_ci_low"] == pytest.approx(summary["oof_f1_honest_ci"][0])
    version = client.get_model_version("bars-mask", "1")
    assert version.tags["oof_f1"] == f"{summary['oof_f1']:.4f} [{summary['oof_f1_ci'][0]:.3f}, " \
                                     f"{summary['oof_f1_ci'][1]:.3f}]"
    assert version.tags["oof_f1_honest"].startswith(f"{summary['oof_f1_honest']:.4f} [")
    assert version.description.startswith("resnet10t at 32 px, 3 of 3 folds, 2 epochs, TTA hflip: oof_f1 ")


def test_an_already_trained_run_is_registered_from_the_command_line(tracked: dict):
    result = run_module("foldtrain.track.register", [str(tracked["run"]), "bars-later"], cwd=tracked["work"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "as bars-later version 1: models:/bars-later/1" in result.stdout
    summary = json.loads((tracked["run"] / "summary.json").read_text())
    version = MlflowClient(tracking_uri=tracked["uri"]).get_model_version("bars-later", "1")
    assert version.tags["oof_f1"].startswith(f"{summary['oof_f1']:.4f} [") and version.description


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


def chromium() -> str:
    """A headless-capable Chromium, or skip: the browser check needs Debian's `chromium` and `playwright`."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    found = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                  if shutil.which(name)), None)
    if not found:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    return found


def wait_for(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while True:
        assert server.poll() is None and time.time() < deadline, f"{url} did not come up"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)


def test_the_mlflow_ui_shows_the_run_its_folds_curves_and_scored_model(tracked: dict):
    """A real `mlflow ui` on the finished run, opened at the address the log ends with, in headless Chromium."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    address = re.search(r"open (http://\S+)", next(line for line in tracked["log"].splitlines()
                                                    if "MLflow: run `mlflow ui" in line)).group(1)
    port = free_port()
    address = address.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
    summary = json.loads((tracked["run"] / "summary.json").read_text())
    client = MlflowClient(tracking_uri=tracked["uri"])
    description = client.get_run(json.loads((tracked["run"] / "tracking.json").read_text())["parent_id"]) \
        .data.tags["mlflow.note.content"]
    env = cli_env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracked["uri"],
                               "-h", "127.0.0.1", "-p", str(port)], cwd=tracked["work"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(address)
            page.get_by_text(description[:60]).first.wait_for()  # the parent's description
            # the Model-training view: its side bar has the registry, the GenAI one has observability pages
            page.locator("aside").get_by_text("Model registry").first.wait_for()
            assert "Observability" not in page.locator("aside").inner_text()
            for k in range(3):  # the fold runs, by their short names
                page.get_by_role("link", name=f"fold{k}", exact=True).first.wait_for()
            # the run-level scores are the logged model's metrics (the model's name fills its cell a moment later)
            page.get_by_role("row").filter(has_text="oof_f1_honest_ci_low").filter(
                has_text="fold_ensemble").first.wait_for()
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("learning_curves.png").first.click()
            page.wait_for_function("() => [...document.images].some(i => i.src.startsWith('blob:') "
                                   "&& i.naturalWidth > 500)")
            # the registered version shows the run's oof_f1
            page.goto(f"http://127.0.0.1:{port}/#/models/bars-mask/versions/1?workflowType=machine_learning")
            page.get_by_text(f"{summary['oof_f1']:.4f} [").first.wait_for()
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
