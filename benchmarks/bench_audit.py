"""How well `ensemble.audit` finds planted person-level label errors, and what fixing them buys.

    python benchmarks/bench_audit.py [--persons 100] [--epochs 16] [--seeds 0 1] [--out /tmp/bench_audit]
                                     [--no-retrain] [--reuse]

Per seed: draws a varied demo set, plants noise as the real data has it (5% of persons with the gender flipped, 5%
with the age group moved to a neighbouring group, 4% with incorrect_mask and normal swapped, 2 persons copied under
new ids as re-encoded photos; folder names follow train.csv, as in the competition), trains the 5-fold job
(resnet10t, 96 px, from scratch), audits it, and reports person-level recall and precision per kind, the duplicate
pairs found, and cleanlab's row-level result on the same out-of-fold scores where cleanlab is installed
(`pip install cleanlab`; AGPL, never a dependency). Unless `--no-retrain`, it then trains the same job on the clean
set and with the emitted label_fixes.csv, and reports each run's eval macro F1 (eval_truth.csv) and the share of the
noise's cost the fixes recover.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from foldtrain.data import labels as mask_labels  # noqa: E402
from foldtrain.demo import generate_demo  # noqa: E402


def plant_noise(root: Path, seed: int) -> dict:
    """Flip genders, move age groups, swap incorrect/normal and copy persons, in place; returns the truth."""
    rng = np.random.default_rng(seed + 100)
    csv = root / "train" / "train.csv"
    table = pd.read_csv(csv, dtype={"id": str})
    n = len(table)
    order = rng.permutation(n)
    k_gender, k_age, k_swap = round(0.05 * n), round(0.05 * n), round(0.04 * n)
    gender_rows = order[:k_gender]
    age_rows = order[k_gender:k_gender + k_age]
    swap_rows = order[k_gender + k_age:k_gender + k_age + k_swap]
    copy_rows = order[k_gender + k_age + k_swap:k_gender + k_age + k_swap + 2]
    images = root / "train" / "images"
    truth = {"gender": [], "age": [], "mask_swap": [], "duplicates": []}
    for row in gender_rows:
        table.loc[row, "gender"] = "female" if table.loc[row, "gender"] == "male" else "male"
    for row in age_rows:
        group = mask_labels.age_bin(int(table.loc[row, "age"]))
        new = {0: 1, 2: 1}.get(group, int(rng.choice([0, 2])))
        table.loc[row, "age"] = int(rng.integers(*{0: (18, 30), 1: (30, 60), 2: (60, 75)}[new]))
    for row in [*gender_rows, *age_rows]:  # the folder name follows train.csv, as in the real data
        old = table.loc[row, "path"]
        new = f"{table.loc[row, 'id']}_{table.loc[row, 'gender']}_{table.loc[row, 'race']}_{table.loc[row, 'age']}"
        (images / old).rename(images / new)
        table.loc[row, "path"] = new
    truth["gender"] = [table.loc[r, "path"] for r in gender_rows]
    truth["age"] = [table.loc[r, "path"] for r in age_rows]
    for row in swap_rows:
        folder = images / table.loc[row, "path"]
        inc = next(p for p in folder.iterdir() if p.stem == "incorrect_mask")
        nor = next(p for p in folder.iterdir() if p.stem == "normal")
        tmp = folder / f"tmp{inc.suffix}"
        inc.rename(tmp)
        nor.rename(folder / f"incorrect_mask{nor.suffix}")
        tmp.rename(folder / f"normal{inc.suffix}")
        truth["mask_swap"].append(table.loc[row, "path"])
    new_rows = []
    for i, row in enumerate(copy_rows):
        src = table.loc[row]
        pid = f"{n + i + 1:06d}"
        name = f"{pid}_{src['gender']}_{src['race']}_{src['age']}"
        (images / name).mkdir()
        for photo in (images / src["path"]).iterdir():
            if photo.name.startswith("._"):
                continue
            img = Image.open(photo).convert("RGB")  # a re-encoded, slightly resized copy, not the same bytes
            img.resize((round(img.width * 0.97), round(img.height * 0.97))).save(images / name / f"{photo.stem}.jpg",
                                                                                 quality=85)
        new_rows.append({"id": pid, "gender": src["gender"], "race": src["race"], "age": src["age"], "path": name})
        truth["duplicates"].append(sorted([src["path"], name]))
    pd.concat([table, pd.DataFrame(new_rows)], ignore_index=True).to_csv(csv, index=False)
    return truth


def train(root: Path, work: Path, name: str, epochs: int, extra: list[str] = ()) -> Path:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "launch" / "accelerate" / "cpu.yaml"), str(REPO / "foldtrain" / "main.py"), "-q",
           f"data.root={root}", f"train.epochs={epochs}", f"run.name={name}", "mlflow.log_model=false",
           f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}", *extra]
    subprocess.run(cmd, cwd=work, check=True)
    return work / "runs" / name


def eval_f1(run: Path, root: Path, work: Path) -> float:
    from sklearn.metrics import f1_score

    out = work / f"{run.name}-sub.csv"
    subprocess.run([sys.executable, "-m", "ensemble.predict", "--run", str(run), "--out", str(out)], cwd=REPO,
                   check=True, capture_output=True)
    truth = pd.read_csv(root / "eval_truth.csv").set_index("ImageID")["ans"]
    sub = pd.read_csv(out).set_index("ImageID")["ans"]
    return float(f1_score(truth.loc[sub.index], sub, average="macro"))


def recall_precision(found: set, true: set) -> tuple[float, float, int, int]:
    hit = len(found & true)
    return (hit / len(true) if true else float("nan")), (hit / len(found) if found else float("nan")), hit, len(found)


def score_audit(run: Path, truth: dict) -> dict:
    issues = pd.read_csv(run / "audit" / "label_issues.csv")
    out = {}
    demographic = {(p, k) for k in ("gender", "age") for p in truth[k]}
    found = {(p, k) for p, k in zip(issues["person"], issues["kind"], strict=True) if k in ("gender", "age")}
    out["gender+age"] = recall_precision(found, demographic)
    for kind in ("gender", "age", "mask_swap"):
        out[kind] = recall_precision(set(issues.loc[issues["kind"] == kind, "person"]), set(truth[kind]))
    pairs = pd.read_csv(run / "audit" / "duplicates.csv")
    found_pairs = {tuple(sorted(p)) for p in zip(pairs["person_a"], pairs["person_b"], strict=True)}
    out["duplicates"] = recall_precision(found_pairs, {tuple(p) for p in truth["duplicates"]})
    return out


def cleanlab_rows(run: Path, truth: dict) -> tuple | None:
    """cleanlab's find_label_issues on the same out-of-fold rows (18 classes), scored on the planted rows."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    oof = pd.read_csv(run / ("oof_tta.csv" if (run / "oof_tta.csv").exists() else "oof.csv"))
    logits = oof[[f"logit_{i}" for i in range(18)]].to_numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    flagged = find_label_issues(oof["label"].to_numpy(), probs)
    person = oof["path"].str.split("/").str[2]
    stem = oof["path"].map(lambda p: Path(p).stem)
    wrong = person.isin(truth["gender"] + truth["age"]) | (person.isin(truth["mask_swap"])
                                                            & stem.isin(["incorrect_mask", "normal"]))
    return recall_precision(set(np.flatnonzero(flagged)), set(np.flatnonzero(wrong.to_numpy())))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_audit"))
    parser.add_argument("--no-retrain", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="keep a seed's noisy run from an earlier call")
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        work = args.out / f"seed{seed}"
        clean, noisy, run = work / "clean", work / "noisy", work / "runs" / "noisy"
        if args.reuse and (run / "summary.json").is_file():  # the noisy run of an earlier call: train the rest
            planted = work / "replanted"
            shutil.rmtree(planted, ignore_errors=True)
            shutil.copytree(clean, planted)
            truth = plant_noise(planted, seed)
            shutil.rmtree(planted)
            for name in ("fixed", "clean"):
                shutil.rmtree(work / "runs" / name, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            generate_demo(clean, persons=args.persons, seed=seed, style="varied")
            shutil.copytree(clean, noisy)
            truth = plant_noise(noisy, seed)
            train(noisy, work, "noisy", args.epochs)
        subprocess.run([sys.executable, "-m", "ensemble.audit", "--run", str(run)], cwd=REPO, check=True)
        row = {"seed": seed, **score_audit(run, truth), "cleanlab_rows": cleanlab_rows(run, truth),
               "oof_f1_noisy": json.loads((run / "summary.json").read_text())["oof_f1"]}
        if not args.no_retrain:
            fixed = train(noisy, work, "fixed", args.epochs, [f"data.label_fixes={run / 'audit' / 'label_fixes.csv'}"])
            reference = train(clean, work, "clean", args.epochs)
            row |= {"eval_f1_clean": eval_f1(reference, clean, work), "eval_f1_noisy": eval_f1(run, noisy, work),
                    "eval_f1_fixed": eval_f1(fixed, noisy, work)}
            cost = row["eval_f1_clean"] - row["eval_f1_noisy"]
            row["recovered"] = (row["eval_f1_fixed"] - row["eval_f1_noisy"]) / cost if cost > 0 else float("nan")
        print(json.dumps(row), flush=True)
        results.append(row)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
