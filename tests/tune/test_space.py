"""The search space file: every key, range and choice is checked before a study starts, one line naming the key."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from foldtrain.tune.space import SpaceError, load_space, overrides_of


def space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_every_kind_parses_and_suggests_values_in_range(tmp_path: Path):
    params = load_space(space(tmp_path, """
train.lr: {log: [1.0e-4, 1.0e-2]}
aug.scale_min: {float: [0.3, 0.9], step: 0.1}
train:
  epochs: {int: [2, 6]}
aug.cutmix: [0, 0.3, 0.5]
model.name: [resnet10t, resnet18]
data.image_size: [64, [64, 96]]
"""))
    assert [p.key for p in params] == ["train.lr", "aug.scale_min", "train.epochs", "aug.cutmix", "model.name",
                                       "data.image_size"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = {p.key: p.suggest(trial) for p in params}
        assert 1e-4 <= values["train.lr"] <= 1e-2 and 0.3 <= values["aug.scale_min"] <= 0.9
        assert values["train.epochs"] in range(2, 7) and values["aug.cutmix"] in (0, 0.3, 0.5)
        assert values["data.image_size"] in (64, [64, 96])  # a list choice comes back as the list
        assert f"train.epochs={values['train.epochs']}" in overrides_of(values)
        study.tell(trial, 0.0)


@pytest.mark.parametrize(("text", "message"), [
    ("train.lrr: {log: [1.0e-4, 1.0e-2]}", "train.lrr: not a config key"),
    ("train.lr: {log: [1.0e-2, 1.0e-4]}", "train.lr: the range [0.01, 0.0001] is empty"),
    ("train.lr: {log: [0, 1.0e-2]}", "train.lr: a log range needs a low bound above 0"),
    ("train.epochs: {int: [2.5, 6]}", "train.epochs: int takes whole-number bounds"),
    ("train.lr: {float: [0.1]}", "train.lr: float takes [low, high]"),
    ("train.lr: {uniform: [0.1, 0.2]}", "train.lr: write a list of choices"),
    ("train.lr: {float: [0.1, 0.2], steps: 2}", "train.lr: unknown setting 'steps'"),
    ("model.name: []", "model.name: an empty list"),
    ("model.name: [resnet10t, resnet10t]", "model.name: a choice is listed twice"),
    ("aug.scale_min: {float: [0.5, 1.5]}", "aug.scale_min: the value 1.5 of the search space is refused"),
    ("train.epochs: {int: [0, 4]}", "train.epochs: the value 0 of the search space is refused"),
    ("cv.parallel: [ddp, sideways]", "cv.parallel: the value 'sideways' of the search space is refused"),
    ("", "the search space is empty"),
    ("cv.seed: [1, 2]", "cv.seed: every trial of a study shares its data, folds and tracking"),
    ("data.root: [a, b]", "data.root: every trial of a study shares"),
])
def test_a_bad_space_is_refused_with_one_line_naming_the_key(tmp_path: Path, text: str, message: str):
    with pytest.raises(SpaceError) as caught:
        load_space(space(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_values_are_checked_on_top_of_the_base_config(tmp_path: Path):
    # a broken base config is reported as the base's error, before any parameter is blamed
    path = space(tmp_path, "train.epochs: {int: [2, 4]}")
    assert load_space(path, overrides=["cv.folds=3"])
    with pytest.raises(Exception, match="cv.only"):
        load_space(path, overrides=["cv.folds=3", "cv.only=[5]"])
