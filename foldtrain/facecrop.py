"""MTCNN face crops of a whole data set tree, written in the same layout so training and prediction run unchanged.

Two passes: pass 1 finds the most confident face of every image (batched MTCNN on a downscaled copy), pass 2 writes
the crops. Images without a face get a deterministic fallback crop whose size and centre come from the faces found
in the same data set, which is why every detection must be known before the first crop is written.

Outputs are written under a temporary name and renamed, pass 1 journals its detections, and a rerun skips images
already listed in the report, so a killed run resumes where it stopped. `accelerate launch -m foldtrain.facecrop`
splits the images across processes.

    python -m foldtrain.facecrop --src RAW --dst FACES
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from foldtrain.cpus import cores_per_process, torch_threads
from foldtrain.images import ImageReadError, is_image_file, load_rgb

log = logging.getLogger(__name__)

REPORT_NAME = "facecrop.csv"
META_NAME = "facecrop.json"  # settings of the run that wrote the report, its errors, and the completion flag
JOURNAL_PREFIX = ".facecrop-journal-"  # hidden pass-1 checkpoints, removed once the report is written
REPORT_COLUMNS = ["path", "detected", "prob", "x1", "y1", "x2", "y2"]
BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
IMAGE_KINDS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
# Mean margin-grown crop (width, height) over the competition's detected faces, measured by the seeds; used for the
# fallback when a run detects no face at all.
DEFAULT_CROP_SIZE = (213, 283)
# Face width the default margins were tuned for (competition photos, 384x512); `scale_margins` scales from it.
REFERENCE_FACE_WIDTH = 150.0
FORMAT_VERSION = 1  # bump when the crop geometry changes, so cached crops rebuild
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


class FaceCropError(ImageReadError):
    """Some images could not be read or written; every other image was cropped and the report written."""


@dataclass(frozen=True)
class CropSettings:
    """How crops are cut.

    Attributes:
        margins: pixels added to the face box (left, top, right, bottom); more on top keeps the hair, a cue for
            gender and age.
        scale_margins: scale the margins by face width / 150 px, for data sets whose faces are not ~150 px wide.
        fallback_scale: the crop of an image without a face is this times the mean crop of the detected faces.
        min_prob: detections below this confidence count as misses.
        detect_size: MTCNN sees a copy whose longer side is at most this many pixels (None: full size). MTCNN's
            first-stage image pyramid costs time with the pixel count, and faces of ~150 px in 384x512 photos are
            still ~75 px at 256, far above MTCNN's 20 px minimum; boxes are scaled back to source pixels.
    """

    margins: tuple[int, int, int, int] = (30, 60, 30, 30)
    scale_margins: bool = False
    fallback_scale: float = 1.2
    min_prob: float = 0.9
    detect_size: int | None = 256


def crop_faces(src: str | Path, dst: str | Path, settings: CropSettings = CropSettings(), device: str = "auto",
               batch_size: int = 16, force: bool = False, state=None) -> pd.DataFrame:
    """Crop the face of every image under `src` into the same relative path under `dst`; copy every other file.

    Images already cropped by an earlier run with the same settings (listed in `dst/facecrop.csv` and present) are
    skipped unless `force`. The report is written to `dst/facecrop.csv`, the settings and outcome to
    `dst/facecrop.json`, and a summary is logged (main process only).

    Args:
        src: data set root; walked entirely, hidden files and folders and `dst` (if inside) excluded.
        dst: output root; must differ from `src`.
        settings: crop geometry.
        device: `auto` (the process's accelerator device, else CUDA when present, else CPU), `cpu` or `cuda`.
        batch_size: images per MTCNN call (images of one size are batched together).
        force: redo every crop and copy.
        state: an `accelerate.PartialState`; every process must call this together, each crops every W-th image.

    Returns:
        The report of all images, sorted by path: `path, detected, prob, x1, y1, x2, y2` (crop box in source pixels).

    Raises:
        FaceCropError: some images could not be decoded or written; raised after all others are done and the report
            is written, naming each file.
    """
    start = time.perf_counter()
    src, dst = check_roots(src, dst)
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    is_main = rank == 0
    images, others = walk_source(src, skip=dst)
    kept = pd.DataFrame(columns=REPORT_COLUMNS) if force else _kept_rows(dst, settings, images)
    done = set(kept["path"])
    mine = [path for path in images if path not in done][rank::world]
    journaled = {} if force else read_journal(dst, settings, src)
    pending = [path for path in mine if path not in journaled]
    threads = cores_per_process()

    with _torch_threads(), _open_journal(dst, settings, rank) as journal:
        mtcnn = _make_mtcnn(_resolve_device(device, state)) if pending else None
        detections, errors = detect_faces(src, pending, settings, mtcnn, batch_size, is_main, journal)
    detections += [journaled[path] for path in mine if path in journaled]
    detections = _gather(state, detections)
    new = plan_crops(detections, kept, settings)
    errors += write_crops(src, dst, new[new["path"].isin(set(mine))], threads)
    errors = sorted(_gather(state, errors))

    report = _merge(kept, new)
    if is_main:
        copied = copy_others(src, dst, others, force)
        _write_report(dst, report, settings, errors)
        for stale in dst.glob(f"{JOURNAL_PREFIX}*"):  # the report now holds every detection
            stale.unlink()
        log.info(summarize(report, dst, len(detections), len(kept), copied, errors, time.perf_counter() - start))
    if state is not None:
        state.wait_for_everyone()  # no process returns before the report exists
    if errors:
        raise FaceCropError(_error_message(errors, dst))
    return report


def crop_cache_dir(src: str | Path, settings: CropSettings, cache_root: str | Path) -> Path:
    """The folder under `cache_root` that holds the crops of `src` for `settings`.

    Its name hashes the resolved source path, every visible source file (relative path, size, mtime) and the
    settings, so a changed image, table or setting gets a fresh folder instead of stale crops.
    """
    src, cache_root = Path(src).resolve(), Path(cache_root).resolve()
    images, others = walk_source(src, skip=cache_root)
    digest = hashlib.sha256(json.dumps([FORMAT_VERSION, str(src), asdict(settings)], sort_keys=True).encode())
    for rel in sorted(images + others):
        stat = (src / rel).stat()
        digest.update(f"{rel}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return cache_root / f"facecrop-{digest.hexdigest()[:16]}"


def ensure_face_crops(src: str | Path, settings: CropSettings, cache_root: str | Path, state=None) -> Path:
    """The crop folder of `src` (`crop_cache_dir`), built first when it lacks a completion marker.

    Without `state` the calling process does all the work: call it inside `accelerator.main_process_first()` so the
    main process builds and the others find the marker. With `state`, every process must call it together (never
    inside `main_process_first`, which would deadlock) and the work is split across them.

    Raises:
        FaceCropError: some source images are unreadable (the folder keeps the others but is not marked complete).
    """
    target = crop_cache_dir(src, settings, cache_root)
    if not is_complete(target):
        crop_faces(src, target, settings, state=state)
    return target


def is_complete(dst: Path) -> bool:
    """True when a run finished in `dst` without errors."""
    try:
        return bool(json.loads((dst / META_NAME).read_text())["complete"])
    except (OSError, ValueError, KeyError):
        return False


def check_roots(src: str | Path, dst: str | Path) -> tuple[Path, Path]:
    """Resolved `src` and `dst`.

    Raises:
        FileNotFoundError: `src` is not a folder.
        ValueError: `dst` is `src` (the crops would overwrite the originals).
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    if src == dst:
        raise ValueError(f"--dst must differ from --src ({src}): crops would overwrite the original photos")
    return src, dst


def walk_source(src: Path, skip: Path | None = None) -> tuple[list[str], list[str]]:
    """Relative posix paths of the image files and of the other files under `src`, each sorted.

    Hidden files and folders (macOS `._*` forks, `.ipynb_checkpoints`) are never data; `skip` (the output folder
    when it lies inside `src`) is not entered, so a rerun does not crop its own crops.
    """
    images, others = [], []
    for folder, dirs, files in os.walk(src, followlinks=True):
        base = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (skip is None or base / d != skip))
        for name in files:
            if name.startswith("."):
                continue
            rel = (base / name).relative_to(src).as_posix()
            if is_image_file(name):
                images.append(rel)
            elif rel not in (REPORT_NAME, META_NAME):  # a previous output used as source: its report is not data
                others.append(rel)
    return sorted(images), sorted(others)


