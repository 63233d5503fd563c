"""MLflow tracking, best effort: the only module that imports mlflow.

One parent run per CV run and one child run per fold (tag `fold`, parent set through `mlflow.parentRunId`),
driven through `MlflowClient` with explicit run ids so a resumed run can reattach to the same runs. Only the
main process builds an enabled tracker; training runs it in a side process (`BackgroundTracker`). Any tracking
failure warns once and turns tracking off: it never decides whether training succeeds, and every metric also
lands in the run folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from foldtrain.process import loading_without_gc
from foldtrain.sidecar import Sidecar, SidecarError

log = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 500


class Tracker:
    """Logs to MLflow when enabled; a no-op after the first failure or when disabled."""

    def __init__(self, enabled: bool, experiment: str, tracking_uri: str | None = None):
        self.enabled = enabled
        self.failed = False
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self._client = None
        self._experiment_id: str | None = None
        self._open: list[str] = []

    @property
    def active(self) -> bool:
        return self.enabled and not self.failed

    def _call(self, what: str, fn, *args, **kwargs) -> Any:
        if not self.active:
            return None
        try:
            if self._client is None:
                self._connect()
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any tracking error must leave training running
            self.failed = True
            log.warning("MLflow tracking failed while trying to %s (%s: %s); training goes on without tracking, "
                        "metrics are still written to the run folder", what, type(err).__name__, err)
            return None

    def connect(self) -> None:
        """Open the store (creating it, or the experiment, when missing) now rather than at the first call."""
        self._call(f"connect to {self.tracking_uri or 'the default tracking URI'}", lambda: None)

    def _connect(self) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
        self.tracking_uri = uri
        self._client = MlflowClient(tracking_uri=uri)
        found = self._client.get_experiment_by_name(self.experiment)
        self._experiment_id = found.experiment_id if found else self._client.create_experiment(self.experiment)

    def start_run(self, name: str, params: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                  parent_id: str | None = None, run_id: str | None = None) -> str | None:
        """Create a run (a child of `parent_id` when given) or reattach to `run_id`; returns its id."""

        def start() -> str:
            if run_id:
                self._client.update_run(run_id, status="RUNNING")
                self._open.append(run_id)
                return run_id
            all_tags = dict(tags or {})
            if parent_id:
                all_tags["mlflow.parentRunId"] = parent_id
            run = self._client.create_run(self._experiment_id, run_name=name, tags=all_tags)
            self._open.append(run.info.run_id)
            self._log_params(run.info.run_id, params or {})
            return run.info.run_id

        return self._call(f"start the run {name!r} at {self.tracking_uri or 'the default URI'}", start)

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._client.log_batch(run_id, params=items[start:start + 100])

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        """Add params to a run (new keys only: MLflow params are immutable)."""
        if run_id:
            self._call("log params", self._log_params, run_id, params)

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        """Log several metrics at one step."""
        if not run_id:
            return

        def log_all() -> None:
            import time

            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
            self._client.log_batch(run_id, metrics=batch)

        self._call("log metrics", log_all)

    def log_artifact(self, run_id: str | None, path: str | Path, folder: str | None = None) -> None:
        """Upload a file to the run's artifacts."""
        if run_id:
            self._call(f"log the artifact {path}", lambda: self._client.log_artifact(run_id, str(path), folder))

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:
        """Set tags on a run."""
        if run_id:
            self._call("set tags", lambda: [self._client.set_tag(run_id, k, v) for k, v in tags.items()])

    def end_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        """Mark a run FINISHED, FAILED or KILLED."""
        if run_id:
            self._call(f"end a run as {status}", lambda: self._client.set_terminated(run_id, status=status))
            if run_id in self._open:
                self._open.remove(run_id)

    def end_open_runs(self, status: str) -> None:
        """End every run this tracker started or reattached and has not ended, children first."""
        for run_id in reversed(list(self._open)):
            self.end_run(run_id, status)

    def close(self) -> None:
        """Nothing to wait for: every call has already run (the same interface as `BackgroundTracker`)."""


class BackgroundTracker:
    """A `Tracker` living in the sidecar process: the same calls, queued there, so training never waits on MLflow.

    MLflow's start-up (importing it, opening or creating the store: about 3 s on 2 cores) runs in the sidecar while
    the training process imports torch, and a slow or vanished tracking server delays the sidecar, never a step.
    Only `start_run` (for the new run's id), `tracking_uri` and `close` wait. If the training process dies without
    closing (SIGKILL), the sidecar ends the runs still open as KILLED.
    """

    def __init__(self, sidecar: Sidecar, experiment: str, tracking_uri: str | None = None):
        self.experiment = experiment
        self.enabled = True
        self.failed = False
        self._sidecar = sidecar
        self._closed = False
        sidecar.submit(_open_side_tracker, experiment, tracking_uri)
        sidecar.at_orphan(_side, "end_open_runs", "KILLED")

    @property
    def active(self) -> bool:
        return not self.failed and not self._closed

    @property
    def tracking_uri(self) -> str | None:
        """The tracking URI in use (the configured one, `MLFLOW_TRACKING_URI`, or MLflow's default)."""
        return self._ask("tracking_uri")

    def _ask(self, op: str, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            return None
        try:
            return self._sidecar.call(_side, op, *args, **kwargs)
        except SidecarError as err:
            self._lose(err)
            return None

    def _tell(self, op: str, *args: Any, **kwargs: Any) -> None:
        # A sidecar that is closing has everything sent before (the run's ends included): only a lost one fails.
        if self.active and not self._sidecar.submit(_side, op, *args, **kwargs) and not self._sidecar.closing:
            self._lose(SidecarError("the sidecar process is gone"))

    def _lose(self, err: Exception) -> None:
        self.failed = True
        log.warning("MLflow tracking failed (%s); training goes on without tracking, metrics are still written to "
                    "the run folder", err)

    def start_run(self, name: str, params: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                  parent_id: str | None = None, run_id: str | None = None) -> str | None:
        """See `Tracker.start_run`; waits for the id."""
        return self._ask("start_run", name, params, tags, parent_id=parent_id, run_id=run_id)

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        if run_id:
            self._tell("log_params", run_id, params)

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        if run_id:
            self._tell("log_metrics", run_id, {k: float(v) for k, v in metrics.items()}, step)

    def log_artifact(self, run_id: str | None, path: str | Path, folder: str | None = None) -> None:
        if run_id:
            self._tell("log_artifact", run_id, str(path), folder)

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:
        if run_id:
            self._tell("set_tags", run_id, tags)

    def end_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        if run_id:
            self._tell("end_run", run_id, status)

    def end_open_runs(self, status: str) -> None:
        self._tell("end_open_runs", status)

    def close(self) -> None:
        """Wait for every tracking call sent so far; sets `failed` when any of them failed (the sidecar said why)."""
        if self._closed:
            return
        if self._ask("failed"):
            self.failed = True
        self._closed = True


_side_tracker: Tracker | None = None  # the sidecar's own Tracker


def _open_side_tracker(experiment: str, tracking_uri: str | None) -> None:
    global _side_tracker
    _side_tracker = Tracker(True, experiment, tracking_uri)
    with loading_without_gc():  # imports mlflow, SQLAlchemy, alembic: hundreds of modules
        _side_tracker.connect()


def _side(op: str, *args: Any, **kwargs: Any) -> Any:
    """A `Tracker` method or attribute of the sidecar's tracker (runs in the sidecar)."""
    value = getattr(_side_tracker, op)
    return value(*args, **kwargs) if callable(value) else value
