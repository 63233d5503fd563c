"""Reading a data set root into one table: `path` (relative to the root), `person` (the group), `label`.

Formats:
- `mask`: the competition layout (`train/train.csv` + `train/images/<person>/<mask1..5|incorrect_mask|normal>.*`),
  with `mask`, `gender`, `age` columns and the 18-class label;
- `csv`: `ROOT/train.csv` (or `labels.csv`) with `path,label[,group]`;
- `imagefolder`: one folder per class (`ROOT/<class>/*.jpg`, or the same under `ROOT/train/`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from foldtrain import labels
from foldtrain.images import is_image_file, list_images

MASK_COLUMNS = ("id", "gender", "race", "age", "path")
CSV_NAMES = ("train.csv", "labels.csv")


class LayoutError(ValueError):
    """The data set root or one of its tables does not have the expected layout; the message says what to fix."""


@dataclass(frozen=True)
class Table:
    """A training table and the class names its integer labels index."""

    frame: pd.DataFrame
    classes: list[str]
    format: str
    fixes_applied: int = 0


def detect_format(root: Path) -> str:
    """The layout of `root`: `mask`, `csv` or `imagefolder`."""
    if (root / "train" / "train.csv").is_file() and (root / "train" / "images").is_dir():
        return "mask"
    if any((root / name).is_file() for name in CSV_NAMES):
        return "csv"
    if _class_folders(root) or _class_folders(root / "train"):
        return "imagefolder"
    raise LayoutError(
        f"cannot tell the layout of data root {root}: expected train/train.csv + train/images (mask), "
        f"train.csv with path,label (csv), or one folder of images per class (imagefolder). "
        f"Set data.format explicitly or fix data.root."
    )


def read_table(root: str | Path, fmt: str = "auto", age_bins: tuple[int, int] = labels.DEFAULT_AGE_BINS,
               label_fixes: str | Path | None = None) -> Table:
    """The training table of the data set at `root` (label fixes apply to the competition layout only)."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data root not found: {root} (set data.root to a data set folder)")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if label_fixes and fmt != "mask":
        raise LayoutError(f"data.label_fixes applies to the mask layout only; this root is {fmt}")
    readers = {"mask": lambda: read_mask(root, age_bins, label_fixes), "csv": lambda: read_csv(root),
               "imagefolder": lambda: read_imagefolder(root)}
    return readers[fmt]()


def read_mask(root: Path, age_bins: tuple[int, int] = labels.DEFAULT_AGE_BINS,
              label_fixes: str | Path | None = None) -> Table:
    """The competition layout: one row per photo, 7 per person, labelled in the 18-class encoding.

    `label_fixes` names a CSV `id,fix` correcting persons whose labels are known wrong: `to_male`,
    `to_female`, or `swap_incorrect_normal` (their incorrect_mask and normal photos are swapped).
    """
    csv_path = root / "train" / "train.csv"
    persons = _read_csv(csv_path, dtype={"id": str})
    missing = [c for c in MASK_COLUMNS if c not in persons.columns]
    if missing:
        raise LayoutError(f"{csv_path} lacks the columns {missing}; expected {','.join(MASK_COLUMNS)}")
    bad_gender = sorted(set(persons["gender"]) - set(labels.GENDER_BY_NAME))
    if bad_gender:
        raise LayoutError(f"{csv_path}: unknown gender values {bad_gender}; expected male or female")
    ages = pd.to_numeric(persons["age"], errors="coerce")
    if ages.isna().any():
        rows = persons.loc[ages.isna(), "path"].tolist()[:5]
        raise LayoutError(f"{csv_path}: non-numeric age for persons {rows}")
    duplicated = persons.loc[persons["path"].duplicated(), "path"].tolist()
    if duplicated:
        raise LayoutError(f"{csv_path}: duplicate person folders {duplicated[:5]}")

    fixes = read_label_fixes(Path(label_fixes), persons["id"]) if label_fixes else {}
    rows = []
    images_dir = root / "train" / "images"
    for pid, person, gender, age in zip(persons["id"], persons["path"].astype(str), persons["gender"],
                                        ages.astype(int), strict=True):
        fix = fixes.get(_id_key(pid))
        gender = {"to_male": "male", "to_female": "female"}.get(fix, gender)
        folder = images_dir / person
        if not folder.is_dir():
            raise LayoutError(f"person folder missing: {folder} (listed in {csv_path}); restore it or drop its row")
        photos = {p.stem: p for p in list_images(folder)}
        absent = [stem for stem in labels.MASK_BY_STEM if stem not in photos]
        if absent:
            raise LayoutError(f"{folder} lacks the photos {absent} (expected mask1..5, incorrect_mask, normal)")
        for stem, mask in labels.MASK_BY_STEM.items():
            if fix == "swap_incorrect_normal" and mask in (1, 2):
                mask = 3 - mask
            rows.append({"path": photos[stem].relative_to(root).as_posix(), "person": person, "mask": mask,
                         "gender": labels.GENDER_BY_NAME[gender], "age": int(age)})
    frame = pd.DataFrame(rows)
    frame["label"] = labels.encode(frame["mask"], frame["gender"], labels.age_bin(frame["age"].to_numpy(), age_bins))
    return Table(frame[["path", "person", "label", "mask", "gender", "age"]], labels.class_names(), "mask",
                 fixes_applied=len(fixes))


