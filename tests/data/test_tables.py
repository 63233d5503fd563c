import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from foldtrain.data.images import ImageReadError, is_image_file, load_rgb
from foldtrain.data.paths import PathEscapeError
from foldtrain.data.tables import LayoutError, detect_format, read_eval, read_table


def test_mask_layout_reads_seven_photos_per_person(demo_root: Path):
    table = read_table(demo_root)
    frame = table.frame
    persons = pd.read_csv(demo_root / "train" / "train.csv")
    assert table.format == "mask"
    assert len(frame) == 7 * len(persons)
    assert not frame["path"].str.contains("/._").any()  # hidden junk files are not images
    assert (frame.groupby("person").size() == 7).all()
    assert set(frame["label"]) <= set(range(18))
    # Labels follow the competition encoding for every row.
    expected = frame["mask"] * 6 + frame["gender"] * 3 + (frame["age"] >= 30).astype(int) + (frame["age"] >= 60)
    assert (frame["label"] == expected).all()
    assert all((demo_root / p).is_file() for p in frame["path"])


def test_hidden_files_are_not_images():
    assert not is_image_file("x/._mask1.jpg")
    assert is_image_file("x/mask1.JPEG")
    assert not is_image_file("x/notes.txt")


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_photo_is_named(demo_root: Path, tmp_path: Path):
    root = copy_root(demo_root, tmp_path / "r")
    person = sorted((root / "train" / "images").iterdir())[0]
    next(person.glob("normal.*")).unlink()
    with pytest.raises(LayoutError, match=rf"{person.name}.*normal"):
        read_table(root)


def test_bad_train_csv_columns(demo_root: Path, tmp_path: Path):
    root = copy_root(demo_root, tmp_path / "r")
    csv = root / "train" / "train.csv"
    pd.read_csv(csv).drop(columns=["age"]).to_csv(csv, index=False)
    with pytest.raises(LayoutError, match=r"train\.csv lacks the columns \['age'\]"):
        read_table(root)


def test_corrupt_image_is_named(tmp_path: Path):
    bad = tmp_path / "mask1.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageReadError, match="mask1.jpg"):
        load_rgb(bad)
    with pytest.raises(ImageReadError, match="not found"):
        load_rgb(tmp_path / "missing.jpg")


def test_image_modes_become_rgb(tmp_path: Path):
    for mode in ("L", "RGBA", "P"):
        Image.new(mode, (8, 6)).save(tmp_path / f"{mode}.png")
        assert load_rgb(tmp_path / f"{mode}.png").mode == "RGB"


def test_unknown_layout_and_missing_root(tmp_path: Path):
    with pytest.raises(LayoutError, match="not found"):
        read_table(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="cannot tell the layout"):
        detect_format(tmp_path / "empty")


def test_eval_table_keeps_info_order(demo_root: Path):
    info = pd.read_csv(demo_root / "eval" / "info.csv")
    frame = read_eval(demo_root / "eval")
    assert frame["ImageID"].tolist() == info["ImageID"].tolist()


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (16, 16), (i * 20, 0, 0)).save(folder / name)


def test_csv_format(tmp_path: Path):
    write_images(tmp_path / "img", [f"{i}.png" for i in range(6)])
    pd.DataFrame({"path": [f"img/{i}.png" for i in range(6)], "label": ["cat", "dog"] * 3,
                  "group": ["a", "a", "b", "b", "c", "c"]}).to_csv(tmp_path / "train.csv", index=False)
    table = read_table(tmp_path)
    assert table.format == "csv" and table.classes == ["cat", "dog"]
    assert table.frame["label"].tolist() == [0, 1] * 3
    assert table.frame["person"].tolist() == ["a", "a", "b", "b", "c", "c"]


def test_imagefolder_format(tmp_path: Path):
    write_images(tmp_path / "with_mask", ["a.jpg", "b.jpg", "._a.jpg"])
    write_images(tmp_path / "without_mask", ["c.jpg"])
    table = read_table(tmp_path)
    assert table.format == "imagefolder"
    assert table.classes == ["with_mask", "without_mask"]
    assert table.frame["label"].tolist() == [0, 0, 1]


def test_label_fixes_and_age_bins(demo_root: Path, tmp_path: Path):
    persons = pd.read_csv(demo_root / "train" / "train.csv", dtype={"id": str})
    male = persons[persons["gender"] == "male"].iloc[0]
    female = persons[persons["gender"] == "female"].iloc[0]
    fixes = tmp_path / "fixes.csv"
    pd.DataFrame({"id": [male["id"], female["id"]], "fix": ["to_female", "swap_incorrect_normal"]}).to_csv(
        fixes, index=False)
    table = read_table(demo_root, label_fixes=fixes, age_bins=(30, 58))
    frame = table.frame
    assert table.fixes_applied == 2
    fixed = frame[frame["person"] == male["path"]]
    assert (fixed["gender"] == 1).all() and ((fixed["label"] // 3) % 2 == 1).all()
    swapped = frame[frame["person"] == female["path"]]
    swapped = swapped.set_index(swapped["path"].map(lambda p: Path(p).stem))
    assert swapped.loc["incorrect_mask", "mask"] == 2 and swapped.loc["normal", "mask"] == 1
    late = frame[frame["age"].between(58, 59)]
    assert len(late) and (late["label"] % 3 == 2).all()  # 58 and 59 moved to the oldest group
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["999999"], "fix": ["to_male"]}).to_csv(bad, index=False)
    with pytest.raises(LayoutError, match="999999"):
        read_table(demo_root, label_fixes=bad)


def test_two_photos_of_one_kind_are_named(demo_root: Path, tmp_path: Path):
    root = copy_root(demo_root, tmp_path / "data")
    folder = sorted((root / "train" / "images").iterdir())[3]
    photo = next(p for p in folder.iterdir() if p.stem == "mask1")
    twin = folder / ("mask1.png" if photo.suffix != ".png" else "mask1.jpg")
    shutil.copy(photo, twin)
    with pytest.raises(LayoutError, match=f"two photos of one kind in .*{folder.name}.*mask1"):
        read_table(root)


def test_symlinked_sub_folders_follow_the_rule_for_files(tmp_path: Path):
    root = tmp_path / "set"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / name / "a.png")
    shared = root / "cat" / "sub"  # a folder inside the root, linked into another class: followed
    shared.mkdir()
    Image.new("RGB", (8, 8)).save(shared / "b.png")
    (root / "dog" / "more").symlink_to(shared, target_is_directory=True)
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)  # walked once, no endless loop
    table = read_table(root, "imagefolder")
    assert sorted(table.frame["path"]) == ["cat/a.png", "cat/sub/b.png", "dog/a.png", "dog/more/b.png"]
    outside = tmp_path / "outside"  # a folder outside the root, linked in: refused like a file link, not skipped
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "c.png")
    (root / "dog" / "far").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathEscapeError, match="far/c.png.*data.follow_symlinks=true"):
        read_table(root, "imagefolder")
    allowed = read_table(root, "imagefolder", follow_symlinks=True)
    assert "dog/far/c.png" in set(allowed.frame["path"])