def detect_faces(src: Path, paths: list[str], settings: CropSettings, mtcnn, batch_size: int,
                 progress: bool = False, journal: TextIO | None = None) -> tuple[list[dict], list[str]]:
    """Pass 1: the most confident face of each image.

    MTCNN's batch mode needs images of one size, so images are grouped into buckets by detection size and a bucket
    runs as soon as it is full; memory stays bounded by one batch per distinct size. Each batch's records are
    appended to `journal` (see `read_journal`), so a killed run does not detect them again.

    Returns:
        One dict per readable image (`path`, `width`, `height`, `prob`: best confidence or NaN, `face`: the box in
        source pixels or None when missed or below `min_prob`), and an error message per unreadable image.
    """
    detections, errors = [], []
    buckets: dict[tuple[int, int], list[tuple[str, tuple[int, int], np.ndarray]]] = {}

    def run(bucket: list[tuple[str, tuple[int, int], np.ndarray]]) -> None:
        found = _detect_batch(mtcnn, bucket, settings.min_prob)
        if journal is not None:
            journal.writelines(json.dumps({**record, "stamp": _stamp(src / record["path"])}) + "\n"
                               for record in found)
            journal.flush()
        detections.extend(found)

    for rel in tqdm(paths, desc="facecrop: detect", unit="img", disable=not progress):
        try:
            image = load_rgb(src / rel)
        except ImageReadError as err:
            errors.append(str(err))
            continue
        small = detection_copy(image, settings.detect_size)
        bucket = buckets.setdefault(small.size, [])
        bucket.append((rel, image.size, np.asarray(small)))
        if len(bucket) >= batch_size:
            run(buckets.pop(small.size))
    for bucket in buckets.values():
        run(bucket)
    return detections, errors


