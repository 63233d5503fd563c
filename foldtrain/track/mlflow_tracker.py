"""MLflow tracking, in-process and best effort: the only training module that imports mlflow.

Only the main process tracks. Metrics go through MLflow's own asynchronous logging (`log_batch(...,
synchronous=False)`), so a slow or dead server never holds up a training step; runs, params and artifacts are
rare and logged directly. Any failure warns once and turns tracking off: tracking never decides whether training
succeeds, and every metric also lands in the run folder.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foldtrain.track.store import ARTIFACTS, db_path, relocate

log = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 6000
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI opens on runs and charts


def resolve_tracking_uri(configured: str | None) -> str:
    """The tracking URI in use: `mlflow.tracking_uri`, else `MLFLOW_TRACKING_URI`, else MLflow's default; a SQLite
    file as an absolute path, so the URI recorded in tracking.json and the params still finds the store from another
    working folder (prediction, registration, the UI)."""
    import mlflow

    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    db = db_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None and not db.is_absolute() else uri


def artifact_location(uri: str) -> str | None:
    """For a local SQLite store, `<folder of the .db>/mlartifacts`: the store folder holds everything and can be
    copied or moved as one (see `track.store`). None (MLflow's choice) for any other store."""
    db = db_path(uri)
    return (db.resolve().parent / ARTIFACTS).as_uri() if db else None


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast when an HTTP tracking server does not answer, instead of retrying for minutes at start-up."""
    if uri.startswith(("http://", "https://")):
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            pass


class MLflowTracker:
    """The MLflow side of a run; every method is a no-op once tracking has failed."""

    def __init__(self, experiment: str, tracking_uri: str | None = None):
        self.experiment = experiment
        self.configured_uri = tracking_uri
        self.uri: str | None = None
        self.failed = False
        self.client = None
        self.experiment_id: str | None = None
        self.open_runs: list[str] = []
        self._pending: list[Any] = []
        self.seconds = 0.0  # spent in MLflow calls, store creation included (summary.json's mlflow_seconds)

    def guard(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return None
        started = time.perf_counter()
        try:
            if self.client is None:
                self._connect()
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - a tracking error must leave training running
            self.failed = True
            log.warning("MLflow tracking failed while trying to %s (%s: %s); training goes on without tracking, "
                        "and every result is still written to the run folder", what, type(err).__name__,
                        str(err).splitlines()[0] if str(err) else "")
            return None
        finally:
            self.seconds += time.perf_counter() - started

    def _connect(self) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(self.configured_uri)
        check_server(self.uri)
        if db_path(self.uri):
            relocate(db_path(self.uri))
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(self.experiment, artifact_location(self.uri),
                                                               tags=EXPERIMENT_KIND)
        else:
            self.experiment_id = found.experiment_id
            if not found.tags.get("mlflow.experimentKind"):
                for key, value in EXPERIMENT_KIND.items():
                    self.client.set_experiment_tag(self.experiment_id, key, value)

    def connect(self) -> str | None:
        """Open the store now (creating it or the experiment if needed); returns the URI in use, or None."""
        return self.guard(f"connect to {self.configured_uri or 'the default tracking URI'}", lambda: self.uri)

    def start_run(self, name: str, tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                  parent_id: str | None = None, start_time: float | None = None) -> str | None:
        """A new run with MLflow's context tags (source, user, git commit); a child of `parent_id` when given."""

        def start() -> str:
            from mlflow.tracking.context.registry import resolve_tags

            all_tags = resolve_tags(dict(tags or {}))
            if parent_id:
                all_tags["mlflow.parentRunId"] = parent_id
            run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags,
                                         start_time=_ms(start_time) if start_time else None)
            self.open_runs.append(run.info.run_id)
            self._log_params(run.info.run_id, params or {})
            return run.info.run_id

        return self.guard(f"start the run {name!r}", start)

    def reattach(self, run_id: str) -> str | None:
        """Mark an interrupted run RUNNING again (a resumed run logs on into it)."""

        def reopen() -> str:
            self.client.update_run(run_id, status="RUNNING")
            self.open_runs.append(run_id)
            return run_id

        return self.guard("reattach to an interrupted run", reopen)

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        if run_id:
            self.guard("log params", self._log_params, run_id, params)

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int = 0,
                    timestamp: float | None = None, model_id: str | None = None) -> None:
        """Queue metrics at one step on MLflow's asynchronous logging; returns at once. With `model_id`, they are
        also the metrics of that logged model (and of every registered version of it)."""
        if not run_id:
            return

        def queue() -> None:
            from mlflow.entities import Metric

            when = _ms(timestamp or time.time())
            batch = [Metric(k, float(v), when, step, model_id=model_id) for k, v in metrics.items()]
            self._pending.append(self.client.log_batch(run_id, metrics=batch, synchronous=False))

        self.guard("log metrics", queue)

    def set_tags(self, run_id: str | None, tags: dict[str, Any]) -> None:
        if run_id:
            self.guard("set tags", lambda: [self.client.set_tag(run_id, k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str | None, path: str | Path, folder: str | None = None) -> None:
        if run_id and Path(path).exists():
            self.guard(f"log the artifact {path}", lambda: self.client.log_artifact(run_id, str(path), folder))

    def log_table(self, run_id: str | None, frame, artifact_file: str) -> None:
        """A table as a JSON artifact the MLflow UI shows as a table."""
        if run_id:
            self.guard(f"log the table {artifact_file}", self.client.log_table, run_id, frame, artifact_file)

    def log_dataset(self, run_id: str | None, frame, source: str, name: str, context: str) -> None:
        """A table as an MLflow dataset input of a run (its digest identifies the rows)."""
        if not run_id:
            return

        def log_input() -> None:
            import mlflow.data
            from mlflow.entities import DatasetInput, InputTag

            with warnings.catch_warnings():  # schema hints about integer columns and ambiguous local sources
                warnings.simplefilter("ignore")
                dataset = mlflow.data.from_pandas(frame, source=source, name=name)
                entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
            self.client.log_inputs(run_id, datasets=[entity])

        self.guard(f"log the dataset {name}", log_input)

    def flush(self) -> None:
        """Wait for the queued metrics; a failure among them turns tracking off like any other."""
        pending, self._pending = self._pending, []
        for operation in pending:
            if self.guard("log queued metrics", operation.wait) is None and self.failed:
                return

    def end_run(self, run_id: str | None, status: str = "FINISHED", end_time: float | None = None) -> None:
        """Mark a run FINISHED, FAILED or KILLED (after its queued metrics)."""
        if not run_id:
            return
        self.flush()
        self.guard(f"end a run as {status}", self._terminate, run_id, status, _ms(end_time) if end_time else None)
        if run_id in self.open_runs:
            self.open_runs.remove(run_id)

    def _terminate(self, run_id: str, status: str, end_time: int | None) -> None:
        # `set_terminated` also shuts MLflow's asynchronous logging down, which waits out its queue's 1 s poll:
        # a second per fold run, measured. This run's queued metrics were waited for above (`flush`), so while
        # other runs stay open (the parent) only the status is written; the last run shuts the queue down.
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        if set(self.open_runs) - {run_id} and store is not None:
            from mlflow.entities import RunStatus

            store.update_run_info(run_id, run_status=RunStatus.from_string(status),
                                  end_time=end_time or _ms(time.time()), run_name=None)
        else:
            self.client.set_terminated(run_id, status=status, end_time=end_time)

    def end_open_runs(self, status: str) -> None:
        """End every run this tracker started or reattached and has not ended, children first."""
        for run_id in reversed(list(self.open_runs)):
            self.end_run(run_id, status)


def ui_address(uri: str, experiment_id: str, run_id: str) -> str:
    """How to see a run in the MLflow UI, opened in the Model-training view: MLflow 3's UI opens on its GenAI view
    (traces, token costs) whatever the experiment's kind tag says, unless the address asks for
    `workflowType=machine_learning`."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')}/{page}"
    db = db_path(uri)
    store = f"sqlite:///{db.resolve()}" if db else uri
    return f"run `mlflow ui --backend-store-uri {store}` and open http://127.0.0.1:5000/{page}"


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
