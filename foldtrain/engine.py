"""One training epoch and one prediction pass, in the canonical Accelerate shape.

`prepare` -> `accumulate` -> `backward` -> `step` -> `gather_for_metrics`. No `.item()` inside the step loop:
losses accumulate on the device and cross to the host once per epoch, so the GPU never waits on Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochState:
    """Counters that outlive one epoch: optimizer updates drive the per-update learning-rate schedule."""

    updates: int = 0


def train_one_epoch(model: torch.nn.Module, loader, optimizer, scheduler, loss_fn: Callable, batch_prep: Callable,
                    accelerator: Accelerator, state: EpochState, clip_grad: float | None = None, ema=None,
                    distributed: bool = True, description: str = "train") -> float:
    """Train one pass over `loader`; returns the mean training loss (over all processes when `distributed`).

    Args:
        batch_prep: (uint8 images, labels) -> (model input, targets): normalisation, erasing, CutMix/Mixup.
        ema: a timm ModelEmaV3 updated after every optimizer update, or None.
        distributed: the processes train this model together (DDP); False in fold-parallel mode, where no
            collective may run because the other processes train other folds.

    Raises:
        NonFiniteLossError: the loss was NaN or infinite (checked once per epoch, so no per-step host sync).
    """
    model.train()
    loss_sum = torch.zeros((), device=accelerator.device)
    seen = torch.zeros((), device=accelerator.device)
    for images, labels, _ in tqdm(loader, desc=description, leave=False,
                                  disable=not accelerator.is_local_main_process or None):
        with accelerator.accumulate(model):
            labels = labels.to(accelerator.device, non_blocking=True)
            inputs, targets = batch_prep(images, labels)
            with accelerator.autocast():
                loss = loss_fn(model(inputs), targets)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                if clip_grad:
                    accelerator.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                # One optimizer update happened (the wrapped optimizer skips steps between accumulation ends).
                state.updates += 1
                if scheduler is not None:
                    scheduler.step_update(state.updates)
                if ema is not None:
                    ema.update(accelerator.unwrap_model(model), step=state.updates)
        loss_sum += loss.detach().float() * labels.shape[0]
        seen += labels.shape[0]
    if distributed:
        loss_sum = accelerator.reduce(loss_sum, reduction="sum")
        seen = accelerator.reduce(seen, reduction="sum")
    mean_loss = (loss_sum / seen.clamp(min=1)).item()
    if not np.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"training loss is {mean_loss} in {description}: lower train.lr, set train.clip_grad (e.g. 1.0), "
            f"or use bf16 instead of fp16 mixed precision"
        )
    return mean_loss


@torch.no_grad()
def predict(model: torch.nn.Module, loader, normalize: Callable, accelerator: Accelerator,
            to_classes: Callable = lambda logits: logits, gather: bool = True,
            description: str = "predict") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class scores, labels and table rows of every image in `loader`, each exactly once.

    `to_classes` maps the model's raw outputs to one score per class (see `heads.class_logits`).

    With `gather`, predictions of all processes are collected with `gather_for_metrics`, which drops the
    duplicates a distributed sampler pads the last batch with; the row indices travel along so every logit
    maps back to its image.
    """
    model.eval()
    logits_all, labels_all, rows_all = [], [], []
    for images, labels, rows in tqdm(loader, desc=description, leave=False,
                                     disable=not accelerator.is_local_main_process or None):
        with accelerator.autocast():
            logits = to_classes(model(normalize(images))).float()
        if gather:
            logits, labels, rows = accelerator.gather_for_metrics((logits, labels, rows))
        logits_all.append(logits.cpu())
        labels_all.append(labels.cpu())
        rows_all.append(rows.cpu())
    return (torch.cat(logits_all).numpy(), torch.cat(labels_all).numpy(), torch.cat(rows_all).numpy())
