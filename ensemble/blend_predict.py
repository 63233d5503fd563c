"""`ensemble.predict --blend BLEND.json`: each run's fold x TTA ensemble once, combined with the blend's weights
and class biases on per-class log-probabilities."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ensemble.blend_tracking import log_submission
from ensemble.pins import check_pin, data_root
from ensemble.tuning import Blend, log_softmax
from foldtrain.files import read_json, staged_file, write_csv
from foldtrain.run.folder import RunFolder
from foldtrain.user_error import UserError

log = logging.getLogger("ensemble")


WEIGHT_SUM_TOLERANCE = 1e-6


def read_blend(path: Path) -> dict:
    """blend.json, checked before anything runs: one finite non-negative weight per run summing to 1, one finite
    bias per class, and a pin per run.

    Raises:
        UserError: naming the file and the first thing wrong with it.
    """
    blend = read_json(path)
    if blend is None:
        raise UserError(f"blend file not found: {path} (write one with python -m ensemble.blend)")
    bad = blend_problem(blend)
    if bad:
        raise UserError(f"{path} is not a valid blend.json ({bad}): write it again with python -m ensemble.blend")
    return blend


def blend_problem(blend) -> str | None:
    """What is wrong with a blend.json's content, or None."""
    if not isinstance(blend, dict):
        return "not a JSON object"
    missing = [k for k in ("runs", "weights", "class_bias", "classes", "pins") if k not in blend]
    if missing:
        return f"lacks {', '.join(missing)}"
    runs, weights, bias, classes = blend["runs"], blend["weights"], blend["class_bias"], blend["classes"]
    if not isinstance(runs, list) or not runs or not all(isinstance(r, str) for r in runs):
        return "runs must be a non-empty list of run folders"
    if not isinstance(weights, list) or len(weights) != len(runs):
        return f"{len(runs)} runs need {len(runs)} weights"
    if not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights):
        return "weights must be numbers"
    values = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(values).all() or (values < 0).any():
        return "weights must be finite and non-negative"
    if abs(values.sum() - 1) > WEIGHT_SUM_TOLERANCE:
        return f"weights must sum to 1, they sum to {values.sum():g}"
    if not isinstance(classes, list) or not isinstance(bias, list) or len(bias) != len(classes):
        return f"class_bias needs one value per class ({len(classes) if isinstance(classes, list) else '?'})"
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bias) or \
            not np.isfinite(np.asarray(bias, dtype=np.float64)).all():
        return "class_bias must be finite numbers"
    if not isinstance(blend["pins"], dict) or set(blend["pins"]) != set(runs):
        return "pins must hold one entry per run"
    return None


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
    sources = [RunFolder(Path(run)) for run in blend["runs"]]
    for folder in sources:  # every source checked before any is run
        check_pin(folder, blend["pins"][str(folder.path)], args.blend)
    roots = {data_root(folder) for folder in sources}
    if args.data is None and len(roots) > 1:
        raise UserError(f"the blend's runs read other eval folders ({', '.join(sorted(roots))}): pass --data")
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
    with staged_file(out) as staged:  # MLflow gets the bytes written here, whoever else writes `out`
        write_csv(staged, submission(table, blended, blend["classes"]))
        log_submission(blend, staged)
    return out
