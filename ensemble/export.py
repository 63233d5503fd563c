"""A run's fold x TTA ensemble (or one of its models) as one ONNX file, checked against PyTorch with onnxruntime:
`python -m ensemble.export --run RUN [--out FILE.onnx] [--tta none|hflip|...] [--fold K|full] [--opset N]`.

The graph takes `images`: uint8, N x 3 x H x W (RGB at the run's image size, decoded and resized exactly as
`ensemble.predict` does: `foldtrain.data.eval_set.input_view`), N dynamic. Inside it: the normalisation, every TTA
view of a batch stacked into one forward pass per fold model, the mean over views and folds. Outputs: `scores`
(N x classes, the mean class scores `ensemble.predict` takes the argmax of) and `probs` (their softmax, the
served model's `prob_<i>`). The run's config, classes, size and views are stored in the file's metadata
(`foldtrain`), so `ensemble.predict --onnx FILE` prepares eval images without the run folder.

The export is checked on the run's own eval images (or training images when it has none) at batch sizes 1 and 64:
the largest |probability difference| against the PyTorch ensemble is printed, and above `--tolerance` the file is
refused (deleted) with that figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from foldtrain.errors import EXPECTED
from foldtrain.files import atomic_path
from foldtrain.model.fold_ensemble import FoldEnsemble, FoldModel, full_model, run_fold_models
from foldtrain.model.weights import read_metadata
from foldtrain.run.folder import RunFolder
from foldtrain.run.process import LOG_DATEFMT, LOG_FORMAT
from foldtrain.user_error import UserError

log = logging.getLogger("ensemble")
METADATA_KEY = "foldtrain"
TOLERANCE = 1e-4
CHECK_BATCHES = (1, 64)


class ExportableEnsemble(torch.nn.Module):
    """The fold ensemble as one module for tracing: uint8 images -> (mean class scores, their softmax)."""

    def __init__(self, ensemble: FoldEnsemble):
        super().__init__()
        self.scorers = torch.nn.ModuleList(ensemble.scorers)
        for scorer in self.scorers:
            scorer.tta.max_views_per_pass = len(scorer.tta.transforms)  # every view of a batch in one pass

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = self.scorers[0](images).float()
        for scorer in self.scorers[1:]:
            total = total + scorer(images).float()
        scores = total / len(self.scorers)
        return scores, torch.softmax(scores, dim=1)


def choose_models(folder: RunFolder, fold: str | None) -> list[FoldModel]:
    """Every fold model (default), one fold (`K`), or the all-data model (`full`)."""
    if fold is None:
        return run_fold_models(folder)
    if fold == "full":
        return [full_model(folder)]
    if not fold.isdigit() or int(fold) not in folder.trained_folds():
        raise UserError(f"--fold {fold}: {folder.path} trained folds {folder.trained_folds()}; give one of them or "
                        f"full")
    path, name = folder.weights(int(fold)), f"fold {fold}"
    return [FoldModel(name, path, read_metadata(path, f"{name} weights"))]


def export_onnx(ensemble: FoldEnsemble, out: Path, opset: int, metadata: dict) -> Path:
    """Trace the ensemble (CPU, fp32) into `out` with a dynamic batch size and `metadata` under `foldtrain`."""
    import onnx

    module = ExportableEnsemble(ensemble).eval()
    example = torch.zeros((2, 3, *ensemble.size_hw), dtype=torch.uint8)
    with atomic_path(out, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter, deprecated since torch 2.9: the torch.export-based one (dynamo=True, torch 2.14)
        # fixed the batch axis of this graph at the example's size (the views are split back by chunking), so a
        # batch of 1 was refused. Its tracer's warning about the views' shape test is moot: those shapes follow
        # height and width, which the graph fixes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(tmp), input_names=["images"], output_names=["scores", "probs"],
                          dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}, "probs": {0: "batch"}},
                          opset_version=opset, dynamo=False)
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
        onnx.save(model, str(tmp))
    return out


def session(path: Path):
    """An onnxruntime CPU session of an exported file."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_export_metadata(path: Path) -> dict:
    """The `foldtrain` metadata of an exported file; a file without it was not written by ensemble.export."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one line
        raise UserError(f"{path} is not a readable ONNX file ({type(err).__name__}); export one with "
                        f"`python -m ensemble.export --run RUN`") from err
    found = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in found:
        raise UserError(f"{path} has no foldtrain metadata: it was not written by ensemble.export, so its "
                        f"preprocessing is unknown")
    return json.loads(found[METADATA_KEY])


def onnx_scores(path: Path, data_dir: Path | None, batch_size: int = 64,
                workers: int | None = None) -> tuple[object, np.ndarray, list[str]]:
    """(eval table, class scores, class names) of an exported file on an eval folder (default: its run's
    `data.root/eval`), the images prepared from the config stored in the file, as `ensemble.predict` prepares them."""
    import tempfile

    from foldtrain.config import build_config
    from foldtrain.data.eval_set import eval_loader
    from foldtrain.data.images import set_pixel_budget

    meta = read_export_metadata(path)
    with tempfile.TemporaryDirectory(prefix="foldtrain-onnx-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(meta["config"])
        cfg = build_config([config])
    set_pixel_budget(cfg.data.max_pixels)
    fallback = None
    if cfg.data.face_crop:  # the crop of a photo without a face is the run's, kept in its folder
        fallback = RunFolder(meta["run"]).face_fallback()
    data_dir = Path(data_dir) if data_dir else Path(cfg.data.root) / "eval"
    table, loader = eval_loader(cfg, data_dir, tuple(meta["image_size"]), batch_size, workers, face_fallback=fallback)
    runner = session(path)
    scores = [runner.run(["scores"], {"images": batch[0].numpy()})[0] for batch in loader]
    return table, np.concatenate(scores), meta["classes"]


def max_prob_difference(ensemble: FoldEnsemble, exported: Path, images: torch.Tensor) -> float:
    """The largest |probability difference| between the PyTorch ensemble and the exported file on `images`."""
    with torch.no_grad():
        expected = torch.softmax(ensemble(images).double(), dim=1).numpy()
    got = session(exported).run(["probs"], {"images": images.numpy()})[0]
    return float(np.abs(got.astype(np.float64) - expected).max())


def check_images(folder: RunFolder, cfg, size_hw: tuple[int, int], count: int) -> torch.Tensor:
    """Up to `count` of the run's eval images (else its training images) as the model takes them."""
    from foldtrain.data.eval_set import input_view
    from foldtrain.data.tables import read_eval

    root = Path(cfg.data.root)
    try:
        paths = [Path(p) for p in read_eval(root / "eval", cfg.data.follow_symlinks)["path"]][:count]
    except EXPECTED:
        paths = []
    if not paths:
        import pandas as pd

        paths = [root / p for p in pd.read_csv(folder.folds_file)["path"].head(count)]
    return torch.stack([input_view(p, size_hw) for p in paths])


