"""Optimizer and learning-rate schedule, built by timm's factories."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler


def build_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """A timm optimizer by name (`adamw`, `radam`, `sgd`, ...); no weight decay on norms and biases."""
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int, updates_per_epoch: int,
                    warmup_epochs: int = 0, lr: float | None = None) -> Scheduler | None:
    """A timm scheduler stepped once per optimizer update (`step_update`), never per process or per batch.

    Returns None for `none`.
    """
    if name == "none":
        return None
    warmup = min(warmup_epochs, max(0, epochs - 1))
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=name, num_epochs=epochs, warmup_epochs=warmup, warmup_lr=(lr or 1e-3) * 0.01,
        min_lr=(lr or 1e-3) * 0.01, decay_epochs=max(1, epochs // 3), cooldown_epochs=0,
        step_on_epochs=False, updates_per_epoch=max(1, updates_per_epoch),
    )
    return scheduler
