"""The README's main job in fp32 and in bf16 on the CPU: whole-job time, out-of-fold and eval macro F1.

    python benchmarks/bench_precision.py [--seeds 0 1] [--styles uniform varied] [--persons 60] [--epochs 10]
                                         [--out /tmp/bench_precision]

For each seed and demo style, the same 5-fold job (resnet10t, 96 px, the default recipe) runs through
`accelerate launch --config_file launch/accelerate/cpu.yaml` and `.../cpu_bf16.yaml`, the two interleaved so load
that drifts lands on both; each job's wall time includes start-up, and the eval F1 is `ensemble.predict` on the
set's eval images against eval_truth.csv. The data seed and the split/training seed are the same number.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402
from foldtrain.demo import generate_demo  # noqa: E402

PRESETS = {"fp32": "cpu.yaml", "bf16": "cpu_bf16.yaml"}


def job(root: Path, work: Path, name: str, preset: str, seed: int, epochs: int) -> tuple[float, Path]:
    run, seconds = common.seeded_run(work, root, name, seed, preset, [f"train.epochs={epochs}"])
    return seconds, run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--styles", nargs="+", default=["uniform", "varied"])
    parser.add_argument("--persons", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_precision"))
    args = parser.parse_args()
    rows = []
    for style in args.styles:
        for seed in args.seeds:
            work = args.out / f"{style}-{seed}"
            work.mkdir(parents=True, exist_ok=True)
            root = generate_demo(work / "data", persons=args.persons, seed=seed, style=style)
            order = list(PRESETS) if seed % 2 == 0 else list(PRESETS)[::-1]  # alternate who goes first
            for precision in order:
                seconds, run = job(root, work, f"{precision}-{time.time_ns()}", PRESETS[precision], seed, args.epochs)
                summary = json.loads((run / "summary.json").read_text())
                row = {"style": style, "seed": seed, "precision": precision, "seconds": round(seconds, 1),
                       "oof_f1": round(summary["oof_f1"], 4), "oof_f1_tta": round(summary["oof_f1_tta"], 4),
                       "eval_f1": round(common.eval_f1(run, root), 4),
                       "mixed_precision": summary["mixed_precision"]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    table = pd.DataFrame(rows)
    (args.out / "results.json").write_text(table.to_json(orient="records", indent=1))
    print()
    print(common.markdown_table(list(table.columns), table.values.tolist()))
    wide = table.pivot_table(index=["style", "seed"], columns="precision", values=["seconds", "oof_f1", "eval_f1"])
    speedup = common.median((wide["seconds"]["fp32"] / wide["seconds"]["bf16"]).tolist())
    print(f"\nbf16 speed-up (whole job): {speedup:.2f}x (median of {len(wide)} pairs); F1 bf16 - fp32: oof "
          f"{(wide['oof_f1']['bf16'] - wide['oof_f1']['fp32']).round(3).tolist()}, eval "
          f"{(wide['eval_f1']['bf16'] - wide['eval_f1']['fp32']).round(3).tolist()}")
    print(common.machine())


if __name__ == "__main__":
    main()
