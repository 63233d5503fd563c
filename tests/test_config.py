from pathlib import Path

import pytest
import yaml

from foldtrain.config import ConfigError, build_config, flatten, image_hw, save


def test_defaults_then_file_then_overrides(tmp_path: Path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  epochs: 3\n  lr: 0.1\nmodel:\n  name: resnet18\n")
    cfg = build_config([file], ["train.epochs=7", "cv.only=[0, 2]", "model.pretrained=true", "data.image_size=[64,48]"])
    assert cfg.train.epochs == 7  # override beats file
    assert cfg.train.lr == 0.1  # file beats default
    assert cfg.model.name == "resnet18"
    assert cfg.model.pretrained is True
    assert cfg.cv.only == [0, 2]
    assert image_hw(cfg.data.image_size) == (64, 48)
    assert cfg.train.batch_size == 32  # default kept


@pytest.mark.parametrize("override, needle", [
    ("train.epochz=3", "train.epochz"),
    ("trian.epochs=3", "trian"),
    ("train.epochs=many", "train.epochs"),
    ("data.format=parquet", "data.format"),
    ("cv.only=[7]", "cv.only"),
    ("epochs=3", "section.key=value"),
    ("model.pretrained=maybe", "model.pretrained"),
])
def test_bad_overrides_name_the_key(override: str, needle: str):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        build_config([], [override])


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path):
    file = tmp_path / "bad.yaml"
    file.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.learning_rate"):
        build_config([file])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        build_config(["/nonexistent/c.yaml"])


def test_int_accepted_for_float_and_saved_config_round_trips(tmp_path: Path):
    cfg = build_config([], ["train.lr=1", "run.name=x"])
    assert isinstance(cfg.train.lr, float)
    save(cfg, tmp_path / "config.yaml")
    assert build_config([tmp_path / "config.yaml"]) == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["run"]["name"] == "x"
    assert flatten(cfg)["train.lr"] == 1.0


def test_shipped_configs_load():
    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "launch" / "configs").glob("*.yaml")):
        build_config([path])
    seeds = build_config([repo / "launch" / "configs" / "seeds.yaml"])
    assert seeds.model.name == "efficientnet_b4" and seeds.aug.cutmix_mode == "band" and seeds.data.age_bins == [30, 58]
