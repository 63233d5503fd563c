"""Grad-CAM of a run's fold models: `python -m ensemble.explain --run R --out DIR [--n 32] [--select worst]`.

By default each fold model explains only its own out-of-fold images (never images it trained on), chosen by
`--select`: `worst` (highest loss), `random`, or `per-class` (a few of each class). `--data EVAL` explains an eval
folder with every fold model instead, their maps averaged, each for the class `ensemble.predict --tta` gives the
image. Three-head models explain the predicted 18-class joint score, or one head with `--head`. Writes
DIR/cams.npz (`paths`, `cams` N x H x W in [0, 1] aligned with the model's input view, `preds`, `labels`, `folds`;
`tta` with --data; no pickles) and picture grids per fold and overall, also logged to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ensemble.predict import run_config
from foldtrain.config import Config
from foldtrain.config.schema import TTA
from foldtrain.data.eval_set import input_view
from foldtrain.data.paths import inside_root
from foldtrain.data.prepare import source_root
from foldtrain.data.tables import read_eval
from foldtrain.errors import EXPECTED
from foldtrain.files import atomic_path, read_csv
from foldtrain.model.cam import HEADS, METHODS, class_maps
from foldtrain.model.fold_ensemble import FoldEnsemble, load_fold_net, run_fold_models
from foldtrain.run.folder import RunFolder
from foldtrain.run.process import LOG_DATEFMT, LOG_FORMAT
from foldtrain.track.cam_grid import draw_cam_grid
from foldtrain.train.metrics import log_loss_per_row
from foldtrain.user_error import UserError

log = logging.getLogger("ensemble")
SELECT = ("worst", "random", "per-class")
BATCH = 16


def select_rows(oof: pd.DataFrame, n: int, how: str, num_classes: int, seed: int = 0) -> pd.DataFrame:
    """`n` out-of-fold rows spread evenly over the folds (and over the classes for `per-class`)."""
    scores = oof[[f"logit_{i}" for i in range(num_classes)]].to_numpy(dtype=np.float64)
    table = oof.assign(loss=log_loss_per_row(scores, oof["label"].to_numpy()))
    rng = np.random.default_rng(seed)
    if how == "per-class":
        per_class = max(1, -(-n // num_classes))
        picked = pd.concat(group.sample(min(per_class, len(group)), random_state=seed)
                           for _, group in table.groupby("label"))
        return picked.sort_values(["fold", "label"]).head(n)
    folds = sorted(table["fold"].unique())
    quota = [n // len(folds) + (i < n % len(folds)) for i in range(len(folds))]
    parts = []
    for fold, count in zip(folds, quota, strict=True):
        rows = table[table["fold"] == fold]
        order = rows.sort_values("loss", ascending=False) if how == "worst" else rows.iloc[rng.permutation(len(rows))]
        parts.append(order.head(count))
    return pd.concat(parts)


def input_views(files: list[Path], size_hw: tuple[int, int]) -> np.ndarray:
    """The model's input view of each image, uint8 N x H x W x 3."""
    return torch.stack([input_view(f, size_hw) for f in files]).permute(0, 2, 3, 1).numpy()


