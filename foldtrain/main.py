"""Cross-validated training: `accelerate launch foldtrain/main.py [--config FILE.yaml] [section.key=value ...]`.

The only module that wires the stages: config -> data -> folds -> per fold (model, optimizer, loaders,
train, evaluate, save, free) -> out-of-fold table, summary and tracking.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Started as a file (`accelerate launch foldtrain/main.py`): make the package importable without an install,
    # and keep this folder's module names (data, config, ...) from shadowing top-level modules.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import broadcast_object_list, set_seed  # noqa: E402

from foldtrain import config as config_mod  # noqa: E402
from foldtrain import heads as heads_mod  # noqa: E402
from foldtrain import metrics, report  # noqa: E402
from foldtrain.cache import build_cache  # noqa: E402
from foldtrain.checkpoints import save_weights  # noqa: E402
from foldtrain.config import Config, ConfigError, image_hw  # noqa: E402
from foldtrain.data import CachedImageDataset, build_loader, default_workers  # noqa: E402
from foldtrain.demo import ensure_demo  # noqa: E402
from foldtrain.engine import EpochState, predict, train_one_epoch  # noqa: E402
from foldtrain.folds import assign_folds, check_folds  # noqa: E402
from foldtrain.layout import LayoutError, read_table  # noqa: E402
from foldtrain.model import build_model, model_norm  # noqa: E402
from foldtrain.optim import build_optimizer, build_scheduler  # noqa: E402
from foldtrain.runfolder import RunFolderError, fold_dir, has_results, write_csv, write_json  # noqa: E402
from foldtrain.tracking import Tracker  # noqa: E402
from foldtrain.transforms import (  # noqa: E402
    DeviceNormalize,
    build_eval_transform,
    build_train_transform,
    working_size,
)

log = logging.getLogger("foldtrain")
DEFAULT_ROOT = config_mod.DataConfig().root


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
class FoldResult:
    fold: int
    best_f1: float
    best_epoch: int
    logits: np.ndarray | None
    rows: np.ndarray | None


def parse_args(argv: list[str] | None) -> tuple[list[str], list[str]]:
    parser = argparse.ArgumentParser(
        prog="foldtrain", description="Person-grouped stratified k-fold training of a timm classifier.",
        epilog="Overrides are section.key=value, parsed as YAML, e.g. train.epochs=10 cv.only=[0,2]")
    parser.add_argument("--config", action="append", default=[], help="YAML config file (repeatable)")
    parser.add_argument("overrides", nargs="*", help="section.key=value")
    args = parser.parse_args(argv)
    return args.config, args.overrides


def setup_logging(accelerator: Accelerator) -> None:
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True)


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
        table = read_table(root, cfg.data.format, tuple(cfg.data.age_bins))
        frame = table.frame.copy()
        folds_csv = run_dir / "folds.csv"
        if accelerator.is_main_process:
            frame["fold"] = assign_folds(frame, cfg.cv.folds, cfg.cv.seed).to_numpy()
            run_dir.mkdir(parents=True, exist_ok=True)
            write_csv(folds_csv, frame)
        else:
            frame = pd.read_csv(folds_csv)
        check_folds(frame, frame["fold"], cfg.cv.folds)
        cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.run.dir) / ".cache"
        work_hw = working_size(size_hw)
        cache_path = build_cache([root / p for p in frame["path"]], work_hw, cache_dir)
    return PreparedData(root, frame, table.classes, table.format, cache_path, size_hw)


def fold_loaders(cfg: Config, data: PreparedData, fold: int, accelerator: Accelerator):
    train_rows = np.flatnonzero(data.frame["fold"].to_numpy() != fold)
    val_rows = np.flatnonzero(data.frame["fold"].to_numpy() == fold)
    labels = data.frame["label"].to_numpy()
    train_set = CachedImageDataset(data.cache_path, train_rows, labels[train_rows],
                                   build_train_transform(data.size_hw, cfg.aug.hflip, cfg.aug.scale_min))
    val_set = CachedImageDataset(data.cache_path, val_rows, labels[val_rows], build_eval_transform(data.size_hw))
    workers = cfg.data.num_workers if cfg.data.num_workers >= 0 else default_workers(accelerator.num_processes)
    pin = accelerator.device.type == "cuda"
    return (build_loader(train_set, cfg.train.batch_size, True, workers, pin, seed=cfg.train.seed + fold),
            build_loader(val_set, cfg.train.batch_size, False, workers, pin))


def train_fold(cfg: Config, data: PreparedData, fold: int, accelerator: Accelerator, tracker: Tracker,
               child_id: str | None, run_dir: Path) -> FoldResult:
    """Build -> prepare -> train -> evaluate -> save best -> free, for one fold."""
    set_seed(cfg.train.seed + fold)
    num_classes = len(data.classes)
    heads = heads_mod.resolve_heads(cfg.model.heads, data.format, num_classes)
    model = build_model(cfg.model.name, heads_mod.output_size(heads, num_classes), cfg.model.pretrained,
                        cfg.model.pretrained_file, cfg.model.drop_rate, cfg.model.drop_path_rate)
    mean, std = model_norm(model)
    model = model.to(memory_format=torch.channels_last)
    normalize = DeviceNormalize(mean, std).to(accelerator.device)
    optimizer = build_optimizer(model, cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay)
    train_loader, val_loader = fold_loaders(cfg, data, fold, accelerator)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    updates_per_epoch = math.ceil(len(train_loader) / cfg.train.grad_accum)
    scheduler = build_scheduler(optimizer, cfg.train.scheduler, cfg.train.epochs, updates_per_epoch,
                                cfg.train.warmup_epochs, cfg.train.lr)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    if heads == "multi":
        loss_fn = heads_mod.MultiHeadLoss(loss_fn)

    out_dir = fold_dir(run_dir, fold)
    state = EpochState()
    best = FoldResult(fold, -1.0, -1, None, None)
    history = []
    for epoch in range(cfg.train.epochs):
        start = time.perf_counter()
        train_loss = train_one_epoch(model, train_loader, optimizer, scheduler, loss_fn, normalize, accelerator,
                                     state, cfg.train.clip_grad, description=f"fold {fold} epoch {epoch}")
        logits, labels, rows = predict(model, val_loader, normalize, accelerator,
                                       lambda out: heads_mod.class_logits(out, heads), description=f"fold {fold} val")
        preds = logits.argmax(1)
        row = {"epoch": epoch, "train_loss": train_loss,
               "val_loss": float(torch.nn.functional.cross_entropy(torch.from_numpy(logits),
                                                                   torch.from_numpy(labels))),
               "val_f1": metrics.macro_f1(labels, preds, num_classes), "val_acc": metrics.accuracy(labels, preds),
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
        history.append(row)
        log.info("fold %d epoch %d: train_loss %.4f val_loss %.4f val_f1 %.4f val_acc %.4f (%.1fs)", fold, epoch,
                 row["train_loss"], row["val_loss"], row["val_f1"], row["val_acc"], row["seconds"])
        if accelerator.is_main_process:
            tracker.log_metrics(child_id, {k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            write_csv(out_dir / "metrics.csv", pd.DataFrame(history))
            if row["val_f1"] > best.best_f1:
                best = FoldResult(fold, row["val_f1"], epoch, logits, rows)
                save_weights(accelerator.unwrap_model(model).state_dict(), out_dir / "model.safetensors",
                             metadata={"model": cfg.model.name, "num_classes": num_classes, "heads": heads,
                                       "classes": data.classes,
                                       "image_size": list(data.size_hw), "mean": list(mean), "std": list(std),
                                       "fold": fold, "epoch": epoch, "val_f1": row["val_f1"]})
    if accelerator.is_main_process:
        write_json(out_dir / "result.json", {"fold": fold, "best_f1": best.best_f1, "best_epoch": best.best_epoch})
    accelerator.wait_for_everyone()
    del model, optimizer, train_loader, val_loader
    accelerator.free_memory()
    return best


def write_results(cfg: Config, data: PreparedData, results: list[FoldResult], run_dir: Path,
                  accelerator: Accelerator, tracker: Tracker, parent_id: str | None, seconds: float) -> dict:
    """oof.csv, summary.json, the pictures, and the parent run's metrics and artifacts (main process only)."""
    num_classes = len(data.classes)
    logits = np.concatenate([r.logits for r in results])
    rows = np.concatenate([r.rows for r in results])
    oof = data.frame.iloc[rows][["path", "label", "fold"]].reset_index(drop=True)
    oof["pred"] = logits.argmax(1)
    oof = pd.concat([oof, pd.DataFrame(logits, columns=[f"logit_{i}" for i in range(num_classes)])], axis=1)
    oof = oof.sort_values("path", kind="stable").reset_index(drop=True)
    write_csv(run_dir / "oof.csv", oof)

    fold_f1 = {str(r.fold): r.best_f1 for r in results}
    scores = np.array(list(fold_f1.values()))
    labels, preds = oof["label"].to_numpy(), oof["pred"].to_numpy()
    summary = {
        "run_name": cfg.run.name, "folds_trained": [r.fold for r in results], "fold_f1": fold_f1,
        "best_epoch": {str(r.fold): r.best_epoch for r in results},
        "cv_f1_mean": float(scores.mean()), "cv_f1_std": float(scores.std()),
        "oof_f1": metrics.macro_f1(labels, preds, num_classes), "oof_acc": metrics.accuracy(labels, preds),
        "num_images": len(oof), "classes": data.classes, "world_size": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision, "device": accelerator.device.type,
        "effective_batch_size": cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes,
        "seconds": seconds,
    }
    write_json(run_dir / "summary.json", summary)

    matrix = metrics.confusion(labels, preds, num_classes)
    f1s = metrics.per_class_f1(labels, preds, num_classes)
    report.plot_confusion(matrix, data.classes, run_dir / "confusion_matrix.png", f"{cfg.run.name} OOF")
    report.plot_per_class_f1(f1s, data.classes, run_dir / "per_class_f1.png", f"{cfg.run.name} OOF F1 per class")
    write_csv(run_dir / "per_class_f1.csv", report.per_class_table(f1s, np.bincount(labels, minlength=num_classes),
                                                                    data.classes))
    tracker.log_metrics(parent_id, {k: summary[k] for k in ("cv_f1_mean", "cv_f1_std", "oof_f1", "oof_acc")})
    for name in ("summary.json", "folds.csv", "oof.csv", "confusion_matrix.png", "per_class_f1.png",
                 "per_class_f1.csv"):
        tracker.log_artifact(parent_id, run_dir / name)
    return summary


