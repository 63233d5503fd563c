"""The fold ensemble as an MLflow pyfunc model, logged as "models from code": MLflow stores this file as the model's
code and the fold weights (safetensors + JSON) as its artifacts, so nothing is pickled.

Input: a DataFrame with a column `image` of base64-encoded image files (JPEG, PNG, ...). Output: a DataFrame with
`class` (int), `label` (the class name) and `prob_<i>` per class. The preprocessing and TTA are those of
`ensemble.predict` (same decode, resize and fold x TTA average), so both give the same classes for the same file.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from foldtrain.data.eval_set import input_view
from foldtrain.data.images import DEFAULT_PIXEL_BUDGET, ImageReadError, set_pixel_budget
from foldtrain.model.fold_ensemble import FoldEnsemble, FoldModel
from foldtrain.model.weights import read_metadata

SETTINGS = "served.json"  # the TTA policy and the fold files, beside config.yaml in the artifact folder
BATCH = 32


def load_ensemble(folder: Path, device: torch.device | None = None) -> tuple[FoldEnsemble, dict]:
    """The fold ensemble stored in an artifact folder written by `track.model_logging.stage_artifacts`."""
    settings = json.loads((folder / SETTINGS).read_text())
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = [FoldModel(name, folder / file, read_metadata(folder / file, f"{name} weights"))
              for name, file in settings["folds"].items()]
    return FoldEnsemble(models, settings["tta"], device), settings


def decode_column(images: pd.Series) -> list[bytes]:
    """base64 strings (or raw bytes) of image files as bytes; a value that is neither is named by its row."""
    out = []
    for row, value in enumerate(images):
        if isinstance(value, bytes | bytearray):
            out.append(bytes(value))
            continue
        try:
            out.append(base64.b64decode(str(value), validate=True))
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"row {row} of column 'image' is not base64-encoded image bytes ({err})") from err
    return out


class FoldEnsemblePyfunc(PythonModel):
    """`load_context` reads the artifacts, `predict` scores a DataFrame of base64 images."""

    def load_context(self, context) -> None:
        folder = Path(context.artifacts["ensemble"])
        self.ensemble, settings = load_ensemble(folder)
        self.crop = settings.get("face_crop")
        self.max_rows = int(settings.get("max_rows", 256))
        set_pixel_budget(int(settings.get("max_pixels", DEFAULT_PIXEL_BUDGET)))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if "image" not in model_input.columns:
            raise ValueError("the input needs a column 'image' of base64-encoded image files")
        if len(model_input) > self.max_rows:
            raise ValueError(f"{len(model_input)} rows in one request; this model takes at most {self.max_rows} "
                             f"(mlflow.model_max_rows): send smaller batches")
        if len(model_input) == 0:
            return self.answer(np.zeros((0, len(self.ensemble.classes))))
        files = decode_column(model_input["image"])
        try:
            if self.crop is not None:
                from foldtrain.facecrop.single import crop_images  # MTCNN, only for runs trained on face crops

                files = crop_images(files, self.crop)
            tensors = [input_view(data, self.ensemble.size_hw, name=f"row {row} of column 'image'")
                       for row, data in enumerate(files)]
        except ImageReadError as err:  # a bad or oversized image is the caller's input error
            raise ValueError(str(err)) from err
        scores = torch.cat([self.ensemble(torch.stack(tensors[i:i + BATCH])) for i in range(0, len(tensors), BATCH)])
        return self.answer(torch.softmax(scores.double(), dim=1).numpy())

    def answer(self, probs: np.ndarray) -> pd.DataFrame:
        """`class`, `label` and `prob_<i>` of each row's class probabilities."""
        classes = self.ensemble.classes
        frame = pd.DataFrame({"class": probs.argmax(1).astype(np.int64)})
        frame["label"] = [classes[i] for i in frame["class"]]
        for i in range(len(classes)):
            frame[f"prob_{i}"] = probs[:, i]
        return frame
