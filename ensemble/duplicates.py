"""The same person under two ids: persons whose photos are near-identical pictures.

Each photo becomes a 24 x 24 greyscale thumbnail, centred and scaled to unit length; two photos are the same
picture when their thumbnails correlate at `MIN_CORRELATION` or more. Measured on the demo sets: a resized,
re-encoded (JPEG 70) or slightly cropped copy correlates at 0.995 or more, the closest photos of two different
persons at 0.93 (and a 256-bit difference hash could not tell them apart: flat synthetic backgrounds flip its
bits). The fold models' penultimate features are not used: they are trained to put one person's *different*
photos together and persons of one class near each other, so close features do not tell the same photo from a
look-alike, and they would need every model run over every photo.

Two persons are paired when at least `MIN_SHARE` of one's photos have a copy among the other's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from foldtrain.data.cache import decode_resized

THUMB_HW = (24, 24)
MIN_CORRELATION = 0.98
MIN_SHARE = 0.5


def thumbnail(path: Path) -> np.ndarray:
    """The photo as a unit-length, zero-mean greyscale 24 x 24 thumbnail (576 floats)."""
    grey = decode_resized(path, THUMB_HW).astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    flat = grey.ravel() - grey.mean()
    return flat / max(float(np.linalg.norm(flat)), 1e-6)


def duplicate_persons(thumbs: np.ndarray, persons: np.ndarray, folds: dict,
                      min_correlation: float = MIN_CORRELATION, min_share: float = MIN_SHARE,
                      chunk: int = 1024) -> pd.DataFrame:
    """`person_a, person_b, similarity, fold_a, fold_b`: pairs of persons whose photos are copies of each other.

    `similarity` is the larger of the two persons' shares of photos with a copy in the other; pairs at `min_share`
    or above are kept. Every photo is compared with every other, in chunks (n^2 dot products of 576 floats: 6 s for
    18,900 photos, the competition's count, on 2 loaded cores; making the thumbnails costs more: 1.7 ms a demo photo).
    """
    persons = np.asarray(persons)
    matched: dict[tuple, set] = {}
    for start in range(0, len(thumbs), chunk):
        rows, cols = np.nonzero(thumbs[start:start + chunk] @ thumbs.T >= min_correlation)
        for r, c in zip(rows + start, cols, strict=True):
            if persons[r] != persons[c]:
                matched.setdefault((persons[r], persons[c]), set()).add(r)  # photo r has a copy in that person
    counts = pd.Series(persons).value_counts()
    pairs: dict[tuple, float] = {}
    for (a, b), photos in matched.items():
        key = (a, b) if a < b else (b, a)
        pairs[key] = max(pairs.get(key, 0.0), len(photos) / counts[a])
    rows = [{"person_a": a, "person_b": b, "similarity": round(s, 4), "fold_a": folds.get(a), "fold_b": folds.get(b)}
            for (a, b), s in pairs.items() if s >= min_share]
    frame = pd.DataFrame(rows, columns=["person_a", "person_b", "similarity", "fold_a", "fold_b"])
    return frame.sort_values(["similarity", "person_a"], ascending=[False, True], ignore_index=True)
