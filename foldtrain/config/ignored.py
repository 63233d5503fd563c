"""Keys a config sets that its other choices make irrelevant: a warning names each, so nobody tunes a dial that is
not connected (`train.t0=3` under the default cosine schedule, face-crop margins without face crops, ...)."""

from __future__ import annotations

from collections.abc import Callable

from foldtrain.config.load import flatten
from foldtrain.config.schema import Config

# key -> (the reason it is ignored, a test on the config that says it is)
IGNORED_UNLESS: dict[str, tuple[str, Callable[[Config], bool]]] = {
    "train.t0": ("only train.scheduler=cosine_restarts uses it", lambda c: c.train.scheduler != "cosine_restarts"),
    "train.max_lr": ("only train.scheduler=onecycle uses it", lambda c: c.train.scheduler != "onecycle"),
    "train.warmup_epochs": ("train.scheduler=onecycle and none have no warm-up",
                            lambda c: c.train.scheduler in ("onecycle", "none")),
    "aug.cutmix_mode": ("aug.cutmix is 0", lambda c: c.aug.cutmix == 0),
    "mlflow.registered_model": ("mlflow.log_model is false", lambda c: not c.mlflow.log_model),
    "mlflow.model_tta": ("mlflow.log_model is false", lambda c: not c.mlflow.log_model),
    "data.age_bins": ("only the mask layout has ages", lambda c: c.data.format in ("csv", "imagefolder")),
    "data.label_fixes": ("only the mask layout has person fixes", lambda c: c.data.format in ("csv", "imagefolder")),
    "model.drop_path_rate": ("model.freeze_backbone trains the classifier only", lambda c: c.model.freeze_backbone),
    "pseudo.select": ("pseudo.soft keeps every pool image", lambda c: c.pseudo.soft),
    "pseudo.quantile": ("only pseudo.select=quantile uses it (and pseudo.soft keeps every pool image)",
                        lambda c: c.pseudo.soft or c.pseudo.select != "quantile"),
    "pseudo.precision": ("only pseudo.select=precision uses it (and pseudo.soft keeps every pool image)",
                         lambda c: c.pseudo.soft or c.pseudo.select != "precision"),
    "pseudo.temperature": ("only pseudo.soft=true uses it", lambda c: not c.pseudo.soft),
}
FACECROP_REASON = ("data.face_crop is false", lambda c: not c.data.face_crop)
DISTILL_REASON = ("distill.teacher is not set", lambda c: not c.distill.teacher)
PSEUDO_REASON = ("pseudo.teacher is not set", lambda c: not c.pseudo.teacher)


def ignored_settings(cfg: Config) -> list[str]:
    """`key=value is ignored: reason` for each key set away from its default that this config does not use."""
    values, defaults = flatten(cfg), flatten(Config())
    found = []
    for key, value in values.items():
        rule = IGNORED_UNLESS.get(key) or (FACECROP_REASON if key.startswith("facecrop.") else
                                           DISTILL_REASON if key.startswith("distill.") else
                                           PSEUDO_REASON if key.startswith("pseudo.") else None)
        if rule is not None and value != defaults[key] and rule[1](cfg):
            found.append(f"{key}={value} is ignored: {rule[0]}")
    return found
