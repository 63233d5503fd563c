"""Pictures and tables a person wants to look at after a run: confusion matrix, per-class F1, learning curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from foldtrain.files import atomic_path


def new_figure(width: float, height: float):
    """A matplotlib Figure of that size in inches, for `save_figure`."""
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no display needed on training machines

    return Figure(figsize=(width, height))


def save_figure(fig, path: str | Path) -> None:
    """Render through the Agg canvas to a PNG, atomically."""
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)


def plot_confusion(matrix: np.ndarray, classes: list[str], path: str | Path, title: str) -> None:
    """Row-normalised confusion matrix with counts in the cells."""
    n = len(classes)
    fig = new_figure(max(5, 0.55 * n + 2), max(4, 0.5 * n + 1.5))
    ax = fig.subplots()
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if share[i, j] > 0.5 else "black")
    save_figure(fig, path)


def plot_per_class_f1(scores: dict[str, np.ndarray], classes: list[str], path: str | Path, title: str,
                      intervals: dict[str, np.ndarray] | None = None) -> None:
    """Horizontal bars of each class's F1, one bar per named series (a run, a blend), with error bars where
    `intervals` holds a series' (classes x 2) low and high ends."""
    fig = new_figure(7, max(3, 0.3 * len(classes) * max(1, len(scores) / 2) + 1))
    ax = fig.subplots()
    height = 0.8 / len(scores)
    for i, (name, values) in enumerate(scores.items()):
        bounds = (intervals or {}).get(name)
        errors = None if bounds is None else np.abs(np.stack([values - bounds[:, 0], bounds[:, 1] - values]))
        ax.barh(np.arange(len(classes)) + i * height, values, height=height, label=name, xerr=errors,
                error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(np.arange(len(classes)) + 0.4 - height / 2, classes, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    if len(scores) > 1:
        ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_learning_curves(curves: dict[int, pd.DataFrame], path: str | Path, title: str) -> None:
    """Validation F1 and loss per epoch for every fold and their mean, with the training loss beside them."""
    fig = new_figure(12, 3.6)
    axes = fig.subplots(1, 3)
    panels = (("val_f1", "validation macro F1"), ("val_loss", "validation loss"), ("train_loss", "training loss"))
    for ax, (column, label) in zip(axes, panels, strict=True):
        series = [c.set_index("epoch")[column] for c in curves.values() if column in c]
        for fold, values in zip(curves, series, strict=False):
            ax.plot(values.index, values.to_numpy(), alpha=0.45, linewidth=1, label=f"fold {fold}")
        if series:
            mean = pd.concat(series, axis=1).mean(axis=1)
            ax.plot(mean.index, mean.to_numpy(), color="black", linewidth=2, label="mean")
        ax.set_xlabel("epoch")
        ax.set_title(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def per_class_table(scores: np.ndarray, support: np.ndarray, classes: list[str],
                    intervals: np.ndarray | None = None) -> pd.DataFrame:
    """Per-class F1 with support (and its interval's ends when given), as a table."""
    table = pd.DataFrame({"class": classes, "f1": scores, "support": support})
    if intervals is not None:
        table["f1_low"], table["f1_high"] = intervals[:, 0], intervals[:, 1]
    return table
