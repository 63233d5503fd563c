"""The source and output trees of a crop run: walking, writing crops and copies, the report and its summary."""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from PIL import Image

from foldtrain.data.images import ImageReadError, is_image_file, load_rgb
from foldtrain.data.paths import PathEscapeError
from foldtrain.facecrop.geometry import typed
from foldtrain.facecrop.settings import (
    FORMAT_VERSION,
    IMAGE_KINDS,
    META_NAME,
    REPORT_COLUMNS,
    REPORT_NAME,
    SAVE_OPTIONS,
    CropSettings,
)
from foldtrain.files import atomic_path, write_csv, write_json
from foldtrain.user_error import UserError

log = logging.getLogger("foldtrain.facecrop")

def check_roots(src: str | Path, dst: str | Path) -> tuple[Path, Path]:
    """Resolved `src` and `dst`.

    Raises:
        FileNotFoundError: `src` is not a folder.
        ValueError: `dst` is `src`, inside it (its crops would be walked as source images, and a training run on
            `src` would find them) or contains it (the crops would be written among the originals).
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise UserError(f"source folder not found: {src}")
    if src == dst:
        raise UserError(f"--dst must differ from --src ({src}): crops would overwrite the original photos")
    if dst.is_relative_to(src):
        raise UserError(f"--dst {dst} lies inside --src {src}: choose an output folder outside the data set")
    if src.is_relative_to(dst):
        raise UserError(f"--src {src} lies inside --dst {dst}: choose an output folder that does not contain the "
                         f"data set")
    return src, dst


# The only other files a crop run copies beside its crops: the tables a data set's layout reads (train.csv,
# info.csv, a csv table). Anything else (notes, archives, keys) stays where it is.
COPIED_SUFFIXES = (".csv",)


def walk_source(src: Path, skip: Path | None = None, follow_symlinks: bool = False) -> tuple[list[str], list[str]]:
    """Relative posix paths of the image files and of the tables (`COPIED_SUFFIXES`) under `src`, each sorted.

    Hidden files and folders (macOS `._*` forks, `.ipynb_checkpoints`) are never data; `skip` (the output folder
    when it lies inside `src`) is not entered, so a rerun does not crop its own crops. Links are held to the rule
    of tables' paths: a file or folder link that leads outside `src` is refused (unless `follow_symlinks`), a
    dangling link is refused, and a folder reached twice (a link loop) is walked once, with a warning.

    Raises:
        PathEscapeError: a link leads outside `src`, naming it.
        UserError: a dangling link, naming it.
    """
    images, others, ignored = [], [], []
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(src, followlinks=True):
        base = Path(folder)
        stat = os.stat(base)
        if (stat.st_dev, stat.st_ino) in seen:
            log.warning("facecrop: %s leads back to a folder already walked (a link loop); walked once", base)
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (skip is None or base / d != skip))
        for name in dirs:
            confined(base / name, src, follow_symlinks)
        for name in files:
            if name.startswith("."):
                continue
            path = confined(base / name, src, follow_symlinks)
            rel = path.relative_to(src).as_posix()
            if is_image_file(name):
                images.append(rel)
            elif rel in (REPORT_NAME, META_NAME):  # a previous output used as source: its report is not data
                continue
            elif path.suffix.lower() in COPIED_SUFFIXES:
                others.append(rel)
            else:
                ignored.append(rel)
    if ignored:
        log.info("facecrop: %d file(s) that are neither images nor tables stay behind (e.g. %s)", len(ignored),
                 ignored[0])
    return sorted(images), sorted(others)


def confined(path: Path, root: Path, follow_symlinks: bool) -> Path:
    """`path`, checked: not a dangling link, and inside `root` once resolved unless `follow_symlinks`.

    Raises:
        UserError: a dangling link or a link that cannot be resolved (a loop), naming it.
        PathEscapeError: a link leading outside `root`.
    """
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError) as err:
            raise UserError(f"{path} is a broken link ({type(err).__name__}: points to {os.readlink(path)}); "
                            f"remove it or make it point at a file") from err
        if not follow_symlinks and not target.is_relative_to(root.resolve()):
            raise PathEscapeError(f"{path} is a link leading outside {root} (to {target}); copy what it points at "
                                  f"into the data set, or allow it with data.follow_symlinks=true "
                                  f"(--follow-symlinks)")
    return path
def write_crops(src: Path, dst: Path, rows: pd.DataFrame, threads: int = 1) -> list[str]:
    """Pass 2: cut and save each row's crop under `dst`; returns an error message per image that failed."""

    def crop_one(row) -> str | None:
        try:
            image = load_rgb(src / row.path).crop((row.x1, row.y1, row.x2, row.y2))
            save_atomic(image, dst / row.path)
        except (ImageReadError, OSError) as err:
            return f"{src / row.path}: {err}"
        return None

    # PIL releases the GIL while decoding and encoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return [err for err in pool.map(crop_one, rows.itertuples(index=False)) if err]


