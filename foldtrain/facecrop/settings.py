"""Face-crop settings, names of the files a crop run writes, and its error."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from foldtrain.data.images import ImageReadError

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


def from_config(section) -> CropSettings:
    """The settings of a config's `facecrop` section: training, prediction and the CLI share them."""
    return CropSettings(margins=tuple(section.margins), scale_margins=section.scale_margins,
                        fallback_scale=section.fallback_scale, min_prob=section.min_prob,
                        detect_size=section.detect_size)


def settings_key(settings: CropSettings) -> str:
    """A short hash of the settings and the crop geometry's version."""
    return hashlib.sha256(json.dumps([FORMAT_VERSION, asdict(settings)], sort_keys=True).encode()).hexdigest()[:12]
