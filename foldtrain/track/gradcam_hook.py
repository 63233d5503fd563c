"""`train.gradcam=N`: at the end of each fold, a Grad-CAM grid of N of its worst out-of-fold images, saved as
fold<k>/gradcam.png and logged to the fold's MLflow run."""

from __future__ import annotations

import numpy as np
import torch

from foldtrain.data.cache import open_cache
from foldtrain.data.transforms import build_eval_transform
from foldtrain.model.cam import class_maps
from foldtrain.model.fold_ensemble import FoldModel, load_fold_net
from foldtrain.model.weights import read_metadata
from foldtrain.track.cam_grid import draw_cam_grid
from foldtrain.train.checkpoint import read_val_scores, weights_at_fold_end
from foldtrain.train.metrics import log_loss_per_row


class FoldGradcam:
    """A fold-loop hook; `fold_runs` (the main process's) logs the grid, other processes only write it."""

    def __init__(self, count: int, data, fold_runs=None):
        self.count, self.data, self.fold_runs = count, data, fold_runs

    def fold_started(self, spec, progress) -> None:
        """Nothing to do before the fold."""

    def epoch_ended(self, spec, progress) -> None:
        """Nothing to do per epoch."""

    def fold_ended(self, spec, progress, result: dict) -> None:
        if spec.fold < 0 or not result:
            return
        path = draw_fold_grid(spec.out_dir, self.data, self.count, result)
        if self.fold_runs is not None:
            self.fold_runs.log_artifact(str(spec.fold), path)


def draw_fold_grid(fold_dir, data, count: int, result: dict):
    """fold<k>/gradcam.png of the `count` validation images the kept weights got most wrong."""
    rows, scores = read_val_scores(fold_dir)
    weights, epoch = weights_at_fold_end(fold_dir, result)
    labels = data.frame["label"].to_numpy()[rows]
    worst = np.argsort(-log_loss_per_row(scores[epoch], labels), kind="stable")[:count]
    fold = FoldModel(f"fold {result['fold']}", weights, read_metadata(weights))
    resize = build_eval_transform(fold.size_hw)
    cache = open_cache(data.cache_path)
    views = torch.stack([resize(torch.from_numpy(np.array(cache[r])).permute(2, 0, 1)) for r in rows[worst]])
    net, heads, normalize = load_fold_net(fold, torch.device("cpu"))
    maps, preds = class_maps(net, heads, normalize(views))
    path = fold_dir / "gradcam.png"
    draw_cam_grid(views.permute(0, 2, 3, 1).numpy(), maps, labels[worst], preds, data.classes, path,
                  f"{fold.name}: Grad-CAM of its {len(worst)} worst out-of-fold images")
    return path