def save_atomic(image: Image.Image, path: Path) -> None:
    """Save `image` in the format its suffix names, via a hidden temporary file, so a kill leaves no partial crop."""
    fmt = Image.registered_extensions()[path.suffix.lower()]
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **SAVE_OPTIONS.get(fmt, {}))


def copy_others(src: Path, dst: Path, others: list[str], force: bool) -> int:
    """Copy the non-image files (tables) to `dst`, keeping unchanged copies (same size, mtime); returns the count."""
    copied = 0
    for rel in others:
        source, target = src / rel, dst / rel
        stat = source.stat()
        if not force and target.is_file() and _same_file_stat(stat, target.stat()):
            continue
        with atomic_path(target) as tmp:
            shutil.copy2(source, tmp)
        copied += 1
    return copied


def _same_file_stat(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def kept_rows(dst: Path, settings: CropSettings, images: list[str]) -> pd.DataFrame:
    """Report rows of an earlier run with the same settings whose source still exists and whose crop is on disk."""
    empty = pd.DataFrame(columns=REPORT_COLUMNS)
    report_path, meta_path = dst / REPORT_NAME, dst / META_NAME
    if not report_path.is_file() or not meta_path.is_file():
        return empty
    try:
        previous = json.loads(meta_path.read_text())["settings"]
        report = typed(pd.read_csv(report_path, keep_default_na=True))
    except (ValueError, KeyError, OSError) as err:
        log.warning("facecrop: cannot read the previous report in %s (%s); cropping everything again", dst, err)
        return empty
    if previous != json.loads(json.dumps(asdict(settings))):
        log.warning("facecrop: %s was cropped with other settings (%s); cropping everything again", dst, previous)
        return empty
    current = set(images)
    keep = report["path"].isin(current) & report["path"].map(lambda rel: (dst / rel).is_file())
    return report[keep].reset_index(drop=True)


def write_report(dst: Path, report: pd.DataFrame, settings: CropSettings, errors: list[str]) -> None:
    write_csv(dst / REPORT_NAME, report)
    write_json(dst / META_NAME, {"settings": asdict(settings), "format_version": FORMAT_VERSION,
                                 "images": len(report), "detected": int(report["detected"].sum()), "errors": errors,
                                 "complete": not errors})


def image_kind(path: str) -> str:
    """The photo kind of a competition file name (`mask1`..`mask5`, `incorrect_mask`, `normal`), else `other`."""
    stem = Path(path).stem
    return stem if stem in IMAGE_KINDS else "other"


def summarize(report: pd.DataFrame, dst: Path, processed: int, skipped: int, copied: int, errors: list[str],
              seconds: float) -> str:
    """A human summary: detection rate per image kind, counts, time and throughput."""
    kinds = report.assign(kind=report["path"].map(image_kind)).groupby("kind")["detected"].agg(["size", "sum"])
    order = [kind for kind in (*IMAGE_KINDS, "other") if kind in kinds.index]
    lines = [f"facecrop -> {dst}: {len(report)} images ({processed} cropped now, {skipped} skipped as done), "
             f"{copied} other files copied, {len(errors)} errors",
             f"  {'kind':<16}{'images':>8}{'detected':>10}{'rate':>8}"]
    for kind in order:
        total, found = int(kinds.loc[kind, "size"]), int(kinds.loc[kind, "sum"])
        lines.append(f"  {kind:<16}{total:>8}{found:>10}{found / total:>8.1%}")
    misses = int((~report["detected"].astype(bool)).sum())
    lines.append(f"  fallback crops (detected=False): {misses}")
    lines.append(f"  time {seconds:.1f} s, {processed / max(seconds, 1e-9):.2f} images/s")
    return "\n".join(lines)


def error_message(errors: list[str], dst: Path) -> str:
    listing = "\n".join(f"  {err}" for err in errors)
    return (f"{len(errors)} image(s) could not be cropped (every other image was cropped and is listed in "
            f"{dst / REPORT_NAME}):\n{listing}\nReplace or delete these files (and their table rows), then run again: "
            f"finished crops are skipped.")