def read_journal(dst: Path, settings: CropSettings, src: Path) -> dict[str, dict]:
    """Pass-1 records that killed runs with the same settings left in `dst`, by path.

    Records of source files changed since (size or mtime) are dropped, and so is a line cut short by the kill.
    """
    records = {}
    for path in sorted(dst.glob(f"{JOURNAL_PREFIX}{_settings_key(settings)}-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                stamp = record.pop("stamp")
            except (ValueError, KeyError):
                continue
            source = src / record["path"]
            if source.is_file() and _stamp(source) == stamp:
                records[record["path"]] = record
    return records


@contextmanager
def _open_journal(dst: Path, settings: CropSettings, rank: int) -> Iterator[TextIO]:
    """This process's journal file, one per process so that processes never write to the same file."""
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / f"{JOURNAL_PREFIX}{_settings_key(settings)}-{rank}.jsonl", "a", encoding="utf-8") as journal:
        yield journal


def _settings_key(settings: CropSettings) -> str:
    return hashlib.sha256(json.dumps([FORMAT_VERSION, asdict(settings)], sort_keys=True).encode()).hexdigest()[:12]


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def detection_copy(image: Image.Image, detect_size: int | None) -> Image.Image:
    """`image` shrunk so its longer side is at most `detect_size` (never enlarged)."""
    scale = 1.0 if detect_size is None else min(1.0, detect_size / max(image.size))
    if scale == 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR)


def _detect_batch(mtcnn, items: list[tuple[str, tuple[int, int], np.ndarray]], min_prob: float) -> list[dict]:
    """Run MTCNN once on same-sized images and keep each image's most confident face."""
    # A 4-D array makes MTCNN return per-image results even for a batch of one.
    boxes, probs = mtcnn.detect(np.stack([array for _, _, array in items]))
    return [_best_face(rel, size, array.shape, box, prob, min_prob)
            for (rel, size, array), box, prob in zip(items, boxes, probs, strict=True)]


def _best_face(rel: str, size: tuple[int, int], det_shape: tuple[int, ...], boxes, probs, min_prob: float) -> dict:
    """The detection record of one image from MTCNN's raw per-image output (None when it found nothing)."""
    width, height = size
    record = {"path": rel, "width": width, "height": height, "prob": math.nan, "face": None}
    if boxes is None or len(boxes) == 0:
        return record
    probs = np.asarray(probs, dtype=float)
    best = int(np.argmax(probs))
    sx, sy = width / det_shape[1], height / det_shape[0]
    x1, y1, x2, y2 = (float(v) for v in np.asarray(boxes[best], dtype=float))
    record["prob"] = float(probs[best])
    if probs[best] >= min_prob:
        record["face"] = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    return record


