"""Pass 1: the most confident face of every image, by batched MTCNN on a downscaled copy, journaled as it goes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from foldtrain.cpus import torch_threads
from foldtrain.data.images import ImageReadError, load_rgb
from foldtrain.facecrop.settings import JOURNAL_PREFIX, CropSettings, settings_key
from foldtrain.user_error import UserError


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
    for path in sorted(dst.glob(f"{JOURNAL_PREFIX}{settings_key(settings)}-*.jsonl")):
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
def open_journal(dst: Path, settings: CropSettings, rank: int) -> Iterator[TextIO]:
    """This process's journal file, one per process so that processes never write to the same file."""
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / f"{JOURNAL_PREFIX}{settings_key(settings)}-{rank}.jsonl", "a", encoding="utf-8") as journal:
        yield journal
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
@contextmanager
def torch_threads_for_crop() -> Iterator[None]:
    """Run torch with this process's share of the cores (`cpus.torch_threads`, as training does); restored after."""
    previous = torch.get_num_threads()
    threads = torch_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_device(device: str, state) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use auto or cpu)")
    if device == "cpu":
        return torch.device("cpu")
    if state is not None and (device == "auto" or state.device.type == "cuda"):
        return state.device  # each process on its own GPU
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_mtcnn(device: torch.device):
    from facenet_pytorch import MTCNN  # heavy import, only when cropping

    return MTCNN(keep_all=True, device=device)
