"""Fitting one fold: build the parts, resume if asked, then one straight loop over the epochs.

The loop carries no mode flags. Where the fold trains (all processes together, or this one alone) is a
`Placement`; what is kept on disk is the `CheckpointPolicy`; logging and progress reports are hooks; the all-data
fit of `cv.full_fit` is a `FitSpec` without validation rows.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from accelerate.utils import set_seed
from timm.utils import ModelEmaV3

from foldtrain.data.loaders import CachedImageDataset, build_loader, default_workers
from foldtrain.data.mixing import BatchMixer
from foldtrain.data.stats import resolve_normalization
from foldtrain.data.transforms import DeviceNormalize, build_eval_transform, build_train_transform
from foldtrain.model.factory import build_model, freeze_backbone, model_norm
from foldtrain.model.losses import loss_factory
from foldtrain.model.weights import load_into
from foldtrain.run.process import uninterrupted
from foldtrain.run.recipe import recipe_of
from foldtrain.train import metrics
from foldtrain.train.batch import BatchPrep
from foldtrain.train.checkpoint import CheckpointPolicy, ValScores
from foldtrain.train.loop import UpdateCounter, predict, train_one_epoch
from foldtrain.train.optim import build_optimizer, build_scheduler
from foldtrain.train.placement import Placement
from foldtrain.train.progress import EarlyStopping, EpochRecord, FoldProgress
from foldtrain.train.session import Session
from foldtrain.train.state import (
    StateError,
    clear_fold_state,
    find_state,
    load_fold_state,
    restore_rng,
    rng_state,
    save_fold_state,
)

log = logging.getLogger("foldtrain")
# Under mixed precision a fold's model lingers after the fold until Python's collector runs (Accelerate's autocast
# wrapper of `forward` holds it in a reference cycle; checked with a weakref): weights, gradients, two optimizer
# moments and an EMA copy. On a CPU, collected at once only above this size.
STATE_COPIES = 5
GC_ABOVE_BYTES = 1 << 30


@dataclass(frozen=True)
class FitSpec:
    """One model to fit: a fold (validated on its own rows) or the all-data model (no validation rows)."""

    fold: int
    name: str
    out_dir: Path
    train_rows: np.ndarray
    val_rows: np.ndarray
    epochs: int
    seed: int


class Hooks(Protocol):
    """Extras attached to the loop (tracking, progress reports); every method is called on this process only."""

    def fold_started(self, spec: FitSpec, progress: FoldProgress) -> None: ...

    def epoch_ended(self, spec: FitSpec, progress: FoldProgress) -> None: ...

    def fold_ended(self, spec: FitSpec, progress: FoldProgress, result: dict) -> None: ...


class FoldFit:
    """Build -> resume -> train and validate each epoch -> keep what the policy says -> free."""

    def __init__(self, session: Session, spec: FitSpec, placement: Placement, hooks: list[Hooks]):
        self.s, self.spec, self.place, self.hooks = session, spec, placement, hooks
        self.cfg = session.cfg
        self.device = session.accelerator.device

    def run(self) -> dict:
        """Fit the model; returns the fold's result (see `CheckpointPolicy.finish`)."""
        set_seed(self.spec.seed, device_specific=self.place.device_specific_seed)
        self.build()
        progress = self.resume() or FoldProgress(self.spec.fold, self.spec.epochs, started=time.time())
        for hook in self.hooks:
            hook.fold_started(self.spec, progress)
        stopping = EarlyStopping(self.cfg.train.early_stopping if len(self.spec.val_rows) else 0)
        for epoch in range(progress.next_epoch, self.spec.epochs):
            self.epoch(progress, epoch)
            stop = stopping.should_stop(progress)
            with uninterrupted():
                if not stop and epoch < self.spec.epochs - 1:
                    self.save_state(progress)
                for hook in self.hooks:
                    hook.epoch_ended(self.spec, progress)
            if stop:
                log.info("%s: early stop after epoch %d (no val_f1 gain for %d epochs)", self.spec.name, epoch,
                         stopping.patience)
                break
        result = {}
        if self.place.is_writer:
            result = self.checkpoints.finish(progress, time.time(), self.eval_net.state_dict)
            clear_fold_state(self.spec.out_dir)
        self.place.barrier()
        for hook in self.hooks:
            hook.fold_ended(self.spec, progress, result)
        self.free()
        return result

    def build(self) -> None:
        cfg, data, heads = self.cfg, self.s.data, self.s.heads
        train_loader, val_loader = self.loaders()
        self.net = build_model(cfg.model.name, heads.outputs, pretrained=cfg.model.pretrained,
                               pretrained_file=cfg.model.pretrained_file, drop_rate=cfg.model.drop_rate,
                               drop_path_rate=cfg.model.drop_path_rate).to(memory_format=torch.channels_last)
        if cfg.pseudo.warm_start and self.s.pool is not None and self.spec.fold >= 0:
            # fold k continues from the teacher's fold k: no other fold's weights, so nothing of fold k's persons
            load_into(self.net, self.s.pool.teacher.folder.weights(self.spec.fold), f"teacher fold {self.spec.fold}")
        if cfg.model.freeze_backbone:
            freeze_backbone(self.net)
        # `dataset` statistics are measured on this fold's own training rows (its validation images play no part)
        # and kept in its folder and weights' metadata: one writer per file, whatever runs in parallel.
        mean, std = resolve_normalization(cfg.data.normalize, model_norm(self.net), data.cache_path,
                                          self.spec.train_rows, self.spec.out_dir / "normalize.json")
        self.normalize = DeviceNormalize(mean, std).to(self.device)
        optimizer = build_optimizer(self.net, cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay)
        self.model, self.optimizer, self.train_loader, self.val_loader = self.place.prepare(
            self.net, optimizer, train_loader, val_loader)
        if cfg.train.compile:
            self.model = torch.compile(self.model)
        self.scheduler = build_scheduler(optimizer, cfg.train.scheduler, self.spec.epochs,
                                         math.ceil(len(self.train_loader) / cfg.train.grad_accum),
                                         cfg.train.warmup_epochs, cfg.train.lr, cfg.train.t0, cfg.train.max_lr)
        self.ema = ModelEmaV3(self.net, decay=cfg.train.ema) if cfg.train.ema else None
        counts = np.bincount(data.frame["label"].to_numpy()[self.spec.train_rows], minlength=len(data.classes))
        self.loss_fn = heads.build_loss(loss_factory(cfg.train.loss, cfg.train.label_smoothing,
                                                     cfg.train.class_weights), counts)
        self.mixer = BatchMixer(cfg.aug.cutmix, cfg.aug.mixup, cfg.aug.cutmix_mode, len(data.classes),
                                seed=self.spec.seed + 1000 * self.place.rank)
        self.batch_prep = BatchPrep(self.normalize, cfg.aug.random_erasing, self.mixer, self.device)
        if self.s.teacher is not None:
            self.teach()
        self.counter = UpdateCounter()
        meta = {"model": cfg.model.name, "num_classes": len(data.classes), "heads": heads.name,
                "classes": data.classes, "image_size": list(data.size_hw), "mean": list(mean), "std": list(std),
                "fold": self.spec.fold, "recipe": recipe_of(cfg)}
        # Without validation rows (the all-data fit) there is no epoch to choose: the last weights are the model.
        rule = cfg.train.checkpoint if len(self.spec.val_rows) else "last"
        self.checkpoints = CheckpointPolicy(self.spec.out_dir, rule, cfg.train.save_above, meta)

    def teach(self) -> None:
        """`distill.teacher`: the teacher's scores on each prepared batch join the targets, and the loss becomes
        the distillation loss. Fold k learns from the teacher's fold k alone, the all-data fit from every fold."""
        from foldtrain.teach.distill import DistillLoss, DistillPrep, EnsembleTeacher

        distill = self.cfg.distill
        teacher = EnsembleTeacher(self.s.teacher.models_for(self.spec.fold), distill.tta, self.device,
                                  self.s.data.size_hw)
        self.batch_prep = DistillPrep(self.batch_prep, teacher, self.s.accelerator.autocast)
        self.loss_fn = DistillLoss(self.loss_fn, self.s.heads.class_scores, distill.temperature, distill.alpha)

    def loaders(self):
        cfg, data = self.cfg, self.s.data
        labels = data.frame["label"].to_numpy()
        aug = cfg.aug
        train_tf = build_train_transform(data.size_hw, aug.hflip, aug.scale_min, aug.vflip, aug.color_jitter,
                                         aug.auto_augment)
        rows, val_rows = self.spec.train_rows, self.spec.val_rows
        pin = self.device.type == "cuda"
        workers = cfg.data.num_workers if cfg.data.num_workers >= 0 else default_workers(
            self.s.accelerator.num_processes, pin)
        train_set = CachedImageDataset(data.cache_path, rows, labels[rows], train_tf)
        if self.s.pool is not None:  # a pseudo-label round: this fit's own pool labels join its training rows
            train_set = self.s.pool.dataset(self.spec.fold, train_set, train_tf, len(data.classes))
        if self.s.unlabeled is not None:  # distill.data: images the teacher alone labels, batch by batch
            from foldtrain.teach.distill import with_unlabeled

            train_set = with_unlabeled(train_set, self.s.unlabeled, train_tf, len(data.classes))
        train = build_loader(train_set, cfg.train.batch_size, True, workers, pin, seed=self.spec.seed)
        self.generator = train.generator
        if not len(val_rows):
            return train, None
        val_set = CachedImageDataset(data.cache_path, val_rows, labels[val_rows], build_eval_transform(data.size_hw))
        return train, build_loader(val_set, cfg.train.batch_size, False, workers, pin)

    def epoch(self, progress: FoldProgress, epoch: int) -> None:
        """Train one epoch, validate, record and keep what the checkpoint policy says."""
        started = time.time()
        train_loss = train_one_epoch(self.model, self.train_loader, self.optimizer, self.loss_fn,
                                     self.batch_prep, self.s.accelerator, self.counter,
                                     clip_grad=self.cfg.train.clip_grad, on_update=self.after_update,
                                     reduce=self.place.reduce, description=f"{self.spec.name} epoch {epoch}")
        val = self.validate()
        rec = EpochRecord(epoch, train_loss, self.optimizer.param_groups[0]["lr"], started, time.time())
        if val is not None:
            rec.val_loss = metrics.log_loss(val.scores, val.labels)
            rec.val_f1 = metrics.macro_f1(val.labels, val.scores.argmax(1), len(self.s.data.classes))
            rec.val_acc = metrics.accuracy(val.labels, val.scores.argmax(1))
        progress.updates = self.counter.updates
        improved = progress.record(rec)  # the epoch's line is the `ConsoleProgress` hook's
        if self.place.is_writer:
            self.checkpoints.after_epoch(progress, improved, lambda: self.eval_net.state_dict(), val)

    def after_update(self, updates: int) -> None:
        """After each optimizer update: the per-update schedule and the EMA."""
        if self.scheduler is not None:
            self.scheduler.step_update(updates)
        if self.ema is not None:
            self.ema.update(self.net, step=updates)

    @property
    def eval_net(self) -> torch.nn.Module:
        """The weights validation and checkpoints use: the EMA's when on."""
        return self.ema.module if self.ema is not None else self.net

    def validate(self) -> ValScores | None:
        if self.val_loader is None:
            return None
        evaluated = self.model if self.ema is None else self.ema.module
        scores, labels, rows = predict(evaluated, self.val_loader, self.normalize, self.s.accelerator,
                                       self.s.heads.class_scores, gather=self.place.gather,
                                       description=f"{self.spec.name} val")
        return ValScores(rows, scores, labels)

    def shared_state(self, progress: FoldProgress) -> dict:
        scaler = self.s.accelerator.scaler
        return {"progress": progress.to_dict(), "recipe": recipe_of(self.cfg), "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None, "mixer": self.mixer.state_dict()}

    def save_state(self, progress: FoldProgress) -> None:
        save_fold_state(self.spec.out_dir, self.place.rank, self.place.is_writer, self.place.barrier,
                        lambda: self.shared_state(progress), rng_state({"loader": self.generator}))

    def resume(self) -> FoldProgress | None:
        """The progress of an interrupted fold, with every part restored; None when there is nothing to resume."""
        state_dir = find_state(self.spec.out_dir) if self.cfg.train.resume else None
        if state_dir is None:
            return None
        shared, rng = load_fold_state(state_dir, self.place.rank)
        try:
            self.net.load_state_dict(shared["model"])
            self.optimizer.load_state_dict(shared["optimizer"])
            for part, name in ((self.scheduler, "scheduler"), (self.s.accelerator.scaler, "scaler"),
                               (self.ema, "ema"), (self.mixer, "mixer")):
                if part is not None and shared.get(name) is not None:
                    part.load_state_dict(shared[name])
            progress = FoldProgress.from_dict(shared["progress"])
            restore_rng(rng, {"loader": self.generator})
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise StateError(f"resume state {state_dir} does not fit this fold ({type(err).__name__}: "
                             f"{str(err).splitlines()[0]}); delete {state_dir} to restart it") from err
        self.counter.updates = progress.updates
        self.checkpoints.resume(progress)
        log.info("%s: resuming after epoch %d (best val_f1 %s)", self.spec.name, progress.last_epoch,
                 "n/a" if progress.best_f1 is None else f"{progress.best_f1:.4f}")
        return progress

    def free(self) -> None:
        accelerator = self.s.accelerator
        held = sum(p.numel() * p.element_size() for p in self.net.parameters())
        del self.model, self.optimizer, self.train_loader, self.val_loader, self.ema, self.net
        if accelerator.device.type == "cpu" and held * STATE_COPIES < GC_ABOVE_BYTES:
            # Accelerate's free_memory runs a full gc.collect (a GPU's cached memory needs it): 0.3-0.6 s a fold
            # here, measured, to reclaim a small model that Python's own collector reclaims soon enough. Only the
            # Accelerator's references are dropped, as free_memory drops them.
            accelerator._models, accelerator._optimizers, accelerator._schedulers, accelerator._dataloaders = \
                [], [], [], []
            accelerator.step = 0
        else:
            accelerator.free_memory()
