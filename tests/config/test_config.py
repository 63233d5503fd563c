from pathlib import Path

import pytest
import yaml

from foldtrain.config import ConfigError, build_config, dump, flatten, image_hw, keys
from tests.conftest import REPO


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
    (tmp_path / "config.yaml").write_text(dump(cfg))
    assert build_config([tmp_path / "config.yaml"]) == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["run"]["name"] == "x"
    assert flatten(cfg)["train.lr"] == 1.0


def test_shipped_configs_load():
    repo = Path(__file__).resolve().parents[2]
    for path in sorted((repo / "launch" / "configs").glob("*.yaml")):
        build_config([path])
    seeds = build_config([repo / "launch" / "configs" / "seeds.yaml"])
    assert seeds.model.name == "efficientnet_b4" and seeds.aug.cutmix_mode == "band" and seeds.data.age_bins == [30, 58]


@pytest.mark.parametrize("override, range_text", [
    ("data.image_size=0", "8 to 4096 px"), ("data.image_size=[64]", "[height, width]"),
    ("data.image_size=[64,4]", "8 to 4096 px"), ("aug.scale_min=3", "in (0, 1]"), ("aug.scale_min=0", "in (0, 1]"),
    ("train.lr=-1", "in (0, 10]"), ("train.lr=0", "in (0, 10]"), ("aug.hflip=1.5", "in [0, 1]"),
    ("cv.folds=1", "in [2, 100]"), ("train.early_stopping=-1", "in [0, 10000]"), ("train.epochs=0", "in [1, 10000]"),
    ("train.ema=1", "in [0, 1)"), ("data.age_bins=[60,30]", "increasing"), ("facecrop.margins=[1,2,3]", "four"),
    ("aug.auto_augment=nonsense", "timm policy"), ("run.name=../x", "folder name"), ("cv.only=[0,0]", "distinct"),
    ("train.clip_grad=0", "above 0"), ("data.num_workers=-2", "in [-1, 256]"), ("train.checkpoint=first", "one of"),
])
def test_out_of_range_values_name_key_value_and_range(override: str, range_text: str):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as caught:
        build_config([], [override])
    message = str(caught.value)
    assert key in message and range_text in message and value.replace(",", ", ") in message.replace("'", "")


def test_cutmix_plus_mixup_at_most_one():
    build_config([], ["aug.cutmix=0.5", "aug.mixup=0.5"])
    with pytest.raises(ConfigError, match=r"aug.cutmix \+ aug.mixup"):
        build_config([], ["aug.cutmix=0.6", "aug.mixup=0.5"])


def test_every_key_has_a_doc_and_the_readme_lists_it():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, spec in keys().items():
        assert spec.metadata.get("doc"), name
        assert f"`{name}`" in readme, f"README config reference lacks {name}"


def test_every_key_runs_in_an_end_to_end_test():
    repo = Path(__file__).resolve().parents[2]
    sources = "".join(p.read_text() for p in (repo / "tests" / "e2e").glob("*.py"))
    # Keys no test can run here, with the reason.
    untestable = {"model.pretrained": "downloads hub weights; the local-file path (model.pretrained_file) runs"}
    missing = [name for name in keys() if f"{name}=" not in sources and name not in untestable]
    assert not missing, f"no end-to-end test sets {missing}"


def test_a_key_the_chosen_mode_ignores_gets_one_warning_naming_it():
    from foldtrain.config.ignored import ignored_settings

    assert ignored_settings(build_config([], [])) == []
    found = ignored_settings(build_config([], ["train.t0=3", "train.max_lr=0.1", "facecrop.min_prob=0.5",
                                              "aug.cutmix_mode=band", "data.format=csv", "data.age_bins=[30,58]"]))
    assert [line.split("=")[0] for line in found] == ["data.age_bins", "facecrop.min_prob", "train.t0", "train.max_lr",
                                                      "aug.cutmix_mode"]
    assert "train.t0=3 is ignored: only train.scheduler=cosine_restarts uses it" in found
    assert ignored_settings(build_config([], ["distill.alpha=0.2"])) == [
        "distill.alpha=0.2 is ignored: distill.teacher is not set"]
    assert ignored_settings(build_config([], ["distill.alpha=0.2", "distill.teacher=runs/t"])) == []
    used = build_config([], ["train.scheduler=cosine_restarts", "train.t0=3", "data.face_crop=true",
                             "facecrop.min_prob=0.5", "aug.cutmix=0.5", "aug.cutmix_mode=band"])
    assert ignored_settings(used) == []


BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
data:
  root: *i
"""


def test_a_billion_laughs_config_is_refused_fast_in_little_memory(tmp_path: Path):
    import resource
    import subprocess
    import sys
    import time

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (500 * 2**20, 500 * 2**20))

    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "foldtrain" / "main.py"), "--config", str(bomb)],
                            capture_output=True, text=True, timeout=60, preexec_fn=cap, cwd=tmp_path)
    assert time.perf_counter() - started < 5
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"foldtrain: config error: config file {bomb}: YAML aliases (*a) are not accepted in a config: write the "
        f"value out"]


def test_floats_as_users_type_them_and_only_finite_ones(tmp_path: Path):
    for text in ("1e-4", "1E-4", "1.0e-4", "+1e-04"):
        assert build_config([], [f"train.lr={text}"]).train.lr == pytest.approx(1e-4)
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  lr: 3e-3\n  weight_decay: 5E-5\n")
    cfg = build_config([config])
    assert cfg.train.lr == pytest.approx(3e-3) and cfg.train.weight_decay == pytest.approx(5e-5)
    for bad in ("train.lr=.inf", "train.lr=-.inf", "train.lr=.nan", "aug.mixup=.nan"):
        with pytest.raises(ConfigError, match="finite number"):
            build_config([], [bad])
    assert build_config([], ["data.root=1e5x"]).data.root == "1e5x"  # only whole numbers become floats


@pytest.mark.parametrize("override, key", [("data.image_size=[100000,100000]", "data.image_size"),
                                           ("data.image_size=5000", "data.image_size"),
                                           ("train.batch_size=1000000", "train.batch_size"),
                                           ("data.num_workers=100000", "data.num_workers"),
                                           ("train.epochs=1000000", "train.epochs"), ("cv.folds=1000", "cv.folds"),
                                           ("train.lr=100", "train.lr")])
def test_sizes_have_upper_bounds(override: str, key: str):
    with pytest.raises(ConfigError, match=key):
        build_config([], [override])


def test_messages_show_a_short_prefix_of_huge_values(tmp_path: Path):
    with pytest.raises(ConfigError) as refused:
        build_config([], ["run.name=" + "x" * 300])
    assert len(str(refused.value)) < 300 and "(302 characters)" in str(refused.value)
    with pytest.raises(ConfigError, match="longer than"):
        build_config([], ["data.root=" + "y" * 100_000])
    big = tmp_path / "big.yaml"
    big.write_text("data:\n  root: " + "z" * 400_000 + "\n")
    with pytest.raises(ConfigError, match="more than a config holds"):
        build_config([big])