def maps_of(fold, views: np.ndarray, method: str, head: str | None, layer: str | None,
            targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps, predicted classes) of one fold model over uint8 views, in batches."""
    net, heads, normalize = load_fold_net(fold, torch.device("cpu"))
    maps, preds = [], []
    for start in range(0, len(views), BATCH):
        batch = torch.from_numpy(views[start:start + BATCH]).permute(0, 3, 1, 2)
        chunk = None if targets is None else targets[start:start + BATCH]
        m, p = class_maps(net, heads, normalize(batch), method, head, layer, chunk)
        maps.append(m)
        preds.append(p)
    return np.concatenate(maps), np.concatenate(preds)


def class_names(cfg: Config, folder: RunFolder, head: str | None) -> list[str]:
    from foldtrain.data import labels

    if head is not None:
        ages = labels.age_names(cfg.data.age_bins)
        return list({"mask": labels.MASK_NAMES, "gender": labels.GENDER_NAMES, "age": ages}[head])
    return folder.summary()["classes"]


def explain_run(folder: RunFolder, args: argparse.Namespace) -> dict:
    """Each fold model on its own out-of-fold images, a grid per fold and one overall; returns what cams.npz
    holds."""
    cfg = run_config(folder)
    names = class_names(cfg, folder, args.head)
    models = {int(m.name.split()[-1]): m for m in run_fold_models(folder)}
    oof = read_csv(folder.oof_file)
    num_classes = len(folder.summary()["classes"])
    missing = [c for c in ("path", "label", "fold", *(f"logit_{i}" for i in range(num_classes))) if c not in oof]
    if missing:
        raise UserError(f"{folder.oof_file} lacks the columns {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''}: it is not the run's out-of-fold table; continue the "
                        f"run with train.resume=true to write it again")
    picked = select_rows(oof[oof["fold"].isin(models)], args.n, args.select, len(folder.summary()["classes"]))
    root = source_root(cfg, Path(cfg.data.root))
    parts = []
    for fold, rows in picked.groupby("fold", sort=True):
        files = [inside_root(root, p, folder.oof_file, i + 1, cfg.data.follow_symlinks)
                 for i, p in zip(rows.index, rows["path"], strict=True)]
        views = input_views(files, models[fold].size_hw)
        maps, preds = maps_of(models[fold], views, args.method, args.head, args.layer)
        labels = rows["label"].to_numpy()
        if args.head is not None:
            from foldtrain.data.labels import decode

            labels = np.asarray(decode(labels)[HEADS.index(args.head)])
        parts.append({"paths": rows["path"].to_numpy(str), "cams": maps, "preds": preds, "labels": labels,
                      "folds": np.full(len(rows), fold), "views": views})
        draw_cam_grid(views, maps, labels, preds, names, args.out / f"fold{fold}.png",
                      f"{folder.name} fold {fold}: {args.method} on its out-of-fold images ({args.select})")
    found = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    views = found.pop("views")
    draw_cam_grid(views, found["cams"], found["labels"], found["preds"], names, args.out / "gradcam.png",
                  f"{folder.name}: {args.method}, {len(views)} out-of-fold images ({args.select})")
    return found


def explain_eval(folder: RunFolder, args: argparse.Namespace) -> dict:
    """Every fold model on the first `n` eval images, maps averaged, each for the class `ensemble.predict` gives the
    image (the fold x `--tta` ensemble's, on the same crops and input view)."""
    cfg = run_config(folder)
    models = run_fold_models(folder)
    fallback = folder.face_fallback() if cfg.data.face_crop else None
    table = read_eval(source_root(cfg, args.data, fallback), cfg.data.follow_symlinks).head(args.n)
    views = input_views([Path(p) for p in table["path"]], models[0].size_hw)
    preds = ensemble_classes(models, views, args.tta)
    if args.head is not None:
        from foldtrain.data.labels import decode

        preds = np.asarray(decode(preds)[HEADS.index(args.head)])
    log.info("targets: the ensemble's class (%d folds x TTA %s, as ensemble.predict --tta %s)", len(models),
             args.tta, args.tta)
    cams = sum(maps_of(fold, views, args.method, args.head, args.layer, targets=preds)[0] for fold in models)
    cams = cams / len(models)
    draw_cam_grid(views, cams, np.full(len(table), -1), preds, class_names(cfg, folder, args.head),
                  args.out / "eval.png", f"{folder.name}: {args.method} of {len(models)} folds on {args.data}")
    return {"paths": table["ImageID"].to_numpy(str), "cams": cams, "preds": preds,
            "labels": np.full(len(table), -1), "folds": np.full(len(table), -1), "tta": np.array(args.tta)}


def ensemble_classes(models, views: np.ndarray, tta: str) -> np.ndarray:
    """The fold x TTA ensemble's class of each uint8 view, computed as `ensemble.predict` does."""
    ensemble = FoldEnsemble(models, tta, torch.device("cpu"))
    batches = [ensemble(torch.from_numpy(views[i:i + BATCH]).permute(0, 3, 1, 2)) for i in range(0, len(views), BATCH)]
    return torch.cat(batches).numpy().argmax(1)


def log_to_mlflow(folder: RunFolder, out: Path) -> None:
    """The overall grid to the parent run, each fold's grid to its fold run (best effort)."""
    from foldtrain.track.mlflow_tracker import MLflowTracker

    tracking = folder.tracking()
    if not tracking.get("parent_id"):
        return
    tracker = MLflowTracker(tracking.get("experiment", "foldtrain"), tracking.get("tracking_uri"))
    tracker.log_artifact(tracking["parent_id"], out / "gradcam.png", "gradcam")
    for fold, run_id in tracking.get("children", {}).items():
        tracker.log_artifact(run_id, out / f"fold{fold}.png", "gradcam")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ensemble.explain", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder")
    parser.add_argument("--out", type=Path, help="folder for cams.npz and the picture grids (default: RUN/cams, or "
                                                 "RUN/cams-eval with --data)")
    parser.add_argument("--n", type=int, default=32, help="images to explain (default 32)")
    parser.add_argument("--select", choices=SELECT, default="worst", help="which out-of-fold images")
    parser.add_argument("--method", choices=tuple(METHODS), default="gradcam")
    parser.add_argument("--head", choices=HEADS, help="explain one head of a three-head model")
    parser.add_argument("--layer", help="target layer, a module name such as layer4.1 (default: found per family)")
    parser.add_argument("--data", type=Path, help="explain this eval folder with every fold model instead")
    parser.add_argument("--tta", default="hflip", choices=TTA,
                        help="with --data: TTA views of the ensemble whose class is explained (as ensemble.predict)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    start = time.perf_counter()
    try:
        if args.n < 1:
            raise UserError(f"--n must be at least 1, got {args.n}")
        folder = RunFolder(args.run)
        args.out = args.out or folder / ("cams-eval" if args.data else "cams")
        if args.out.exists() and not args.out.is_dir():
            raise UserError(f"--out {args.out} is a file; give a folder for cams.npz and the pictures")
        args.out.mkdir(parents=True, exist_ok=True)
        found = explain_eval(folder, args) if args.data else explain_run(folder, args)
        with atomic_path(args.out / "cams.npz", suffix=".npz") as tmp:
            np.savez_compressed(tmp, **found)
        if not args.data:
            log_to_mlflow(folder, args.out)
    except EXPECTED as err:
        print(f"ensemble.explain: error: {err}", file=sys.stderr)
        return 1
    print(f"{len(found['cams'])} maps in {time.perf_counter() - start:.1f} s -> {args.out / 'cams.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
