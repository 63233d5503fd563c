"""Reading a data set root into one table: `path` (relative to the root), `person` (the group), `label`.

Formats:
- `mask`: the competition layout (see `mask_layout`);
- `csv`: `ROOT/train.csv` (or `labels.csv`) with `path,label[,group]`;
- `imagefolder`: one folder per class (`ROOT/<class>/*.jpg`, or the same under `ROOT/train/`).
Every path read from a table or found by walking stays inside the root (`paths`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from foldtrain.data import labels
from foldtrain.data.images import is_image_file
from foldtrain.data.paths import check_inside, inside_root

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
               label_fixes: str | Path | None = None, follow_symlinks: bool = False) -> Table:
    """The training table of the data set at `root` (label fixes apply to the competition layout only)."""
    from foldtrain.data.mask_layout import read_mask

    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data root not found: {root} (set data.root to a data set folder)")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if label_fixes and fmt != "mask":
        raise LayoutError(f"data.label_fixes applies to the mask layout only; this root is {fmt}")
    if fmt == "mask":
        return read_mask(root, age_bins, label_fixes, follow_symlinks)
    return read_csv_table(root, follow_symlinks) if fmt == "csv" else read_imagefolder(root, follow_symlinks)


def read_csv_table(root: Path, follow_symlinks: bool = False) -> Table:
    """`path,label[,group]`; labels may be names or integers; rows without a group are their own group."""
    csv_path = next((root / n for n in CSV_NAMES if (root / n).is_file()), root / CSV_NAMES[0])
    frame = read_csv_file(csv_path, dtype={"path": str})
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise LayoutError(f"{csv_path} lacks the columns {missing}; expected path,label[,group]")
    if frame["label"].isna().any():
        raise LayoutError(f"{csv_path}: rows {list(frame.index[frame['label'].isna()] + 1)[:5]} have no label")
    for index, value in enumerate(frame["path"]):
        path = inside_root(root, value, csv_path, index + 1, follow_symlinks)
        if not path.is_file():
            raise LayoutError(f"image not found: {path} (row {index + 1} of {csv_path}; paths are relative to "
                              f"data.root)")
    paths = frame["path"].astype(str).str.replace("\\", "/", regex=False)
    if paths.duplicated().any():
        raise LayoutError(f"{csv_path}: the same image is listed twice: {paths[paths.duplicated()].tolist()[:5]}")
    group = frame["group"] if "group" in frame.columns else pd.Series([None] * len(frame))
    person = [str(g) if pd.notna(g) else p for g, p in zip(group, paths, strict=True)]
    label_text = frame["label"].astype(str)
    classes = sorted(label_text.unique(), key=natural_key)
    index = {name: i for i, name in enumerate(classes)}
    return Table(pd.DataFrame({"path": paths, "person": person, "label": label_text.map(index)}), classes, "csv")


def read_imagefolder(root: Path, follow_symlinks: bool = False) -> Table:
    """One sub-folder per class; every image below a class folder belongs to it and is its own group."""
    base = root if _class_folders(root) else root / "train"
    classes = [folder.name for folder in _class_folders(base)]
    rows = [{"path": p.relative_to(root).as_posix(), "person": p.relative_to(root).as_posix(), "label": i}
            for i, name in enumerate(classes) for p in images_below(base / name, root, follow_symlinks)]
    return Table(pd.DataFrame(rows, columns=["path", "person", "label"]), classes, "imagefolder")


def read_eval(eval_dir: str | Path, follow_symlinks: bool = False) -> pd.DataFrame:
    """Images to predict: `ImageID` (as the submission names it) and `path` (absolute).

    A competition eval folder has `info.csv` (rows kept in their order) and `images/`; any other folder is
    predicted image by image, named by the path below it.
    """
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        raise LayoutError(f"eval folder not found: {eval_dir} (pass --data to a folder with info.csv and images/)")
    info = eval_dir / "info.csv"
    if info.is_file():
        frame = read_csv_file(info, dtype={"ImageID": str})
        if "ImageID" not in frame.columns:
            raise LayoutError(f"{info} lacks the column ImageID")
        frame["path"] = [str(inside_root(eval_dir / "images", name, info, i + 1, follow_symlinks))
                         for i, name in enumerate(frame["ImageID"])]
        missing = [p for p in frame["path"] if not Path(p).is_file()]
        if missing:
            raise LayoutError(f"{len(missing)} images listed in {info} are missing, e.g. {missing[0]}")
        return frame
    paths = images_below(eval_dir, eval_dir, follow_symlinks)
    if not paths:
        raise LayoutError(f"no images found below {eval_dir}")
    return pd.DataFrame({"ImageID": [p.relative_to(eval_dir).as_posix() for p in paths],
                         "path": [str(p) for p in paths]})


def read_csv_file(path: Path, dtype: dict | None = None) -> pd.DataFrame:
    """A CSV table with at least one row; unreadable, malformed or empty files are `LayoutError`s naming it."""
    if not path.is_file():
        raise LayoutError(f"table not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise LayoutError(f"cannot parse {path} as CSV: {str(err).splitlines()[0]}") from err
    if frame.empty:
        raise LayoutError(f"{path} has no rows")
    return frame


def _class_folders(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    return sorted((d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".") and _has_images(d)),
                  key=lambda d: natural_key(d.name))


def _has_images(folder: Path) -> bool:
    # Stops at the first image: telling a class folder apart must not walk a whole tree of photos.
    return next(_iter_images(folder), None) is not None


def images_below(folder: Path, root: Path, follow_symlinks: bool = False) -> list[Path]:
    """Image files below `folder`, sorted, each checked to stay inside `root`."""
    return sorted(check_inside(p, root, f"listing {folder}", follow_symlinks) for p in _iter_images(folder))


def _iter_images(folder: Path) -> Iterator[Path]:
    """Image files below `folder`, skipping hidden files and anything inside hidden folders.

    Symlinked sub-folders are walked like files that are links: what they hold is then checked by the same rule
    (`check_inside`: refused when it leaves the root, unless `data.follow_symlinks=true`), never skipped without a
    word. A folder reached twice (a link loop, or two links to one folder) is walked once.
    """
    seen: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        stat = os.stat(current)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(current) / name
            if not name.startswith(".") and path.is_file() and is_image_file(path):
                yield path


def natural_key(text: str) -> tuple:
    """Sort key placing integer names in numeric order before the others."""
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)
