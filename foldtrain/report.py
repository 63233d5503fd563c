"""Pictures and tables a person wants to look at after a CV run: confusion matrix and per-class F1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def load_matplotlib() -> None:
    """Import matplotlib's figure machinery (~0.7 s that a run needs only at its very end; see `foldtrain.main`)."""
    import matplotlib.figure  # noqa: F401


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # on first use, as in load_matplotlib

    return Figure(figsize=(width, height))


def _save(fig, path: str | Path) -> None:
    # A bare Figure renders through the Agg canvas: no pyplot state, no display needed on training machines.
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_confusion(matrix: np.ndarray, classes: list[str], path: str | Path, title: str) -> None:
    """Row-normalised confusion matrix with counts in the cells."""
    n = len(classes)
    fig = _figure(max(5, 0.55 * n + 2), max(4, 0.5 * n + 1.5))
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
    _save(fig, path)


def plot_per_class_f1(scores: np.ndarray, classes: list[str], path: str | Path, title: str) -> None:
    """Horizontal bars of each class's F1."""
    fig = _figure(6, max(3, 0.3 * len(classes) + 1))
    ax = fig.subplots()
    ax.barh(range(len(classes)), scores, color="tab:blue")
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    _save(fig, path)


def per_class_table(scores: np.ndarray, support: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Per-class F1 with support, as a table."""
    return pd.DataFrame({"class": classes, "f1": scores, "support": support})
