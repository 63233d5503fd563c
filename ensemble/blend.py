"""Blend runs that share folds: `python -m ensemble.blend --run A --run B [--run C ...] --out DIR`.

Runs trained on the same images with the same split (data, `cv.folds`, `cv.seed`) each hold an out-of-fold score
for every image, taken at the kept epoch with the TTA views prediction uses (oof_tta.csv, `cv.oof_tta`), so the
blend is tuned on the kind of scores it is applied to; `ensemble.predict --blend` predicts with those views. Their
per-class log-probabilities are blended with non-negative weights summing to 1 (greedy forward selection with
replacement, never below the best single run) and one additive bias per class (coordinate ascent on macro F1), all
tuned on those out-of-fold rows; `nested_cv_f1` scores the same tuning on folds it never saw (the biases are kept
only when they raise the held-out score, a decision also made inside the nested loop), with a person-level
interval. A source run whose out-of-fold epochs were chosen on the rows they score (`train.checkpoint=best`, early
stopping) makes every figure here optimistic: it is named in a warning, or refused with `--strict`.
Writes DIR/blend.json, DIR/oof.csv and DIR/per_class_f1.png; `ensemble.predict --blend DIR/blend.json` applies it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble import tuning
from ensemble.blend_tracking import log_blend
from ensemble.pins import pin
from foldtrain.config import Config, build_config
from foldtrain.errors import EXPECTED
from foldtrain.files import read_csv, write_csv, write_json
from foldtrain.run.folder import RunFolder, RunFolderError
from foldtrain.run.process import LOG_DATEFMT, LOG_FORMAT
from foldtrain.track import report
from foldtrain.track.intervals import f1_interval
from foldtrain.track.results import span
from foldtrain.user_error import UserError

log = logging.getLogger("ensemble")


class BlendError(ValueError):
    """The runs cannot be blended (other splits, other classes); the message names the first difference."""


@dataclass
class SourceRun:
    """A finished run's out-of-fold table and what it was trained with."""

    folder: RunFolder
    cfg: Config
    summary: dict
    oof: pd.DataFrame  # sorted by path
    tta: str  # the views the out-of-fold scores were taken with (`cv.oof_tta`, or none for the validation scores)

    @property
    def name(self) -> str:
        return str(self.folder.path)

    def optimistic(self) -> str | None:
        """Why this run's out-of-fold epochs were chosen on the rows they score, or None."""
        if "oof_rule" in self.summary:
            return self.summary.get("oof_rule_note")
        # a run from before rules were recorded: only `best` is known to choose on its own rows
        return "its folds kept their best epoch by validation F1" if self.summary.get("checkpoint") == "best" else None

    def persons(self) -> np.ndarray:
        """The person (group) of each out-of-fold row, from the run's folds.csv."""
        folds = read_csv(self.folder.folds_file, usecols=["path", "person"], dtype={"person": str})
        return folds.set_index("path").loc[self.oof["path"], "person"].to_numpy()

    def logp(self) -> np.ndarray:
        """Per-row log-probabilities of the out-of-fold scores."""
        columns = [f"logit_{i}" for i in range(len(self.summary["classes"]))]
        return tuning.log_softmax(self.oof[columns].to_numpy(dtype=np.float64))


def load_run(path: Path, views: bool = True) -> SourceRun:
    """A finished run's out-of-fold table: with its prediction views (oof_tta.csv) when `views` and it has them,
    else the single-view validation scores (oof.csv)."""
    folder = RunFolder(Path(path).resolve())
    summary = folder.summary()
    tta = summary.get("oof_tta") if views and folder.oof_tta_file.is_file() else None
    oof_file = folder.oof_tta_file if tta else folder.oof_file
    if not oof_file.is_file():
        raise RunFolderError(f"{oof_file} not found: blending needs each run's out-of-fold table")
    oof = read_csv(oof_file).sort_values("path", kind="stable", ignore_index=True)
    return SourceRun(folder, build_config([folder.config_file]), summary, oof, tta or "none")