def run_params(cfg: Config, accelerator: Accelerator) -> dict:
    params = config_mod.flatten(cfg)
    params.update({"world_size": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
                   "effective_batch_size": cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes})
    return params


def run(cfg: Config, accelerator: Accelerator) -> dict | None:
    """The whole CV run; returns the summary on the main process."""
    started = time.perf_counter()
    cfg, run_dir = resolve_run_dir(cfg, accelerator)
    data = prepare_data(cfg, run_dir, accelerator)
    folds = cfg.cv.only if cfg.cv.only is not None else list(range(cfg.cv.folds))
    if accelerator.is_main_process:
        config_mod.save(cfg, run_dir / "config.yaml")
        log.info("run %s: %d images, %d classes, folds %s, %d process(es), mixed precision %s, device %s",
                 run_dir, len(data.frame), len(data.classes), folds, accelerator.num_processes,
                 accelerator.mixed_precision, accelerator.device)
    tracker = Tracker(accelerator.is_main_process, cfg.mlflow.experiment, cfg.mlflow.tracking_uri)
    parent_id = tracker.start_run(cfg.run.name, run_params(cfg, accelerator), tags={"run_dir": str(run_dir)})
    tracker.log_artifact(parent_id, run_dir / "config.yaml")
    if accelerator.is_main_process and parent_id:
        # ensemble.predict logs the submission to this parent; a resumed run reattaches to it.
        write_json(run_dir / "tracking.json", {"parent_id": parent_id, "tracking_uri": tracker.tracking_uri,
                                               "experiment": cfg.mlflow.experiment})
    child_id = None
    try:
        results = []
        for fold in folds:
            child_id = tracker.start_run(f"{cfg.run.name}-fold{fold}", {"fold": fold}, {"fold": str(fold)},
                                         parent_id=parent_id)
            results.append(train_fold(cfg, data, fold, accelerator, tracker, child_id, run_dir))
            tracker.log_metrics(child_id, {"best_val_f1": results[-1].best_f1})
            tracker.end_run(child_id)
            child_id = None
        summary = None
        if accelerator.is_main_process:
            summary = write_results(cfg, data, results, run_dir, accelerator, tracker, parent_id,
                                    time.perf_counter() - started)
            log.info("done: cv_f1 %.4f +- %.4f, oof_f1 %.4f, oof_acc %.4f -> %s", summary["cv_f1_mean"],
                     summary["cv_f1_std"], summary["oof_f1"], summary["oof_acc"], run_dir)
            if tracker.failed:
                log.warning("MLflow tracking failed during this run: results are complete in %s", run_dir)
        tracker.end_run(parent_id)
        accelerator.wait_for_everyone()
        return summary
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        tracker.end_run(child_id, status)
        tracker.end_run(parent_id, status)
        raise


def main(argv: list[str] | None = None) -> int:
    files, overrides = parse_args(argv)
    try:
        cfg = config_mod.build_config(files, overrides)
    except ConfigError as err:
        print(f"foldtrain: config error: {err}", file=sys.stderr)
        return 2
    # gloo DDP on machines without CUDA: Accelerate otherwise expects a GPU per process.
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_steps=cfg.train.grad_accum)
    setup_logging(accelerator)
    try:
        run(cfg, accelerator)
    except (LayoutError, RunFolderError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 1
    finally:
        accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
