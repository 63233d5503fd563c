"""Pass 2's plan: the crop box of every image, from its face or, without one, from the data set's usual face."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from foldtrain.facecrop.settings import (
    BOX_COLUMNS,
    DEFAULT_CROP_SIZE,
    REFERENCE_FACE_WIDTH,
    REPORT_COLUMNS,
    CropSettings,
)


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


def fallback_of(report: pd.DataFrame, scale: float, paths=None) -> dict:
    """`{"size": [w, h], "centre": [x, y] or None}`: the fallback crop learnt from a crop report's detected rows
    (only those in `paths` when given): what a model trained on these crops should use for a photo without a face."""
    rows = report[report["detected"].astype(bool)]
    if paths is not None:
        rows = rows[rows["path"].isin(set(paths))]
    size, centre = fallback_geometry(rows[BOX_COLUMNS].to_numpy(dtype=float).reshape(-1, 4), scale)
    return {"size": [float(v) for v in size], "centre": None if centre is None else [float(v) for v in centre]}


def plan_crops(detections: list[dict], kept: pd.DataFrame, settings: CropSettings,
               fallback: dict | None = None) -> pd.DataFrame:
    """Report rows (final crop boxes) for `detections`. The fallback box is `fallback` when given (a trained model's
    own, for images it predicts), else learnt from these detections and the detected `kept` rows."""
    detections = sorted(detections, key=lambda d: d["path"])
    grown = {d["path"]: grow_box(d["face"], (d["width"], d["height"]), settings)
             for d in detections if d["face"] is not None}
    if fallback is not None:
        crop_size, centre = tuple(fallback["size"]), fallback["centre"] and tuple(fallback["centre"])
    else:
        known = np.array(list(grown.values()) + kept.loc[kept["detected"].astype(bool), BOX_COLUMNS].values.tolist(),
                         dtype=float).reshape(-1, 4)
        crop_size, centre = fallback_geometry(known, settings.fallback_scale)
    rows = []
    for d in detections:
        detected = d["path"] in grown
        box = grown[d["path"]] if detected else fallback_box((d["width"], d["height"]), crop_size, centre)
        rows.append((d["path"], detected, d["prob"], *box))
    return typed(pd.DataFrame(rows, columns=REPORT_COLUMNS))


def merge(kept: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Kept and new report rows as one table sorted by path."""
    frames = [frame for frame in (kept, new) if len(frame)]
    if not frames:
        return new
    return typed(pd.concat(frames, ignore_index=True).sort_values("path", ignore_index=True))


def typed(report: pd.DataFrame) -> pd.DataFrame:
    return report.astype({"path": str, "detected": bool, "prob": float, **dict.fromkeys(BOX_COLUMNS, int)})