LABEL_FIXES = ("to_male", "to_female", "swap_incorrect_normal")


def read_label_fixes(path: Path, known_ids: pd.Series) -> dict[str, str]:
    """`{person id: fix}` from a CSV `id,fix`; unknown ids or fixes are errors naming them."""
    table = _read_csv(path, dtype={"id": str})
    if list(table.columns[:2]) != ["id", "fix"]:
        raise LayoutError(f"{path} must have the columns id,fix (fix one of {', '.join(LABEL_FIXES)})")
    bad = sorted(set(table["fix"]) - set(LABEL_FIXES))
    if bad:
        raise LayoutError(f"{path}: unknown fixes {bad}; use {', '.join(LABEL_FIXES)}")
    known = {_id_key(i) for i in known_ids}
    unknown = [i for i in table["id"] if _id_key(i) not in known]
    if unknown:
        raise LayoutError(f"{path}: ids not in train.csv: {unknown[:5]}")
    return {_id_key(i): fix for i, fix in zip(table["id"], table["fix"], strict=True)}


def _id_key(value) -> str:
    # "000004", "4" and 4 name the same person.
    text = str(value).strip()
    return text.lstrip("0") or "0" if text.isdigit() else text


def read_csv(root: Path) -> Table:
    """`path,label[,group]`; labels may be names or integers; rows without a group are their own group."""
    csv_path = next((root / n for n in CSV_NAMES if (root / n).is_file()), root / CSV_NAMES[0])
    frame = _read_csv(csv_path)
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise LayoutError(f"{csv_path} lacks the columns {missing}; expected path,label[,group]")
    for path in frame["path"].astype(str):
        if not (root / path).is_file():
            raise LayoutError(f"image not found: {root / path} (listed in {csv_path}; paths are relative to data.root)")
    person = frame["group"].astype(str) if "group" in frame.columns else frame["path"].astype(str)
    classes = sorted(frame["label"].astype(str).unique(), key=_natural_key)
    index = {name: i for i, name in enumerate(classes)}
    out = pd.DataFrame({"path": frame["path"].astype(str), "person": person,
                        "label": frame["label"].astype(str).map(index)})
    return Table(out, classes, "csv")


def read_imagefolder(root: Path) -> Table:
    """One sub-folder per class; every image below a class folder belongs to it and is its own group."""
    base = root if _class_folders(root) else root / "train"
    classes = [folder.name for folder in _class_folders(base)]
    rows = [{"path": p.relative_to(root).as_posix(), "person": p.relative_to(root).as_posix(), "label": i}
            for i, name in enumerate(classes) for p in _images_below(base / name)]
    return Table(pd.DataFrame(rows, columns=["path", "person", "label"]), classes, "imagefolder")


def read_eval(eval_dir: str | Path) -> pd.DataFrame:
    """Images to predict: `ImageID` (as the submission names it) and `path` (absolute).

    A competition eval folder has `info.csv` (rows kept in their order) and `images/`; any other folder is
    predicted image by image, named by the path below it.
    """
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        raise LayoutError(f"eval folder not found: {eval_dir} (pass --data to a folder with info.csv and images/)")
    info = eval_dir / "info.csv"
    if info.is_file():
        frame = _read_csv(info)
        if "ImageID" not in frame.columns:
            raise LayoutError(f"{info} lacks the column ImageID")
        frame["path"] = [str(eval_dir / "images" / name) for name in frame["ImageID"].astype(str)]
        missing = [p for p in frame["path"] if not Path(p).is_file()]
        if missing:
            raise LayoutError(f"{len(missing)} images listed in {info} are missing, e.g. {missing[0]}")
        return frame
    paths = _images_below(eval_dir)
    if not paths:
        raise LayoutError(f"no images found below {eval_dir}")
    return pd.DataFrame({"ImageID": [p.relative_to(eval_dir).as_posix() for p in paths],
                         "path": [str(p) for p in paths]})


def _read_csv(path: Path, dtype: dict | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise LayoutError(f"table not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise LayoutError(f"cannot parse {path} as CSV: {err}") from err
    if frame.empty:
        raise LayoutError(f"{path} has no rows")
    return frame


def _class_folders(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    return sorted((d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".") and _has_images(d)),
                  key=lambda d: _natural_key(d.name))


def _has_images(folder: Path) -> bool:
    # Stops at the first image: telling a class folder apart must not walk a whole tree of photos.
    return next(_iter_images(folder), None) is not None


def _images_below(folder: Path) -> list[Path]:
    return sorted(_iter_images(folder))


def _iter_images(folder: Path) -> Iterator[Path]:
    """Image files below `folder`, skipping hidden files and anything inside hidden folders."""
    return (p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
            and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _natural_key(text: str) -> tuple:
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)
