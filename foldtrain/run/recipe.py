"""A resume must match the run's recipe: the keys that define the weights or the split cannot change.

A resumed fold restores its optimizer, schedule, EMA and mixer from the state saved under the old values, so a
changed `train.*` or `aug.*` value would apply only half (the restored schedule keeps the old lr and length) and the
run's record would describe neither recipe: such a resume is refused, like a changed model or data setting.
"""

from __future__ import annotations

import json
from pathlib import Path

from foldtrain.config import Config, flatten
from foldtrain.run.folder import EPOCHS_DIR, STATE_DIR, WEIGHTS, RunFolderError

# Settings that change neither the weights nor the split: where caches live, how many workers read them, the resume
# switch itself, compiling the same graph, the Grad-CAM pictures drawn after each fold, and whether a deployable
# student follows the folds.
FREE_KEYS = ("data.num_workers", "data.cache_dir", "train.resume", "train.compile", "train.gradcam", "distill.final")
RECIPE_PREFIXES = ("model.", "data.", "facecrop.", "train.", "aug.", "distill.", "pseudo.")
RECIPE_KEYS = ("cv.folds", "cv.seed", "cv.parallel")


def recipe_of(cfg: Config) -> dict:
    """`{key: value}` of every recipe key: what each fold's weights and resume state record, so the recipe
    survives the loss of config.yaml."""
    return {k: v for k, v in flatten(cfg).items()
            if (k.startswith(RECIPE_PREFIXES) and k not in FREE_KEYS) or k in RECIPE_KEYS}


def recipe_differences(saved: Config | dict, requested: Config) -> list[str]:
    """`key: saved -> requested` for each recipe key that differs (`saved`: a config or a recorded recipe)."""
    old = recipe_of(saved) if isinstance(saved, Config) else saved
    new = recipe_of(requested)
    return [f"{k}: {old[k]!r} in the run, {new[k]!r} now" for k in new if k in old and old[k] != new[k]]


def check_same_recipe(saved: Config | dict, requested: Config, source: str) -> None:
    """Refuse a resume whose recipe differs from the run's saved config (or the recipe its folds recorded).

    Raises:
        RunFolderError: listing each differing key with both values.
    """
    differences = recipe_differences(saved, requested)
    if differences:
        raise RunFolderError(f"train.resume=true with a recipe that differs from {source}: "
                             f"{'; '.join(differences)}. Resume with the run's own settings or start a new run.name")


def recorded_recipe(folder: Path) -> tuple[dict, Path] | None:
    """(the recipe a fold recorded, the file it came from): from the weights metadata or the resume state of any
    fold, for a run folder whose config.yaml is gone; None when no fold recorded one."""
    from foldtrain.model.weights import WeightsError, read_metadata

    for weights in sorted(folder.glob(f"*/{WEIGHTS}")) + sorted(folder.glob(f"*/{EPOCHS_DIR}/*.safetensors")):
        try:
            recipe = read_metadata(weights).get("recipe")
        except WeightsError:
            continue
        if isinstance(recipe, dict):
            return recipe, weights
    for state in sorted(folder.glob(f"*/{STATE_DIR}/{STATE_DIR}.json")):
        try:
            recipe = json.loads(state.read_text()).get("recipe")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(recipe, dict):
            return recipe, state
    return None
