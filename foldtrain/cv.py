"""One cross-validated training run: the stages wired together, inside processes `foldtrain.main` started.

config -> data (table, folds, decoded cache) -> per fold (model, optimizer, loaders, train, evaluate, save, free)
-> out-of-fold table, summary, pictures and tracking. Importing this module loads torch, timm, Accelerate and
scikit-learn; `foldtrain.main` does so only after it has started MLflow's side process.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed
from timm.utils import ModelEmaV3

from foldtrain import config as config_mod
from foldtrain import heads as heads_mod
from foldtrain import metrics, recipe, report
from foldtrain.cache import build_cache
from foldtrain.checkpoints import save_weights
from foldtrain.config import Config, image_hw
from foldtrain.cpus import torch_threads
from foldtrain.data import CachedImageDataset, build_loader, default_workers
from foldtrain.demo import ensure_demo
from foldtrain.engine import EpochState, NonFiniteLossError, predict, train_one_epoch
from foldtrain.facecrop import CropSettings, ensure_face_crops
from foldtrain.folds import assign_folds, check_folds
from foldtrain.images import ImageReadError
from foldtrain.layout import LayoutError, read_table
from foldtrain.model import build_model, model_norm
from foldtrain.optim import build_optimizer, build_scheduler
from foldtrain.process import LOG_DATEFMT, LOG_FORMAT
from foldtrain.runfolder import (
    RunFolderError,
    fold_dir,
    has_results,
    read_json,
    write_csv,
    write_json,
)
from foldtrain.sidecar import Sidecar
from foldtrain.state import clear_fold_state, find_state, load_fold_state, save_fold_state
from foldtrain.tracking import BackgroundTracker, Tracker
from foldtrain.transforms import (
    DeviceNormalize,
    build_eval_transform,
    build_train_transform,
    working_size,
)

log = logging.getLogger("foldtrain")
DEFAULT_ROOT = config_mod.DataConfig().root
METRIC_KEYS = ("train_loss", "val_loss", "val_f1", "val_acc", "lr")


@dataclass
class PreparedData:
    """The training table with folds, and where its decoded images live."""

    root: Path
    frame: pd.DataFrame
    classes: list[str]
    format: str
    cache_path: Path
    size_hw: tuple[int, int]


@dataclass
class Session:
    """What every fold of one CV run shares."""

    cfg: Config
    data: PreparedData
    run_dir: Path
    accelerator: Accelerator
    tracker: Tracker | BackgroundTracker
    heads: str
    # ddp: every process trains each fold together; folds: each process trains its own folds alone.
    distributed: bool
    sidecar: Sidecar | None = None

    def soon(self, fn, *args) -> None:
        """Run `fn(*args)` in the sidecar when there is one (in order with tracking calls), else here and now."""
        if self.sidecar is None or not self.sidecar.submit(fn, *args):
            fn(*args)


def setup_logging(accelerator: Accelerator) -> None:
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format=LOG_FORMAT, datefmt=LOG_DATEFMT, force=True)
    # Accelerate logs every file of every per-epoch resume state at INFO.
    logging.getLogger("accelerate").setLevel(logging.WARNING)


def resolve_run_dir(cfg: Config, accelerator: Accelerator) -> tuple[Config, Path]:
    """Fix the run name (the main process's timestamp, shared with every rank) and check the folder."""
    name = [cfg.run.name or time.strftime("cv-%Y%m%d-%H%M%S")]
    broadcast_object_list(name)
    cfg = config_mod.replace(cfg, run={"name": name[0]})
    run_dir = Path(cfg.run.dir) / cfg.run.name
    if has_results(run_dir) and not cfg.train.resume:
        raise RunFolderError(f"{run_dir} already holds results; pick another run.name, delete the folder, "
                             f"or continue it with train.resume=true")
    return cfg, run_dir


def prepare_data(cfg: Config, run_dir: Path, accelerator: Accelerator) -> PreparedData:
    """Read the table, assign folds and build the decoded cache: once, on the main process first."""
    root = Path(cfg.data.root)
    size_hw = image_hw(cfg.data.image_size)
    with accelerator.main_process_first():
        if cfg.data.root == DEFAULT_ROOT and not (root / "train" / "train.csv").exists():
            log.info("demo data not found at %s: generating it", root)
            ensure_demo(root)
        cache_dir = config_mod.cache_root(cfg)
        if cfg.data.face_crop:
            # A cropped copy of the whole root, keyed by the source files and the crop settings.
            root = ensure_face_crops(root, CropSettings(), cache_dir / "faces")
            log.info("training on face crops in %s", root)
        table = read_table(root, cfg.data.format, tuple(cfg.data.age_bins), cfg.data.label_fixes)
        if table.fixes_applied:
            log.info("label fixes from %s applied to %d persons", cfg.data.label_fixes, table.fixes_applied)
        frame = table.frame.copy()
        folds_csv = run_dir / "folds.csv"
        if accelerator.is_main_process:
            frame["fold"] = assign_folds(frame, cfg.cv.folds, cfg.cv.seed).to_numpy()
            if folds_csv.exists() and cfg.train.resume:
                _check_same_folds(frame, pd.read_csv(folds_csv), folds_csv)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_csv(folds_csv, frame)
        else:
            frame = pd.read_csv(folds_csv)
            check_folds(frame, frame["fold"], cfg.cv.folds)
        # The main process checks every row; the others open what it checked a moment before.
        cache_path = build_cache([root / p for p in frame["path"]], working_size(size_hw), cache_dir,
                                 check_every_row=accelerator.is_main_process)
    return PreparedData(root, frame, table.classes, table.format, cache_path, size_hw)


def _check_same_folds(new: pd.DataFrame, old: pd.DataFrame, path: Path) -> None:
    if len(new) != len(old) or (new["path"].to_numpy() != old["path"].to_numpy()).any() or \
            (new["fold"].to_numpy() != old["fold"].to_numpy()).any() or \
            (new["label"].to_numpy() != old["label"].to_numpy()).any():
        raise RunFolderError(f"the data, labels or split differ from {path}: resume needs the same data.root, "
                             f"cv.folds, cv.seed and label settings as the interrupted run")


def fold_loaders(s: Session, fold: int):
    cfg, data = s.cfg, s.data
    fold_of = data.frame["fold"].to_numpy()
    train_rows, val_rows = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
    labels = data.frame["label"].to_numpy()
    train_tf = build_train_transform(data.size_hw, cfg.aug.hflip, cfg.aug.scale_min, cfg.aug.vflip,
                                     cfg.aug.color_jitter, cfg.aug.auto_augment)
    train_set = CachedImageDataset(data.cache_path, train_rows, labels[train_rows], train_tf)
    val_set = CachedImageDataset(data.cache_path, val_rows, labels[val_rows], build_eval_transform(data.size_hw))
    processes = s.accelerator.num_processes
    pin = s.accelerator.device.type == "cuda"
    workers = cfg.data.num_workers if cfg.data.num_workers >= 0 else default_workers(processes, pin)
    return (build_loader(train_set, cfg.train.batch_size, True, workers, pin, seed=cfg.train.seed + fold),
            build_loader(val_set, cfg.train.batch_size, False, workers, pin), train_rows)


def build_fold_model(s: Session, train_rows: np.ndarray, stats_file: Path):
    cfg = s.cfg
    num_classes = len(s.data.classes)
    model = build_model(cfg.model.name, heads_mod.output_size(s.heads, num_classes), cfg.model.pretrained,
                        cfg.model.pretrained_file, cfg.model.drop_rate, cfg.model.drop_path_rate)
    if cfg.model.freeze_backbone:
        recipe.freeze_backbone(model)
    mean, std = recipe.resolve_normalization(cfg.data.normalize, model_norm(model), s.data.cache_path, train_rows,
                                             stats_file)
    model = model.to(memory_format=torch.channels_last)
    return model, mean, std


def train_fold(s: Session, fold: int, child_id: str | None, epochs: int | None = None,
               full_fit: bool = False) -> dict:
    """Build -> prepare -> train -> evaluate -> save best -> free, for one fold (or the all-data model)."""
    cfg, accelerator = s.cfg, s.accelerator
    set_seed(cfg.train.seed + fold, device_specific=not s.distributed)
    out_dir = s.run_dir / "full" if full_fit else fold_dir(s.run_dir, fold)
    epochs = epochs or cfg.train.epochs
    num_classes = len(s.data.classes)
    train_loader, val_loader, train_rows = fold_loaders(s, fold)
    model, mean, std = build_fold_model(s, train_rows, s.run_dir / "normalize.json")
    normalize = DeviceNormalize(mean, std).to(accelerator.device)
    optimizer = build_optimizer(model, cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay)
    if s.distributed:
        model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    else:
        # Fold-parallel: this process trains the fold alone, so no DDP wrapper and no sharded loaders.
        model = model.to(accelerator.device)
        optimizer = accelerator.prepare_optimizer(optimizer)
    if cfg.train.compile:
        model = torch.compile(model)
    updates_per_epoch = math.ceil(len(train_loader) / cfg.train.grad_accum)
    scheduler = build_scheduler(optimizer, cfg.train.scheduler, epochs, updates_per_epoch, cfg.train.warmup_epochs,
                                cfg.train.lr, cfg.train.t0, cfg.train.max_lr)
    ema = ModelEmaV3(accelerator.unwrap_model(model), decay=cfg.train.ema) if cfg.train.ema else None
    loss_fn = recipe.build_loss(cfg, s.heads, s.data.frame["label"].to_numpy()[train_rows], num_classes)
    batch_prep = recipe.build_batch_prep(cfg, normalize, num_classes, accelerator.device,
                                         cfg.train.seed + fold + 1000 * accelerator.process_index)
    to_classes = lambda out: heads_mod.class_logits(out, s.heads)  # noqa: E731
    meta = {"model": cfg.model.name, "num_classes": num_classes, "heads": s.heads, "classes": s.data.classes,
            "image_size": list(s.data.size_hw), "mean": list(mean), "std": list(std), "fold": fold}

    progress = {"epoch": -1, "best_f1": -1.0, "best_epoch": -1, "updates": 0, "history": [], "stale": 0}
    extras = {"scheduler": scheduler, "ema": ema}
    state_dir = find_state(out_dir) if cfg.train.resume and s.distributed else None
    if state_dir is not None:
        progress = load_fold_state(accelerator, state_dir, extras)
        log.info("fold %d: resuming after epoch %d (best val_f1 %.4f)", fold, progress["epoch"], progress["best_f1"])
    state = EpochState(progress["updates"])
    for epoch in range(progress["epoch"] + 1, epochs):
        start = time.perf_counter()
        train_loss = train_one_epoch(model, train_loader, optimizer, scheduler, loss_fn, batch_prep, accelerator,
                                     state, cfg.train.clip_grad, ema, s.distributed, f"fold {fold} epoch {epoch}")
        row = {"epoch": epoch, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"]}
        if not full_fit:
            eval_model = ema.module if ema is not None else model
            logits, labels, rows = predict(eval_model, val_loader, normalize, accelerator, to_classes,
                                           gather=s.distributed, description=f"fold {fold} val")
            preds = logits.argmax(1)
            row |= {"val_loss": float(torch.nn.functional.cross_entropy(torch.from_numpy(logits),
                                                                        torch.from_numpy(labels))),
                    "val_f1": metrics.macro_f1(labels, preds, num_classes), "val_acc": metrics.accuracy(labels, preds)}
        row["seconds"] = time.perf_counter() - start
        progress["history"].append(row)
        log.info("fold %s epoch %d: %s (%.1fs)", "full" if full_fit else fold, epoch,
                 " ".join(f"{k} {row[k]:.4f}" for k in METRIC_KEYS if k in row and k != "lr"), row["seconds"])
        improved = full_fit or row["val_f1"] > progress["best_f1"]
        if improved:
            progress |= {"best_f1": row.get("val_f1", -1.0), "best_epoch": epoch, "stale": 0}
        else:
            progress["stale"] += 1
        if accelerator.is_main_process or not s.distributed:
            weights = accelerator.unwrap_model(ema.module if ema is not None else model).state_dict()
            epoch_meta = meta | {"epoch": epoch, "val_f1": row.get("val_f1")}
            if improved:
                save_weights(weights, out_dir / "model.safetensors", epoch_meta)
                if not full_fit:
                    _write_oof(out_dir, logits, rows, num_classes)
            if cfg.train.save_above is not None and not full_fit and row["val_f1"] >= cfg.train.save_above:
                save_weights(weights, out_dir / f"epoch{epoch:03d}_f1_{row['val_f1']:.4f}.safetensors", epoch_meta)
            write_csv(out_dir / "metrics.csv", pd.DataFrame(progress["history"]))
            if accelerator.is_main_process:
                s.tracker.log_metrics(child_id, {k: row[k] for k in METRIC_KEYS if k in row}, step=epoch)
        progress["epoch"], progress["updates"] = epoch, state.updates
        last = epoch == epochs - 1 or (cfg.train.early_stopping and progress["stale"] >= cfg.train.early_stopping)
        if s.distributed and not last:
            save_fold_state(accelerator, out_dir, progress, extras)
        if cfg.train.early_stopping and progress["stale"] >= cfg.train.early_stopping and not full_fit:
            log.info("fold %d: early stop after epoch %d (no val_f1 gain for %d epochs)", fold, epoch,
                     cfg.train.early_stopping)
            break
    result = {"fold": fold, "best_f1": progress["best_f1"], "best_epoch": progress["best_epoch"],
              "epochs_run": progress["epoch"] + 1, "finished": True}
    if accelerator.is_main_process or not s.distributed:
        write_json(out_dir / "result.json", result)
        clear_fold_state(out_dir)
    if s.distributed:
        accelerator.wait_for_everyone()
    del model, optimizer, train_loader, val_loader, ema
    accelerator.free_memory()
    return result


def _write_oof(out_dir: Path, logits: np.ndarray, rows: np.ndarray, num_classes: int) -> None:
    frame = pd.DataFrame(logits, columns=[f"logit_{i}" for i in range(num_classes)])
    frame.insert(0, "row", rows)
    write_csv(out_dir / "oof.csv", frame)


def write_results(s: Session, results: list[dict], parent_id: str | None, seconds: float) -> dict:
    """oof.csv, summary.json, the pictures, and the parent run's metrics and artifacts (main process only)."""
    cfg, data, run_dir = s.cfg, s.data, s.run_dir
    num_classes = len(data.classes)
    parts = [pd.read_csv(fold_dir(run_dir, r["fold"]) / "oof.csv") for r in results]
    fold_oof = pd.concat(parts, ignore_index=True)
    logits = fold_oof[[f"logit_{i}" for i in range(num_classes)]].to_numpy()
    oof = data.frame.iloc[fold_oof["row"].to_numpy()][["path", "label", "fold"]].reset_index(drop=True)
    oof["pred"] = logits.argmax(1)
    oof = pd.concat([oof, fold_oof.drop(columns="row")], axis=1).sort_values("path", kind="stable")
    write_csv(run_dir / "oof.csv", oof)

    fold_f1 = {str(r["fold"]): r["best_f1"] for r in results}
    scores = np.array(list(fold_f1.values()))
    labels, preds = oof["label"].to_numpy(), oof["pred"].to_numpy()
    world = s.accelerator.num_processes
    summary = {
        "run_name": cfg.run.name, "folds_trained": [r["fold"] for r in results], "fold_f1": fold_f1,
        "best_epoch": {str(r["fold"]): r["best_epoch"] for r in results},
        "cv_f1_mean": float(scores.mean()), "cv_f1_std": float(scores.std()),
        "oof_f1": metrics.macro_f1(labels, preds, num_classes), "oof_acc": metrics.accuracy(labels, preds),
        "num_images": len(oof), "classes": data.classes, "heads": s.heads, "world_size": world,
        "parallel": cfg.cv.parallel, "mixed_precision": s.accelerator.mixed_precision,
        "device": s.accelerator.device.type,
        "effective_batch_size": cfg.train.batch_size * cfg.train.grad_accum * (world if s.distributed else 1),
        "seconds": seconds,
    }
    if (run_dir / "full" / "result.json").exists():
        summary["full_fit"] = read_json(run_dir / "full" / "result.json")
    write_json(run_dir / "summary.json", summary)

    matrix = metrics.confusion(labels, preds, num_classes)
    f1s = metrics.per_class_f1(labels, preds, num_classes)
    # Drawn in the sidecar, which loaded matplotlib while this process was importing torch.
    s.soon(report.plot_confusion, matrix, data.classes, run_dir / "confusion_matrix.png", f"{cfg.run.name} OOF")
    s.soon(report.plot_per_class_f1, f1s, data.classes, run_dir / "per_class_f1.png",
           f"{cfg.run.name} OOF F1 per class")
    write_csv(run_dir / "per_class_f1.csv", report.per_class_table(f1s, np.bincount(labels, minlength=num_classes),
                                                                    data.classes))
    s.tracker.log_metrics(parent_id, {k: summary[k] for k in ("cv_f1_mean", "cv_f1_std", "oof_f1", "oof_acc")})
    for name in ("summary.json", "folds.csv", "oof.csv", "confusion_matrix.png", "per_class_f1.png",
                 "per_class_f1.csv"):
        s.tracker.log_artifact(parent_id, run_dir / name)
    return summary


def run_params(cfg: Config, accelerator: Accelerator) -> dict:
    params = config_mod.flatten(cfg)
    world = accelerator.num_processes
    params.update({"world_size": world, "mixed_precision": accelerator.mixed_precision,
                   "effective_batch_size": cfg.train.batch_size * cfg.train.grad_accum *
                   (world if cfg.cv.parallel == "ddp" else 1)})
    return params


def start_tracking(s: Session, folds: list[int]) -> tuple[str | None, dict[int, str | None]]:
    """The parent run and one child per fold, created (or, on resume, reattached) by the main process.

    Children are created up front so that in fold-parallel mode the main process can log for folds that other
    processes train; every id is saved in tracking.json.
    """
    if not s.accelerator.is_main_process:
        return None, {}
    saved = read_json(s.run_dir / "tracking.json", {}) if s.cfg.train.resume else {}
    parent = s.tracker.start_run(s.cfg.run.name, None if saved.get("parent_id") else run_params(s.cfg, s.accelerator),
                                 tags={"run_dir": str(s.run_dir)}, run_id=saved.get("parent_id"))
    children = {int(k): v for k, v in saved.get("children", {}).items()}
    for fold in folds:
        if parent is None:
            break
        if children.get(fold) is None:
            children[fold] = s.tracker.start_run(f"{s.cfg.run.name}-fold{fold}", {"fold": fold},
                                                 {"fold": str(fold)}, parent_id=parent)
        elif not read_json(fold_dir(s.run_dir, fold) / "result.json", {}).get("finished"):
            s.tracker.start_run(f"{s.cfg.run.name}-fold{fold}", run_id=children[fold])  # interrupted: RUNNING again
    if parent:
        write_json(s.run_dir / "tracking.json", {"parent_id": parent, "tracking_uri": s.tracker.tracking_uri,
                                                 "experiment": s.cfg.mlflow.experiment,
                                                 "children": {str(k): v for k, v in children.items()}})
    s.tracker.log_artifact(parent, s.run_dir / "config.yaml")
    if s.cfg.data.label_fixes:
        s.tracker.log_artifact(parent, s.cfg.data.label_fixes, "label_fixes")
    return parent, children


def replay_metrics(s: Session, fold: int, child_id: str | None) -> None:
    """Log a fold's per-epoch metrics from its metrics.csv (folds trained by other processes)."""
    history = pd.read_csv(fold_dir(s.run_dir, fold) / "metrics.csv")
    for row in history.to_dict("records"):
        s.tracker.log_metrics(child_id, {k: row[k] for k in METRIC_KEYS if k in row}, step=int(row["epoch"]))


def run(cfg: Config, accelerator: Accelerator, tracker: Tracker | BackgroundTracker,
        sidecar: Sidecar | None = None) -> dict | None:
    """The whole CV run; returns the summary on the main process. Closes `tracker` (enabled on the main only)."""
    started = time.perf_counter()
    cfg, run_dir = resolve_run_dir(cfg, accelerator)
    data = prepare_data(cfg, run_dir, accelerator)
    heads = heads_mod.resolve_heads(cfg.model.heads, data.format, len(data.classes))
    folds = cfg.cv.only if cfg.cv.only is not None else list(range(cfg.cv.folds))
    distributed = cfg.cv.parallel == "ddp"
    s = Session(cfg, data, run_dir, accelerator, tracker, heads, distributed, sidecar)
    if accelerator.is_main_process:
        config_mod.save(cfg, run_dir / "config.yaml")
        log.info("run %s: %d images, %d classes, %s heads, folds %s, %d process(es) (%s), mixed precision %s, %s",
                 run_dir, len(data.frame), len(data.classes), heads, folds, accelerator.num_processes,
                 cfg.cv.parallel, accelerator.mixed_precision, accelerator.device)
    parent_id, children = start_tracking(s, folds)
    try:
        earlier = {f: read_json(fold_dir(run_dir, f) / "result.json", {}) for f in folds} if cfg.train.resume else {}
        todo = [f for f in folds if not earlier.get(f, {}).get("finished")]
        for fold in set(folds) - set(todo):
            log.info("fold %d: finished earlier (best val_f1 %.4f), kept as is", fold, earlier[fold]["best_f1"])
        mine = todo if distributed else todo[accelerator.process_index::accelerator.num_processes]
        for fold in mine:
            result = train_fold(s, fold, children.get(fold))
            if distributed:
                tracker.log_metrics(children.get(fold), {"best_val_f1": result["best_f1"]})
                tracker.end_run(children.get(fold))
        accelerator.wait_for_everyone()
        summary = None
        if accelerator.is_main_process:
            results = {f: read_json(fold_dir(run_dir, f) / "result.json") for f in folds}
            if not distributed:
                for fold in todo:
                    child = children.get(fold)
                    if fold not in mine:  # trained by another process: its metrics are only on disk
                        replay_metrics(s, fold, child)
                    tracker.log_metrics(child, {"best_val_f1": results[fold]["best_f1"]})
                    tracker.end_run(child)
        if cfg.cv.full_fit:
            full_fit(s, folds)
        if accelerator.is_main_process:
            summary = write_results(s, list(results.values()), parent_id, time.perf_counter() - started)
            log.info("done: cv_f1 %.4f +- %.4f, oof_f1 %.4f, oof_acc %.4f -> %s", summary["cv_f1_mean"],
                     summary["cv_f1_std"], summary["oof_f1"], summary["oof_acc"], run_dir)
        tracker.end_run(parent_id)
        tracker.close()
        if tracker.failed:
            log.warning("MLflow tracking failed during this run: results are complete in %s", run_dir)
        accelerator.wait_for_everyone()
        return summary
    except BaseException as err:
        tracker.end_open_runs("KILLED" if isinstance(err, KeyboardInterrupt | SystemExit) else "FAILED")
        tracker.close()
        raise


def full_fit(s: Session, folds: list[int]) -> None:
    """Train one model on all images for the median best epoch of the folds (`cv.full_fit`)."""
    best = [read_json(fold_dir(s.run_dir, f) / "result.json")["best_epoch"] for f in folds]
    epochs = int(np.median(best)) + 1
    if s.accelerator.is_main_process:
        log.info("full fit: all %d images for %d epochs (median best epoch of folds %s)", len(s.data.frame),
                 epochs, folds)
    # fold -1 matches no row, so every image trains; validation is skipped. train_fold writes full/result.json.
    if s.distributed or s.accelerator.is_main_process:
        train_fold(s, -1, None, epochs=epochs, full_fit=True)
    s.accelerator.wait_for_everyone()


def use_all_cpu_cores(accelerator: Accelerator) -> None:
    """On CPU, give each process its share of the cores (see `cpus.torch_threads`)."""
    threads = torch_threads(accelerator.num_processes) if accelerator.device.type == "cpu" else None
    if threads:
        torch.set_num_threads(threads)


def main(cfg: Config, tracker: Tracker | BackgroundTracker, sidecar: Sidecar | None) -> int:
    """Run `cfg` in this process (one of the launcher's); returns the exit status for the command line.

    `foldtrain.main` gave the main process an enabled tracker (living in its sidecar where it could fork one);
    the other processes get a disabled tracker and no sidecar.
    """
    # gloo DDP on machines without CUDA: Accelerate otherwise expects a GPU per process.
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_steps=cfg.train.grad_accum)
    setup_logging(accelerator)
    if accelerator.is_main_process != tracker.enabled:
        raise RuntimeError(f"foldtrain took process {accelerator.process_index} for "
                           f"{'the main' if tracker.enabled else 'another'} process; please report this launcher")
    use_all_cpu_cores(accelerator)
    try:
        run(cfg, accelerator, tracker, sidecar)
    except (LayoutError, ImageReadError, RunFolderError, NonFiniteLossError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 1
    accelerator.end_training()
    return 0
