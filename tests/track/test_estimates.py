"""The honest estimate: choosing each fold's epoch on its own validation rows is optimistic; choosing it from the
other folds is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from foldtrain.data.prepare import PreparedData
from foldtrain.run.folder import RunFolder
from foldtrain.track.estimates import estimates, oof_table, rule_epochs


def noisy_run(tmp_path: Path, folds: int = 5, epochs: int = 12, rows: int = 200, classes: int = 6, seed: int = 0):
    """Every epoch's validation scores are fresh noise: no epoch is better than another in truth."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows * folds)
    frame = pd.DataFrame({"path": [f"img{i}.png" for i in range(rows * folds)], "person": range(rows * folds),
                          "label": labels, "fold": np.repeat(np.arange(folds), rows)})
    folder = RunFolder(tmp_path / "run")
    results = {}
    for fold in range(folds):
        fold_rows = np.flatnonzero(frame["fold"] == fold)
        scores = rng.normal(0, 1, (epochs, rows, classes)).astype(np.float32)
        (folder.fold(fold)).mkdir(parents=True)
        np.savez(folder.fold(fold) / "val_scores.npz", rows=fold_rows, scores=scores)
        f1s = [((s.argmax(1) == labels[fold_rows]).mean()) for s in scores]
        results[fold] = {"best_epoch": int(np.argmax(f1s)), "epochs_run": epochs, "checkpoint_epoch": None}
    data = PreparedData(tmp_path, frame, [str(c) for c in range(classes)], "csv", tmp_path / "none.npy", (8, 8))
    return data, folder, results


def test_best_epoch_oof_is_optimistic_and_the_honest_one_is_not(tmp_path: Path):
    gaps = []
    for seed in range(4):
        data, folder, results = noisy_run(tmp_path / str(seed), seed=seed)
        found = estimates(data, folder, results)
        gaps.append(found["oof_f1_best"] - found["oof_f1_honest"])
        assert abs(found["oof_f1_honest"] - 1 / 6) < 0.03  # chance, as on unseen data
    assert np.mean(gaps) > 0.01 and min(gaps) > 0


def test_oof_table_reads_each_fold_at_its_epoch(tmp_path: Path):
    data, folder, results = noisy_run(tmp_path, folds=3, epochs=4, rows=10)
    epochs = {0: 1, 1: 3, 2: 0}
    table = oof_table(data, folder, epochs)
    assert len(table) == 30 and table["path"].is_unique
    with np.load(folder.fold(1) / "val_scores.npz") as saved:
        first = table.set_index("path").loc[data.frame["path"][saved["rows"][0]]]
        assert np.allclose(first[[f"logit_{i}" for i in range(6)]].to_numpy(float), saved["scores"][3][0])
    assert rule_epochs(results, "last") == {0: 3, 1: 3, 2: 3}
