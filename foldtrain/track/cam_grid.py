"""Grad-CAM pictures: each image beside its map laid over it, titled with the true and predicted class."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pytorch_grad_cam.utils.image import show_cam_on_image

from foldtrain.track.report import new_figure, save_figure

COLUMNS = 4  # image pairs per row


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """A uint8 HxWx3 image with its [0, 1] map as a heat overlay."""
    return show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True)


def draw_cam_grid(images: np.ndarray, cams: np.ndarray, labels: np.ndarray, preds: np.ndarray, classes: list[str],
                  path: str | Path, title: str) -> None:
    """Up to len(images) pairs (image, overlay) in rows of four; a wrong prediction's title is red."""
    count = len(images)
    rows = max(1, math.ceil(count / COLUMNS))
    fig = new_figure(COLUMNS * 4.2, rows * 2.4 + 0.6)
    axes = np.atleast_2d(fig.subplots(rows, COLUMNS * 2))
    for ax in axes.flat:
        ax.axis("off")
    for i in range(count):
        left, right = axes[i // COLUMNS, 2 * (i % COLUMNS)], axes[i // COLUMNS, 2 * (i % COLUMNS) + 1]
        left.imshow(images[i])
        right.imshow(overlay(images[i], cams[i]))
        known = labels[i] >= 0
        right_answer = known and labels[i] == preds[i]
        truth = f"true {classes[labels[i]]}\n" if known else ""
        left.set_title(f"{truth}pred {classes[preds[i]]}", fontsize=7,
                       color="black" if right_answer or not known else "red")
        right.set_title("right" if right_answer else ("wrong" if known else ""), fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)
