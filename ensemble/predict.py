"""Fold ensemble: `python -m ensemble.predict [--run DIR] [--data EVAL_DIR] [--tta NAME] [--out FILE]`.

Loads every fold's safetensors (nothing pickled), averages logits over TTA views and folds with the same
preprocessing as training validation, and writes `ImageID,ans` in the order of the eval table.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ensemble.tta import TTA_CHOICES, BatchedTTA, tta_transforms, views_per_pass
from foldtrain import config as config_mod
from foldtrain import heads as heads_mod
from foldtrain.cache import build_cache
from foldtrain.checkpoints import load_weights, read_metadata
from foldtrain.data import CachedImageDataset, build_loader, default_workers
from foldtrain.facecrop import CropSettings, ensure_face_crops
from foldtrain.images import ImageReadError
from foldtrain.layout import LayoutError, read_eval
from foldtrain.model import build_model
from foldtrain.process import LOG_DATEFMT, LOG_FORMAT, exit_now, keep_freed_memory
from foldtrain.runfolder import newest_run, read_json, write_csv
from foldtrain.tracking import Tracker
from foldtrain.transforms import DeviceNormalize, build_eval_transform, working_size

log = logging.getLogger("ensemble")


@dataclass
class FoldModel:
    """One fold's weights and what its metadata says about them."""

    path: Path
    meta: dict


def find_fold_models(run_dir: Path, include_full: bool = False) -> list[FoldModel]:
    """Every `fold<k>/model.safetensors` of a run in fold order, plus `full/model.safetensors` if asked."""
    paths = sorted(run_dir.glob("fold*/model.safetensors"), key=lambda p: int(p.parent.name[4:]))
    if not paths:
        raise FileNotFoundError(f"no fold weights (fold<k>/model.safetensors) in {run_dir}; is training finished?")
    if include_full:
        full = run_dir / "full" / "model.safetensors"
        if not full.is_file():
            raise FileNotFoundError(f"--include-full: {full} not found; train with cv.full_fit=true")
        paths.append(full)
    return [FoldModel(p, read_metadata(p)) for p in paths]


class ClassScores(torch.nn.Module):
    """A fold model whose output is one score per class, whatever its heads."""

    def __init__(self, model: torch.nn.Module, heads: str):
        super().__init__()
        self.model = model
        self.heads = heads

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return heads_mod.class_logits(self.model(images), self.heads)


def load_fold(fold: FoldModel, device: torch.device) -> torch.nn.Module:
    """A model rebuilt from its metadata with the fold's weights, in eval mode on `device`, scoring classes."""
    meta = fold.meta
    heads = meta.get("heads", "single")
    model = build_model(meta["model"], heads_mod.output_size(heads, int(meta["num_classes"])), pretrained=False)
    model.load_state_dict(load_weights(fold.path), strict=True)
    # channels_last on every device, as in training (see `DeviceNormalize`).
    return ClassScores(model.to(device, memory_format=torch.channels_last), heads).eval()


def autocast_for(device: torch.device):
    """bf16 autocast where the GPU supports it, fp16 on older GPUs, full precision on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def ensemble_logits(folds: list[FoldModel], loader, tta: str, device: torch.device) -> np.ndarray:
    """Mean logits over folds and TTA views of every image in `loader`, in loader order."""
    total = None
    for fold in folds:
        model = load_fold(fold, device)
        normalize = DeviceNormalize(tuple(fold.meta["mean"]), tuple(fold.meta["std"])).to(device)
        wrapped = BatchedTTA(model, tta_transforms(tta), views_per_pass(device))
        outs = []
        for images, _, _ in tqdm(loader, desc=f"{fold.path.parent.name} tta={tta}", leave=False, disable=None):
            with autocast_for(device):
                outs.append(wrapped(normalize(images)).float().cpu())
        logits = torch.cat(outs).numpy()
        total = logits if total is None else total + logits
        del model
    return total / len(folds)


def predict_run(run_dir: Path, data_dir: Path | None, tta: str, out: Path | None, batch_size: int = 64,
                workers: int | None = None, include_full: bool = False) -> Path:
    """Write the ensemble's submission for `data_dir` (default: the run's `data.root/eval`); returns its path."""
    cfg = config_mod.build_config([run_dir / "config.yaml"])
    folds = find_fold_models(run_dir, include_full)
    data_dir = Path(data_dir) if data_dir else Path(cfg.data.root) / "eval"
    out = Path(out) if out else run_dir / "submission.csv"
    cache_dir = config_mod.cache_root(cfg)
    if cfg.data.face_crop:  # the models saw face crops: crop the eval images the same way
        data_dir = ensure_face_crops(data_dir, CropSettings(), cache_dir / "faces")
    table = read_eval(data_dir)
    size_hw = tuple(folds[0].meta["image_size"])
    cache_path = build_cache([Path(p) for p in table["path"]], working_size(size_hw), cache_dir)
    dataset = CachedImageDataset(cache_path, np.arange(len(table)), None, build_eval_transform(size_hw))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = build_loader(dataset, batch_size, False,
                          default_workers(1, device.type == "cuda") if workers is None else workers,
                          pin_memory=device.type == "cuda")

    start = time.perf_counter()
    logits = ensemble_logits(folds, loader, tta, device)
    seconds = time.perf_counter() - start
    classes = folds[0].meta.get("classes") or [str(i) for i in range(logits.shape[1])]
    submission = pd.DataFrame({"ImageID": table["ImageID"], "ans": logits.argmax(1)})
    if cfg.data.format not in ("auto", "mask") and len(classes) != 18:
        submission["class"] = [classes[i] for i in submission["ans"]]
    write_csv(out, submission)
    log.info("%d images x %d folds x %s TTA in %.1fs -> %s", len(table), len(folds), tta, seconds, out)

    tracking = read_json(run_dir / "tracking.json", {})
    if tracking.get("parent_id"):
        tracker = Tracker(True, tracking.get("experiment", cfg.mlflow.experiment), tracking.get("tracking_uri"))
        tracker.log_artifact(tracking["parent_id"], out, "submission")
        tracker.set_tags(tracking["parent_id"], {"predict.tta": tta, "predict.data": str(data_dir)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ensemble.predict", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run folder (default: the newest finished run below --runs-dir)")
    parser.add_argument("--runs-dir", type=Path, default=Path(config_mod.RunConfig().dir))
    parser.add_argument("--data", type=Path, help="eval folder with info.csv and images/ (default: data.root/eval)")
    parser.add_argument("--tta", default="hflip", choices=TTA_CHOICES)
    parser.add_argument("--out", type=Path, help="submission CSV (default: RUN/submission.csv)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: from the core count)")
    parser.add_argument("--include-full", action="store_true",
                        help="also average the all-data model of cv.full_fit (full/model.safetensors)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    keep_freed_memory()
    try:
        run_dir = args.run or newest_run(args.runs_dir)
        out = predict_run(run_dir, args.data, args.tta, args.out, args.batch_size, args.workers, args.include_full)
    except (FileNotFoundError, LayoutError, ImageReadError, config_mod.ConfigError, ValueError) as err:
        log.error("%s", err)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    exit_now(main())
