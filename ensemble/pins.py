"""A blend's source runs, pinned: what `ensemble.blend` tuned on must be what `ensemble.predict --blend` runs.

A blend's weights and class biases fit the out-of-fold scores of particular runs. A source retrained in place
(same path, new weights), a re-split (another folds.csv) or a run pointed at other data would silently receive
weights tuned for something else. Each source is pinned by the SHA-256 of its folds.csv and of every fold's weights,
and by its resolved data root; predict refuses a source whose pin no longer holds, naming it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from foldtrain.config import build_config
from foldtrain.run.folder import RunFolder
from foldtrain.user_error import UserError


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_root(folder: RunFolder) -> str:
    """The run's `data.root`, resolved."""
    return str(Path(build_config([folder.config_file]).data.root).resolve())


def pin(folder: RunFolder) -> dict:
    """`{folds_csv, data_root, weights: {fold: sha256}}` of a finished run."""
    return {"folds_csv": sha256(folder.folds_file), "data_root": data_root(folder),
            "weights": {str(k): sha256(folder.weights(k)) for k in folder.trained_folds()}}


def check_pin(folder: RunFolder, pinned: dict, blend_file: Path) -> None:
    """Refuse a source run that is no longer the run the blend was tuned on.

    Raises:
        UserError: naming the run, what changed and what to do.
    """
    now = pin(folder)
    changed = [what for what, same in (("its folds.csv", now["folds_csv"] == pinned.get("folds_csv")),
                                       ("its data.root", now["data_root"] == pinned.get("data_root")),
                                       ("its fold weights", now["weights"] == pinned.get("weights"))) if not same]
    if changed:
        raise UserError(f"run {folder.path} is not the run {blend_file} was tuned on ({' and '.join(changed)} "
                        f"changed since): blend again with python -m ensemble.blend")
