"""Does blending pay on unseen persons? Two backbones on one split, blended, scored on the eval set.

    python benchmarks/bench_blend_quality.py --data DIR [--models resnet10t,resnet18] [--epochs 10] [--seeds 1]

For each seed: `python foldtrain/main.py` once per model with the same `cv.seed` (so the runs share folds), then
`ensemble.predict --tta hflip` per run, `ensemble.blend` over the runs and `ensemble.predict --blend`. Prints each
submission's eval macro F1 beside the blend's in-sample `oof_f1`, its `nested_cv_f1` and each run's OOF F1; `--data`
is a competition-layout root with `eval_truth.csv` (`python -m foldtrain.demo --persons 60 [--style varied]`).
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
from foldtrain.train.metrics import macro_f1

BASE = ["data.image_size=96", "train.batch_size=32", "train.lr=0.003", "mlflow.log_model=false"]


def eval_f1(data: Path, submission: Path) -> float:
    truth = pd.read_csv(data / "eval_truth.csv").set_index("ImageID")
    sub = pd.read_csv(submission).set_index("ImageID")
    return macro_f1(truth.loc[sub.index, "ans"].to_numpy(), sub["ans"].to_numpy(), 18)


def measure(data: Path, work: Path, models: list[str], epochs: int, seed: int) -> list[object]:
    folders = []
    for model in models:
        name = f"{model}-s{seed}"
        run([sys.executable, str(common.REPO / "foldtrain" / "main.py"), f"data.root={data}", *BASE,
             f"model.name={model}", f"train.epochs={epochs}", f"cv.seed={seed}", f"train.seed={seed}",
             f"run.dir={work}", f"run.name={name}", f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db"], common.REPO)
        run([sys.executable, "-m", "ensemble.predict", "--run", str(work / name), "--tta", "hflip"], common.REPO)
        folders.append(work / name)
    blend_dir = work / f"blend-s{seed}"
    run([sys.executable, "-m", "ensemble.blend", *[a for f in folders for a in ("--run", str(f))],
         "--out", str(blend_dir)], common.REPO)
    run([sys.executable, "-m", "ensemble.predict", "--blend", str(blend_dir / "blend.json"), "--tta", "hflip",
         "--out", str(blend_dir / "submission.csv")], common.REPO)
    blend = json.loads((blend_dir / "blend.json").read_text())
    singles = [eval_f1(data, f / "submission.csv") for f in folders]
    return [seed, *(f"{s:.3f}" for s in singles), f"{eval_f1(data, blend_dir / 'submission.csv'):.3f}",
            " / ".join(f"{blend['oof_f1_runs'][r]:.3f}" for r in blend["runs"]), f"{blend['oof_f1_equal']:.3f}",
            f"{blend['oof_f1']:.3f}", f"{blend['nested_cv_f1']:.3f}",
            " / ".join(f"{w:.2f}" for w in blend["weights"]), "kept" if blend["bias_kept"] else "zero"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="competition-layout root with eval_truth.csv")
    parser.add_argument("--models", default="resnet10t,resnet18", help="comma-separated timm names")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1, help="split and training seeds 1..N")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-blend-quality-") as tmp:
        for seed in range(1, args.seeds + 1):
            rows.append(measure(Path(args.data).resolve(), Path(tmp), models, args.epochs, seed))
            print("  " + " | ".join(map(str, rows[-1])), flush=True)
    print()
    print(common.markdown_table(["seed", *(f"eval F1 {m}" for m in models), "eval F1 blend",
                                 "OOF F1 per run", "OOF F1 equal", "OOF F1 tuned", "nested_cv_f1", "weights",
                                 "class biases"], rows))
    print(f"data: {args.data}; {' '.join(BASE)}; train.epochs={args.epochs}; 5-fold hflip ensembles")
    print(common.machine())


if __name__ == "__main__":
    main()
