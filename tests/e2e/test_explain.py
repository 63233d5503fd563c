"""Grad-CAM end to end on a set where the answer is known: the class is the colour of a square placed in a random
quadrant of a noisy image, so a model that learned the task must look at the square's quadrant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import run_main, run_module

pytestmark = pytest.mark.slow

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def draw_squares(root: Path, per_class: int = 60, size: int = 128, seed: int = 0) -> None:
    """ImageFolder `root/<colour>/<i>_q<quadrant>.png`: uniform noise with one square of the class's colour."""
    rng = np.random.default_rng(seed)
    half = size // 2
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
            quadrant, side = int(rng.integers(4)), int(rng.integers(half * 9 // 16, half * 13 // 16))
            top = (quadrant // 2) * half + int(rng.integers(0, half - side + 1))
            left = (quadrant % 2) * half + int(rng.integers(0, half - side + 1))
            image[top:top + side, left:left + side] = colour
            Image.fromarray(image).save(root / name / f"{i:03d}_q{quadrant}.png")


def quadrant_share(path: str, cam: np.ndarray) -> float:
    quadrant = int(path.split("_q")[1][0])
    h, w = cam.shape
    rows = slice((quadrant // 2) * h // 2, (quadrant // 2 + 1) * h // 2)
    inside = cam[rows, (quadrant % 2) * w // 2:(quadrant % 2 + 1) * w // 2]
    return float(inside.sum() / max(cam.sum(), 1e-9))


def test_maps_sit_on_the_square(tmp_path: Path):
    draw_squares(tmp_path / "squares")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trained = run_main([f"data.root={tmp_path / 'squares'}", "model.name=resnet10t", "data.image_size=128",
                        "cv.folds=3", "train.epochs=4", "train.gradcam=4", "run.name=sq", f"mlflow.tracking_uri={uri}"],
                       cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = tmp_path / "runs" / "sq"
    assert all((run / f"fold{k}" / "gradcam.png").stat().st_size > 1000 for k in range(3))

    out = tmp_path / "cams"
    explained = run_module("ensemble.explain", ["--run", str(run), "--n", "48", "--out", str(out)], cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr[-3000:]
    with np.load(out / "cams.npz", allow_pickle=False) as found:
        paths, cams, folds = found["paths"], found["cams"], found["folds"]
        assert len(cams) >= 24 and cams.shape[1:] == (128, 128) and set(folds) == {0, 1, 2}
        assert cams.min() >= 0 and cams.max() <= 1 and (found["labels"] >= 0).all()
        assert np.mean([quadrant_share(p, c) for p, c in zip(paths, cams, strict=True)]) >= 0.5  # chance: 0.25
    split = {p: f for p, f in zip(*np.loadtxt(run / "folds.csv", dtype=str, delimiter=",", skiprows=1,
                                                 usecols=(0, 3), unpack=True), strict=True)}
    assert all(split[p] == str(f) for p, f in zip(paths, folds, strict=True))  # only its own out-of-fold images
    assert (out / "gradcam.png").stat().st_size > 1000 and (out / "fold0.png").is_file()

    tracking = json.loads((run / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    assert "gradcam/gradcam.png" in {a.path for a in client.list_artifacts(tracking["parent_id"], "gradcam")}
    fold_run = tracking["children"]["0"]
    assert {"gradcam.png", "gradcam/fold0.png"} <= {a.path for a in client.list_artifacts(fold_run)} | {
        a.path for a in client.list_artifacts(fold_run, "gradcam")}


def test_eval_images_are_explained_by_every_fold(tmp_path: Path, demo_root: Path):
    trained = run_main([f"data.root={demo_root}", "data.image_size=64", "cv.folds=3", "train.epochs=1",
                        "data.num_workers=0", "run.name=masks", f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"],
                       cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "runs" / "masks" / "cams-eval"  # the default --out: nothing lands in the working folder
    explained = run_module("ensemble.explain", ["--run", str(tmp_path / "runs" / "masks"), "--data",
                                                str(demo_root / "eval"), "--n", "5", "--head", "mask"], cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.db", "mlartifacts", "runs"]
    submission = tmp_path / "sub.csv"
    predicted = run_module("ensemble.predict", ["--run", str(tmp_path / "runs" / "masks"), "--data",
                                                str(demo_root / "eval"), "--out", str(submission)], cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    answers = pd.read_csv(submission).set_index("ImageID")["ans"]
    with np.load(out / "cams.npz", allow_pickle=False) as found:
        assert found["cams"].shape == (5, 64, 64) and str(found["tta"]) == "hflip"
        # the mask head of the class ensemble.predict writes, not fold 0's single-view guess
        assert (found["preds"] == answers.loc[found["paths"]].to_numpy() // 6).all()
        assert (found["labels"] == -1).all() and (found["folds"] == -1).all()
    assert (out / "eval.png").stat().st_size > 1000 and "TTA hflip" in explained.stderr
    whole = run_module("ensemble.explain", ["--run", str(tmp_path / "runs" / "masks"), "--data",
                                            str(demo_root / "eval"), "--n", "12", "--out", str(tmp_path / "all")],
                       cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    with np.load(tmp_path / "all" / "cams.npz", allow_pickle=False) as found:
        assert (found["preds"] == answers.loc[found["paths"]].to_numpy()).all()