def grow_box(face: tuple[float, float, float, float], size: tuple[int, int],
             settings: CropSettings) -> tuple[int, int, int, int]:
    """The crop box of a detected face: the face box grown by the margins, rounded outward, clipped to the image."""
    x1, y1, x2, y2 = face
    factor = (x2 - x1) / REFERENCE_FACE_WIDTH if settings.scale_margins else 1.0
    left, top, right, bottom = (m * factor for m in settings.margins)
    return _clip((math.floor(x1 - left), math.floor(y1 - top), math.ceil(x2 + right), math.ceil(y2 + bottom)), size)


def fallback_box(size: tuple[int, int], crop_size: tuple[float, float],
                 centre: tuple[float, float] | None) -> tuple[int, int, int, int]:
    """A `crop_size` box centred on `centre` (the image centre when None or outside the image), clipped."""
    width, height = size
    if centre is None or not (0 <= centre[0] < width and 0 <= centre[1] < height):
        centre = (width / 2, height / 2)
    cx, cy = centre
    half_w, half_h = crop_size[0] / 2, crop_size[1] / 2
    return _clip((round(cx - half_w), round(cy - half_h), round(cx + half_w), round(cy + half_h)), size)


def _clip(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return max(0, x1), max(0, y1), min(size[0], x2), min(size[1], y2)


def fallback_geometry(boxes: np.ndarray, scale: float) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """Size and centre of the fallback crop: `scale` x the mean detected crop, centred where crops usually are.

    Args:
        boxes: Nx4 crop boxes of detected faces (x1, y1, x2, y2); with none, the seeds' mean size and no centre.
        scale: growth factor, so an undetected face is unlikely to be cut off.
    """
    if len(boxes) == 0:
        return (DEFAULT_CROP_SIZE[0] * scale, DEFAULT_CROP_SIZE[1] * scale), None
    boxes = boxes.astype(float)
    size = ((boxes[:, 2] - boxes[:, 0]).mean() * scale, (boxes[:, 3] - boxes[:, 1]).mean() * scale)
    centre = (((boxes[:, 0] + boxes[:, 2]) / 2).mean(), ((boxes[:, 1] + boxes[:, 3]) / 2).mean())
    return size, centre


def plan_crops(detections: list[dict], kept: pd.DataFrame, settings: CropSettings) -> pd.DataFrame:
    """Report rows (final crop boxes) for `detections`; the fallback also learns from the detected `kept` rows."""
    detections = sorted(detections, key=lambda d: d["path"])
    grown = {d["path"]: grow_box(d["face"], (d["width"], d["height"]), settings)
             for d in detections if d["face"] is not None}
    known = np.array(list(grown.values()) + kept.loc[kept["detected"].astype(bool), BOX_COLUMNS].values.tolist(),
                     dtype=float).reshape(-1, 4)
    crop_size, centre = fallback_geometry(known, settings.fallback_scale)
    rows = []
    for d in detections:
        detected = d["path"] in grown
        box = grown[d["path"]] if detected else fallback_box((d["width"], d["height"]), crop_size, centre)
        rows.append((d["path"], detected, d["prob"], *box))
    return _typed(pd.DataFrame(rows, columns=REPORT_COLUMNS))


def _merge(kept: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Kept and new report rows as one table sorted by path."""
    frames = [frame for frame in (kept, new) if len(frame)]
    if not frames:
        return new
    return _typed(pd.concat(frames, ignore_index=True).sort_values("path", ignore_index=True))


def _typed(report: pd.DataFrame) -> pd.DataFrame:
    return report.astype({"path": str, "detected": bool, "prob": float, **dict.fromkeys(BOX_COLUMNS, int)})


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions()[path.suffix.lower()]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def copy_others(src: Path, dst: Path, others: list[str], force: bool) -> int:
    """Copy the non-image files (tables) to `dst`, keeping unchanged copies (same size, mtime); returns the count."""
    copied = 0
    for rel in others:
        source, target = src / rel, dst / rel
        stat = source.stat()
        if not force and target.is_file() and _same_file_stat(stat, target.stat()):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
        copied += 1
    return copied


def _same_file_stat(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def _kept_rows(dst: Path, settings: CropSettings, images: list[str]) -> pd.DataFrame:
    """Report rows of an earlier run with the same settings whose source still exists and whose crop is on disk."""
    empty = pd.DataFrame(columns=REPORT_COLUMNS)
    report_path, meta_path = dst / REPORT_NAME, dst / META_NAME
    if not report_path.is_file() or not meta_path.is_file():
        return empty
    try:
        previous = json.loads(meta_path.read_text())["settings"]
        report = _typed(pd.read_csv(report_path, keep_default_na=True))
    except (ValueError, KeyError, OSError) as err:
        log.warning("facecrop: cannot read the previous report in %s (%s); cropping everything again", dst, err)
        return empty
    if previous != json.loads(json.dumps(asdict(settings))):
        log.warning("facecrop: %s was cropped with other settings (%s); cropping everything again", dst, previous)
        return empty
    current = set(images)
    keep = report["path"].isin(current) & report["path"].map(lambda rel: (dst / rel).is_file())
    return report[keep].reset_index(drop=True)


def _write_report(dst: Path, report: pd.DataFrame, settings: CropSettings, errors: list[str]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    tmp = dst / f".{REPORT_NAME}.{os.getpid()}.tmp"
    report.to_csv(tmp, index=False)
    os.replace(tmp, dst / REPORT_NAME)
    meta = {"settings": asdict(settings), "format_version": FORMAT_VERSION, "images": len(report),
            "detected": int(report["detected"].sum()), "errors": errors, "complete": not errors}
    tmp = dst / f".{META_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, dst / META_NAME)


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


def _error_message(errors: list[str], dst: Path) -> str:
    listing = "\n".join(f"  {err}" for err in errors)
    return (f"{len(errors)} image(s) could not be cropped (every other image was cropped and is listed in "
            f"{dst / REPORT_NAME}):\n{listing}\nReplace or delete these files (and their table rows), then run again: "
            f"finished crops are skipped.")


def _gather(state, items: list) -> list:
    """`items` of every process, concatenated (the items themselves without a distributed state)."""
    if state is None or state.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


@contextmanager
def _torch_threads() -> Iterator[None]:
    """Run torch with this process's share of the cores (`cpus.torch_threads`, as training does); restored after."""
    previous = torch.get_num_threads()
    threads = torch_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _resolve_device(device: str, state) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use auto or cpu)")
    if device == "cpu":
        return torch.device("cpu")
    if state is not None and (device == "auto" or state.device.type == "cuda"):
        return state.device  # each process on its own GPU
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _make_mtcnn(device: torch.device):
    from facenet_pytorch import MTCNN  # heavy import, only when cropping

    return MTCNN(keep_all=True, device=device)


def parse_margins(text: str) -> tuple[int, int, int, int]:
    """`L,T,R,B` as four non-negative ints."""
    try:
        margins = tuple(int(part) for part in text.split(","))
    except ValueError:
        margins = ()
    if len(margins) != 4 or min(margins) < 0:
        raise argparse.ArgumentTypeError(f"margins must be four non-negative integers L,T,R,B, not {text!r}")
    return margins


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    defaults = CropSettings()
    parser = argparse.ArgumentParser(prog="python -m foldtrain.facecrop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="data set root to crop (walked entirely)")
    parser.add_argument("--dst", required=True, help="output root: same layout, crops and copied tables")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=16, help="images per MTCNN call")
    parser.add_argument("--force", action="store_true", help="redo crops that already exist")
    parser.add_argument("--margins", type=parse_margins, default=defaults.margins, metavar="L,T,R,B",
                        help="pixels added around the face (default 30,60,30,30)")
    parser.add_argument("--scale-margins", action="store_true", help="scale margins by face width / 150 px")
    parser.add_argument("--detect-size", type=int, default=defaults.detect_size,
                        help="longer side of the copy MTCNN sees (0: full size; default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the exit status (1 when some images could not be cropped)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_roots(args.src, args.dst)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (use auto or cpu)")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from accelerate import PartialState

    # gloo when the processes have no GPU to put NCCL on.
    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    settings = CropSettings(margins=args.margins, scale_margins=args.scale_margins,
                            detect_size=args.detect_size or None)
    try:
        crop_faces(args.src, args.dst, settings, device=args.device, batch_size=args.batch_size, force=args.force,
                   state=state)
    except FaceCropError as err:
        if state.is_main_process:
            print(f"facecrop: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
