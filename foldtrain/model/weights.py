"""Weights as safetensors with JSON metadata: nothing pickled is written or read, and a bad file is named.

Files are written atomically (`files.atomic_path`), so whatever is on disk loads; a file cut short, replaced or
made for another model is a `WeightsError` whose one line names the file and what to do.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from foldtrain.files import atomic_path


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not fit the model; the message names it."""


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path,
                      metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, atomically; its I/O errors come back as OSErrors (so a full disk is named)."""
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as err:
            found = re.search(r"os error (\d+)", str(err))
            if found is None:
                raise
            raise OSError(int(found.group(1)), os.strerror(int(found.group(1)))) from err


def save_weights(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Write `state_dict` to `path`; a kill mid-write leaves the previous file intact.

    `metadata` values are stored JSON-encoded under their keys (safetensors metadata holds strings only).
    """
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    write_safetensors(tensors, path, {k: json.dumps(v) for k, v in (metadata or {}).items()})


def load_weights(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU.

    Raises:
        WeightsError: the file is missing, cut short or not a safetensors file (named with `what`).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{what} {path} is unreadable ({err}); it was cut short or replaced: retrain that part "
                           f"or restore the file") from err


def read_metadata(path: str | Path, what: str = "weights") -> dict:
    """The metadata written by `save_weights`, decoded.

    Raises:
        WeightsError: the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{what} {path} is unreadable ({err}); it was cut short or replaced: retrain that part "
                           f"or restore the file") from err


def load_into(model: torch.nn.Module, path: str | Path, what: str = "weights") -> torch.nn.Module:
    """Load a safetensors file into `model` (strict).

    Raises:
        WeightsError: the file is unreadable, or its tensors do not fit the model (other keys or shapes).
    """
    state = load_weights(path, what)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).split("\n\t")[1] if "\n\t" in str(err) else str(err)
        raise WeightsError(f"{what} {path} does not fit the model its metadata names ({first.strip()}); the file "
                           f"was replaced or damaged: retrain that part or restore the file") from err
    return model
