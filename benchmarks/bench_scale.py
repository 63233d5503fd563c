"""How the whole pipeline grows with the data: 60, 600 and 2,700 persons (the competition's 18,900 photos).

    python benchmarks/bench_scale.py [--persons 60 600 2700] [--image-size 32] [--epochs 2]
                                     [--config-file launch/accelerate/cpu.yaml] [--out /tmp/bench_scale]

Per size, a varied demo set in the competition layout (7 photos of 384x512 per person, 64 eval photos) is trained
by the README's command at a small input size (so the competition's size runs on 2 cores: the image count, tables,
scores and logging grow as they would at 96 px or more; the arithmetic per image does not), then blended with a
copy of itself, audited and explained. Reported per size:

- cache: the `data` stage (tables, folds and the decoded cache, built cold) and the cache file's size;
- ms per training image per epoch (an epoch's train + validation seconds over its training images, median epoch);
- peak RSS of each process: the `accelerate launch` launcher, the training process, and the largest loader worker
  or other child (polled every 0.2 s with psutil; the training process also reports its own `peak_rss_mb`);
- `val_scores.npz` per fold (every epoch's validation scores) and `oof.csv`;
- MLflow: seconds inside MLflow calls during training (`mlflow_seconds`) and logging the fold ensemble;
- whole commands: `ensemble.blend` of two runs, `ensemble.audit`, `ensemble.explain --n 16`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402
from foldtrain.demo import generate_demo  # noqa: E402


class PeakRSS:
    """Polls a process tree's resident memory; the peak of each role (launcher, training process, other child)."""

    def __init__(self, root: subprocess.Popen, every: float = 0.2):
        self.root, self.every = psutil.Process(root.pid), every
        self.peak = {"launcher": 0, "train": 0, "child": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def role(self, proc: psutil.Process) -> str:
        if proc.pid == self.root.pid:
            return "launcher"
        return "train" if any(part.endswith("main.py") for part in proc.cmdline()) else "child"

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for proc in procs:
                try:
                    role = self.role(proc)
                    self.peak[role] = max(self.peak[role], proc.memory_info().rss)
                except psutil.Error:
                    continue
            self._stop.wait(self.every)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {role: round(rss / 2**20) for role, rss in self.peak.items()}


def train(root: Path, work: Path, args) -> tuple[Path, dict, float]:
    name = f"scale-{root.parent.name}"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / args.config_file),
           str(REPO / "foldtrain" / "main.py"), "-q", f"data.root={root}", f"data.image_size={args.image_size}",
           f"train.epochs={args.epochs}", f"run.name={name}", f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    monitor = PeakRSS(proc)
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    peaks = monitor.stop()
    if proc.returncode:
        sys.exit(f"training failed:\n{err[-3000:]}")
    return work / "runs" / name, peaks, seconds


def command_seconds(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    common.run_checked([sys.executable, "-m", *args], cwd)
    return time.perf_counter() - start


def measure(persons: int, args) -> dict:
    work = args.out / f"p{persons}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    root = generate_demo(work / "data", persons=persons, seed=0, eval_images=64, style="varied")
    drawn = time.perf_counter() - start
    run, peaks, seconds = train(root, work, args)
    summary = json.loads((run / "summary.json").read_text())
    folds = summary["folds_trained"]
    fold_of = pd.read_csv(run / "folds.csv")["fold"]
    per_image = [pd.read_csv(run / f"fold{f}" / "metrics.csv")["seconds"].median() / (fold_of != f).sum() * 1000
                 for f in folds]
    scores_mb = [(run / f"fold{f}" / "val_scores.npz").stat().st_size / 2**20 for f in folds]
    caches = list((work / "runs" / ".cache").rglob("*.npy"))
    copy = run.with_name(run.name + "-copy")
    shutil.copytree(run, copy)
    blend = command_seconds(["ensemble.blend", "--run", str(run), "--run", str(copy), "--out",
                             str(work / "blend")], REPO)
    audit = command_seconds(["ensemble.audit", "--run", str(run)], REPO)
    explain = command_seconds(["ensemble.explain", "--run", str(run), "--n", "16"], REPO)
    stages = summary["stage_seconds"]
    return {
        "persons": persons, "images": summary["num_images"], "drawn_s": round(drawn),
        "job_s": round(seconds), "data_stage_s": stages["data"],
        "cache_mb": round(sum(c.stat().st_size for c in caches) / 2**20, 1),
        "ms_per_train_image_epoch": round(common.median(per_image), 3),
        "rss_launcher_mb": peaks["launcher"], "rss_train_mb": peaks["train"], "rss_child_mb": peaks["child"],
        "peak_rss_mb_self": summary["peak_rss_mb"],
        "val_scores_mb_per_fold": round(common.median(scores_mb), 2),
        "oof_csv_mb": round((run / "oof.csv").stat().st_size / 2**20, 2),
        "results_s": stages["results"], "mlflow_s": summary["mlflow_seconds"],
        "model_logging_s": stages["model_logging"],
        "blend_s": round(blend, 1), "audit_s": round(audit, 1), "explain_s": round(explain, 1),
        "stage_seconds": stages,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, nargs="+", default=[60, 600, 2700])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--config-file", default="launch/accelerate/cpu.yaml")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_scale"))
    args = parser.parse_args()
    rows = []
    for persons in args.persons:
        row = measure(persons, args)
        print(json.dumps(row), flush=True)
        rows.append(row)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    columns = [c for c in rows[0] if c != "stage_seconds"]
    print()
    print(common.markdown_table(columns, [[r[c] for c in columns] for r in rows]))
    print(common.machine())


if __name__ == "__main__":
    main()
