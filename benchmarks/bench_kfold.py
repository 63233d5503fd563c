"""The whole k-fold job as whole processes: foldtrain's CLI against the seeds' way of doing k-fold.

    python benchmarks/bench_kfold.py [--data DIR] [--persons 60] [--rounds 2] [--epochs 4] [--folds 5]
                                     [--ours NAME=launch/accelerate/PRESET.yaml ...]

Both train resnet10t (18 classes, from scratch) at 96x96, batch 32, `--epochs` epochs per fold with validation after
every epoch, on every fold of a person-grouped split of the same images:

- ours: `accelerate launch --num_processes 1 foldtrain/main.py` with those settings, in a fresh run folder (so the
  decoded cache is built cold and MLflow starts a new SQLite store, as in a first run);
- seeds: `SEEDS_SCRIPT` below, the k-fold loop of the public notebooks the seed notes learned from (the Cassava
  "train k folds in one process" loop): one process, one model per fold, PIL decode and torchvision transforms
  every epoch, a DataLoader with 2 workers, Adam at lr 0.003, per-batch f1_score, `torch.save` of the best epoch.

Each is timed with `time.perf_counter()` around `subprocess.run`, alternating (ours, seeds, ours, ...), with
OMP_NUM_THREADS unset, CUDA_VISIBLE_DEVICES="" and TQDM_DISABLE=1. Reported: whole-process seconds and the mean
seconds of one epoch (train + validate; ours from fold<k>/metrics.csv, the seeds' printed by their loop), each as
the ratio of medians and the median of per-round ratios (which cancels load that drifts between rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import common

# Deviations from the notebooks, all in the seeds' favour or neutral: 96x96 inputs from a 128x96 resize (they cropped
# 380x380 from the full photo), ImageNet mean/std constants, folds grouped by person (as ours are) so both sides
# train and validate on the same number of images.
SEEDS_SCRIPT = r'''
import sys, glob, os, time
import numpy as np, pandas as pd, torch, timm
from PIL import Image
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold
from torch import nn, optim
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

root, epochs, folds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CFG = {"train_bs": 32, "valid_bs": 64, "lr": 0.003, "num_workers": 2, "device": torch.device("cpu")}
MASK = {"mask1": 0, "mask2": 0, "mask3": 0, "mask4": 0, "mask5": 0, "incorrect_mask": 1, "normal": 2}

rows = []
people = pd.read_csv(os.path.join(root, "train", "train.csv"))
for folder, gender, age in zip(people["path"], people["gender"], people["age"]):
    for path in glob.glob(os.path.join(root, "train", "images", folder, "*")):  # glob skips ._ files
        stem = os.path.splitext(os.path.basename(path))[0]
        age_bin = 0 if age < 30 else 1 if age < 60 else 2
        rows.append({"path": path, "person": folder,
                     "label": MASK[stem] * 6 + (gender == "female") * 3 + age_bin})
data = pd.DataFrame(rows)
mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
transform = transforms.Compose([
    transforms.Resize((128, 96)),
    transforms.RandomResizedCrop((96, 96), scale=(0.7, 1.0)),
    transforms.RandomHorizontalFlip(p=0.5),
    transforms.ToTensor(),
    transforms.Normalize(mean, std),
])
valid_transform = transforms.Compose([transforms.Resize((96, 96)), transforms.ToTensor(),
                                      transforms.Normalize(mean, std)])


class MaskDataset(Dataset):
    def __init__(self, df, transform=None):
        self.path, self.label, self.transform = df["path"], df["label"], transform

    def __len__(self):
        return len(self.path)

    def __getitem__(self, index):
        image = Image.open(self.path.iloc[index]).convert("RGB")
        if self.transform:
            image = self.transform(image)
        return image, torch.tensor(self.label.iloc[index])


splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=2021)
for fold, (train_idx, valid_idx) in enumerate(splitter.split(data, data["label"], data["person"])):
    train_loader = DataLoader(MaskDataset(data.iloc[train_idx], transform), batch_size=CFG["train_bs"], shuffle=True,
                              num_workers=CFG["num_workers"])
    valid_loader = DataLoader(MaskDataset(data.iloc[valid_idx], valid_transform), batch_size=CFG["valid_bs"],
                              shuffle=False, num_workers=CFG["num_workers"])
    model = timm.create_model("resnet10t", pretrained=False, num_classes=18).to(CFG["device"])
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=CFG["lr"])
    best = -1.0
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        train_f1, train_loss = 0.0, []
        for X, y in train_loader:
            X, y = X.to(CFG["device"]), y.to(CFG["device"])
            y_hat = model(X)
            loss = criterion(y_hat, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss.append(loss.item())
            train_f1 += f1_score(y.cpu().numpy(), torch.argmax(y_hat, axis=1).cpu().numpy(), average="macro")
        model.eval()
        preds, labels = [], []
        with torch.no_grad():
            for X, y in valid_loader:
                preds.append(torch.argmax(model(X.to(CFG["device"])), axis=1).cpu())
                labels.append(y)
        valid_f1 = f1_score(torch.cat(labels).numpy(), torch.cat(preds).numpy(), average="macro")
        if valid_f1 > best:
            best = valid_f1
            torch.save(model.state_dict(), f"fold{fold}_best.pt")
        print(f"EPOCH_SECONDS {time.perf_counter() - start:.4f} fold {fold} epoch {epoch} valid f1 {valid_f1:.4f}",
              flush=True)
'''


def bench_env() -> dict[str, str]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TQDM_DISABLE="1")
    env.pop("OMP_NUM_THREADS", None)  # each side picks its own thread count, as a user's shell would
    return env


def run_timed(cmd: list[str], cwd: Path, log: Path) -> float:
    """Seconds of one whole process; its output goes to `log` (shown if it fails)."""
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=bench_env(), stdout=out, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return seconds


class Ours:
    """foldtrain's k-fold job through the real launcher, a fresh run folder each round."""

    def __init__(self, root: Path, work: Path, epochs: int, folds: int, name: str = "ours",
                 config_file: str | None = None):
        self.root, self.work, self.epochs, self.folds = root, work, epochs, folds
        self.name, self.config_file = name, config_file
        self.round, self.epoch_seconds, self.oof_f1 = 0, [], []
        launcher = Path(sys.executable).with_name("accelerate")
        self.launcher = str(launcher) if launcher.exists() else shutil.which("accelerate") or "accelerate"

    def __call__(self) -> float:
        self.round += 1
        run_dir = self.work / f"{self.name}{self.round}"
        config = ["--config_file", self.config_file] if self.config_file else ["--num_processes", "1"]
        cmd = [self.launcher, "launch", *config, "foldtrain/main.py", f"data.root={self.root}",
               "model.name=resnet10t", "data.image_size=96", f"train.epochs={self.epochs}", "train.batch_size=32",
               f"cv.folds={self.folds}", f"run.dir={run_dir}", "run.name=bench",
               f"mlflow.tracking_uri=sqlite:///{run_dir}/mlflow.db"]
        seconds = run_timed(cmd, common.REPO, self.work / f"{self.name}{self.round}.log")
        per_epoch = pd.concat(pd.read_csv(f) for f in (run_dir / "bench").glob("fold*/metrics.csv"))["seconds"]
        self.epoch_seconds.append(float(per_epoch.mean()))
        self.oof_f1.append(json.loads((run_dir / "bench" / "summary.json").read_text())["oof_f1"])
        return seconds


