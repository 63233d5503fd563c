"""A study with and without pruning: fold-epochs spent, the best trial's eval F1, and the corrected estimate.

    python benchmarks/bench_tune.py [--trials 24] [--persons 60] [--folds 5] [--seed 0] [--out /tmp/bench_tune]
                                    [--image-size 96] [--epochs-max 12]

On a varied demo set (its eval images unlabeled for training, scored against eval_truth.csv), two studies with the
same sampler seed over lr, epochs, class weights and augmentation (SPACE below): `pruned` (the default fold-aware
pruning) and `full` (`--no-prune`). Reported per study: trials finished and pruned, fold-epochs trained, wall time,
the best trial's `oof_f1_honest`, the selection-corrected estimate, and the best trial's eval macro F1
(`ensemble.predict`, hflip), the number both estimates try to predict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402
from foldtrain.demo import generate_demo  # noqa: E402

SPACE = """\
train.lr: {{log: [3.0e-4, 1.0e-2]}}
train.epochs: {{int: [4, {epochs_max}]}}
train.class_weights: [none, balanced]
aug.scale_min: {{float: [0.3, 0.9]}}
aug.cutmix: [0, 0.3]
"""


def eval_f1(run: Path, root: Path) -> float:
    from sklearn.metrics import f1_score

    out = run / "submission.csv"
    common.run_checked([sys.executable, "-m", "ensemble.predict", "--run", str(run), "--out", str(out)], REPO)
    truth = pd.read_csv(root / "eval_truth.csv").set_index("ImageID")["ans"]
    sub = pd.read_csv(out).set_index("ImageID")["ans"]
    return float(f1_score(truth.loc[sub.index], sub, average="macro"))


def study(name: str, prune: bool, root: Path, work: Path, args) -> dict:
    cmd = [sys.executable, "-m", "foldtrain.tune", "--space", str(work / "space.yaml"), "--trials", str(args.trials),
           "--study", name, "--seed", str(args.seed), "--out", str(work / name),
           "--launch-config", str(REPO / "launch" / "accelerate" / "cpu.yaml"),
           f"data.root={root}", f"cv.folds={args.folds}", f"data.image_size={args.image_size}",
           f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}", "mlflow.log_model=false"]
    if not prune:
        cmd.insert(3, "--no-prune")
    start = time.perf_counter()
    subprocess.run(cmd, cwd=work, check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))  # this tree's foldtrain
    minutes = (time.perf_counter() - start) / 60
    report = json.loads((work / name / "study.json").read_text())
    states = [t["state"] for t in report["trials"]]
    best = report["best"]
    return {"study": name, "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
            "failed": states.count("FAIL"), "fold_epochs": report["fold_epochs"], "minutes": round(minutes, 1),
            "best_trial": best["number"], "best_oof_f1_honest": round(best["oof_f1_honest"], 4),
            "selection_corrected_f1": round(report["selection_corrected_f1"], 4),
            "nested_f1": round(report.get("nested_f1") or float("nan"), 4),
            "best_eval_f1": round(eval_f1(Path(best["run_dir"]), root), 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--persons", type=int, default=60)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs-max", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_tune"))
    args = parser.parse_args()
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "space.yaml").write_text(SPACE.format(epochs_max=args.epochs_max))
    root = generate_demo(work / "data", persons=args.persons, seed=args.seed, style="varied")
    rows = [study("pruned", True, root, work, args), study("full", False, root, work, args)]
    for row in rows:
        print(json.dumps(row), flush=True)
    print()
    print(common.markdown_table(list(rows[0]), [list(r.values()) for r in rows]))
    print(common.machine())


if __name__ == "__main__":
    main()
