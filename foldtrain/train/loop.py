"""One training epoch and one prediction pass, in the canonical Accelerate shape.

`prepare` -> `accumulate` -> `backward` -> `step` -> `gather_for_metrics`. No `.item()` inside the step loop:
losses accumulate on the device and cross to the host once per epoch, so the GPU never waits on Python.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm


def bar_disabled(accelerator: Accelerator) -> bool | None:
    """tqdm's `disable`: no bar on other processes or under TQDM_DISABLE (`--quiet` sets it); None lets tqdm hide
    it when the output is not a terminal (a log file)."""
    return True if not accelerator.is_local_main_process or os.environ.get("TQDM_DISABLE") else None


Reduce = Callable[[torch.Tensor], torch.Tensor]
Gather = Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class UpdateCounter:
    """Optimizer updates so far: drives the per-update learning-rate schedule and the EMA warm-up."""

    def __init__(self, updates: int = 0):
        self.updates = updates


def train_one_epoch(model: torch.nn.Module, loader, optimizer, loss_fn: Callable, batch_prep: Callable,
                    accelerator: Accelerator, counter: UpdateCounter, *, clip_grad: float | None = None,
                    on_update: Callable[[int], None] | None = None, reduce: Reduce = lambda t: t,
                    description: str = "train") -> float:
    """Train one pass over `loader`; returns the mean training loss (over every process `reduce` sums over).

    Args:
        batch_prep: (uint8 images, labels) -> (model input, targets): normalisation, erasing, CutMix/Mixup.
        counter: counts optimizer updates.
        on_update: called with the update count after every optimizer update (never per batch): the learning-rate
            schedule and the EMA step there.
        reduce: sums a tensor over the processes training this model together (identity when training alone).

    Raises:
        NonFiniteLossError: the loss was NaN or infinite (checked once per epoch, so no per-step host sync).
    """
    model.train()
    loss_sum = torch.zeros((), device=accelerator.device)
    seen = torch.zeros((), device=accelerator.device)
    for images, labels, _ in tqdm(loader, desc=description, leave=False,
                                  disable=bar_disabled(accelerator)):
        with accelerator.accumulate(model):
            labels = labels.to(accelerator.device, non_blocking=True)
            inputs, targets = batch_prep(images, labels)
            with accelerator.autocast():
                loss = loss_fn(model(inputs), targets)
            accelerator.backward(loss)
            if accelerator.sync_gradients and clip_grad:
                accelerator.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                # One optimizer update happened (the wrapped optimizer skips steps between accumulation ends).
                counter.updates += 1
                if on_update is not None:
                    on_update(counter.updates)
        loss_sum += loss.detach().float() * labels.shape[0]
        seen += labels.shape[0]
    mean_loss = (reduce(loss_sum) / reduce(seen).clamp(min=1)).item()
    if not np.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"training loss is {mean_loss} in {description}: lower train.lr, set train.clip_grad (e.g. 1.0), "
            f"or use bf16 instead of fp16 mixed precision"
        )
    return mean_loss


@torch.no_grad()
def predict(model: torch.nn.Module, loader, normalize: Callable, accelerator: Accelerator,
            class_scores: Callable = lambda logits: logits, gather: Gather = lambda t: t,
            description: str = "predict") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class scores, labels and table rows of every image in `loader`, each exactly once.

    `class_scores` maps the model's raw outputs to one score per class (the heads' `class_scores`). `gather`
    collects the predictions of every process (`gather_for_metrics`, which drops the duplicates a distributed
    sampler pads the last batch with); the row indices travel along so every score maps back to its image.
    """
    model.eval()
    scores_all, labels_all, rows_all = [], [], []
    for images, labels, rows in tqdm(loader, desc=description, leave=False,
                                     disable=bar_disabled(accelerator)):
        with accelerator.autocast():
            scores = class_scores(model(normalize(images))).float()
        scores, labels, rows = gather((scores, labels.to(scores.device), rows.to(scores.device)))
        scores_all.append(scores.cpu())
        labels_all.append(labels.cpu())
        rows_all.append(rows.cpu())
    return torch.cat(scores_all).numpy(), torch.cat(labels_all).numpy(), torch.cat(rows_all).numpy()
