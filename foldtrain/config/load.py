"""Building a config: dataclass defaults < `--config FILE.yaml` < `section.key=value` overrides, then checks.

Values on the command line are parsed as YAML (`cv.only=[0,2]`, `model.pretrained=false`). An unknown section or
key, a value of the wrong type or outside its domain raises `ConfigError` with one line naming the key, so a typo
never trains with a default and a bad value never reaches PIL or torch. Imports neither torch nor numpy.

Input is bounded before it is parsed: a config file of at most `MAX_FILE_BYTES`, an override of at most
`MAX_OVERRIDE_BYTES`, YAML aliases refused (a billion-laughs file expands aliases into gigabytes), and a message
shows at most a short prefix of a value. Floats may be written as a user types them (`1e-4`, `3E-3`; YAML 1.1
reads those as strings), and non-finite numbers (`.inf`, `.nan`) are refused.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from foldtrain.config.schema import Config, Domain


class ConfigError(ValueError):
    """A config file or override is malformed, names an unknown key, or holds a value outside its domain."""


MAX_FILE_BYTES = 256 * 1024
MAX_OVERRIDE_BYTES = 16 * 1024
SHOWN = 80  # characters of a value a message shows


def shown(value: Any) -> str:
    """`repr(value)`, cut to a short prefix: a message must never echo a huge value back."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} characters)"


class _Loader(yaml.SafeLoader):
    """safe_load without aliases, and with floats in exponent form (`1e-4`) read as floats."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases (*{event.anchor}) are not accepted in a config: write the value out")
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader without aliases


def sections() -> dict[str, type]:
    """`{section name: its dataclass}`, in the order of `Config`."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def keys() -> dict[str, dataclasses.Field]:
    """`{"section.key": its field}` for every key (the field's metadata holds `doc` and `domain`)."""
    return {f"{name}.{f.name}": f for name, section in sections().items() for f in fields(section)}


def _allowed(hint: Any) -> tuple[type, ...]:
    """The runtime types a type hint admits (`int | list[int]` -> (int, list))."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _allowed(arg))
    if hint is type(None):
        return (type(None),)
    return (origin or hint,)


def _describe(allowed: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in allowed)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    allowed = _allowed(hint)
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"config key {name!r} takes {_describe(allowed)}, got the boolean {value!r}")
    numbers = value if isinstance(value, list | tuple) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise ConfigError(f"config key {name!r} takes a finite number, got {shown(value)}")
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, allowed):
        return value
    if float in allowed and isinstance(value, int):
        return float(value)
    raise ConfigError(f"config key {name!r} takes {_describe(allowed)}, got {shown(value)} ({type(value).__name__})")


def _merge(target: dict[str, dict[str, Any]], updates: Any, origin: str) -> None:
    known = sections()
    if not isinstance(updates, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections ({', '.join(known)}), got {shown(updates)}")
    for section, values in updates.items():
        if section not in known:
            raise ConfigError(f"{origin}: unknown config section {shown(section)}; known: {', '.join(known)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping of keys, got {shown(values)}")
        hints = typing.get_type_hints(known[section])
        for name, value in values.items():
            if name not in hints:
                raise ConfigError(f"{origin}: unknown config key {shown(f'{section}.{name}')}; keys of {section!r}: "
                                  f"{', '.join(hints)}")
            target[section][name] = _coerce(f"{section}.{name}", value, hints[name])


def parse_override(text: str) -> dict[str, Any]:
    """`section.key=value` (value parsed as YAML) as a nested dict."""
    if len(text.encode()) > MAX_OVERRIDE_BYTES:
        raise ConfigError(f"override {shown(text)} is longer than {MAX_OVERRIDE_BYTES} bytes; put it in a --config "
                          f"file")
    name, sep, raw = text.partition("=")
    if not sep or name.count(".") != 1 or not all(name.split(".")):
        raise ConfigError(f"override {shown(text)} is not of the form section.key=value (e.g. train.epochs=10)")
    section, name = name.split(".")
    try:
        value = _safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"override {shown(text)}: the value is not valid YAML ({first})") from err
    return {section: {name: value}}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a dict; a missing or malformed file is a `ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ConfigError(f"config file {path} is not readable: {err.strerror}") from err
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"config file {path} is {size} bytes, more than a config holds ({MAX_FILE_BYTES}); pass "
                          f"the right file")
    try:
        loaded = _safe_load(path.read_text())
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {path} is not readable YAML: {first}") from err
    return loaded or {}


def build_config(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> Config:
    """Defaults, then each YAML file in order, then the `section.key=value` overrides; checked."""
    merged: dict[str, dict[str, Any]] = {name: asdict(section()) for name, section in sections().items()}
    for path in files:
        _merge(merged, load_yaml(path), str(path))
    for text in overrides:
        _merge(merged, parse_override(text), f"override {text!r}")
    cfg = Config(**{name: section(**merged[name]) for name, section in sections().items()})
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Each key against its declared domain, then the rules that tie keys together."""
    values = flatten(cfg)
    for name, spec in keys().items():
        domain: Domain | None = spec.metadata.get("domain")
        problem = domain.error(values[name]) if domain else None
        if problem:
            raise ConfigError(f"config key {name!r} {problem}, got {shown(values[name])}")
    if cfg.aug.cutmix + cfg.aug.mixup > 1.0:
        raise ConfigError(f"aug.cutmix + aug.mixup must not exceed 1 (they are exclusive events per batch), got "
                          f"{cfg.aug.cutmix} + {cfg.aug.mixup}")
    if cfg.cv.only is not None and max(cfg.cv.only) >= cfg.cv.folds:
        raise ConfigError(f"config key 'cv.only' must list fold numbers in 0..{cfg.cv.folds - 1} "
                          f"(cv.folds={cfg.cv.folds}), got {cfg.cv.only!r}")
    if cfg.distill.final and not cfg.distill.teacher:
        raise ConfigError("distill.final=true needs distill.teacher=RUN (the run whose folds teach the student); "
                          "for an all-data model without a teacher use cv.full_fit=true")
    if cfg.distill.data and not cfg.distill.teacher:
        raise ConfigError("distill.data needs distill.teacher=RUN: unlabeled images are learnt from a teacher's "
                          "scores alone")
    if cfg.distill.teacher and cfg.pseudo.teacher:
        raise ConfigError("distill.teacher and pseudo.teacher cannot be combined in one run: run the pseudo-label "
                          "round first, then distil it")


def fits_all_data(cfg: Config) -> bool:
    """After CV, one model on every image: `cv.full_fit`, or the deployable student of `distill.final`."""
    return cfg.cv.full_fit or cfg.distill.final


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


def dump(cfg: Config) -> str:
    """The config as YAML that `--config` reads back to the same values."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def replace(cfg: Config, **changes: dict[str, Any]) -> Config:
    """A copy of `cfg` with some keys of some sections changed (`replace(cfg, run={"name": "x"})`)."""
    changed = {name: dataclasses.replace(getattr(cfg, name), **values) for name, values in changes.items()}
    return dataclasses.replace(cfg, **changed)
