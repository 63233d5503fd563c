"""Cross-validated training: `accelerate launch foldtrain/main.py [--config FILE.yaml] [section.key=value ...]`.

The entry point of each training process. It reads the config, starts MLflow's side process (on the main
process only) and only then imports torch and the training stages (`foldtrain.cv`), so that on a small machine
MLflow's start-up overlaps the heavy imports instead of following them. A config error answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Started as a file (`accelerate launch foldtrain/main.py`): make the package importable without an install,
    # and keep this folder's module names (data, config, ...) from shadowing top-level modules.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import os  # noqa: E402

from foldtrain import config as config_mod  # noqa: E402
from foldtrain import process  # noqa: E402
from foldtrain.sidecar import Sidecar  # noqa: E402
from foldtrain.tracking import BackgroundTracker, Tracker  # noqa: E402

# Where launchers put a process's global rank (torchrun, Intel MPI, Open MPI, MVAPICH), in Accelerate's order.
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def parse_args(argv: list[str] | None) -> tuple[list[str], list[str]]:
    parser = argparse.ArgumentParser(
        prog="foldtrain", description="Person-grouped stratified k-fold training of a timm classifier.",
        epilog="Overrides are section.key=value, parsed as YAML, e.g. train.epochs=10 cv.only=[0,2]")
    parser.add_argument("--config", action="append", default=[], help="YAML config file (repeatable)")
    parser.add_argument("overrides", nargs="*", help="section.key=value")
    args = parser.parse_args(argv)
    return args.config, args.overrides


def is_main_rank() -> bool:
    """Whether the launcher made this the main process (rank 0), read before Accelerate is imported."""
    rank = next((os.environ[name] for name in RANK_VARIABLES if name in os.environ), "0")
    return rank.strip() == "0"


def main(argv: list[str] | None = None) -> int:
    files, overrides = parse_args(argv)
    try:
        cfg = config_mod.build_config(files, overrides)
    except config_mod.ConfigError as err:
        print(f"foldtrain: config error: {err}", file=sys.stderr)
        return 2
    process.keep_freed_memory()
    with process.loading_without_gc():
        # The main process forks its sidecar first, so MLflow's start-up runs there while torch & co. load here.
        main_rank = is_main_rank()
        sidecar = Sidecar.start() if main_rank else None
        tracker = (BackgroundTracker(sidecar, cfg.mlflow.experiment, cfg.mlflow.tracking_uri) if sidecar
                   else Tracker(main_rank, cfg.mlflow.experiment, cfg.mlflow.tracking_uri))
        from foldtrain import report  # numpy and pandas, which the stages need anyway

        if sidecar:  # next in the sidecar's queue: what it needs to draw the report pictures at the end
            sidecar.submit(report.load_matplotlib)
        from foldtrain import cv  # torch, timm, Accelerate, scikit-learn: seconds of imports
    on_terminate = [lambda: tracker.end_open_runs("KILLED")]
    if sidecar:
        on_terminate.append(lambda: sidecar.close(timeout=10))
    process.handle_sigterm_in_a_thread(on_terminate)
    try:
        process.die_with_launcher()
        return cv.main(cfg, tracker, sidecar)
    finally:
        if sidecar:  # waits for what it was doing: a store killed half-created would be left broken
            sidecar.close()


if __name__ == "__main__":
    process.exit_now(main())
