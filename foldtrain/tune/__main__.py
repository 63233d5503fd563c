"""Search the recipe on the folds: `python -m foldtrain.tune --space SPACE.yaml --trials N [--timeout S]
[--study NAME] [--storage URL] [--out DIR] [--config FILE.yaml] [--launch-config PRESET.yaml] [--then-blend K]
[section.key=value ...]`.

An Optuna study (TPE sampler, fold-aware pruning) whose trials are normal k-fold runs started through
`accelerate launch foldtrain/main.py`, one after another, each in its own folder `OUT/trial<NNN>` with the same
folds (the base config's data, `cv.folds` and `cv.seed`). The study lives in an Optuna storage (default: SQLite
`optuna.db` beside the MLflow store), so the same command continues a killed study, and several commands on one
storage (one per machine) run different trials in parallel. In MLflow, each trial's run is a child of the study's
run (`foldtrain.kind=study`). The study's end writes `OUT/study.json` and `OUT/best.yaml` (usable with `--config`).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from foldtrain.config import ConfigError, build_config
from foldtrain.tune.space import SpaceError, load_space, overrides_of

MAIN = Path(__file__).resolve().parents[1] / "main.py"


class TrialFailed(RuntimeError):
    """A trial's run ended with an error (the study goes on; the trial is marked FAIL with the reason)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m foldtrain.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help="search space YAML (config keys with ranges or choices)")
    parser.add_argument("--trials", type=int, required=True, help="finished (complete or pruned) trials to reach")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--study", default="tune", help="study name (default: tune)")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite optuna.db beside the MLflow store)")
    parser.add_argument("--out", type=Path, help="folder of the trials' runs, study.json and best.yaml "
                                                 "(default: run.dir/<study>)")
    parser.add_argument("--config", action="append", default=[], help="base config YAML (repeatable)")
    parser.add_argument("--launch-config", help="`accelerate launch --config_file` preset for every trial")
    parser.add_argument("--then-blend", type=int, default=0, metavar="K", help="blend the best K trials at the end")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--no-prune", action="store_true", help="run every trial to its end")
    parser.add_argument("overrides", nargs="*", help="section.key=value for every trial")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    return args


