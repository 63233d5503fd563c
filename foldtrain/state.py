"""Per-fold training state for resuming after a kill, written atomically once per epoch.

Accelerate's `save_state` holds what it prepared (model, optimizer, grad scaler, every process's RNG); the
schedule, EMA weights and loop counters go beside it. A new state is written to `state.tmp`, then swapped in
by renames, so a kill at any moment leaves a complete `state` (or `state.old`) to resume from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

STATE, TMP, OLD = "state", "state.tmp", "state.old"


def save_fold_state(accelerator: Accelerator, fold_dir: Path, progress: dict[str, Any],
                    extras: dict[str, Any]) -> None:
    """Write the state of the fold after an epoch (all processes call this; files are written by rank 0).

    Args:
        accelerator: holds the prepared model, optimizer and scaler.
        fold_dir: `run_dir/fold<k>`.
        progress: JSON-able counters (epoch, best score, history, updates).
        extras: objects with `state_dict()` (scheduler, EMA) saved with torch.
    """
    tmp = fold_dir / TMP
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        torch.save({k: v.state_dict() for k, v in extras.items() if v is not None}, tmp / "extras.pt")
        (tmp / "progress.json").write_text(json.dumps(progress))
        current, old = fold_dir / STATE, fold_dir / OLD
        if current.exists():
            if old.exists():
                shutil.rmtree(old)
            current.rename(old)
        tmp.rename(current)
        if old.exists():
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def find_state(fold_dir: Path) -> Path | None:
    """The newest complete state folder of a fold, or None."""
    for name in (STATE, OLD):
        candidate = fold_dir / name
        if (candidate / "progress.json").is_file() and (candidate / "extras.pt").is_file():
            return candidate
    return None


def load_fold_state(accelerator: Accelerator, state_dir: Path, extras: dict[str, Any]) -> dict[str, Any]:
    """Restore prepared objects and `extras` from `state_dir`; returns the saved progress counters."""
    accelerator.load_state(str(state_dir))
    saved = torch.load(state_dir / "extras.pt", map_location="cpu", weights_only=False)
    for name, obj in extras.items():
        if obj is not None and name in saved:
            obj.load_state_dict(saved[name])
    return json.loads((state_dir / "progress.json").read_text())


def clear_fold_state(fold_dir: Path) -> None:
    """Remove a finished fold's resume state (its weights and results stay)."""
    for name in (STATE, TMP, OLD):
        if (fold_dir / name).exists():
            shutil.rmtree(fold_dir / name)