def load_runs(paths: list[Path]) -> list[SourceRun]:
    """The runs with out-of-fold scores of one kind of views: each run's TTA scores when all share their views,
    else every run's single-view scores (with a warning: the blend is then tuned on other scores than it meets)."""
    runs = [load_run(path) for path in paths]
    if len({run.tta for run in runs}) > 1:
        log.warning("the runs' out-of-fold TTA views differ (%s): tuning on single-view scores; retrain with one "
                    "cv.oof_tta to tune on the views you predict with", ", ".join(sorted({r.tta for r in runs})))
        runs = [load_run(path, views=False) for path in paths]
    return runs


def check_shared_folds(runs: list[SourceRun]) -> None:
    """Every run must hold the same images with the same labels in the same folds, over the same classes.

    Raises:
        BlendError: naming the two runs and their first difference.
    """
    first = runs[0]
    for other in runs[1:]:
        pair = f"runs {first.name} and {other.name}"
        for key in ("cv.folds", "cv.seed"):
            section, name = key.split(".")
            a, b = getattr(getattr(first.cfg, section), name), getattr(getattr(other.cfg, section), name)
            if a != b:
                raise BlendError(f"{pair} split differently: {key} {a} vs {b}")
        roots = [Path(run.cfg.data.root).resolve() for run in (first, other)]  # the configs are loaded already
        if roots[0] != roots[1]:
            raise BlendError(f"{pair} were trained on other data roots: {roots[0]} vs {roots[1]}")
        if first.summary["classes"] != other.summary["classes"]:
            raise BlendError(f"{pair} have other classes: {first.summary['classes']} vs {other.summary['classes']}")
        paths_a, paths_b = set(first.oof["path"]), set(other.oof["path"])
        if paths_a != paths_b:
            missing = sorted(paths_a ^ paths_b)[0]
            holder = first.name if missing in paths_a else other.name
            raise BlendError(f"{pair} hold other images out of fold: {missing} only in {holder} (other data, "
                             f"cv.only or label settings)")
        for column in ("label", "fold"):
            differs = first.oof[column].to_numpy() != other.oof[column].to_numpy()
            if differs.any():
                row = int(np.argmax(differs))
                raise BlendError(f"{pair} split differently: {first.oof['path'][row]} has {column} "
                                 f"{first.oof[column][row]} in one and {other.oof[column][row]} in the other")


def check_honest_sources(runs: list[SourceRun], strict: bool) -> list[str]:
    """`run: reason` for each source whose out-of-fold epochs were chosen on their own rows; warned, or refused.

    Raises:
        BlendError: with `strict`, naming the first such run.
    """
    found = [f"{run.name}: {run.optimistic()}" for run in runs if run.optimistic()]
    if found and strict:
        raise BlendError(f"--strict: {found[0]}; retrain it with train.checkpoint=last or honest (no early stopping)")
    for line in found:
        log.warning("optimistic source, so every blend score is optimistic too: %s", line)
    return found


