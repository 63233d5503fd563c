"""`ensemble.predict --blend BLEND.json`: each run's fold x TTA ensemble once, combined with the blend's weights
and class biases on per-class log-probabilities."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ensemble.blend_tracking import log_submission
from ensemble.tuning import Blend, log_softmax
from foldtrain.files import read_json, write_csv
from foldtrain.run.folder import RunFolder
from foldtrain.user_error import UserError

log = logging.getLogger("ensemble")


def read_blend(path: Path) -> dict:
    blend = read_json(path)
    if blend is None:
        raise UserError(f"blend file not found: {path} (write one with python -m ensemble.blend)")
    missing = [k for k in ("runs", "weights", "class_bias", "classes") if k not in blend]
    if missing or len(blend["runs"]) != len(blend["weights"]):
        raise UserError(f"{path} is not a blend.json written by ensemble.blend (lacks {missing or 'weights'})")
    return blend


def predict_blend(args: argparse.Namespace) -> Path:
    """Write the blend's submission; returns its path (default: beside the blend file)."""
    from ensemble.predict import check_out, run_scores, submission

    blend = read_blend(args.blend)
    out = check_out(args.out or args.blend.parent / "submission.csv")
    tuned_on = blend.get("tta", "none")
    if args.tta is None:
        args.tta = tuned_on
    elif args.tta != tuned_on:
        log.warning("--tta %s, but the blend's weights and biases were tuned on %s views: its nested_cv_f1 describes "
                    "predictions with --tta %s", args.tta, tuned_on, tuned_on)
    logps, table = [], None
    for run, weight in zip(blend["runs"], blend["weights"], strict=True):
        if weight == 0:
            continue
        run_table, scores, classes = run_scores(RunFolder(Path(run)), args.data, args.tta,
                                                batch_size=args.batch_size, workers=args.workers,
                                                allow_missing=args.allow_missing_folds)
        if classes != blend["classes"]:
            raise UserError(f"run {run} predicts the classes {classes}, not the blend's {blend['classes']}")
        if table is not None and list(run_table["ImageID"]) != list(table["ImageID"]):
            raise UserError(f"run {run} reads other eval images than {blend['runs'][0]}: pass the same --data")
        logps.append(log_softmax(scores.astype(np.float64)))
        table = run_table
    kept = np.asarray([w for w in blend["weights"] if w != 0])
    # the very combination ensemble.blend tuned and scored on the out-of-fold rows
    blended = Blend(kept, np.asarray(blend["class_bias"])).predict(np.stack(logps))
    write_csv(out, submission(table, blended, blend["classes"]))
    log_submission(blend, out)
    return out