def log_to_mlflow(folder: RunFolder, path: Path, name: str) -> str | None:
    """The exported file as an MLflow ONNX model on the run's parent, beside its pyfunc fold ensemble (best effort:
    a tracking failure is a warning, the file stands); its model URI, or None."""
    tracking = folder.tracking()
    if not tracking.get("parent_id"):
        return None
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        import mlflow
        import mlflow.onnx
        import onnx

        mlflow.set_tracking_uri(tracking.get("tracking_uri"))
        with mlflow.start_run(run_id=tracking["parent_id"]):
            info = mlflow.onnx.log_model(onnx.load(str(path)), name=f"{name}_onnx")
        return info.model_uri
    except Exception as err:  # noqa: BLE001 - the export is complete without its MLflow copy
        log.warning("the ONNX file was not logged to MLflow (%s: %s); it is complete in %s", type(err).__name__,
                    str(err).splitlines()[0] if str(err) else "", path)
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ensemble.export", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder")
    parser.add_argument("--out", type=Path, help="the ONNX file (default: RUN/ensemble.onnx, RUN/fold<K>.onnx)")
    parser.add_argument("--tta", choices=("none", "hflip", "vflip", "flips", "d4"), default="hflip",
                        help="TTA views inside the graph (default: hflip, as ensemble.predict)")
    parser.add_argument("--fold", help="export one model: a fold number, or full for the cv.full_fit model")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="largest |probability difference| against PyTorch accepted (default 1e-4)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    from ensemble.predict import run_config

    try:
        folder = RunFolder(args.run)
        cfg = run_config(folder)
        models = choose_models(folder, args.fold)
        ensemble = FoldEnsemble(models, args.tta, torch.device("cpu"))
        name = "ensemble" if args.fold is None else ("full" if args.fold == "full" else f"fold{args.fold}")
        out = args.out or folder / f"{name}.onnx"
        metadata = {"run": str(folder.path.resolve()), "models": [m.name for m in models], "tta": args.tta,
                    "image_size": list(ensemble.size_hw), "classes": ensemble.classes,
                    "input": "uint8 N x 3 x H x W RGB, resized as ensemble.predict resizes",
                    "config": folder.config_file.read_text()}
        export_onnx(ensemble, out, args.opset, metadata)
        images = check_images(folder, cfg, ensemble.size_hw, max(CHECK_BATCHES))
        worst = max(max_prob_difference(ensemble, out, images[:n]) for n in CHECK_BATCHES)
        if not worst <= args.tolerance:
            out.unlink(missing_ok=True)
            raise UserError(f"the exported graph differs from the PyTorch ensemble by up to {worst:.2e} in "
                            f"probability (tolerance {args.tolerance:g}); the file was not kept. Try another --opset")
    except EXPECTED as err:
        print(f"ensemble.export: error: {err}", file=sys.stderr)
        return 1
    log.info("exported %s x %s TTA to %s; onnxruntime matches PyTorch within %.1e in probability at batch sizes %s",
             ", ".join(m.name for m in models), args.tta, out, worst, list(CHECK_BATCHES))
    uri = log_to_mlflow(folder, out, name)
    if uri:
        log.info("logged to MLflow as %s (an ONNX model on the run's parent)", uri)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
