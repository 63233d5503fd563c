"""A whole crop run: detect every face (pass 1), then cut and write every crop (pass 2), split across processes."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from foldtrain.cpus import cores_per_process
from foldtrain.facecrop.detect import (
    detect_faces,
    make_mtcnn,
    open_journal,
    read_journal,
    resolve_device,
    torch_threads_for_crop,
)
from foldtrain.facecrop.geometry import merge, plan_crops
from foldtrain.facecrop.settings import (
    FORMAT_VERSION,
    JOURNAL_PREFIX,
    META_NAME,
    REPORT_COLUMNS,
    CropSettings,
    FaceCropError,
)
from foldtrain.facecrop.tree import (
    check_roots,
    copy_others,
    error_message,
    kept_rows,
    summarize,
    walk_source,
    write_crops,
    write_report,
)
from foldtrain.files import fingerprint

log = logging.getLogger("foldtrain.facecrop")


def crop_faces(src: str | Path, dst: str | Path, settings: CropSettings | None = None, device: str = "auto",
               batch_size: int = 16, force: bool = False, state=None, fallback: dict | None = None,
               follow_symlinks: bool = False) -> pd.DataFrame:
    """Crop the face of every image under `src` into the same relative path under `dst`; copy every other file.

    Images already cropped by an earlier run with the same settings (listed in `dst/facecrop.csv` and present) are
    skipped unless `force`. The report is written to `dst/facecrop.csv`, the settings and outcome to
    `dst/facecrop.json`, and a summary is logged (main process only).

    Args:
        src: data set root; walked entirely, hidden files and folders and `dst` (if inside) excluded.
        dst: output root; must differ from `src`.
        settings: crop geometry (default `CropSettings()`).
        device: `auto` (the process's accelerator device, else CUDA when present, else CPU), `cpu` or `cuda`.
        batch_size: images per MTCNN call (images of one size are batched together).
        force: redo every crop and copy.
        state: an `accelerate.PartialState`; every process must call this together, each crops every W-th image.
        fallback: the crop of images without a face (`geometry.fallback_of`); default: learnt from these images.
        follow_symlinks: accept links leading outside `src` (`data.follow_symlinks`); refused otherwise.

    Returns:
        The report of all images, sorted by path: `path, detected, prob, x1, y1, x2, y2` (crop box in source pixels).

    Raises:
        FaceCropError: some images could not be decoded or written; raised after all others are done and the report
            is written, naming each file.
    """
    start = time.perf_counter()
    settings = settings or CropSettings()
    src, dst = check_roots(src, dst)
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    is_main = rank == 0
    images, others = walk_source(src, skip=dst, follow_symlinks=follow_symlinks)
    kept = pd.DataFrame(columns=REPORT_COLUMNS) if force else kept_rows(dst, settings, images)
    done = set(kept["path"])
    mine = [path for path in images if path not in done][rank::world]
    journaled = {} if force else read_journal(dst, settings, src)
    pending = [path for path in mine if path not in journaled]
    threads = cores_per_process()

    with torch_threads_for_crop(), open_journal(dst, settings, rank) as journal:
        mtcnn = make_mtcnn(resolve_device(device, state)) if pending else None
        detections, errors = detect_faces(src, pending, settings, mtcnn, batch_size, is_main, journal)
    detections += [journaled[path] for path in mine if path in journaled]
    detections = gather(state, detections)
    new = plan_crops(detections, kept, settings, fallback)
    errors += write_crops(src, dst, new[new["path"].isin(set(mine))], threads)
    errors = sorted(gather(state, errors))

    report = merge(kept, new)
    if is_main:
        copied = copy_others(src, dst, others, force)
        write_report(dst, report, settings, errors)
        for stale in dst.glob(f"{JOURNAL_PREFIX}*"):  # the report now holds every detection
            stale.unlink()
        log.info(summarize(report, dst, len(detections), len(kept), copied, errors, time.perf_counter() - start))
    if state is not None:
        state.wait_for_everyone()  # no process returns before the report exists
    if errors:
        raise FaceCropError(error_message(errors, dst))
    return report


def crop_cache_dir(src: str | Path, settings: CropSettings, cache_root: str | Path,
                   fallback: dict | None = None, follow_symlinks: bool = False) -> Path:
    """The folder under `cache_root` that holds the crops of `src` for `settings`.

    Its name hashes the resolved source path, every visible source file (relative path, size, mtime) and the
    settings, so a changed image, table or setting gets a fresh folder instead of stale crops.
    """
    src, cache_root = Path(src).resolve(), Path(cache_root).resolve()
    images, others = walk_source(src, skip=cache_root, follow_symlinks=follow_symlinks)
    extra = [FORMAT_VERSION, str(src), asdict(settings)] + ([fallback] if fallback is not None else [])
    key = fingerprint((src / rel for rel in sorted(images + others)), extra, 16)
    return cache_root / f"facecrop-{key}"


def ensure_face_crops(src: str | Path, settings: CropSettings, cache_root: str | Path, state=None,
                      fallback: dict | None = None, follow_symlinks: bool = False) -> Path:
    """The crop folder of `src` (`crop_cache_dir`), built first when it lacks a completion marker.

    Without `state` the calling process does all the work: call it inside `accelerator.main_process_first()` so the
    main process builds and the others find the marker. With `state`, every process must call it together (never
    inside `main_process_first`, which would deadlock) and the work is split across them.

    Raises:
        FaceCropError: some source images are unreadable (the folder keeps the others but is not marked complete).
    """
    target = crop_cache_dir(src, settings, cache_root, fallback, follow_symlinks)
    if not is_complete(target):
        crop_faces(src, target, settings, state=state, fallback=fallback, follow_symlinks=follow_symlinks)
    return target


def is_complete(dst: Path) -> bool:
    """True when a run finished in `dst` without errors."""
    try:
        return bool(json.loads((dst / META_NAME).read_text())["complete"])
    except (OSError, ValueError, KeyError):
        return False


def gather(state, items: list) -> list:
    """`items` of every process, concatenated (the items themselves without a distributed state)."""
    if state is None or state.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)
