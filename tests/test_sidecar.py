"""The sidecar process: calls in order, failures contained, orphan handling; MLflow tracking through it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from foldtrain.sidecar import Sidecar, SidecarError
from foldtrain.tracking import BackgroundTracker

REPO = Path(__file__).resolve().parents[1]


def append_line(path: str, text: str) -> None:
    with open(path, "a") as out:
        out.write(text + "\n")


def read_lines(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


def fail(message: str) -> None:
    raise ValueError(message)


def whose_pid() -> int:
    return os.getpid()


@pytest.fixture
def sidecar():
    car = Sidecar()
    yield car
    car.close(timeout=30)


def test_calls_run_in_order_in_another_process(sidecar: Sidecar, tmp_path: Path):
    log = str(tmp_path / "order.txt")
    for i in range(5):
        assert sidecar.submit(append_line, log, f"line {i}")
    assert sidecar.call(read_lines, log) == [f"line {i}" for i in range(5)]  # waits for the submits before it
    assert sidecar.call(whose_pid) != os.getpid()


def test_a_failing_call_does_not_stop_the_ones_behind_it(capfd, tmp_path: Path):
    sidecar = Sidecar()  # forked once capfd holds the standard streams
    log = str(tmp_path / "after.txt")
    sidecar.submit(fail, "first call breaks")
    sidecar.submit(append_line, log, "still ran")
    with pytest.raises(SidecarError, match="ValueError: asked to fail"):
        sidecar.call(fail, "asked to fail")
    assert sidecar.call(read_lines, log) == ["still ran"]
    assert sidecar.close(timeout=30)
    err = capfd.readouterr().err
    assert "first call breaks" in err and "Traceback" in err  # logged there, with its traceback


def test_close_waits_for_queued_work_and_ends_the_process(tmp_path: Path):
    log = str(tmp_path / "closed.txt")
    car = Sidecar()
    for i in range(3):
        car.submit(append_line, log, str(i))
    assert car.close(timeout=30)
    assert read_lines(log) == ["0", "1", "2"]
    assert not car.submit(append_line, log, "late")  # refused once closed
    with pytest.raises(SidecarError):
        car.call(read_lines, log)


ORPHAN = """
import os, signal, sys
from foldtrain.sidecar import Sidecar

def append_line(path, text):
    with open(path, "a") as out:
        out.write(text + "\\n")

car = Sidecar()
car.at_orphan(append_line, sys.argv[1], "orphaned")
car.call(append_line, sys.argv[1], "alive")
os.kill(os.getpid(), signal.SIGKILL)  # dies without closing its sidecar
"""


def wait_for(condition, seconds: float = 60) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_orphan_handlers_run_when_the_owner_is_killed(tmp_path: Path):
    log = tmp_path / "orphan.txt"
    result = subprocess.run([sys.executable, "-c", ORPHAN, str(log)], cwd=REPO, timeout=120)
    assert result.returncode == -9
    assert wait_for(lambda: log.exists() and "orphaned" in log.read_text())
    assert read_lines(str(log)) == ["alive", "orphaned"]


def test_background_tracker_logs_through_the_sidecar(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    car = Sidecar()
    tracker = BackgroundTracker(car, "side", uri)
    parent = tracker.start_run("cv", {"train.lr": 0.1})
    child = tracker.start_run("cv-fold0", {"fold": 0}, {"fold": "0"}, parent_id=parent)
    for epoch in range(3):
        tracker.log_metrics(child, {"val_f1": 0.1 * epoch}, step=epoch)
    tracker.end_run(child)
    tracker.end_run(parent)
    assert tracker.tracking_uri == uri
    tracker.close()
    assert car.close(timeout=30) and not tracker.failed
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(parent).data.params["train.lr"] == "0.1"
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == parent
    assert [m.step for m in client.get_metric_history(child, "val_f1")] == [0, 1, 2]
    assert client.get_run(child).info.status == "FINISHED"


KILLED_TRAINING = """
import os, signal, sys
from foldtrain.sidecar import Sidecar
from foldtrain.tracking import BackgroundTracker
tracker = BackgroundTracker(Sidecar(), "killed", sys.argv[1])
parent = tracker.start_run("cv")
tracker.start_run("cv-fold0", parent_id=parent)
print(parent, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_runs_of_a_killed_training_process_end_as_killed(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run([sys.executable, "-c", KILLED_TRAINING, uri], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == -9, result.stderr
    client = MlflowClient(tracking_uri=uri)
    runs = lambda: client.search_runs([client.get_experiment_by_name("killed").experiment_id])  # noqa: E731
    assert wait_for(lambda: len(runs()) == 2 and all(r.info.status == "KILLED" for r in runs()))


def test_a_dead_tracking_server_fails_tracking_not_the_caller(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # before the fork: the sidecar inherits it
    car = Sidecar()
    tracker = BackgroundTracker(car, "nowhere", "http://127.0.0.1:9")  # nothing listens on the discard port
    try:
        assert tracker.start_run("cv") is None
        tracker.log_metrics("no-run", {"val_f1": 0.5})
        tracker.close()
    finally:
        assert car.close(timeout=60)
    assert tracker.failed


def test_close_from_another_thread_is_not_held_up_by_a_waiting_call():
    # The SIGTERM watcher closes the sidecar while the main thread may be waiting on a slow call.
    car = Sidecar()
    outcome = []

    def wait_on_slow_call() -> None:
        try:
            car.call(time.sleep, 60)
        except SidecarError as err:
            outcome.append(err)

    waiter = threading.Thread(target=wait_on_slow_call)
    waiter.start()
    time.sleep(1)
    assert not car.close(timeout=1)  # did not finish: killed
    waiter.join(timeout=30)
    assert not waiter.is_alive() and outcome and "gone" in str(outcome[0])


TERMINATED_GROUP = """
import os, signal, sys, time
from foldtrain import process
from foldtrain.sidecar import Sidecar
from foldtrain.tracking import BackgroundTracker
car = Sidecar()
tracker = BackgroundTracker(car, "group", sys.argv[1])
process.handle_sigterm_in_a_thread([lambda: tracker.end_open_runs("KILLED"), lambda: car.close(timeout=30)])
parent = tracker.start_run("cv")
tracker.start_run("cv-fold0", parent_id=parent)
os.killpg(os.getpgid(0), signal.SIGTERM)  # as torchrun stops a worker: the whole group, sidecar included
time.sleep(60)
"""


def test_sigterm_to_the_process_group_still_ends_the_runs(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run([sys.executable, "-c", TERMINATED_GROUP, uri], cwd=REPO, capture_output=True, text=True,
                            timeout=120, start_new_session=True)
    assert result.returncode == 128 + 15, result.stderr
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("group").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "KILLED" for r in runs)


def test_a_second_close_waits_for_the_first_instead_of_killing(tmp_path: Path):
    # The main thread's error path and the SIGTERM watcher can both close; the later one must not cut the
    # earlier one's queued work (ending the MLflow runs) short.
    log = str(tmp_path / "closing.txt")
    car = Sidecar()
    car.submit(time.sleep, 2)
    car.submit(append_line, log, "runs ended")
    first = threading.Thread(target=car.close)
    first.start()
    while not car.closing:
        time.sleep(0.01)
    assert car.close(timeout=30)
    first.join(timeout=30)
    assert read_lines(log) == ["runs ended"]
