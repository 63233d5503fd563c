"""`mlflow.system_metrics=true`: MLflow's own monitor of CPU, memory, disk, network and GPU use, one per machine,
each logging to the parent run under its node id (`node0`, `node1`, ...)."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def start_monitor(parent_id: str | None, tracking_uri: str | None):
    """A started monitor for this machine (call on each machine's local main process), or None."""
    if not parent_id:
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        node = int(os.environ.get("GROUP_RANK", "0"))  # torchrun's machine rank
        monitor = SystemMetricsMonitor(parent_id, node_id=f"node{node}", tracking_uri=tracking_uri)
        monitor.start()
        return monitor
    except Exception as err:  # noqa: BLE001 - system metrics are an extra, never a reason to stop
        log.warning("MLflow system metrics are off: %s", err)
        return None


def stop_monitor(monitor) -> None:
    if monitor is not None:
        monitor.finish()
