"""A resume must match the run's recipe: the keys that define the weights or the split cannot change.

A resumed fold restores its optimizer, schedule, EMA and mixer from the state saved under the old values, so a
changed `train.*` or `aug.*` value would apply only half (the restored schedule keeps the old lr and length) and the
run's record would describe neither recipe: such a resume is refused, like a changed model or data setting.
"""

from __future__ import annotations

from foldtrain.config import Config, flatten
from foldtrain.run.folder import RunFolderError

# Settings that change neither the weights nor the split: where caches live, how many workers read them, the resume
# switch itself, compiling the same graph, and the Grad-CAM pictures drawn after each fold.
FREE_KEYS = ("data.num_workers", "data.cache_dir", "train.resume", "train.compile", "train.gradcam")
RECIPE_PREFIXES = ("model.", "data.", "facecrop.", "train.", "aug.")
RECIPE_KEYS = ("cv.folds", "cv.seed", "cv.parallel")


def recipe_differences(saved: Config, requested: Config) -> list[str]:
    """`key: saved -> requested` for each recipe key that differs."""
    old, new = flatten(saved), flatten(requested)
    names = [k for k in old if (k.startswith(RECIPE_PREFIXES) and k not in FREE_KEYS) or k in RECIPE_KEYS]
    return [f"{k}: {old[k]!r} in the run, {new[k]!r} now" for k in names if old[k] != new[k]]


def check_same_recipe(saved: Config, requested: Config, config_file: str) -> None:
    """Refuse a resume whose recipe differs from the run's saved config.

    Raises:
        RunFolderError: listing each differing key with both values.
    """
    differences = recipe_differences(saved, requested)
    if differences:
        raise RunFolderError(f"train.resume=true with a recipe that differs from {config_file}: "
                             f"{'; '.join(differences)}. Resume with the run's own settings (--config "
                             f"{config_file} train.resume=true) or start a new run.name")
