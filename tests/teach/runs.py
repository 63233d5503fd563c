"""A finished teacher run folder written by hand: fold k always answers class (k + 1) mod 4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foldtrain.config import build_config, dump
from foldtrain.model.factory import build_model
from foldtrain.model.weights import save_weights

CLASSES = [f"c{i}" for i in range(4)]
SIZE = (32, 32)


def constant_fold_net(answer: int) -> torch.nn.Module:
    """A network whose class scores are one-hot on `answer`, whatever the image."""
    net = build_model("resnet10t", len(CLASSES))
    head = net.get_classifier()
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(answer), len(CLASSES)).float() * 10)
    return net


def teacher_run(root: Path, folds: int = 3, trained: list[int] | None = None, mean=(0.5, 0.5, 0.5),
                std=(0.25, 0.25, 0.25)) -> tuple[Path, pd.DataFrame]:
    """A finished teacher run folder whose fold k always answers class (k + 1) mod 4."""
    run = root / "teacher"
    trained = list(range(folds)) if trained is None else trained
    cfg = build_config([], [f"cv.folds={folds}", "data.root=data"])
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump(cfg))
    frame = pd.DataFrame({"path": [f"p{i}/img.jpg" for i in range(12)], "label": [i % 4 for i in range(12)],
                          "fold": [i % folds for i in range(12)]})
    frame.to_csv(run / "folds.csv", index=False)
    write_oof(run, frame["path"], frame["label"], frame["fold"], (frame["fold"] + 1) % 4, np.full(len(frame), 10.0))
    (run / "summary.json").write_text(json.dumps({"folds_trained": trained, "classes": CLASSES, "oof_f1": 0.5}))
    for k in trained:
        (run / f"fold{k}").mkdir()
        (run / f"fold{k}" / "result.json").write_text(json.dumps({"finished": True}))
        meta = {"model": "resnet10t", "num_classes": 4, "heads": "single", "classes": CLASSES,
                "image_size": list(SIZE), "mean": list(mean), "std": list(std), "fold": k}
        save_weights(constant_fold_net((k + 1) % 4).state_dict(), run / f"fold{k}" / "model.safetensors", meta)
    return run, frame


def write_oof(run: Path, paths, labels, folds, predicted, margin) -> None:
    """The teacher's oof.csv: each row's logits `margin` on its predicted class and 0 elsewhere."""
    logits = np.eye(len(CLASSES))[np.asarray(predicted)] * np.asarray(margin, dtype=float)[:, None]
    table = pd.DataFrame({"path": paths, "label": labels, "fold": folds, "pred": predicted})
    table[[f"logit_{i}" for i in range(len(CLASSES))]] = logits
    table.to_csv(run / "oof.csv", index=False)


def batch(n: int = 6) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, 3, *SIZE), dtype=np.uint8))
