"""One pseudo-label round against the same compute spent training longer, with the clean and the naive estimates.

    python benchmarks/bench_pseudo.py [--seeds 0 1] [--persons 60] [--pool-ratio 0.67] [--epochs 10] [--out DIR]

Per seed, a varied demo set whose eval photos (pool-ratio x the training photos, like the competition's 12,600 eval
against 18,900 training photos) are the unlabeled pool; their truth is read only to score. Runs (resnet10t, 96 px,
5 folds, the README's bf16 CPU preset, data seed = split seed = training seed):
- teacher: E epochs;
- round: `pseudo.teacher=TEACHER` with every pseudo.* default, E epochs (clean: fold k's pool labelled by teacher
  fold k; fold k continues from teacher fold k; labels kept by the teacher's out-of-fold precision);
- round, nothing kept: the same with `pseudo.precision=0.9999`, which no class reaches: fold k continues from
  teacher fold k on its own rows alone, so round minus this is what the pool itself brought;
- round, precision 0.9: a laxer `pseudo.precision` (keeps more, less often right);
- round, quantile: `pseudo.select=quantile` (the most confident half of each class of each head, whatever its
  precision);
- naive round: the defaults with `pseudo.naive=true` (every fold's pool labelled by the whole teacher);
- plain: 2E epochs, no pool (the teacher's plus the round's compute).
Eval macro F1 is `ensemble.predict` (hflip) against eval_truth.csv; oof_f1 is each run's own; `kept` is the mean
number of pool photos a fold kept and `kept_precision` how many of them the teacher labelled right (from the truth).
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


def kept(run: Path, root: Path) -> dict:
    """Pool photos a fold kept (mean over folds) and the share of them whose pseudo-label is the truth."""
    labels = run / "pseudo_labels.csv"
    if not labels.is_file():
        return {"kept": None, "kept_precision": None}
    table = pd.read_csv(labels)
    truth = pd.read_csv(root / "eval_truth.csv").set_index("ImageID")["ans"]
    chosen = table[table["kept"]]
    right = (chosen["class"].to_numpy() == truth.loc[chosen["image"]].to_numpy()).mean() if len(chosen) else None
    return {"kept": round(len(chosen) / table["fold"].nunique(), 1),
            "kept_precision": None if right is None else round(float(right), 3)}


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
        round_ = [f"train.epochs={e}", f"pseudo.teacher={teacher}"]
        variants = {"teacher": teacher,
                    "round": train(work, root, seed, round_),
                    "round, nothing kept": train(work, root, seed, [*round_, "pseudo.precision=0.9999"]),
                    "round, precision 0.9": train(work, root, seed, [*round_, "pseudo.precision=0.9"]),
                    "round, quantile": train(work, root, seed, [*round_, "pseudo.select=quantile"]),
                    "naive round": train(work, root, seed, [*round_, "pseudo.naive=true"]),
                    f"plain {2 * e} epochs": train(work, root, seed, [f"train.epochs={2 * e}"])}
        for name, run in variants.items():
            summary = json.loads((run / "summary.json").read_text())
            row = {"seed": seed, "run": name, "oof_f1": round(summary["oof_f1"], 4),
                   "eval_f1": round(common.eval_f1(run, root), 4), **kept(run, root)}
            row["oof_minus_eval"] = round(row["oof_f1"] - row["eval_f1"], 4)
            print(json.dumps(row), flush=True)
            rows.append(row)
    table = pd.DataFrame(rows)
    (args.out / "results.json").write_text(table.to_json(orient="records", indent=1))
    print()
    print(common.markdown_table(list(table.columns), table.values.tolist()))
    means = table.groupby("run", sort=False)[["oof_f1", "eval_f1", "oof_minus_eval"]].mean().round(4)
    print()
    print(common.markdown_table(["run", *means.columns], means.reset_index().values.tolist()))
    print(common.machine())


if __name__ == "__main__":
    main()
