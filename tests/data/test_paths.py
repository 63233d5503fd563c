"""Paths from tables stay inside their root: train.csv, csv-format tables and info.csv."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from foldtrain.data.paths import PathEscapeError, inside_root
from foldtrain.data.tables import read_eval, read_table


@pytest.mark.parametrize("value, why", [("../../../etc", "climbs out"), ("/etc/passwd", "absolute"),
                                        ("a/../../b", "climbs out"), ("C:\\\\x.jpg", "absolute"), ("", "empty"),
                                        ("..\\\\secret.png", "climbs out")])
def test_escapes_are_named_with_table_row_and_value(tmp_path: Path, value: str, why: str):
    with pytest.raises(PathEscapeError, match=f"t.csv, row 4: path .*{why}"):
        inside_root(tmp_path, value, "t.csv", 4)


def test_symlinks_leaving_the_root_need_the_option(tmp_path: Path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "x.png")
    (root / "link.png").symlink_to(outside / "x.png")
    (root / "inner.png").symlink_to(root / "link.png")
    with pytest.raises(PathEscapeError, match="symlink leading outside.*data.follow_symlinks=true"):
        inside_root(root, "link.png", "t.csv", 1)
    assert inside_root(root, "link.png", "t.csv", 1, follow_symlinks=True) == root / "link.png"


def copy_root(demo_root: Path, dst: Path) -> Path:
    shutil.copytree(demo_root, dst)
    return dst


@pytest.mark.parametrize("path", ["../../../outside", "/tmp"])
def test_train_csv_paths_outside_the_root_are_refused(demo_root: Path, tmp_path: Path, path: str):
    root = copy_root(demo_root, tmp_path / "data")
    persons = pd.read_csv(root / "train" / "train.csv", dtype=str)
    persons.loc[2, "path"] = path
    persons.to_csv(root / "train" / "train.csv", index=False)
    with pytest.raises(PathEscapeError, match=f"train.csv, row 3: path '{path}'"):
        read_table(root)


def test_csv_format_and_info_csv_escapes_are_refused(tmp_path: Path):
    root = tmp_path / "set"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(root / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    (root / "train.csv").write_text("path,label\na.png,x\n../secret.png,y\n")
    with pytest.raises(PathEscapeError, match="row 2: path '../secret.png'"):
        read_table(root, "csv")
    (root / "images").mkdir()
    Image.new("RGB", (4, 4)).save(root / "images" / "e.png")
    (root / "info.csv").write_text("ImageID,ans\ne.png,0\n../../secret.png,0\n")
    with pytest.raises(PathEscapeError, match=r"info\.csv, row 2: path '../../secret.png'"):
        read_eval(root)
