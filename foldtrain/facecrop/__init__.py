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

from foldtrain.facecrop.crop import crop_cache_dir, crop_faces, ensure_face_crops, is_complete
from foldtrain.facecrop.settings import CropSettings, FaceCropError

__all__ = ["CropSettings", "FaceCropError", "crop_cache_dir", "crop_faces", "ensure_face_crops", "is_complete"]
