"""Fold ensemble: `python -m ensemble.predict [--run DIR | --blend BLEND.json] [--data EVAL] [--tta NAME] [--out FILE]`.

Loads every fold's safetensors (nothing pickled), averages class scores over TTA views and folds with the same
preprocessing as training validation, and writes `ImageID,ans` in the order of the eval table. A run whose trained
folds are not all loadable is refused (`--allow-missing-folds` predicts with the others, and says so).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foldtrain.config import Config, build_config
from foldtrain.config.schema import TTA, RunConfig
from foldtrain.cpus import keep_freed_memory
from foldtrain.data.eval_set import eval_loader
from foldtrain.data.images import set_pixel_budget
from foldtrain.errors import EXPECTED
from foldtrain.files import staged_file, write_csv
from foldtrain.model.fold_ensemble import FoldEnsemble, full_model, run_fold_models
from foldtrain.run.folder import RunFolder, newest_run
from foldtrain.run.process import LOG_DATEFMT, LOG_FORMAT
from foldtrain.user_error import UserError

log = logging.getLogger("ensemble")


def run_config(folder: RunFolder) -> Config:
    """The config a run was trained with; its `data.max_pixels` bounds every decode of this process."""
    cfg = build_config([folder.config_file])
    set_pixel_budget(cfg.data.max_pixels)
    return cfg


def run_scores(folder: RunFolder, data_dir: Path | None, tta: str, *, batch_size: int = 64, workers: int | None = None,
               include_full: bool = False, allow_missing: bool = False,
               full_only: bool = False) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """(eval table, mean class scores over folds and TTA views, class names) of one run (`full_only`: of its
    all-data model alone).

    `data_dir` defaults to the run's `data.root/eval`.
    """
    cfg = run_config(folder)
    models = [full_model(folder)] if full_only else run_fold_models(folder, include_full, allow_missing)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ensemble = FoldEnsemble(models, tta, device)
    data_dir = Path(data_dir) if data_dir else Path(cfg.data.root) / "eval"
    table, loader = eval_loader(cfg, data_dir, ensemble.size_hw, batch_size, workers, gpu=device.type == "cuda",
                                face_fallback=folder.face_fallback() if cfg.data.face_crop else None)
    start = time.perf_counter()
    scores = ensemble.predict(loader, folder.name)
    log.info("%s: %d images x %d folds x %s TTA in %.1fs", folder.path, len(table), len(models), tta,
             time.perf_counter() - start)
    return table, scores, ensemble.classes


def submission(table: pd.DataFrame, scores: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """`ImageID,ans` in the eval table's order, plus the class name when classes have names of their own."""
    frame = pd.DataFrame({"ImageID": table["ImageID"], "ans": scores.argmax(1)})
    if any(name != str(i) for i, name in enumerate(classes)) and len(classes) != 18:
        frame["class"] = [classes[i] for i in frame["ans"]]
    return frame


def check_out(out: Path) -> Path:
    """`--out` must name a file."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'submission.csv'}")
    return out


def log_submission(folder: RunFolder, out: Path, tta: str, data_dir: Path | None) -> None:
    """The submission as an artifact of the run's MLflow parent (best effort)."""
    from foldtrain.track.mlflow_tracker import MLflowTracker

    tracking = folder.tracking()
    if tracking.get("parent_id"):
        tracker = MLflowTracker(tracking.get("experiment", "foldtrain"), tracking.get("tracking_uri"))
        tracker.log_artifact(tracking["parent_id"], out, "submission")
        tracker.set_tags(tracking["parent_id"], {"predict.tta": tta, "predict.data": str(data_dir or "")})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ensemble.predict", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="run folder (default: the newest finished run below --runs-dir)")
    source.add_argument("--blend", type=Path, help="a blend.json written by ensemble.blend")
    source.add_argument("--onnx", type=Path, help="a file written by ensemble.export (onnxruntime, its TTA inside)")
    parser.add_argument("--runs-dir", type=Path, default=Path(RunConfig().dir))
    parser.add_argument("--data", type=Path, help="eval folder with info.csv and images/ (default: data.root/eval)")
    parser.add_argument("--tta", choices=TTA,
                        help="TTA views (default: hflip; with --blend, the views it was tuned on)")
    parser.add_argument("--out", type=Path, help="submission CSV (default: RUN/submission.csv or beside the blend)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: from the core count)")
    full = parser.add_mutually_exclusive_group()
    full.add_argument("--include-full", action="store_true",
                      help="also average the all-data model of cv.full_fit (full/model.safetensors)")
    full.add_argument("--full-only", action="store_true",
                      help="predict with the all-data model of cv.full_fit alone (one model: fast)")
    parser.add_argument("--allow-missing-folds", action="store_true",
                        help="predict with the folds that are there when some trained fold's weights are missing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    keep_freed_memory()
    try:
        if args.blend:
            from ensemble.blend_predict import predict_blend

            out = predict_blend(args)
        elif args.onnx:
            from ensemble.export import onnx_scores

            out = check_out(args.out or args.onnx.with_name(f"{args.onnx.stem}_submission.csv"))
            if args.tta:
                raise UserError("--tta does not apply to --onnx: the views are inside the exported graph "
                                "(ensemble.export --tta)")
            table, scores, classes = onnx_scores(args.onnx, args.data, args.batch_size, args.workers)
            write_csv(out, submission(table, scores, classes))
        else:
            folder = RunFolder(args.run) if args.run else newest_run(args.runs_dir)
            out = check_out(args.out or folder / "submission.csv")
            args.tta = args.tta or "hflip"
            table, scores, classes = run_scores(folder, args.data, args.tta, batch_size=args.batch_size,
                                                workers=args.workers, include_full=args.include_full,
                                                allow_missing=args.allow_missing_folds, full_only=args.full_only)
            with staged_file(out) as staged:  # MLflow gets the bytes written here, whoever else writes `out`
                write_csv(staged, submission(table, scores, classes))
                log_submission(folder, staged, args.tta, args.data)
    except EXPECTED as err:
        print(f"ensemble.predict: error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
