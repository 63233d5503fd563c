"""Typed, frozen configuration: dataclass defaults < `--config FILE.yaml` < `section.key=value` overrides.

Values on the command line are parsed as YAML (`cv.only=[0,2]`, `model.pretrained=false`). Unknown sections or
keys raise `ConfigError` naming them, so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override is malformed, names an unknown key, or holds a value of the wrong type."""


@dataclass(frozen=True)
class DataConfig:
    root: str = "data/demo"
    format: str = "auto"
    image_size: int | list[int] = 96
    face_crop: bool = False
    cache_dir: str | None = None
    num_workers: int = -1
    age_bins: list[int] = field(default_factory=lambda: [30, 60])
    label_fixes: str | None = None
    normalize: str = "model"


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet10t"
    heads: str = "auto"
    pretrained: bool = False
    pretrained_file: str | None = None
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    freeze_backbone: bool = False


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 32
    lr: float = 0.003
    weight_decay: float = 0.0001
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_epochs: int = 1
    t0: int = 5
    max_lr: float | None = None
    grad_accum: int = 1
    clip_grad: float | None = None
    loss: str = "ce"
    label_smoothing: float = 0.0
    class_weights: str = "none"
    early_stopping: int = 0
    save_above: float | None = None
    ema: float = 0.0
    compile: bool = False
    resume: bool = False
    seed: int = 42


@dataclass(frozen=True)
class AugConfig:
    hflip: float = 0.5
    vflip: float = 0.0
    scale_min: float = 0.7
    color_jitter: float = 0.0
    auto_augment: str | None = None
    random_erasing: float = 0.0
    cutmix: float = 0.0
    cutmix_mode: str = "box"
    mixup: float = 0.0


@dataclass(frozen=True)
class CVConfig:
    folds: int = 5
    seed: int = 42
    only: list[int] | None = None
    parallel: str = "ddp"
    full_fit: bool = False


@dataclass(frozen=True)
class RunConfig:
    dir: str = "runs"
    name: str | None = None


@dataclass(frozen=True)
class MLflowConfig:
    experiment: str = "foldtrain"
    tracking_uri: str | None = None


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    run: RunConfig = field(default_factory=RunConfig)
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)


# Keys whose value must be one of a fixed set; checked once here so a typo fails before any work starts.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.format": ("auto", "mask", "csv", "imagefolder"),
    "train.scheduler": ("cosine", "cosine_restarts", "onecycle", "step", "none"),
    "train.loss": ("ce", "focal", "f1", "ce+f1"),
    "train.class_weights": ("none", "balanced"),
    "data.normalize": ("model", "imagenet", "dataset"),
    "aug.cutmix_mode": ("box", "band"),
    "model.heads": ("auto", "single", "multi"),
    "cv.parallel": ("ddp", "folds"),
}


def _section_types() -> dict[str, type]:
    return {f.name: typing.get_type_hints(Config)[f.name] for f in fields(Config)}


def _allowed(hint: Any) -> tuple[type, ...]:
    """The runtime types a type hint admits (`int | list[int]` -> (int, list))."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _allowed(arg))
    if hint is type(None):
        return (type(None),)
    return (origin or hint,)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    allowed = _allowed(hint)
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"config key {key!r} takes {_describe(allowed)}, got the boolean {value!r}")
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, allowed):
        return value
    if float in allowed and isinstance(value, int):
        return float(value)
    raise ConfigError(f"config key {key!r} takes {_describe(allowed)}, got {value!r} ({type(value).__name__})")


def _describe(allowed: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in allowed)


def _merge(target: dict[str, dict[str, Any]], updates: dict[str, Any], origin: str) -> None:
    sections = _section_types()
    if not isinstance(updates, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections (data, model, train, ...), got {updates!r}")
    for section, values in updates.items():
        if section not in sections:
            raise ConfigError(f"{origin}: unknown config section {section!r}; known: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping of keys, got {values!r}")
        hints = typing.get_type_hints(sections[section])
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(
                    f"{origin}: unknown config key '{section}.{key}'; keys of {section!r}: {', '.join(hints)}"
                )
            target[section][key] = _coerce(f"{section}.{key}", value, hints[key])


def parse_override(text: str) -> dict[str, Any]:
    """`section.key=value` (value parsed as YAML) as a nested dict."""
    name, sep, raw = text.partition("=")
    if not sep or name.count(".") != 1 or not all(name.split(".")):
        raise ConfigError(f"override {text!r} is not of the form section.key=value (e.g. train.epochs=10)")
    section, key = name.split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from err
    return {section: {key: value}}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a dict; a missing or malformed file is a `ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    return loaded or {}


def build_config(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> Config:
    """Defaults, then each YAML file in order, then the `section.key=value` overrides."""
    merged: dict[str, dict[str, Any]] = {name: asdict(section()) for name, section in _section_types().items()}
    for path in files:
        _merge(merged, load_yaml(path), str(path))
    for text in overrides:
        _merge(merged, parse_override(text), f"override {text!r}")
    cfg = Config(**{name: section(**merged[name]) for name, section in _section_types().items()})
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Value checks that types alone cannot express."""
    for key, options in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in options:
            raise ConfigError(f"config key {key!r} must be one of {', '.join(options)}; got {value!r}")
    size = cfg.data.image_size
    if isinstance(size, list) and (len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size)):
        raise ConfigError(f"data.image_size must be an int or [height, width], got {size!r}")
    positive = {"train.epochs": cfg.train.epochs, "train.batch_size": cfg.train.batch_size,
                "train.grad_accum": cfg.train.grad_accum, "cv.folds": cfg.cv.folds}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"config key {key!r} must be at least 1, got {value}")
    for key in ("aug.hflip", "aug.vflip", "aug.random_erasing", "aug.cutmix", "aug.mixup", "train.label_smoothing"):
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"config key {key!r} is a probability in [0, 1], got {value}")
    if cfg.aug.cutmix + cfg.aug.mixup > 1.0:
        raise ConfigError("aug.cutmix + aug.mixup must not exceed 1 (they are drawn as exclusive events per batch)")
    if not 0.0 <= cfg.train.ema < 1.0:
        raise ConfigError(f"train.ema is the EMA decay in [0, 1) (0 = off, e.g. 0.999), got {cfg.train.ema}")
    if cfg.cv.folds < 2:
        raise ConfigError(f"cv.folds must be at least 2 for cross-validation, got {cfg.cv.folds}")
    if cfg.cv.only is not None:
        bad = [k for k in cfg.cv.only if not isinstance(k, int) or not 0 <= k < cfg.cv.folds]
        if bad or not cfg.cv.only:
            raise ConfigError(f"cv.only must list fold numbers in 0..{cfg.cv.folds - 1}, got {cfg.cv.only!r}")


def image_hw(size: int | list[int]) -> tuple[int, int]:
    """`data.image_size` as (height, width)."""
    return (size, size) if isinstance(size, int) else (size[0], size[1])


def cache_root(cfg: Config) -> Path:
    """Where decoded images and face crops are cached: `data.cache_dir`, else `run.dir/.cache`."""
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.run.dir) / ".cache"


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (for YAML, JSON and MLflow params)."""
    return asdict(cfg)


def flatten(cfg: Config) -> dict[str, Any]:
    """`{"section.key": value}` for every key."""
    return {f"{s}.{k}": v for s, values in to_dict(cfg).items() for k, v in values.items()}


def save(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML that `--config` reads back to the same values."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def replace(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy of `cfg` with some keys of some sections changed (`replace(cfg, run={"name": "x"})`)."""
    changed = {name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
    return dataclasses.replace(cfg, **changed)