def default_storage(cfg, out: Path) -> str:
    """SQLite `optuna.db` in the folder of a SQLite MLflow store, else in the study's folder."""
    from foldtrain.track.mlflow_tracker import resolve_tracking_uri
    from foldtrain.track.store import db_path

    db = db_path(resolve_tracking_uri(cfg.mlflow.tracking_uri))
    folder = db.parent if db is not None else out
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def _die_with_parent() -> None:  # runs in the trial's launcher before exec: a killed study stops its trial
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Trials:
    """Runs one trial as a foldtrain run and reads its result back."""

    def __init__(self, args, params, out: Path, storage: str, mlflow_parent: str | None, pruner: dict | None):
        self.args, self.params, self.out, self.storage = args, params, out, storage
        self.mlflow_parent, self.pruner = mlflow_parent, pruner

    def command(self, values: dict, run_name: str) -> list[str]:
        launch = ["--config_file", self.args.launch_config] if self.args.launch_config else ["--num_processes", "1"]
        configs = [part for path in self.args.config for part in ("--config", str(Path(path).resolve()))]
        return [sys.executable, "-m", "accelerate.commands.launch", *launch, str(MAIN), "-q", *configs,
                *self.args.overrides, *overrides_of(values), f"run.dir={self.out}", f"run.name={run_name}"]

    def __call__(self, trial) -> float:
        import optuna

        from foldtrain.files import read_json
        from foldtrain.tune.report import fold_epochs, objective_value
        from foldtrain.tune.trial import ENV, PRUNED_PREFIX

        values = {p.key: p.suggest(trial) for p in self.params}
        run_name = f"trial{trial.number:03d}"
        run_dir = self.out / run_name
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        context = {"storage": self.storage, "study": self.args.study, "trial_id": trial._trial_id,
                   "number": trial.number, "mlflow_parent": self.mlflow_parent, "pruner": self.pruner}
        env = dict(os.environ, **{ENV: json.dumps(context)})
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        print(f"trial {trial.number}: {shown} -> {run_dir}", flush=True)
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / f"{run_name}.log", "w") as logfile:
            done = subprocess.run(self.command(values, run_name), stdout=logfile, stderr=subprocess.STDOUT,
                                  env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509 - one call, no threads
        trial.set_user_attr("fold_epochs", fold_epochs(run_dir))
        if done.returncode != 0:
            # the launcher turns the run's own status (PRUNED_EXIT) into its own failure: read the run's last word
            said = _foldtrain_line(self.out / f"{run_name}.log")
            if said.startswith(PRUNED_PREFIX):
                trial.set_user_attr("pruned", said)
                print(f"trial {trial.number}: {said}", flush=True)
                raise optuna.TrialPruned(said)
            trial.set_user_attr("error", said)
            print(f"trial {trial.number}: failed ({said}); its log: {self.out / f'{run_name}.log'}", flush=True)
            raise TrialFailed(said)
        summary = read_json(run_dir / "summary.json")
        value = objective_value(summary)
        trial.set_user_attr("oof_f1_honest", value)
        trial.set_user_attr("oof_f1", summary["oof_f1"])
        print(f"trial {trial.number}: oof_f1_honest {value:.4f} ({trial.user_attrs['fold_epochs']} fold-epochs)",
              flush=True)
        return value


def _foldtrain_line(path: Path) -> str:
    """A failed run's one-line reason (`foldtrain: ...`, prefix dropped), else the log's last line."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("foldtrain")]
    if said:
        return said[-1].split(": ", 1)[-1]
    return lines[-1] if lines else "no output"


def fail_orphans(study) -> None:
    """Trials left RUNNING by a worker of this machine that is gone (a killed study): marked FAIL, their
    parameters queued again, so the same command continues the study."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        name, _, pid = worker.rpartition(":")
        if name != host or not pid.isdigit() or _alive(int(pid)):
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
        print(f"trial {trial.number}: its worker (pid {pid}) is gone; marked FAIL and queued again", flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def study_run(tracker, study, out: Path, trials: int) -> str | None:
    """The study's MLflow run: created once (its id kept in the study), reattached by later or parallel workers."""
    run_id = study.user_attrs.get("mlflow_run_id")
    if run_id:
        return tracker.reattach(run_id)
    run_id = tracker.start_run(study.study_name, tags={"foldtrain.kind": "study", "study_dir": str(out)},
                               params={"trials": trials})
    if run_id:
        study.set_user_attr("mlflow_run_id", run_id)
    return run_id


def join_study(args, storage: str, out: Path, pruner, tracker):
    """Create or load the study, count this worker in, fail orphaned trials and open the study's MLflow run, under
    a lock: workers started together on one machine create one study and one run. Each worker seeds its sampler
    with `--seed` plus its worker index, so parallel workers do not draw the same parameters (the first worker's
    draws are reproducible)."""
    import optuna

    with open(out / ".study.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        study = optuna.create_study(study_name=args.study, storage=storage, direction="maximize",
                                    load_if_exists=True, pruner=pruner or optuna.pruners.NopPruner())
        worker = int(study.user_attrs.get("workers", 0))
        study.set_user_attr("workers", worker + 1)
        study.sampler = optuna.samplers.TPESampler(seed=args.seed + worker)
        fail_orphans(study)
        return study, study_run(tracker, study, out, args.trials)


def finish_study_run(tracker, run_id: str | None, report: dict, out: Path) -> None:
    from optuna.trial import TrialState

    if not run_id:
        return
    states = [t["state"] for t in report["trials"]]
    figures = {"trials_complete": states.count(TrialState.COMPLETE.name),
               "trials_pruned": states.count(TrialState.PRUNED.name), "fold_epochs": report["fold_epochs"]}
    if report["best"]:
        figures["best_oof_f1_honest"] = report["best"]["oof_f1_honest"]
        figures["best_trial"] = report["best"]["number"]
    if report["selection_corrected_f1"] is not None:
        figures["selection_corrected_f1"] = report["selection_corrected_f1"]
        if report["selection_corrected_f1_ci"]:
            low, high = report["selection_corrected_f1_ci"]
            figures |= {"selection_corrected_f1_ci_low": low, "selection_corrected_f1_ci_high": high}
    tracker.log_metrics(run_id, {k: v for k, v in figures.items() if v is not None})
    for name in ("study.json", "best.yaml"):
        tracker.log_artifact(run_id, out / name)
    tracker.end_run(run_id)


def blend_best(report: dict, k: int, out: Path) -> None:
    finished = [t for t in report["trials"] if t["state"] == "COMPLETE" and t["run_dir"]
                and t["oof_f1_honest"] is not None]  # trials this study ran (not ones added by hand)
    ranked = sorted(finished, key=lambda t: -t["oof_f1_honest"])[:k]
    if len(ranked) < 2:
        print(f"--then-blend {k}: fewer than two finished trials, nothing to blend", flush=True)
        return
    cmd = [sys.executable, "-m", "ensemble.blend", "--out", str(out / "blend")]
    for t in ranked:
        cmd += ["--run", t["run_dir"]]
    print(f"blending trials {[t['number'] for t in ranked]} -> {out / 'blend'}", flush=True)
    subprocess.run(cmd, check=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = build_config(args.config, args.overrides)
        params = load_space(args.space, args.config, args.overrides)
    except (ConfigError, SpaceError) as err:
        print(f"foldtrain.tune: {err}", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no store notices between the trial lines
    import optuna

    from foldtrain.track.mlflow_tracker import MLflowTracker
    from foldtrain.tune.pruning import FoldAwarePruner
    from foldtrain.tune.report import write_report

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial's outcome is printed as one line below
    out = (args.out or Path(cfg.run.dir) / args.study).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or default_storage(cfg, out)
    pruner = None if args.no_prune else FoldAwarePruner()
    tracker = MLflowTracker(cfg.mlflow.experiment, cfg.mlflow.tracking_uri)
    study, parent = join_study(args, storage, out, pruner, tracker)
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    left = args.trials - len(study.get_trials(deepcopy=False, states=counted))
    print(f"study {args.study!r} in {storage}: {left} of {args.trials} trials to run, runs in {out}", flush=True)
    started = time.perf_counter()
    if left > 0:
        objective = Trials(args, params, out, storage, parent, pruner.settings if pruner else None)
        study.optimize(objective, n_trials=left, timeout=args.timeout, catch=(TrialFailed,),
                       callbacks=[optuna.study.MaxTrialsCallback(args.trials, states=counted)])
    report = write_report(study, out, cfg.ci.level)
    finish_study_run(tracker, parent, report, out)
    best = report["best"]
    if best is None:
        print(f"no trial finished; see the trials' logs in {out}", file=sys.stderr)
        return 1
    corrected = report["selection_corrected_f1"]
    print(f"best: trial {best['number']} oof_f1_honest {best['oof_f1_honest']:.4f}; selection-corrected "
          f"{'n/a (one finished trial)' if corrected is None else f'{corrected:.4f}'}; "
          f"{report['fold_epochs']} fold-epochs in {time.perf_counter() - started:.0f} s -> {out / 'study.json'}, "
          f"rerun with --config {best['config']}", flush=True)
    if args.then_blend:
        blend_best(report, args.then_blend, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
