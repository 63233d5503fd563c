"""Weights as safetensors (nothing pickled), written atomically: temp name in the same folder, then rename."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def save_weights(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Write `state_dict` to `path`; a kill mid-write leaves the previous file intact.

    `metadata` values are stored JSON-encoded under their keys (safetensors metadata holds strings only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    return load_file(str(path))


def read_metadata(path: str | Path) -> dict:
    """The metadata written by `save_weights`, decoded."""
    with safe_open(str(path), framework="pt") as handle:
        return {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
