"""Per-fold resume state in safetensors + JSON: nothing that can run code is ever read back.

Pickle-based checkpoints (`torch.save`, Accelerate's `save_state`) execute whatever a planted file asks when they
are loaded; run folders travel between machines and shared disks, so a resume must only ever parse data. Here any
state (model, optimizer, schedule, grad scaler, EMA, loop counters, RNGs) is split into its tensors, written as
safetensors, and a JSON skeleton that says where each tensor goes; loading parses both and rebuilds plain dicts,
lists, tuples and tensors, nothing else.

A fold's state folder holds `state.json` + `state.safetensors` (shared by all processes) and one
`rng_<rank>.json` + `rng_<rank>.safetensors` per process. It is written to `state.tmp`, then swapped in by
renames, so a kill at any moment leaves a complete `state` (or `state.old`).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from foldtrain.files import atomic_path
from foldtrain.model.weights import write_safetensors
from foldtrain.run.folder import STATE_DIR

STATE, TMP, OLD = STATE_DIR, f"{STATE_DIR}.tmp", f"{STATE_DIR}.old"


class StateError(ValueError):
    """A resume state file is unreadable or holds something other than saved state; the message names it."""


def split(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """`obj` as a JSON-able skeleton; its tensors and arrays move into `tensors` under generated keys."""
    if isinstance(obj, torch.Tensor | np.ndarray):
        key = f"{prefix}{len(tensors)}"
        is_array = isinstance(obj, np.ndarray)
        tensors[key] = (torch.from_numpy(np.ascontiguousarray(obj)) if is_array else obj).detach().cpu().contiguous()
        return {"__array__" if is_array else "__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: split(v, tensors, prefix) for k, v in obj.items()}
        return {"__items__": [[split(k, tensors, prefix), split(v, tensors, prefix)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [split(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [split(v, tensors, prefix) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} in a resume state")


def join(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `split`: plain dicts, lists, tuples, numbers, strings, tensors and arrays, nothing else."""
    if isinstance(skeleton, list):
        return [join(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if "__array__" in skeleton:
        return tensors[skeleton["__array__"]].numpy()
    if "__tuple__" in skeleton:
        return tuple(join(v, tensors) for v in skeleton["__tuple__"])
    if "__items__" in skeleton:
        return {join(k, tensors): join(v, tensors) for k, v in skeleton["__items__"]}
    return {k: join(v, tensors) for k, v in skeleton.items()}


def write_state(folder: Path, stem: str, state: dict[str, Any]) -> None:
    """`stem.json` + `stem.safetensors` in `folder`."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = split(state, tensors)
    write_safetensors(tensors, folder / f"{stem}.safetensors")
    with atomic_path(folder / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(skeleton))


def read_state(folder: Path, stem: str) -> dict[str, Any]:
    """What `write_state` wrote, parsed as data only.

    Raises:
        StateError: naming the file that is missing or unreadable.
    """
    json_file, tensor_file = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    try:
        skeleton = json.loads(json_file.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise StateError(f"resume state {json_file} is unreadable ({type(err).__name__}: {err}); delete "
                         f"{folder} to restart this fold from its first epoch") from err
    try:
        tensors = load_file(str(tensor_file))
    except (OSError, SafetensorError, ValueError) as err:
        raise StateError(f"resume state {tensor_file} is unreadable ({err}); delete {folder} to restart this fold "
                         f"from its first epoch") from err
    try:
        state = join(skeleton, tensors)
    except (KeyError, TypeError, AttributeError) as err:
        raise StateError(f"resume state {json_file} does not match {tensor_file.name}; delete {folder} to restart "
                         f"this fold from its first epoch") from err
    if not isinstance(state, dict):
        raise StateError(f"resume state {json_file} holds no state; delete {folder} to restart this fold")
    return state


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """This process's random number generators: Python, NumPy, torch (CPU and CUDA) and any named generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "generators": {k: g.get_state() for k, g in (generators or {}).items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in (generators or {}).items():
        if name in state["generators"]:
            generator.set_state(state["generators"][name])


def save_fold_state(fold_dir: Path, rank: int, is_writer: bool, barrier: Callable[[], None],
                    shared: Callable[[], dict[str, Any]], rng: dict[str, Any]) -> None:
    """Write a fold's state after an epoch; every process that trains the fold calls this together.

    Args:
        fold_dir: `run_dir/fold<k>`.
        rank: this process's index among those training the fold (names its RNG file).
        is_writer: this process writes the shared part and swaps the folders.
        barrier: waits for every process training the fold (a no-op for a process training alone).
        shared: builds the shared state (called on the writer only).
        rng: this process's `rng_state()`.
    """
    tmp = fold_dir / TMP
    try:
        if is_writer:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        write_state(tmp, f"rng_{rank}", rng)
        barrier()
        if is_writer:
            write_state(tmp, "state", shared())
            current, old = fold_dir / STATE, fold_dir / OLD
            shutil.rmtree(old, ignore_errors=True)
            if current.exists():
                current.rename(old)
            tmp.rename(current)
            shutil.rmtree(old, ignore_errors=True)
        barrier()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written state is never left to look like one
        raise


def find_state(fold_dir: Path) -> Path | None:
    """The newest complete state folder of a fold, or None."""
    for name in (STATE, OLD):
        candidate = fold_dir / name
        if (candidate / "state.json").is_file():
            return candidate
    return None


def load_fold_state(state_dir: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shared state, this process's RNG state) from a state folder.

    Raises:
        StateError: a file is missing or unreadable (named), e.g. the run was resumed with more processes.
    """
    shared = read_state(state_dir, "state")
    if not (state_dir / f"rng_{rank}.json").is_file():
        raise StateError(f"resume state {state_dir} has no random state for process {rank}: resume with the number "
                         f"of processes that trained it, or delete {state_dir} to restart this fold")
    return shared, read_state(state_dir, f"rng_{rank}")


def clear_fold_state(fold_dir: Path) -> None:
    """Remove a finished fold's resume state (its weights and results stay)."""
    for name in (STATE, TMP, OLD):
        shutil.rmtree(fold_dir / name, ignore_errors=True)
