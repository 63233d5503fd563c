"""One pseudo-label round against the same compute spent training longer, with the clean and the naive estimates.

    python benchmarks/bench_pseudo.py [--seeds 0 1] [--persons 60] [--pool-ratio 0.67] [--epochs 10] [--out DIR]

Per seed, a varied demo set whose eval photos (pool-ratio x the training photos, like the competition's 12,600 eval
against 18,900 training photos) are the unlabeled pool; their truth is read only to score. Runs (resnet10t, 96 px,
5 folds, the README's bf16 CPU preset, data seed = split seed = training seed):
- teacher: E epochs;
- round: `pseudo.teacher=TEACHER pseudo.warm_start=false`, E epochs (clean: fold k's pool labelled by teacher
  fold k), each fold trained from scratch;
- round, warm: the same with `pseudo.warm_start=true`: fold k continues from teacher fold k;
- naive round: `pseudo.naive=true` (every fold's pool labelled by the whole teacher), E epochs, from scratch as
  the first round (the same settings but the labels);
- plain: 2E epochs, no pool (the teacher's plus the round's compute).
Eval macro F1 is `ensemble.predict` (hflip) against eval_truth.csv; oof_f1 is each run's own.
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


def train(work: Path, root: Path, seed: int, extra: list[str]) -> Path:
    return common.seeded_run(work, root, f"run-{time.time_ns()}", seed, "cpu_bf16.yaml", extra)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--persons", type=int, default=60)
    parser.add_argument("--pool-ratio", type=float, default=0.67)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_pseudo"))
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        work = args.out / f"seed{seed}"
        work.mkdir(parents=True, exist_ok=True)
        root = generate_demo(work / "data", persons=args.persons, seed=seed, style="varied",
                             eval_images=round(args.persons * 7 * args.pool_ratio))
        e = args.epochs
        teacher = train(work, root, seed, [f"train.epochs={e}"])
        variants = {"teacher": teacher,
                    "round": train(work, root, seed, [f"train.epochs={e}", f"pseudo.teacher={teacher}",
                                                      "pseudo.warm_start=false"]),
                    "round, warm": train(work, root, seed, [f"train.epochs={e}", f"pseudo.teacher={teacher}",
                                                            "pseudo.warm_start=true"]),
                    "naive round": train(work, root, seed, [f"train.epochs={e}", f"pseudo.teacher={teacher}",
                                                            "pseudo.naive=true", "pseudo.warm_start=false"]),
                    f"plain {2 * e} epochs": train(work, root, seed, [f"train.epochs={2 * e}"])}
        for name, run in variants.items():
            summary = json.loads((run / "summary.json").read_text())
            row = {"seed": seed, "run": name, "oof_f1": round(summary["oof_f1"], 4),
                   "eval_f1": round(common.eval_f1(run, root), 4)}
            row["oof_minus_eval"] = round(row["oof_f1"] - row["eval_f1"], 4)
            print(json.dumps(row), flush=True)
            rows.append(row)
    table = pd.DataFrame(rows)
    (args.out / "results.json").write_text(table.to_json(orient="records", indent=1))
    print()
    print(common.markdown_table(list(table.columns), table.values.tolist()))
    means = table.groupby("run")[["oof_f1", "eval_f1", "oof_minus_eval"]].mean().round(4)
    print()
    print(common.markdown_table(["run", *means.columns], means.reset_index().values.tolist()))
    print(common.machine())


if __name__ == "__main__":
    main()
