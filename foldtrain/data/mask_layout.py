"""The competition layout: `train/train.csv` + `train/images/<person>/<mask1..5|incorrect_mask|normal>.*`.

One row per photo, 7 per person, labelled in the 18-class encoding, with `mask`, `gender` and `age` columns.
Label fixes (a CSV `id,fix`) correct persons whose labels are known wrong, as the seed notes did by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foldtrain.data import labels
from foldtrain.data.images import list_images
from foldtrain.data.paths import check_inside, inside_root
from foldtrain.data.tables import LayoutError, Table, read_csv_file

MASK_COLUMNS = ("id", "gender", "race", "age", "path")
LABEL_FIXES = ("to_male", "to_female", "swap_incorrect_normal", "age_group=0", "age_group=1", "age_group=2")


def read_mask(root: Path, age_bins: tuple[int, int] = labels.DEFAULT_AGE_BINS,
              label_fixes: str | Path | None = None, follow_symlinks: bool = False) -> Table:
    """The training table of a competition-layout root.

    Raises:
        LayoutError: a column, person folder or photo is missing or doubled; a value is out of its domain.
        PathEscapeError: a person folder or photo lies outside `root/train/images`.
    """
    csv_path = root / "train" / "train.csv"
    persons = read_csv_file(csv_path, dtype={"id": str, "path": str})
    missing = [c for c in MASK_COLUMNS if c not in persons.columns]
    if missing:
        raise LayoutError(f"{csv_path} lacks the columns {missing}; expected {','.join(MASK_COLUMNS)}")
    bad_gender = sorted(set(persons["gender"].astype(str)) - set(labels.GENDER_BY_NAME))
    if bad_gender:
        raise LayoutError(f"{csv_path}: unknown gender values {bad_gender}; expected male or female")
    ages = pd.to_numeric(persons["age"], errors="coerce")
    if ages.isna().any() or (ages < 0).any():
        rows = persons.loc[ages.isna() | (ages < 0), "path"].tolist()[:5]
        raise LayoutError(f"{csv_path}: missing, non-numeric or negative age for persons {rows}")
    duplicated = persons.loc[persons["path"].duplicated(), "path"].tolist()
    if duplicated:
        raise LayoutError(f"{csv_path}: duplicate person folders {duplicated[:5]}")

    fixes = read_label_fixes(Path(label_fixes), persons["id"]) if label_fixes else {}
    images_dir = root / "train" / "images"
    rows = []
    for index, (pid, person, gender, age) in enumerate(zip(persons["id"], persons["path"], persons["gender"],
                                                           ages.astype(int), strict=True)):
        fix = fixes.get(_id_key(pid), set())
        gender = "male" if "to_male" in fix else "female" if "to_female" in fix else gender
        age = fixed_age(int(age), fix, age_bins)
        folder = inside_root(images_dir, person, csv_path, index + 1, follow_symlinks)
        if not folder.is_dir():
            raise LayoutError(f"person folder missing: {folder} (listed in {csv_path}); restore it or drop its row")
        photos = person_photos(folder, follow_symlinks)
        for stem, mask in labels.MASK_BY_STEM.items():
            if "swap_incorrect_normal" in fix and mask in (1, 2):
                mask = 3 - mask
            rows.append({"path": photos[stem].relative_to(root).as_posix(), "person": person, "mask": mask,
                         "gender": labels.GENDER_BY_NAME[gender], "age": int(age)})
    frame = pd.DataFrame(rows)
    frame["label"] = labels.encode(frame["mask"], frame["gender"], labels.age_bin(frame["age"].to_numpy(), age_bins))
    return Table(frame[["path", "person", "label", "mask", "gender", "age"]], labels.class_names(age_bins), "mask",
                 fixes_applied=len(fixes))


def person_photos(folder: Path, follow_symlinks: bool = False) -> dict[str, Path]:
    """`{stem: file}` of the seven photos of a person folder.

    Raises:
        LayoutError: a photo kind is missing, or present twice under two suffixes (`mask1.jpg` and `mask1.png`:
            which one is the labelled photo is unknowable).
    """
    photos: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem not in labels.MASK_BY_STEM:
            continue
        if path.stem in photos:
            raise LayoutError(f"two photos of one kind in {folder}: {photos[path.stem].name} and {path.name}; "
                              f"keep one of them")
        photos[path.stem] = check_inside(path, folder, f"person folder {folder}", follow_symlinks)
    absent = [stem for stem in labels.MASK_BY_STEM if stem not in photos]
    if absent:
        raise LayoutError(f"{folder} lacks the photos {absent} (expected mask1..5, incorrect_mask, normal)")
    return photos


def fixed_age(age: int, fix: set[str], age_bins: tuple[int, int]) -> int:
    """The age after an `age_group=K` fix: the age in group K nearest the recorded one (29, 30 or 60 for a recorded
    age outside the group, with cuts [30, 60]), so the fix moves a person across a cut and no further."""
    group = next((int(f.split("=")[1]) for f in fix if f.startswith("age_group=")), None)
    if group is None:
        return age
    low, high = age_bins
    return {0: min(age, low - 1), 1: min(max(age, low), high - 1), 2: max(age, high)}[group]


def read_label_fixes(path: Path, known_ids: pd.Series) -> dict[str, set[str]]:
    """`{person id: fixes}` from a CSV `id,fix` (a person may have several rows: a gender, an age group and a swap);
    unknown ids or fixes and contradicting fixes are errors naming them."""
    table = read_csv_file(path, dtype={"id": str})
    if list(table.columns[:2]) != ["id", "fix"]:
        raise LayoutError(f"{path} must have the columns id,fix (fix one of {', '.join(LABEL_FIXES)})")
    bad = sorted(set(table["fix"].astype(str)) - set(LABEL_FIXES))
    if bad:
        raise LayoutError(f"{path}: unknown fixes {bad}; use {', '.join(LABEL_FIXES)}")
    known = {_id_key(i) for i in known_ids}
    unknown = [i for i in table["id"] if _id_key(i) not in known]
    if unknown:
        raise LayoutError(f"{path}: ids not in train.csv: {unknown[:5]}")
    fixes: dict[str, set[str]] = {}
    for pid, fix in zip(table["id"], table["fix"].astype(str), strict=True):
        kind = "gender" if fix.startswith("to_") else fix.split("=")[0]
        if any(("gender" if f.startswith("to_") else f.split("=")[0]) == kind for f in fixes.get(_id_key(pid), ())):
            raise LayoutError(f"{path}: person {pid} has two {kind} fixes; keep one row per kind of fix")
        fixes.setdefault(_id_key(pid), set()).add(fix)
    return fixes


def _id_key(value) -> str:
    # "000004", "4" and 4 name the same person.
    text = str(value).strip()
    return text.lstrip("0") or "0" if text.isdigit() else text
