"""Distilling a 5-fold hflip ensemble into one student: what the single model keeps of the ensemble's eval F1, and
whether the k-fold students' oof_f1 predicts the deployable student's eval F1.

    python benchmarks/bench_distill.py [--seeds 0 1] [--persons 60] [--eval-images 1000] [--epochs 10]
                                       [--teacher-model resnet10t] [--student-model resnet10t] [--out DIR]

Per seed, on a varied demo set (the data seed, split seed and training seed are the same number):
1. the teacher: a 5-fold run with `cv.full_fit=true` (its all-data model, trained without a teacher, is the plain
   single model to beat);
2. the student: `distill.teacher=TEACHER distill.final=true`, the same epochs.
Eval macro F1 (against eval_truth.csv) of: the teacher ensemble (`ensemble.predict`, hflip: 10 passes a photo), the
plain all-data model and the final student (`--full-only --tta none`: one pass), and the student's k-fold oof_f1.
Both runs use the bf16 CPU preset of the README.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--persons", type=int, default=60)
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--teacher-model", default="resnet10t")
    parser.add_argument("--student-model", default="resnet10t")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_distill"))
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        work = args.out / f"seed{seed}"
        work.mkdir(parents=True, exist_ok=True)
        root = generate_demo(work / "data", persons=args.persons, seed=seed, style="varied",
                             eval_images=args.eval_images)
        epochs = f"train.epochs={args.epochs}"
        teacher, t_sec = common.seeded_run(work, root, f"teacher-{time.time_ns()}", seed, "cpu_bf16.yaml",
                               [epochs, f"model.name={args.teacher_model}", "cv.full_fit=true"])
        student, s_sec = common.seeded_run(work, root, f"student-{time.time_ns()}", seed, "cpu_bf16.yaml",
                               [epochs, f"model.name={args.student_model}", f"distill.teacher={teacher}",
                                "distill.final=true"])
        summary = json.loads((student / "summary.json").read_text())
        row = {"seed": seed, "teacher_eval_f1": common.eval_f1(teacher, root, "--tta", "hflip"),
               "plain_single_eval_f1": common.eval_f1(teacher, root, "--full-only", "--tta", "none"),
               "student_final_eval_f1": common.eval_f1(student, root, "--full-only", "--tta", "none"),
               "student_folds_eval_f1": common.eval_f1(student, root, "--tta", "hflip"),
               "teacher_oof_f1": json.loads((teacher / "summary.json").read_text())["oof_f1"],
               "student_oof_f1": summary["oof_f1"], "teacher_seconds": round(t_sec), "student_seconds": round(s_sec)}
        row["final_over_teacher"] = row["student_final_eval_f1"] / row["teacher_eval_f1"]
        row["oof_minus_final_eval"] = row["student_oof_f1"] - row["student_final_eval_f1"]
        row = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        print(json.dumps(row), flush=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    (args.out / "results.json").write_text(table.to_json(orient="records", indent=1))
    print()
    print(common.markdown_table(list(table.columns), table.values.tolist()))
    print(common.machine())


if __name__ == "__main__":
    main()
