"""Helpers shared by the benchmark scripts: demo data, interleaved timing, markdown tables, machine facts.

The scripts run as `python benchmarks/NAME.py`, so this folder is on `sys.path` and `import common` works.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def demo_root(data: str | None, persons: int = 60, seed: int = 7) -> Iterator[Path]:
    """`data` when given, else a fresh demo set in a temporary folder that is removed afterwards."""
    if data:
        yield Path(data)
        return
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        root = Path(tmp) / "demo"
        print(f"generating demo data ({persons} persons, seed {seed}) in {root} ...", flush=True)
        # Same command a user runs; a subprocess keeps the generator's imports out of the timed process.
        subprocess.run([sys.executable, "-m", "foldtrain.demo", "--out", str(root), "--persons", str(persons),
                        "--seed", str(seed)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        yield root


def train_table(root: Path) -> tuple[list[Path], list[int]]:
    """Absolute image paths and 18-class labels of the training set, read the way foldtrain reads it."""
    from foldtrain.data.tables import read_table

    frame = read_table(root).frame
    return [root / p for p in frame["path"]], frame["label"].astype(int).tolist()


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each variant once per round, in turn, so background load drifts hit all of them alike.

    Each callable returns its own measurement (seconds, or a rate); the lists come back in round order.
    """
    results: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, fn in variants.items():
            value = fn()
            results[name].append(value)
            print(f"  round {r + 1}/{rounds} {name}: {value:.3f}", flush=True)
    return results


def run_checked(cmd: list[str], cwd: Path) -> None:
    """Run a command quietly; on failure exit with the command and the tail of its stderr."""
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-3000:]}")


def seeded_run(work: Path, root: Path, name: str, seed: int, preset: str, extra: list[str]) -> tuple[Path, float]:
    """(the run folder, wall seconds) of one quiet k-fold run through `accelerate launch --config_file
    launch/accelerate/PRESET`: the split and training seeds both `seed`, MLflow in WORK/mlflow.db, no logged model."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "launch" / "accelerate" / preset), str(REPO / "foldtrain" / "main.py"), "-q",
           f"data.root={root}", f"run.name={name}", f"cv.seed={seed}", f"train.seed={seed}",
           f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}", "mlflow.log_model=false", *extra]
    start = time.perf_counter()
    run_checked(cmd, work)
    return work / "runs" / name, time.perf_counter() - start


def eval_f1(run: Path, root: Path, *flags: str) -> float:
    """Macro F1 of `ensemble.predict --run RUN [FLAGS]` on ROOT/eval against ROOT/eval_truth.csv (a demo set's)."""
    import pandas as pd
    from sklearn.metrics import f1_score

    out = run / f"submission{''.join(flags).replace('-', '_')}.csv"
    subprocess.run([sys.executable, "-m", "ensemble.predict", "--run", str(run), "--data", str(root / "eval"),
                    "--out", str(out), *flags], cwd=run.parents[1], check=True, capture_output=True)
    truth = pd.read_csv(root / "eval_truth.csv").set_index("ImageID")["ans"]
    sub = pd.read_csv(out).set_index("ImageID")["ans"]
    return float(f1_score(truth.loc[sub.index], sub, average="macro"))


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """`min..max` of the measurements, to show how noisy the median is."""
    return f"{min(values):.3g}..{max(values):.3g}"


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """One line about where the numbers came from (they only compare within one machine and load)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    load = ", load avg {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (f"machine: {cores} cores ({platform.processor() or platform.machine()}), torch {torch.__version__} "
            f"({torch.get_num_threads()} intra-op threads), device {device}, python {platform.python_version()}{load}")
