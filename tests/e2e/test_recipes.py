"""Recipe switches and data formats end to end through the real CLIs."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import accelerate_launch, run_module

pytestmark = pytest.mark.slow

TINY = ["model.name=resnet10t", "data.image_size=32", "train.batch_size=16", "data.num_workers=0"]


def test_seeds_style_recipe(demo_root: Path, tmp_path: Path):
    persons = pd.read_csv(demo_root / "train" / "train.csv", dtype={"id": str})
    male = persons[persons["gender"] == "male"].iloc[0]
    fixes = tmp_path / "fixes.csv"
    pd.DataFrame({"id": [male["id"]], "fix": ["to_female"]}).to_csv(fixes, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = accelerate_launch([
        f"data.root={demo_root}", *TINY, "train.loss=focal", "aug.cutmix=0.5", "aug.cutmix_mode=band",
        "aug.vflip=0.5", "train.optimizer=radam", "train.scheduler=cosine_restarts", "train.t0=2",
        "train.early_stopping=2", "train.save_above=0.0", "model.heads=multi", f"data.label_fixes={fixes}",
        "data.age_bins=[30,58]", "cv.only=[0]", "train.epochs=3", "run.name=seeds", f"mlflow.tracking_uri={uri}",
    ], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "label fixes from" in result.stderr and "applied to 1 persons" in result.stderr
    run = tmp_path / "runs" / "seeds"
    folds = pd.read_csv(run / "folds.csv")
    fixed = folds[folds["person"] == male["path"]]
    assert len(fixed) == 7 and (fixed["gender"] == 1).all()
    late = folds[folds["age"].between(58, 59)]
    assert len(late) and (late["label"] % 3 == 2).all()
    assert len(list((run / "fold0").glob("*.safetensors"))) >= 3
    out = tmp_path / "sub.csv"
    predicted = run_module("ensemble.predict", ["--run", str(run), "--out", str(out)], cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    submission = pd.read_csv(out)
    info = pd.read_csv(demo_root / "eval" / "info.csv")
    assert submission["ImageID"].tolist() == info["ImageID"].tolist() and submission["ans"].between(0, 17).all()


def test_mixup_smoothing_onecycle_ce_f1_and_full_fit(demo_root: Path, tmp_path: Path):
    result = accelerate_launch([
        f"data.root={demo_root}", *TINY, "aug.mixup=0.5", "train.label_smoothing=0.1", "train.optimizer=adamw",
        "train.scheduler=onecycle", "train.loss=ce+f1", "train.ema=0.9", "data.normalize=dataset",
        "cv.only=[0,1]", "train.epochs=2", "cv.full_fit=true", "run.name=mix",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "runs" / "mix"
    assert (run / "full" / "model.safetensors").exists()
    # dataset statistics per fold, each on its own training rows only (the validation images play no part)
    from foldtrain.data.cache import build_cache
    from foldtrain.data.stats import dataset_stats
    from foldtrain.data.transforms import working_size
    from foldtrain.model.weights import read_metadata

    folds = pd.read_csv(run / "folds.csv")
    cache = build_cache([demo_root / p for p in folds["path"]], working_size((32, 32)), tmp_path / "runs" / ".cache")
    stats = {}
    for fold in (0, 1):
        stats[fold] = json.loads((run / f"fold{fold}" / "normalize.json").read_text())
        expected = dataset_stats(cache, np.flatnonzero(folds["fold"].to_numpy() != fold))
        assert np.allclose(stats[fold]["mean"], expected[0]) and np.allclose(stats[fold]["std"], expected[1])
        assert read_metadata(run / f"fold{fold}" / "model.safetensors")["mean"] == stats[fold]["mean"]
    assert stats[0]["mean"] != stats[1]["mean"] and not (run / "normalize.json").exists()
    out = tmp_path / "sub.csv"
    predicted = run_module("ensemble.predict", ["--run", str(run), "--out", str(out), "--include-full"], cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "x 3 folds" in predicted.stderr  # two folds and the all-data model
    alone = run_module("ensemble.predict", ["--run", str(run), "--out", str(tmp_path / "full.csv"), "--full-only",
                                            "--tta", "none"], cwd=tmp_path)
    assert alone.returncode == 0 and "x 1 folds x none TTA" in alone.stderr, alone.stderr[-3000:]


def draw_mask_set(root: Path, per_class: int = 60) -> None:
    """A with_mask/without_mask ImageFolder set: a face-coloured disc, with or without a blue lower half."""
    rng = np.random.default_rng(0)
    for name in ("with_mask", "without_mask"):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = np.full((64, 64, 3), rng.integers(0, 255, 3), dtype=np.uint8)
            yy, xx = np.mgrid[:64, :64]
            face = (yy - 32) ** 2 + (xx - 32) ** 2 < 400
            image[face] = (220, 180, 150)
            if name == "with_mask":
                image[face & (yy > 34)] = (40, 90, 200)
            Image.fromarray(image).save(folder / f"{i}.png")
        (folder / "._0.png").write_bytes(b"\x00\x05\x16\x07junk")


def test_imagefolder_three_folds(tmp_path: Path):
    draw_mask_set(tmp_path / "masks")
    result = accelerate_launch([
        f"data.root={tmp_path / 'masks'}", *TINY, "cv.folds=3", "train.epochs=2", "run.name=folder",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "runs" / "folder"
    oof = pd.read_csv(run / "oof.csv")
    assert len(oof) == 120 and set(oof["pred"]) <= {0, 1} and sorted(oof["fold"].unique()) == [0, 1, 2]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["classes"] == ["with_mask", "without_mask"] and summary["heads"] == "single"


def test_csv_format_with_groups_and_symlinked_images(tmp_path: Path):
    draw_mask_set(tmp_path / "elsewhere", per_class=20)
    (tmp_path / "data").mkdir()
    for name in ("with_mask", "without_mask"):  # the images live outside the data root
        (tmp_path / "data" / name).symlink_to(tmp_path / "elsewhere" / name)
    rows = [{"path": f"{name}/{i}.png", "label": name, "group": f"{name}-{i // 2}"}
            for name in ("with_mask", "without_mask") for i in range(20)]
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "train.csv", index=False)
    args = [f"data.root={tmp_path / 'data'}", "data.format=csv", *TINY, "cv.folds=3", "train.epochs=1",
            "run.name=csv", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "mlflow.log_model=false"]
    refused = accelerate_launch(args, cwd=tmp_path)
    assert refused.returncode != 0 and "data.follow_symlinks=true" in refused.stderr
    result = accelerate_launch([*args, "data.follow_symlinks=true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    folds = pd.read_csv(tmp_path / "runs" / "csv" / "folds.csv")
    assert (folds.groupby("person")["fold"].nunique() == 1).all() and len(folds) == 40
    summary = json.loads((tmp_path / "runs" / "csv" / "summary.json").read_text())
    assert "model_uri" not in summary  # mlflow.log_model=false


def test_face_crop_training_and_prediction(demo_root: Path, tmp_path: Path):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    # a photo without a face: it must be cut with the training images' fallback crop by predict and the served model
    Image.fromarray(np.full((512, 384, 3), 128, np.uint8)).save(root / "eval" / "images" / "faceless.jpg")
    info = pd.read_csv(root / "eval" / "info.csv")
    pd.concat([info, pd.DataFrame({"ImageID": ["faceless.jpg"], "ans": [0]})]).to_csv(root / "eval" / "info.csv",
                                                                                      index=False)
    result = accelerate_launch([
        f"data.root={root}", *TINY, "data.face_crop=true", "cv.only=[0]", "train.epochs=1", "run.name=faces",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "facecrop.margins=[20,50,20,20]",
        "facecrop.scale_margins=true", "facecrop.detect_size=192", "facecrop.min_prob=0.8",
        "facecrop.fallback_scale=1.3",
    ], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "using face crops of" in result.stderr
    crops = list((tmp_path / "runs" / ".cache" / "faces").glob("facecrop-*/facecrop.csv"))
    assert len(crops) == 1 and pd.read_csv(crops[0])["path"].str.startswith("train/").sum() == 7 * 20
    settings = json.loads((crops[0].parent / "facecrop.json").read_text())["settings"]
    assert settings == {"margins": [20, 50, 20, 20], "scale_margins": True, "fallback_scale": 1.3, "min_prob": 0.8,
                        "detect_size": 192}
    run = tmp_path / "runs" / "faces"
    fallback = json.loads((run / "face_fallback.json").read_text())
    report = pd.read_csv(crops[0])
    assert report["detected"].any() and fallback["centre"] is not None  # learnt from the training faces
    predicted = run_module("ensemble.predict", ["--run", str(run)], cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    eval_crops = [p for p in (tmp_path / "runs" / ".cache" / "faces").glob("facecrop-*/facecrop.csv") if p != crops[0]]
    assert len(eval_crops) == 1
    eval_report = pd.read_csv(eval_crops[0]).set_index("path")
    assert not eval_report.loc["images/faceless.jpg", "detected"]
    # the faceless photo was cut with the training fallback, not one learnt from the eval photos
    width, height = fallback["size"]
    box = eval_report.loc["images/faceless.jpg", ["x1", "y1", "x2", "y2"]].to_numpy()
    assert abs((box[2] - box[0]) - min(width, 384)) <= 1 and abs((box[3] - box[1]) - min(height, 512)) <= 1

    import mlflow.pyfunc

    summary = json.loads((run / "summary.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    info = pd.read_csv(root / "eval" / "info.csv")
    images = [base64.b64encode((root / "eval" / "images" / i).read_bytes()).decode() for i in info["ImageID"]]
    served = model.predict(pd.DataFrame({"image": images}))
    expected = pd.read_csv(run / "submission.csv").set_index("ImageID").loc[info["ImageID"], "ans"]
    assert served["class"].tolist() == expected.tolist()


def test_every_other_switch_in_one_run(demo_root: Path, tmp_path: Path):
    """Fine-tuning the head of a file's weights, with accumulation, clipping, compile, the honest checkpoint rule (and
    a Grad-CAM grid per fold under it), the remaining augmentations, system metrics and a flips-TTA model."""
    import torch
    from safetensors.torch import load_file, save_file

    from foldtrain.model.factory import build_model

    pretrained = tmp_path / "pretrained.safetensors"
    save_file(build_model("resnet10t", 8).state_dict(), str(pretrained))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = accelerate_launch([
        f"data.root={demo_root}", *TINY, "cv.folds=3", "cv.only=[0,1]", "train.epochs=3", "run.name=all",
        f"model.pretrained_file={pretrained}", "model.freeze_backbone=true", "model.drop_rate=0.2",
        "model.drop_path_rate=0.1", "train.weight_decay=0.01", "train.warmup_epochs=0", "train.scheduler=onecycle",
        "train.max_lr=0.01", "train.grad_accum=2", "train.clip_grad=1.0", "train.class_weights=balanced",
        "train.checkpoint=honest", "train.gradcam=2", "train.compile=true", "train.seed=7", "aug.hflip=0.3",
        "aug.color_jitter=0.2", "aug.auto_augment=rand-m5-mstd0.5", "aug.random_erasing=0.25", "mlflow.model_tta=flips",
        "mlflow.system_metrics=true", f"mlflow.tracking_uri={uri}",
    ], cwd=tmp_path, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1")
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "runs" / "all"
    source = load_file(str(pretrained))
    for fold in (0, 1):
        outcome = json.loads((run / f"fold{fold}" / "result.json").read_text())
        assert outcome["checkpoint"] == "honest" and outcome["checkpoint_epoch"] is not None
        assert not (run / f"fold{fold}" / "epochs").exists()
        assert (run / f"fold{fold}" / "gradcam.png").stat().st_size > 1000  # drawn before the honest epoch is chosen
        kept = load_file(str(run / f"fold{fold}" / "model.safetensors"))
        assert torch.equal(kept["conv1.0.weight"], source["conv1.0.weight"])  # the frozen backbone never moved
        assert not torch.equal(kept["fc.weight"], source["fc.weight"])  # the head did
    summary = json.loads((run / "summary.json").read_text())
    assert summary["effective_batch_size"] == 32 and summary["checkpoint"] == "honest"
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(json.loads((run / "tracking.json").read_text())["parent_id"])
    assert any(name.startswith("system/") for name in parent.data.metrics)
    downloaded = Path(client.download_artifacts(parent.info.run_id, "", str(tmp_path / "mlflow-download")))
    # the parent's artifacts are reachable and are the run folder's files
    assert json.loads((downloaded / "summary.json").read_text()) == summary
    assert (downloaded / "oof.csv").read_bytes() == (run / "oof.csv").read_bytes()
    served = json.loads(next((Path(uri[len("sqlite:///"):]).parent / "mlartifacts").rglob("served.json")).read_text())
    assert served["tta"] == "flips" and set(served["folds"]) == {"fold 0", "fold 1"}
