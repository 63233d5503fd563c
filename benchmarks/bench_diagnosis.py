"""Does the under-training diagnosis fire when more epochs would help, and stay quiet when they would not?

    python benchmarks/bench_diagnosis.py [--style varied --style uniform] [--seeds 2] [--epochs 4 8 16]

For each demo style (a 60-person set with eval truth, `python -m foldtrain.demo --style S --persons 60`), seed and
epoch count E: a 5-fold run of the defaults (resnet10t, 96 px, batch 32, lr 0.003), its hflip fold ensemble scored
on the eval persons, and the run's `diagnosis`. Each row pairs a run with the run of the next epoch count (2E): a
run "gains from more epochs" when the eval macro F1 of 2E beats E's by more than `--gain` (0.03 by default: eval F1
on 105 images moves by about 0.05 between seeds, so smaller gains are noise).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

import common
from common import run_checked as run
from foldtrain.train.metrics import macro_f1

BASE = ["model.name=resnet10t", "data.image_size=96", "train.batch_size=32", "train.lr=0.003", "cv.oof_tta=none"]


def train_and_score(data: Path, work: Path, epochs: int, seed: int) -> tuple[float, str]:
    """(eval macro F1 of the fold ensemble, 'k of n folds' flagged under-trained or '-')."""
    name = f"e{epochs}-s{seed}"
    run([sys.executable, str(common.REPO / "foldtrain" / "main.py"), f"data.root={data}", *BASE,
         f"train.epochs={epochs}", f"cv.seed={seed}", f"train.seed={seed}", f"run.dir={work}", f"run.name={name}",
         f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db", "mlflow.log_model=false"], common.REPO)
    folder = work / name
    run([sys.executable, "-m", "ensemble.predict", "--run", str(folder), "--tta", "hflip"], common.REPO)
    truth = pd.read_csv(data / "eval_truth.csv").set_index("ImageID")
    sub = pd.read_csv(folder / "submission.csv").set_index("ImageID")
    f1 = macro_f1(truth.loc[sub.index, "ans"].to_numpy(), sub["ans"].to_numpy(), 18)
    summary = json.loads((folder / "summary.json").read_text())
    under = [d for d in summary["diagnosis"] if d["kind"] == "under-trained"]
    return f1, f"{len(under[0]['folds'])} of {len(summary['folds_trained'])}" if under else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", action="append", default=[], help="demo styles (default: varied, uniform)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--gain", type=float, default=0.03)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-diagnosis-") as tmp:
        for style in args.style or ["varied", "uniform"]:
            data = Path(tmp) / style
            subprocess.run([sys.executable, "-m", "foldtrain.demo", "--out", str(data), "--persons", "60", "--seed",
                            "7", "--style", style], check=True, cwd=common.REPO, stdout=subprocess.DEVNULL)
            for seed in range(1, args.seeds + 1):
                scored = {e: train_and_score(data, Path(tmp) / style / "runs", e, seed) for e in args.epochs}
                for short, long in zip(args.epochs, args.epochs[1:], strict=False):
                    gain = scored[long][0] - scored[short][0]
                    rows.append([style, seed, short, scored[short][1], f"{scored[short][0]:.3f}",
                                 f"{scored[long][0]:.3f}", f"{gain:+.3f}", "yes" if gain > args.gain else "no"])
                    print("  " + " | ".join(map(str, rows[-1])), flush=True)
    print()
    print(common.markdown_table(["set", "seed", "epochs E", "flagged under-trained at E", "eval F1 at E",
                                 "eval F1 at 2E", "gain", f"gains > {args.gain}"], rows))
    flagged = [r for r in rows if r[3] != "-"]
    print(f"flagged runs that gained: {sum(r[-1] == 'yes' for r in flagged)} of {len(flagged)}; unflagged runs that "
          f"gained: {sum(r[-1] == 'yes' for r in rows if r[3] == '-')} of {len(rows) - len(flagged)}")
    print(common.machine())


if __name__ == "__main__":
    main()
