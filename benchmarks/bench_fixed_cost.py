"""What a run spends outside its epochs, this tree against an earlier commit, alternating.

    python benchmarks/bench_fixed_cost.py --before df97e67 [--rounds 2] [--data DIR] [--preset cpu.yaml]

The README's job shape (`accelerate launch --config_file launch/accelerate/PRESET foldtrain/main.py`) at 1 epoch per
fold, each run in a fresh run folder and MLflow store; `--before` is checked out from this repository into a temporary
folder. Reported: whole-process seconds, and the same minus the epochs' own seconds (fold*/metrics.csv).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import common


def one_run(tree: Path, data: Path, preset: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-fixed-") as tmp:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(tree / "launch" / "accelerate" / preset), str(tree / "foldtrain" / "main.py"), "-q",
               f"data.root={data}", "train.epochs=1", f"run.dir={tmp}/runs", "run.name=x",
               f"mlflow.tracking_uri=sqlite:///{tmp}/m.db"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        epochs = sum(pd.read_csv(f)["seconds"].sum() for f in Path(tmp, "runs", "x").glob("fold*/metrics.csv"))
    return seconds, seconds - epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", help="a competition-layout set (default: a generated 60-person demo)")
    parser.add_argument("--preset", default="cpu.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-before-") as old, common.demo_root(args.data) as data:
        subprocess.run(["git", "clone", "-q", str(common.REPO), old], check=True)
        subprocess.run(["git", "checkout", "-q", args.before], cwd=old, check=True)
        trees = {f"before ({args.before})": Path(old), "this tree": common.REPO}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                results[name].append(one_run(tree, Path(data).resolve(), args.preset))
                print(name, [round(v, 1) for v in results[name][-1]], flush=True)
    rows = [[name, f"{common.median([v[0] for v in vals]):.1f}", f"{common.median([v[1] for v in vals]):.1f}"]
            for name, vals in results.items()]
    print(common.markdown_table(["tree", "median whole s", "median outside the epochs s"], rows))
    print(common.machine())


if __name__ == "__main__":
    main()
