"""A run's fold models as one ensemble: class scores averaged over folds and TTA views, the same preprocessing as
validation. `ensemble.predict`, blending, explaining and the served MLflow model all predict through it."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from foldtrain.data.transforms import DeviceNormalize
from foldtrain.model.factory import build_model
from foldtrain.model.heads import Heads, heads_named
from foldtrain.model.tta import BatchedTTA, tta_transforms, views_per_pass
from foldtrain.model.weights import WeightsError, load_into, read_metadata
from foldtrain.run.folder import WEIGHTS, RunFolder

log = logging.getLogger("foldtrain")


@dataclass(frozen=True)
class FoldModel:
    """One fold's weights file and what its metadata says about them."""

    name: str
    path: Path
    meta: dict

    @property
    def size_hw(self) -> tuple[int, int]:
        return tuple(self.meta["image_size"])


def full_model(folder: RunFolder) -> FoldModel:
    """The all-data model of `cv.full_fit` alone.

    Raises:
        WeightsError: the run has none (or it is unreadable), named with what to do.
    """
    path = folder.full / WEIGHTS
    if not path.is_file():
        raise WeightsError(f"{folder.path} has no all-data model ({path} is missing): train with cv.full_fit=true, "
                           f"or predict with its folds")
    return FoldModel("full", path, read_metadata(path, "full weights"))


def run_fold_models(folder: RunFolder, include_full: bool = False, allow_missing: bool = False) -> list[FoldModel]:
    """Every fold model a finished run trained, checked to be present and readable.

    Args:
        folder: the run.
        include_full: add the all-data model of `cv.full_fit`.
        allow_missing: predict with the folds that are there, warning about the others.

    Raises:
        WeightsError: a trained fold's weights are missing or unreadable (naming each), unless `allow_missing`.
        RunFolderError: the run never finished.
    """
    wanted = [(f"fold {k}", folder.weights(k)) for k in folder.trained_folds()]
    if include_full:
        wanted.append(("full", folder.full / WEIGHTS))
    models, missing = [], []
    for name, path in wanted:
        try:
            models.append(FoldModel(name, path, read_metadata(path, f"{name} weights")))
        except WeightsError as err:
            missing.append((name, str(err)))
    if missing and (not allow_missing or not models):
        listed = "; ".join(message for _, message in missing)
        raise WeightsError(f"{folder.path} cannot predict with every fold it trained: {listed}. Retrain those folds "
                           f"(train.resume=true after deleting their folders) or pass --allow-missing-folds")
    if missing:
        log.warning("predicting WITHOUT %s (--allow-missing-folds): %s", ", ".join(n for n, _ in missing),
                    "; ".join(m for _, m in missing))
    return models


def load_fold_net(fold: FoldModel, device: torch.device) -> tuple[torch.nn.Module, Heads, DeviceNormalize]:
    """(the fold's network with its weights, in eval mode on `device`; its heads; its input normalisation)."""
    meta = fold.meta
    heads = heads_named(meta.get("heads", "single"), int(meta["num_classes"]))
    net = build_model(meta["model"], heads.outputs)
    load_into(net, fold.path, f"{fold.name} weights")
    normalize = DeviceNormalize(tuple(meta["mean"]), tuple(meta["std"])).to(device)
    return net.to(device, memory_format=torch.channels_last).eval(), heads, normalize


class FoldScorer(torch.nn.Module):
    """One fold model from its metadata and weights, mapping uint8 images to TTA-averaged class scores."""

    def __init__(self, fold: FoldModel, tta: str, device: torch.device):
        super().__init__()
        self.net, self.heads, self.normalize = load_fold_net(fold, device)
        self.tta = BatchedTTA(self.scores, tta_transforms(tta), views_per_pass(device))

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.heads.class_scores(self.net(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tta(self.normalize(images))


def autocast_for(device: torch.device):
    """bf16 autocast where the GPU supports it, fp16 on older GPUs, full precision on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


class FoldEnsemble:
    """The mean class scores of a run's fold models over TTA views.

    Args:
        models: the fold models (one run: same classes and input size).
        tta: a TTA policy name (`foldtrain.config.schema.TTA`).
        device: where to run.
    """

    def __init__(self, models: list[FoldModel], tta: str, device: torch.device):
        sizes = {m.size_hw for m in models}
        if len(sizes) != 1:
            raise WeightsError(f"fold models of one run disagree on the input size: {sorted(sizes)}")
        self.models, self.tta, self.device = models, tta, device
        self.size_hw = sizes.pop()
        self.classes = models[0].meta.get("classes") or [str(i) for i in range(int(models[0].meta["num_classes"]))]
        self.scorers = [FoldScorer(m, tta, device) for m in models]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW images at `size_hw` -> mean class scores (N x classes, float32, on the CPU)."""
        with autocast_for(self.device):
            total = sum(scorer(images).float() for scorer in self.scorers)
        return (total / len(self.scorers)).cpu()

    def predict(self, loader, description: str = "predict") -> np.ndarray:
        """Mean class scores of every image in `loader` (batches of uint8 images first), in loader order."""
        out = [self(batch[0]) for batch in tqdm(loader, desc=f"{description} x{len(self.models)} tta={self.tta}",
                                                leave=False, disable=None)]
        return torch.cat(out).numpy()