def blend_runs(runs: list[SourceRun], out: Path, weights: bool = True, biases: bool = True,
               strict: bool = False) -> dict:
    """Tune, score and write the blend of `runs` into `out`; returns what blend.json holds."""
    check_shared_folds(runs)
    optimistic = check_honest_sources(runs, strict)
    classes = runs[0].summary["classes"]
    labels, folds = runs[0].oof["label"].to_numpy(), runs[0].oof["fold"].to_numpy()
    logps = np.stack([run.logp() for run in runs])
    start = time.perf_counter()
    estimate = tuning.tune_and_estimate(logps, labels, folds, weights, biases)
    tuned = estimate.blend
    if biases and not estimate.bias_kept:
        log.info("class biases left at zero: they did not raise the nested-CV score (%.4f with them, %.4f without)",
                 estimate.nested_f1_bias, estimate.nested_f1_no_bias)
    log.info("tuned %d runs on %d out-of-fold rows x %d classes in %.1fs", len(runs), len(labels), len(classes),
             time.perf_counter() - start)
    blended = tuned.predict(logps)
    num_classes = len(classes)
    result = {
        "runs": [run.name for run in runs], "classes": classes, "tta": runs[0].tta, "weights": tuned.weights.tolist(),
        "class_bias": tuned.bias.tolist(),
        "oof_f1": tuning.macro_f1(labels, blended.argmax(1), num_classes),
        "oof_f1_runs": {run.name: tuning.macro_f1(labels, logp.argmax(1), num_classes)
                        for run, logp in zip(runs, logps, strict=True)},
        "oof_f1_equal": tuning.macro_f1(labels, logps.mean(0).argmax(1), num_classes),
        "pins": {run.name: pin(run.folder) for run in runs},
        "nested_cv_f1": estimate.nested_f1,
        "nested_cv_f1_ci": f1_interval(labels, estimate.nested_preds, runs[0].persons(), num_classes),
        "optimistic_sources": optimistic,
        "nested_cv_f1_no_bias": estimate.nested_f1_no_bias,
        "nested_cv_f1_bias": estimate.nested_f1_bias,
        "bias_kept": estimate.bias_kept,
    }
    table = runs[0].oof[["path", "label", "fold"]].assign(pred=blended.argmax(1))
    table = pd.concat([table, pd.DataFrame(blended, columns=[f"logp_{i}" for i in range(num_classes)])], axis=1)
    write_csv(out / "oof.csv", table)
    draw_per_class(runs, logps, blended, labels, classes, out)
    write_json(out / "blend.json", result)
    return result


def draw_per_class(runs: list[SourceRun], logps: np.ndarray, blended: np.ndarray, labels: np.ndarray,
                   classes: list[str], out: Path) -> None:
    from foldtrain.train.metrics import per_class_f1

    series = {run.folder.name: per_class_f1(labels, logp.argmax(1), len(classes)) for run, logp in
              zip(runs, logps, strict=True)}
    series["blend"] = per_class_f1(labels, blended.argmax(1), len(classes))
    report.plot_per_class_f1(series, classes, out / "per_class_f1.png", "out-of-fold F1 per class")
    write_csv(out / "per_class_f1.csv", pd.DataFrame({"class": classes, **series}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ensemble.blend", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True, help="a finished run folder (repeat)")
    parser.add_argument("--out", type=Path, required=True, help="folder for blend.json, oof.csv and the picture")
    parser.add_argument("--no-bias", action="store_true", help="no per-class biases (all zero)")
    parser.add_argument("--no-weights", action="store_true", help="equal weights instead of tuned ones")
    parser.add_argument("--strict", action="store_true",
                        help="refuse a source run whose out-of-fold epochs were chosen on the rows they score")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    try:
        if args.out.exists() and not args.out.is_dir():
            raise UserError(f"--out {args.out} is a file; give a folder for blend.json and its pictures")
        runs = load_runs(args.run)
        result = blend_runs(runs, args.out, weights=not args.no_weights, biases=not args.no_bias, strict=args.strict)
        result["mlflow"] = log_blend(runs, args.out, result)
        write_json(args.out / "blend.json", result)
    except (*EXPECTED, BlendError) as err:
        print(f"ensemble.blend: error: {err}", file=sys.stderr)
        return 1
    scores = ", ".join(f"{Path(name).name} {f1:.4f}" for name, f1 in result["oof_f1_runs"].items())
    print(f"out-of-fold macro F1: runs {scores}; equal average {result['oof_f1_equal']:.4f}; tuned blend "
          f"{result['oof_f1']:.4f} (nested CV {result['nested_cv_f1']:.4f}{span(result['nested_cv_f1_ci'])}; "
          f"class biases {'kept' if result['bias_kept'] else 'zero'}); weights "
          f"{', '.join(f'{w:.3f}' for w in result['weights'])} -> {args.out / 'blend.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