class Seeds:
    """The seeds' k-fold loop as one Python process."""

    def __init__(self, root: Path, work: Path, epochs: int, folds: int):
        self.script = work / "seeds_kfold.py"
        self.script.write_text(SEEDS_SCRIPT)
        self.root, self.work, self.epochs, self.folds = root, work, epochs, folds
        self.epoch_seconds, self.last = [], ""

    def __call__(self) -> float:
        log = self.work / "seeds.log"
        seconds = run_timed([sys.executable, str(self.script), str(self.root), str(self.epochs), str(self.folds)],
                            self.work, log)
        lines = [line for line in log.read_text().splitlines() if line.startswith("EPOCH_SECONDS")]
        self.epoch_seconds.append(statistics.mean(float(line.split()[1]) for line in lines))
        self.last = lines[-1]
        return seconds


def ratios(seeds: list[float], ours: list[float]) -> str:
    paired = [s / o for s, o in zip(seeds, ours, strict=True)]
    return (f"{common.median(seeds) / common.median(ours):.2f}x on the medians, {common.median(paired):.2f}x as the "
            f"median of per-round ratios ({', '.join(f'{r:.2f}' for r in paired)})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="competition-layout data root (default: generate demo data in a temp folder)")
    parser.add_argument("--persons", type=int, default=60, help="persons of the generated demo set")
    parser.add_argument("--rounds", type=int, default=2, help="alternating (ours, seeds) pairs")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--ours", nargs="+", default=["ours"], metavar="NAME[=CONFIG_FILE]",
                        help="foldtrain variants, each an `accelerate launch --config_file` preset (default: "
                             "--num_processes 1), e.g. fp32=launch/accelerate/cpu.yaml bf16=launch/accelerate/"
                             "cpu_bf16.yaml")
    args = parser.parse_args(argv)

    with common.demo_root(args.data, persons=args.persons) as root, \
            tempfile.TemporaryDirectory(prefix="bench-kfold-") as tmp:
        root, work = Path(root).resolve(), Path(tmp)
        ours = [Ours(root, work, args.epochs, args.folds, *spec.split("=", 1)) for spec in args.ours]
        seeds = Seeds(root, work, args.epochs, args.folds)
        sides = {side.name: side for side in ours} | {"seeds": seeds}
        results = common.interleaved(sides, args.rounds)
        print("seeds' last epoch:", seeds.last)

    rows = [[name, f"{common.median(values):.1f}", ", ".join(f"{v:.1f}" for v in values),
             f"{common.median(sides[name].epoch_seconds):.2f}",
             ", ".join(f"{f:.4f}" for f in getattr(sides[name], "oof_f1", [])) or "-"]
            for name, values in results.items()]
    print()
    print(common.markdown_table([f"{args.folds}-fold job, whole process", "median s", "runs (s)",
                                 "median s per epoch", "oof_f1"], rows))
    for side in ours:
        print(f"\n{side.name}: whole process, seeds / ours: {ratios(results['seeds'], results[side.name])}")
        print(f"{side.name}: per epoch, seeds / ours: {ratios(seeds.epoch_seconds, side.epoch_seconds)}")
    print(f"({args.folds} folds x {args.epochs} epochs, resnet10t 96x96, batch 32, {args.rounds} alternating rounds)")
    print(common.machine())


if __name__ == "__main__":
    main()
