"""Face crops of single images (the served model's input), cut the way `crop_faces` cuts a data set's images.

Each image's most confident face is grown by the margins; an image without one gets the training images' fallback
crop (`settings["fallback"]`, as `ensemble.predict` cuts it), or the default box when none is given. MTCNN is built
once per process and device. The crop is re-encoded in the image's own format with the
options `crop_faces` saves with, so it decodes to the pixels a cropped data set would hold.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from foldtrain.data.images import load_rgb
from foldtrain.facecrop.detect import _detect_batch, detection_copy, make_mtcnn
from foldtrain.facecrop.geometry import fallback_box, fallback_geometry, grow_box
from foldtrain.facecrop.settings import SAVE_OPTIONS, CropSettings

_mtcnn = {}


def crop_images(files: list[bytes], settings: dict) -> list[bytes]:
    """Each encoded image cropped to its face, encoded again in its own format."""
    geometry = {k: v for k, v in settings.items() if k != "fallback"}
    crop = CropSettings(**{**geometry, "margins": tuple(geometry["margins"])})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in _mtcnn:  # building MTCNN loads its weights: once per process, not per request
        _mtcnn[device] = make_mtcnn(device)
    mtcnn = _mtcnn[device]
    fallback = settings.get("fallback")
    if fallback is not None:
        size, centre = tuple(fallback["size"]), fallback["centre"] and tuple(fallback["centre"])
    else:
        size, centre = fallback_geometry(np.zeros((0, 4)), crop.fallback_scale)
    out = []
    for row, data in enumerate(files):
        image = load_rgb(data, name=f"row {row} of column 'image'")
        small = detection_copy(image, crop.detect_size)
        found = _detect_batch(mtcnn, [(str(row), image.size, np.asarray(small))], crop.min_prob)[0]
        if found["face"] is not None:
            box = grow_box(found["face"], image.size, crop)
        else:
            box = fallback_box(image.size, size, centre)
        with Image.open(io.BytesIO(data)) as original:
            fmt = original.format or "PNG"
        buffer = io.BytesIO()
        image.crop(box).save(buffer, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
        out.append(buffer.getvalue())
    return out
