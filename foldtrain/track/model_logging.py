"""Logging a run's fold ensemble as one MLflow model: artifacts staged from the run folder, the model's code from
`served_model_code.py`, the foldtrain package as code path, a signature and an input example; optionally registered.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from foldtrain.config import Config, dump
from foldtrain.data.prepare import PreparedData
from foldtrain.run.folder import CONFIG, RunFolder
from foldtrain.track import served_model
from foldtrain.track.mlflow_tracker import MLflowTracker
from foldtrain.track.register import describe, label_version, score_tags

log = logging.getLogger(__name__)
PACKAGE = Path(__file__).resolve().parents[1]
# What the model's code imports, pinned to the versions it was logged with.
REQUIREMENTS = ("torch", "torchvision", "timm", "ttach", "safetensors", "numpy", "pandas", "pillow", "pyyaml",
                "scikit-learn", "accelerate", "tqdm", "mlflow")


def requirements(face_crop: bool) -> list[str]:
    names = [*REQUIREMENTS, *(("facenet-pytorch",) if face_crop else ())]
    return [f"{name}=={metadata.version(name)}" for name in names]


def stage_artifacts(cfg: Config, folder: RunFolder, folds: list[int], dest: Path) -> Path:
    """The model's artifact folder: each fold's weights (metadata inside), config.yaml and served.json."""
    dest.mkdir(parents=True)
    files = {}
    for fold in folds:
        name = f"fold{fold}.safetensors"
        try:
            os.link(folder.weights(fold), dest / name)  # no copy of the weights where the file system allows
        except OSError:
            shutil.copyfile(folder.weights(fold), dest / name)
        files[f"fold {fold}"] = name
    (dest / CONFIG).write_text(dump(cfg))
    face_crop = crop_geometry(cfg) | {"fallback": folder.face_fallback()} if cfg.data.face_crop else None
    (dest / served_model.SETTINGS).write_text(json.dumps({"tta": cfg.mlflow.model_tta, "folds": files,
                                                          "face_crop": face_crop, "max_pixels": cfg.data.max_pixels,
                                                          "max_rows": cfg.mlflow.model_max_rows}))
    return dest


def crop_geometry(cfg: Config) -> dict:
    """The face-crop settings the model crops with."""
    return {"margins": list(cfg.facecrop.margins), "scale_margins": cfg.facecrop.scale_margins,
            "detect_size": cfg.facecrop.detect_size, "min_prob": cfg.facecrop.min_prob,
            "fallback_scale": cfg.facecrop.fallback_scale}


def signature(classes: list[str]):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    outputs = [ColSpec("long", "class"), ColSpec("string", "label")]
    outputs += [ColSpec("double", f"prob_{i}") for i in range(len(classes))]
    return ModelSignature(inputs=Schema([ColSpec("string", "image")]), outputs=Schema(outputs))


def input_example(data: PreparedData) -> pd.DataFrame:
    """One training image, base64-encoded, as the model takes it."""
    image = data.root / data.frame["path"].iloc[0]
    return pd.DataFrame({"image": [base64.b64encode(image.read_bytes()).decode("ascii")]})


class ModelLoggingError(RuntimeError):
    """The fold ensemble could not be logged as an MLflow model; the message says why."""


@dataclass(frozen=True)
class LoggedEnsemble:
    """Where the logged fold ensemble is: its URI and id, and its registered version (name, version) if any."""

    uri: str
    model_id: str
    registered: tuple[str, str] | None = None


def log_ensemble_model(tracker: MLflowTracker, parent_id: str | None, cfg: Config, folder: RunFolder,
                       data: PreparedData, folds: list[int], summary: dict) -> LoggedEnsemble | None:
    """Log the fold ensemble on the parent run, its scores as tags (registering it as `mlflow.registered_model`
    when set, the version labelled with the run's scores and recipe); None when tracking is off.

    Raises:
        ModelLoggingError: logging failed while the store was reachable; the caller ends the parent as FAILED with
            the reason (training's results stay complete in the run folder).
    """
    if not parent_id or tracker.failed:
        return None

    def log_model() -> LoggedEnsemble:
        import mlflow
        import mlflow.pyfunc

        mlflow.set_tracking_uri(tracker.uri)
        with tempfile.TemporaryDirectory(prefix="foldtrain-model-") as tmp:
            staged = stage_artifacts(cfg, folder, folds, Path(tmp) / "ensemble")
            mlflow.start_run(run_id=parent_id)
            try:
                info = mlflow.pyfunc.log_model(
                    name="fold_ensemble", python_model=str(PACKAGE / "track" / "served_model_code.py"),
                    artifacts={"ensemble": str(staged)}, code_paths=[str(PACKAGE)], signature=signature(data.classes),
                    input_example=input_example(data), pip_requirements=requirements(cfg.data.face_crop),
                    registered_model_name=cfg.mlflow.registered_model, tags=score_tags(summary))
            finally:
                mlflow.end_run()
        registered = None
        if cfg.mlflow.registered_model:
            registered = (cfg.mlflow.registered_model, str(info.registered_model_version))
            label_version(tracker.client, *registered, summary, describe(cfg, summary))
        log.info("logged the fold ensemble as %s", info.model_uri)
        return LoggedEnsemble(info.model_uri, info.model_id, registered)

    try:
        return log_model()
    except Exception as err:  # noqa: BLE001 - any MLflow failure here is reported, never fatal to the results
        first = str(err).splitlines()[0] if str(err) else ""
        raise ModelLoggingError(f"logging the fold ensemble as an MLflow model failed ({type(err).__name__}: "
                                f"{first})") from err
