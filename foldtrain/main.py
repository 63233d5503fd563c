"""Cross-validated training: `accelerate launch foldtrain/main.py [--config FILE.yaml] [section.key=value ...]`.

The one place that wires the stages: config -> run folder -> data -> folds (model, train loop) -> results and
tracking. The config is read and checked before torch is imported, so a typo or a bad value answers at once.
Expected failures (bad data, a taken run folder, a full disk, an interruption) end in one line and a non-zero
status; single-process runs can also start as `python foldtrain/main.py ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Started as a file (`accelerate launch foldtrain/main.py`): make the package importable without an install,
    # and keep this folder's module names (data, config, ...) from shadowing top-level modules.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

PROCESS_STARTED = time.perf_counter()  # imports and set-up count in the run's stage seconds

from foldtrain.config import Config, ConfigError, build_config  # noqa: E402
from foldtrain.config.schema import DataConfig  # noqa: E402

log = logging.getLogger("foldtrain")


def parse_args(argv: list[str] | None) -> tuple[list[str], list[str], bool]:
    parser = argparse.ArgumentParser(
        prog="foldtrain", description="Person-grouped stratified k-fold training of a timm classifier.",
        epilog="Overrides are section.key=value, parsed as YAML, e.g. train.epochs=10 cv.only=[0,2]")
    parser.add_argument("--config", action="append", default=[], help="YAML config file (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no per-epoch lines or progress bars: only warnings and the run's result")
    parser.add_argument("overrides", nargs="*", help="section.key=value")
    args = parser.parse_args(argv)
    return args.config, args.overrides, args.quiet


def main(argv: list[str] | None = None) -> int:
    files, overrides, quiet = parse_args(argv)
    try:
        cfg = build_config(files, overrides)
    except ConfigError as err:
        print(f"foldtrain: config error: {err}", file=sys.stderr)
        return 2
    from foldtrain.errors import EXPECTED
    from foldtrain.run.process import Interrupted, die_with_launcher, raise_on_signals
    from foldtrain.tune.trial import PRUNED_EXIT, TrialPruned

    raise_on_signals()
    status = Status(cfg.cv.folds)
    try:
        die_with_launcher()
        return train(cfg, status, quiet)
    except Interrupted as stop:
        print(f"foldtrain: interrupted {status.where()}: continue with train.resume=true", file=sys.stderr)
        return stop.exit_code
    except TrialPruned as stop:
        print(f"foldtrain: {stop}", file=sys.stderr)
        return PRUNED_EXIT
    except EXPECTED as err:
        print(f"foldtrain{status.rank_label()}: error: {err}", file=sys.stderr)
        return 1


class Status:
    """How far the run got, for the line an interruption prints (a hook of the fold loop, called once an epoch's
    resume state is saved)."""

    def __init__(self, folds: int):
        self.folds = folds
        self.done: str | None = None
        self.rank = 0

    def where(self) -> str:
        return f"after {self.done}" if self.done else "before any epoch's state was saved"

    def rank_label(self) -> str:
        return f" (process {self.rank})" if self.rank else ""

    def fold_started(self, spec, progress) -> None:
        pass

    def epoch_ended(self, spec, progress) -> None:
        from foldtrain.track.console import fit_label

        self.done = f"{fit_label(spec, self.folds)} epoch {progress.last_epoch + 1}/{spec.epochs}"

    def fold_ended(self, spec, progress, result) -> None:
        from foldtrain.track.console import fit_label

        self.done = f"{fit_label(spec, self.folds)} (finished)"


def train(cfg: Config, status: Status, quiet: bool = False) -> int:
    import os

    # Quiet by default: MLflow's artifact bars and store notices would fill the log at the run's end (MLflow reads
    # both when it is imported, later); `--quiet` also drops tqdm's bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
    import torch
    from accelerate import Accelerator

    from foldtrain.config import dump
    from foldtrain.config.ignored import ignored_settings
    from foldtrain.cpus import keep_freed_memory, precision_line, use_all_cores
    from foldtrain.data.images import set_pixel_budget
    from foldtrain.data.prepare import prepare_data
    from foldtrain.files import write_json, write_text
    from foldtrain.model.heads import resolve_heads
    from foldtrain.run.folder import FACE_FALLBACK
    from foldtrain.run.process import setup_logging
    from foldtrain.run.start import claim
    from foldtrain.track.console import ConsoleProgress
    from foldtrain.train import cv
    from foldtrain.train.session import Session
    from foldtrain.tune.trial import trial_context

    started = time.perf_counter()
    keep_freed_memory()
    set_pixel_budget(cfg.data.max_pixels)
    # gloo DDP on machines without CUDA: Accelerate otherwise expects a GPU per process.
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_steps=cfg.train.grad_accum)
    status.rank = accelerator.process_index
    setup_logging(accelerator.is_main_process)
    use_all_cores(accelerator.device.type)
    from foldtrain.teach.setup import open_teacher_of

    teacher = open_teacher_of(cfg)  # a missing, unfinished or otherwise split teacher answers before any claim
    cfg, folder, lock = claim(cfg, accelerator)
    if cfg.data.root == DataConfig().root:
        with accelerator.main_process_first():
            from foldtrain.demo import ensure_demo  # the generator is a tool, loaded only for the default root

            ensure_demo(Path(cfg.data.root))
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = time.perf_counter() - PROCESS_STARTED - sum(stages.values())

    lap("setup")
    data = prepare_data(cfg, folder.folds_file, accelerator)
    lap("data")
    session = Session(cfg, data, folder, accelerator, resolve_heads(cfg.model.heads, data.format, len(data.classes)),
                      teacher if cfg.distill.teacher else None)
    facts = run_facts(cfg, accelerator) | {"heads": session.heads.name}
    folds = cv.planned_folds(session)
    if teacher is not None:
        from foldtrain.teach.setup import taught_session

        session = taught_session(session, teacher, folds)
    lap("teacher")
    hooks: list = [status]
    tracking = None
    if accelerator.is_main_process:
        write_text(folder.config_file, dump(cfg))
        for line in ignored_settings(cfg):
            log.warning("%s", line)
        if data.face_fallback is not None:
            write_json(folder / FACE_FALLBACK, data.face_fallback)
        log.info("run %s: %d images, %d classes, %s heads, folds %s, %d process(es) (%s), mixed precision %s, %s",
                 folder.path, len(data.frame), len(data.classes), session.heads.name, folds,
                 accelerator.num_processes, cfg.cv.parallel, accelerator.mixed_precision, accelerator.device)
        line, warn = precision_line(accelerator.mixed_precision, accelerator.device.type)
        log.log(logging.WARNING if warn else logging.INFO, "%s", line)
        hooks.append(ConsoleProgress(cfg.cv.folds, cv.epochs_ahead(session, folds), quiet))
        tracking = Tracking(cfg, folder, data, facts, teacher, session.pool)
        hooks.append(tracking.fold_runs)
    if cfg.train.gradcam and (accelerator.is_main_process or cfg.cv.parallel == "folds"):
        from foldtrain.track.gradcam_hook import FoldGradcam

        hooks.append(FoldGradcam(cfg.train.gradcam, data, tracking.fold_runs if tracking else None))
    trial = trial_context()
    if trial is not None:  # a trial of `foldtrain.tune`: report to it, stop when pruned (last: after the others)
        from foldtrain.tune.trial import TrialReport

        hooks.append(TrialReport(trial, accelerator, folds[0], shared=cfg.cv.parallel == "ddp"))
    monitor = start_system_metrics(cfg, accelerator, tracking)
    lap("parent_run")
    try:
        cv.CrossValidation(session, folds, hooks, replay=tracking.replay if tracking is not None else None).run()
        lap("folds")
        if tracking is not None:
            tracking.finish(folds, facts | {"seconds": time.perf_counter() - started}, stages)
    except BaseException as err:
        if tracking is not None:
            from foldtrain.run.process import uninterrupted

            with uninterrupted():  # a SIGTERM from the launcher must not cut the runs' end short
                tracking.abort(err)
        raise
    finally:
        if monitor is not None:
            from foldtrain.track.system_metrics import stop_monitor

            stop_monitor(monitor)
        if lock is not None:
            lock.release()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def start_system_metrics(cfg: Config, accelerator, tracking: Tracking | None):
    """`mlflow.system_metrics`: one monitor per machine, logging to the parent run (its id shared by broadcast)."""
    if not cfg.mlflow.system_metrics:
        return None
    from accelerate.utils import broadcast_object_list

    from foldtrain.track.system_metrics import start_monitor

    ids = [(tracking.parent, tracking.tracker.uri) if tracking is not None else (None, None)]
    broadcast_object_list(ids)
    return start_monitor(*ids[0]) if accelerator.is_local_main_process else None


def run_facts(cfg: Config, accelerator) -> dict:
    """What the config does not say about a run: its processes, device and precision."""
    world = accelerator.num_processes
    per_update = cfg.train.batch_size * cfg.train.grad_accum
    return {"world_size": world, "mixed_precision": accelerator.mixed_precision, "device": accelerator.device.type,
            "effective_batch_size": per_update * (world if cfg.cv.parallel == "ddp" else 1)}


class Tracking:
    """The main process's MLflow side of the run: the parent, the fold runs (a hook), and the end."""

    def __init__(self, cfg: Config, folder, data, facts: dict, teacher=None, pool=None):
        from foldtrain.track.fold_runs import FoldRuns
        from foldtrain.track.mlflow_tracker import MLflowTracker
        from foldtrain.track.parent_run import open_parent

        self.cfg, self.folder, self.data, self.teacher, self.pool = cfg, folder, data, teacher, pool
        self.tracker = MLflowTracker(cfg.mlflow.experiment, cfg.mlflow.tracking_uri)
        kind = "distill" if cfg.distill.teacher else "pseudo"
        self.parent = open_parent(self.tracker, cfg, folder, data, facts,
                                  teacher.tags(kind) if teacher is not None else None)
        self.fold_runs = FoldRuns(self.tracker, self.parent, cfg, folder.path, data.frame, len(data.classes))
        self.fold_runs.save()

    def replay(self, folds: list[int]) -> None:
        for fold in folds:
            self.fold_runs.replay(fold)

    def finish(self, folds: list[int], facts: dict, stages: dict[str, float]) -> None:
        from foldtrain.files import write_json
        from foldtrain.track.mlflow_tracker import ui_address
        from foldtrain.track.parent_run import close_parent
        from foldtrain.track.results import caveats, headline, stage_facts, write_results

        clock = time.perf_counter()
        summary = write_results(self.cfg, self.data, self.folder, folds, facts)
        if self.teacher is not None:
            from foldtrain.teach.setup import mark_inherited_optimism

            mark_inherited_optimism(summary, self.cfg, self.teacher)
        if self.cfg.distill.teacher:
            from foldtrain.teach.distill import distill_summary

            summary["distill"] = distill_summary(self.cfg, self.teacher, self.folder, summary)
        if self.pool is not None:
            from foldtrain.teach.pseudo import pseudo_summary

            summary["pseudo"] = pseudo_summary(self.cfg, self.pool, self.data.classes, summary)
        stages["results"] = time.perf_counter() - clock
        clock = time.perf_counter()
        failure = None
        if self.cfg.mlflow.log_model:
            from foldtrain.track.model_logging import ModelLoggingError, log_ensemble_model

            logged = None
            try:
                logged = log_ensemble_model(self.tracker, self.parent, self.cfg, self.folder, self.data, folds,
                                            summary)
            except ModelLoggingError as err:
                failure = str(err)
                log.warning("%s; the results are complete in %s", failure, self.folder.path)
            if logged:
                summary |= {"model_uri": logged.uri, "model_id": logged.model_id}
                if logged.registered:
                    summary["registered_model"] = dict(zip(("name", "version"), logged.registered, strict=True))
                self.fold_runs.model_uri = logged.uri
                self.fold_runs.save()
        stages["model_logging"] = time.perf_counter() - clock
        summary |= stage_facts(stages, self.tracker.seconds)
        write_json(self.folder.summary_file, summary)
        self.fold_runs.describe(summary)
        for line in caveats(summary):
            log.warning("%s", line)
        if summary.get("distill", {}).get("final_model"):
            log.info("%s", summary["distill"]["final_note"])
        for finding in summary["diagnosis"]:
            log.warning("%s", finding["advice"])
        close_parent(self.tracker, self.parent, self.cfg, self.folder, summary, failure)
        # The last lines: where the results are, how good they are, and where to look at them.
        log.info("done: %s -> %s", headline(summary), self.folder.path)
        if self.tracker.failed or not self.parent:
            log.warning("MLflow tracking failed during this run: the results are complete in %s", self.folder.path)
            return
        log.info("MLflow: %s", ui_address(self.tracker.uri, self.tracker.experiment_id, self.parent))
        if summary.get("registered_model"):
            name, version = summary["registered_model"]["name"], summary["registered_model"]["version"]
            log.info("registered model: %s version %s (models:/%s/%s)", name, version, name, version)

    def abort(self, err: BaseException) -> None:
        from foldtrain.run.process import Interrupted
        from foldtrain.tune.trial import TrialPruned

        if isinstance(err, TrialPruned):  # its finished folds are marked, never taken for a complete run
            self.tracker.set_tags(self.parent, {"foldtrain.pruned": str(err)})
        stopped = isinstance(err, Interrupted | KeyboardInterrupt | TrialPruned)
        self.tracker.end_open_runs("KILLED" if stopped else "FAILED")


if __name__ == "__main__":
    sys.exit(main())
