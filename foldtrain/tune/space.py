"""The search space of a study, read from YAML and checked against the config schema before any trial runs.

    train.lr: {log: [1e-4, 1e-2]}        # log-uniform float
    aug.scale_min: {float: [0.3, 0.9]}   # uniform float (optionally `step: 0.1`)
    train.epochs: {int: [6, 20]}         # integer (optionally `step: 2`, or `log: true`)
    aug.cutmix: [0, 0.3, 0.5]            # one of these values
    model.name: [resnet10t, resnet18]

Every key must be a config key, every bound and choice a value that key accepts (the same check a run makes), and
every range non-empty: a bad space answers with one line naming the key before the study starts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foldtrain.config import ConfigError, build_config
from foldtrain.config.load import keys, load_yaml

RANGES = ("log", "float", "int")
# Keys that would give trials other folds, rows, labels or run folders: every trial of a study must score the same
# rows on the same folds, or neither the comparison nor the selection-corrected estimate means anything.
SHARED = ("cv.folds", "cv.seed", "cv.only", "cv.full_fit", "data.root", "data.format", "data.label_fixes", "run.dir",
          "run.name", "train.resume", "distill.teacher", "distill.final", "pseudo.teacher", "pseudo.data",
          "pseudo.naive")


class SpaceError(ValueError):
    """The search space file is malformed or names a key or value a run would refuse."""


@dataclass(frozen=True)
class Param:
    """One searched key: a range (`log`, `float`, `int`, with an optional `step`) or a list of choices."""

    key: str
    kind: str  # log, float, int or choice
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The trial's value for this key, drawn by the study's sampler (Optuna's `suggest_*`)."""
        if self.kind == "choice":
            encoded = trial.suggest_categorical(self.key, [_encode(c) for c in self.choices])
            return _decode(encoded, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log", step=self.step)

    def edge_values(self) -> list[Any]:
        """The values that prove the key accepts the whole range: its ends, or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        ends = [self.low, self.high]
        return [int(v) for v in ends] if self.kind == "int" else ends


def _encode(choice: Any) -> Any:
    """Optuna stores scalar choices; a list (e.g. an image size [h, w]) is stored as its JSON text."""
    return choice if choice is None or isinstance(choice, bool | int | float | str) else json.dumps(choice)


def _decode(encoded: Any, choices: Sequence) -> Any:
    return next(c for c in choices if _encode(c) == encoded)


def parse_param(key: str, spec: Any) -> Param:
    """One entry of the space file; raises SpaceError naming the key."""
    if key not in keys():
        raise SpaceError(f"{key}: not a config key (see the README's config reference)")
    if key in SHARED or key.startswith("mlflow."):
        raise SpaceError(f"{key}: every trial of a study shares its data, folds and tracking; set it in the base "
                         f"config, not the search space")
    if isinstance(spec, list):
        if not spec:
            raise SpaceError(f"{key}: an empty list of choices")
        if len({json.dumps(c, sort_keys=True) for c in spec}) != len(spec):
            raise SpaceError(f"{key}: a choice is listed twice in {spec}")
        return Param(key, "choice", choices=tuple(spec))
    if not isinstance(spec, dict) or len([k for k in spec if k in RANGES]) != 1:
        raise SpaceError(f"{key}: write a list of choices or one of {{log: [low, high]}}, {{float: [low, high]}}, "
                         f"{{int: [low, high]}}; got {spec!r}")
    kind = next(k for k in spec if k in RANGES)
    extra = set(spec) - {kind, "step", "log"}
    if extra:
        raise SpaceError(f"{key}: unknown setting {sorted(extra)[0]!r} (allowed: step, and log with int)")
    bounds = spec[kind]
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)):
        raise SpaceError(f"{key}: {kind} takes [low, high] as two finite numbers, got {bounds!r}")
    low, high = bounds
    if not low < high:
        raise SpaceError(f"{key}: the range [{low}, {high}] is empty: low must be below high")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise SpaceError(f"{key}: int takes whole-number bounds, got [{low}, {high}]")
    log = kind == "log" or spec.get("log") is True
    if log and low <= 0:
        raise SpaceError(f"{key}: a log range needs a low bound above 0, got {low}")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0 or log:
            raise SpaceError(f"{key}: step must be a positive number, and cannot go with a log range")
    if kind == "int" and spec.get("log") is True:
        return Param(key, "int", low, high, None)  # Optuna's log-uniform int (no step)
    return Param(key, kind, float(low) if kind != "int" else low, float(high) if kind != "int" else high, step)


def load_space(path: str | Path, files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> list[Param]:
    """The parameters of `path`, each checked: every bound or choice must build a valid config on top of the study's
    base config (`files`, `overrides`). Raises SpaceError (or ConfigError for a bad base) with one line."""
    try:
        raw = load_yaml(path)
    except ConfigError as err:
        raise SpaceError(f"{path}: {err}") from err
    if not raw or not isinstance(raw, dict):
        raise SpaceError(f"{path}: the search space is empty or not a mapping; list config keys, e.g. "
                         f"train.lr: {{log: [1e-4, 1e-2]}}")
    params = []
    for section, entries in raw.items():
        # `train.lr: ...` at the top level, or nested `train: {lr: ...}`: both read as section.key
        if "." in str(section):
            params.append(parse_param(str(section), entries))
        elif isinstance(entries, dict):
            params += [parse_param(f"{section}.{name}", spec) for name, spec in entries.items()]
        else:
            raise SpaceError(f"{section}: not a section.key entry")
    build_config(files, overrides)  # the base itself first: its error is the base's, not a parameter's
    for param in params:
        for value in param.edge_values():
            try:
                build_config(files, [*overrides, f"{param.key}={json.dumps(value)}"])
            except ConfigError as err:
                raise SpaceError(f"{param.key}: the value {value!r} of the search space is refused: {err}") from err
    return params


def overrides_of(values: dict[str, Any]) -> list[str]:
    """`section.key=value` overrides a run takes (values as JSON, which the config reads as YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]
