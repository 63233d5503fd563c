"""The run folder: where every result of a CV run lands, written so a kill never leaves a half-written file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd


class RunFolderError(RuntimeError):
    """The run folder holds results that the requested run would overwrite."""


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temp name in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, default: Any = None) -> Any:
    """JSON content, or `default` when the file does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else default


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a CSV atomically, without the index."""
    write_text(path, frame.to_csv(index=False))


def fold_dir(run_dir: Path, fold: int) -> Path:
    """`run_dir/fold<k>`."""
    return run_dir / f"fold{fold}"


def has_results(run_dir: Path) -> bool:
    """True when the folder already holds fold weights or a summary."""
    return (run_dir / "summary.json").exists() or any(run_dir.glob("fold*/model.safetensors"))


def newest_run(runs_root: str | Path) -> Path:
    """The most recently finished run below `runs_root` (by its summary.json)."""
    summaries = sorted(Path(runs_root).glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not summaries:
        raise FileNotFoundError(f"no finished run (summary.json) below {runs_root}; train first or pass --run")
    return summaries[-1].parent
