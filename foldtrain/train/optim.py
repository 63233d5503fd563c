"""Optimizer and learning-rate schedule, built by timm's factories."""

from __future__ import annotations

import inspect

import torch
from timm.optim import create_optimizer_v2, get_optimizer_class, list_optimizers
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler

from foldtrain.user_error import UserError


def build_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """A timm optimizer by name (`adamw`, `radam`, `sgd`, ...); no weight decay on norms and biases.

    Where torch has a fused kernel for it (Adam, AdamW, SGD, Adagrad) that kernel is used: one pass over all
    parameters instead of a Python loop of small ops per tensor. Same update rule and precision; on a 2-core CPU
    an AdamW step of resnet10t takes 5 ms instead of 15 ms (benchmarks/bench_step.py).
    """
    known = list_optimizers()
    if name.lower().split("_")[-1] not in known and name.lower() not in known:
        raise UserError(f"unknown train.optimizer {name!r}; timm names such as adamw, adam, radam, sgd, lamb "
                        f"(timm.optim.list_optimizers())")
    fused = {"fused": True} if has_fused_kernel(name) else {}
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, **fused)


def has_fused_kernel(name: str) -> bool:
    """Whether the optimizer timm builds for `name` takes torch's `fused=True` (names like `lookahead_adamw` too)."""
    try:
        # timm reads the last `_`-separated part as the optimizer; a `lookahead_` prefix wraps it.
        cls = get_optimizer_class(name.lower().split("_")[-1], bind_defaults=False)
    except (ValueError, KeyError, ImportError):
        return False  # unknown names get timm's own error from create_optimizer_v2
    return "fused" in inspect.signature(cls).parameters


class OneCycle:
    """torch's OneCycleLR behind timm's `step_update(num_updates)` interface (timm has no one-cycle policy)."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float, total_updates: int):
        self.total_updates = max(2, total_updates)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=self.total_updates)

    def step_update(self, num_updates: int) -> None:
        # OneCycleLR raises past its last step; a resumed or accumulated run may call once more.
        if self.scheduler.last_epoch + 1 < self.total_updates:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int, updates_per_epoch: int,
                    warmup_epochs: int = 0, lr: float | None = None, t0: int = 5,
                    max_lr: float | None = None) -> Scheduler | OneCycle | None:
    """A learning-rate schedule stepped once per optimizer update (`step_update`), never per process or batch.

    Args:
        optimizer: the optimizer whose groups' lr it sets.
        name: `cosine`, `cosine_restarts` (SGDR, period `t0` epochs), `onecycle` (peak `max_lr`), `step`
            (x0.1 every third of the run), or `none` (returns None).
        epochs: epochs of the run.
        updates_per_epoch: optimizer updates per epoch (after gradient accumulation).
        warmup_epochs: linear warm-up (timm schedules).
        lr: base learning rate (sets warm-up start and floor).
        t0: restart period in epochs for `cosine_restarts`.
        max_lr: peak of `onecycle` (default: `lr`).
    """
    if name == "none":
        return None
    updates_per_epoch = max(1, updates_per_epoch)
    base = lr or optimizer.param_groups[0]["lr"]
    if name == "onecycle":
        return OneCycle(optimizer, max_lr or base, epochs * updates_per_epoch)
    restarts = name == "cosine_restarts"
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine" if restarts else name, num_epochs=max(1, t0) if restarts else epochs,
        warmup_epochs=min(warmup_epochs, max(0, epochs - 1)), warmup_lr=base * 0.01, min_lr=base * 0.01,
        decay_epochs=max(1, epochs // 3), cooldown_epochs=0, cycle_limit=epochs + 1 if restarts else 1,
        cycle_decay=1.0,  # every restart back to the full rate, as torch's CosineAnnealingWarmRestarts (SGDR)
        step_on_epochs=False, updates_per_epoch=updates_per_epoch,
    )
    return scheduler
