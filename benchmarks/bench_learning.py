"""How well the defaults learn, and how honest the CV estimate is: train, predict the unseen eval persons, compare.

    python benchmarks/bench_learning.py --data DIR [--config NAME=key=value,key=value ...] [--seeds 1]

For each configuration (default: `defaults` and `defaults-16ep`): `python foldtrain/main.py` on the data set (a
competition-layout set with `eval_truth.csv`, as `python -m foldtrain.demo --style varied` writes), then
`ensemble.predict` with hflip TTA on its eval images. Prints the eval macro F1 and mask-state accuracy of the fold
ensemble beside the run's CV estimates (`oof_f1` at the best epochs, `oof_f1_honest`, `oof_f1_last`) and its
diagnosis.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

import common
from common import run_checked as run
from foldtrain.data import labels as label_codes
from foldtrain.train.metrics import accuracy, macro_f1

CONFIGS = {"defaults": [], "defaults-16ep": ["train.epochs=16"]}
BASE = ["model.name=resnet10t", "data.image_size=96", "train.batch_size=32", "train.lr=0.003"]


def measure(data: Path, work: Path, name: str, overrides: list[str], seed: int) -> list[object]:
    run_name = f"{name}-s{seed}"
    run([sys.executable, str(common.REPO / "foldtrain" / "main.py"), f"data.root={data}", *BASE, *overrides,
         f"cv.seed={seed}", f"train.seed={seed}", f"run.dir={work}", f"run.name={run_name}",
         f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db", "mlflow.log_model=false"], common.REPO)
    folder = work / run_name
    run([sys.executable, "-m", "ensemble.predict", "--run", str(folder), "--tta", "hflip"], common.REPO)
    truth = pd.read_csv(data / "eval_truth.csv").set_index("ImageID")
    sub = pd.read_csv(folder / "submission.csv").set_index("ImageID")
    y, p = truth.loc[sub.index, "ans"].to_numpy(), sub["ans"].to_numpy()
    summary = json.loads((folder / "summary.json").read_text())
    mask_acc = accuracy(label_codes.decode(y)[0], label_codes.decode(p)[0])
    verdicts = "; ".join(d["kind"] for d in summary.get("diagnosis", [])) or "-"
    return [name, seed, f"{macro_f1(y, p, 18):.3f}", f"{mask_acc:.3f}", f"{summary['oof_f1']:.3f}",
            f"{summary['oof_f1_honest']:.3f}", f"{summary['oof_f1_last']:.3f}", verdicts]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="competition-layout root with eval_truth.csv")
    parser.add_argument("--config", action="append", default=[],
                        help="NAME=key=value,key=value (repeatable); default: defaults and defaults-16ep")
    parser.add_argument("--seeds", type=int, default=1, help="split and training seeds 1..N per configuration")
    args = parser.parse_args(argv)
    configs = {c.split("=", 1)[0]: [o for o in c.split("=", 1)[1].split(",") if o] for c in args.config} or CONFIGS
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        for name, overrides in configs.items():
            for seed in range(1, args.seeds + 1):
                rows.append(measure(Path(args.data).resolve(), Path(tmp), name, overrides, seed))
                print("  " + " | ".join(map(str, rows[-1])), flush=True)
    print()
    print(common.markdown_table(["configuration", "seed", "eval macro F1", "eval mask acc", "oof_f1 (best)",
                                 "oof_f1_honest", "oof_f1_last", "diagnosis"], rows))
    print(f"data: {args.data}; {' '.join(BASE)}; 5-fold hflip ensemble")
    print(common.machine())


if __name__ == "__main__":
    main()
