"""The synthetic demo data set: competition layout, junk files, determinism, eval truth, ensure_demo."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from foldtrain.data import labels
from foldtrain.data.images import list_images
from foldtrain.demo import JUNK_BYTES, ensure_demo, generate_demo
from foldtrain.demo.__main__ import main

PERSONS = 6


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return generate_demo(tmp_path_factory.mktemp("demo") / "data", persons=PERSONS, seed=3)


def test_train_table_and_person_folders(demo):
    with (demo / "train" / "train.csv").open() as f:
        assert f.readline().strip() == "id,gender,race,age,path"
    rows = _rows(demo / "train" / "train.csv")
    assert len(rows) == PERSONS
    for row in rows:
        assert len(row["id"]) == 6 and row["id"].isdigit()
        assert row["gender"] in ("male", "female") and row["race"] == "Asian"
        assert row["path"] == f"{row['id']}_{row['gender']}_Asian_{row['age']}"
        assert (demo / "train" / "images" / row["path"]).is_dir()
    assert {labels.age_bin(int(r["age"])) for r in rows} == {0, 1, 2}
    assert {r["gender"] for r in rows} == {"male", "female"}
    assert {"58", "59"} <= {r["age"] for r in rows}


def test_seven_photos_per_person_with_competition_stems(demo):
    suffixes = set()
    for folder in (demo / "train" / "images").iterdir():
        photos = list_images(folder)
        assert sorted(p.stem for p in photos) == sorted(labels.MASK_BY_STEM)
        suffixes |= {p.suffix for p in photos}
    assert suffixes == {".jpg", ".jpeg", ".png"}


def test_hidden_junk_files_are_not_images(demo):
    junk = sorted(p for p in demo.rglob("._*"))
    assert any(p.parent.parent.name == "images" and p.parent.parent.parent.name == "train" for p in junk)
    assert any(p.parent == demo / "eval" / "images" for p in junk)
    for path in junk:
        assert path.read_bytes() == JUNK_BYTES
        with pytest.raises(OSError):
            Image.open(path)


def test_photos_are_384x512_rgb(demo):
    folder = next((demo / "train" / "images").iterdir())
    for path in list_images(folder) + list_images(demo / "eval" / "images")[:3]:
        with Image.open(path) as img:
            assert img.size == (384, 512) and img.mode == "RGB"


def test_eval_info_matches_truth_and_files(demo):
    info = _rows(demo / "eval" / "info.csv")
    truth = _rows(demo / "eval_truth.csv")
    assert list(info[0]) == ["ImageID", "ans"]
    assert list(truth[0]) == ["ImageID", "ans", "mask", "gender", "age"]
    assert len(info) == max(8, round(PERSONS * 7 / 4))
    assert [r["ImageID"] for r in info] == [r["ImageID"] for r in truth]
    assert {r["ans"] for r in info} == {"0"}
    assert sorted(p.name for p in list_images(demo / "eval" / "images")) == sorted(r["ImageID"] for r in info)
    for row in truth:
        stem, suffix = row["ImageID"].split(".")
        assert len(stem) == 40 and int(stem, 16) >= 0 and suffix == "jpg"
        expected = labels.encode(int(row["mask"]), int(row["gender"]), labels.age_bin(int(row["age"])))
        assert int(row["ans"]) == expected


def test_eval_persons_are_new(demo):
    # Eval photos are drawn from persons of their own: no eval image is a byte copy of a training photo.
    train_bytes = {p.read_bytes() for p in (demo / "train" / "images").rglob("*") if p.is_file()}
    assert not any(p.read_bytes() in train_bytes for p in list_images(demo / "eval" / "images"))


def test_same_seed_same_bytes(demo, tmp_path):
    again = generate_demo(tmp_path / "again", persons=PERSONS, seed=3)
    assert (again / "train" / "train.csv").read_bytes() == (demo / "train" / "train.csv").read_bytes()
    assert (again / "eval_truth.csv").read_bytes() == (demo / "eval_truth.csv").read_bytes()
    folder = _rows(demo / "train" / "train.csv")[1]["path"]
    first = list_images(demo / "train" / "images" / folder)[0]
    assert (again / first.relative_to(demo)).read_bytes() == first.read_bytes()


def test_other_seed_other_data(demo, tmp_path):
    other = generate_demo(tmp_path / "other", persons=PERSONS, seed=4)
    assert (other / "eval_truth.csv").read_bytes() != (demo / "eval_truth.csv").read_bytes()


def test_eval_images_and_junk_options(tmp_path):
    out = generate_demo(tmp_path / "d", persons=2, eval_images=3, junk=False)
    assert len(_rows(out / "eval" / "info.csv")) == 3
    assert not list(out.rglob("._*"))


def test_ensure_demo_keeps_an_existing_set(tmp_path, monkeypatch):
    root = tmp_path / "data" / "demo"
    (root / "train").mkdir(parents=True)
    (root / "train" / "train.csv").write_text("id,gender,race,age,path\n")

    def fail(*args, **kwargs):
        raise AssertionError("ensure_demo regenerated an existing data set")

    monkeypatch.setattr("foldtrain.demo.generate_demo", fail)
    assert ensure_demo(root) == root
    assert (root / "train" / "train.csv").read_text() == "id,gender,race,age,path\n"


def test_ensure_demo_generates_atomically(tmp_path, monkeypatch):
    root = tmp_path / "data" / "demo"
    monkeypatch.setattr("foldtrain.demo.generate_demo", lambda out: generate_demo(out, persons=2, eval_images=2))
    assert ensure_demo(root) == root
    assert len(_rows(root / "train" / "train.csv")) == 2
    assert sorted(p.name for p in root.parent.iterdir()) == ["demo"]  # no temporary folder left behind


def test_ensure_demo_leaves_no_partial_set_when_interrupted(tmp_path, monkeypatch):
    root = tmp_path / "demo"

    def interrupted(out):
        (Path(out) / "train").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr("foldtrain.demo.generate_demo", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo(root)
    assert list(tmp_path.iterdir()) == []


def test_ensure_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="train/train.csv"):
        ensure_demo(tmp_path / "demo")


def test_cli_prints_a_summary(tmp_path, capsys):
    main(["--out", str(tmp_path / "cli"), "--persons", "2", "--seed", "1", "--eval-images", "3"])
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "2 persons (14 photos)" in out and "3 eval images" in out
    assert len(_rows(tmp_path / "cli" / "train" / "train.csv")) == 2
