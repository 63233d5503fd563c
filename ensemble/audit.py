"""Find the wrong labels before the model learns them: `python -m ensemble.audit --run RUN [--out DIR]
[--blend BLEND.json]`.

Reads a finished run's out-of-fold scores (with its TTA views when it has them; a blend's weighted combination of
its runs with `--blend`) and writes to DIR (default RUN/audit, or audit/ beside BLEND.json):

- `label_issues.csv`: `person, kind, given, suggested, score, images`, one row per suspected person-level error
  (`gender`, `age`, `mask_swap`; `label` for csv / ImageFolder sets), strongest evidence first (see
  `label_audit` for the method and its thresholds);
- `duplicates.csv`: `person_a, person_b, similarity, fold_a, fold_b`, persons whose photos are copies of each
  other (see `duplicates`);
- `label_fixes.csv` (competition layout): the run's own `data.label_fixes` with the suspects' fixes merged in, in
  the format `data.label_fixes` reads;
- `suspects.png`: the top suspects' photos with their given and suggested labels, also logged to the run's MLflow
  parent under `audit/`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble import tuning
from ensemble.blend import check_shared_folds, load_run, load_runs
from ensemble.blend_predict import read_blend
from ensemble.duplicates import duplicate_persons, thumbnail
from ensemble.label_audit import Found, audit_labels, audit_mask_layout, sorted_issues
from foldtrain.data.images import set_pixel_budget
from foldtrain.data.paths import inside_root
from foldtrain.files import read_csv, write_csv
from foldtrain.run.folder import RunFolder
from foldtrain.run.process import LOG_DATEFMT, LOG_FORMAT
from foldtrain.user_error import UserError

log = logging.getLogger("ensemble")
GRID_PERSONS = 12
# Below this mean self-confidence the models misjudge many persons with right labels: a 60-person demo run of
# oof_f1 0.53 (self-confidence 0.59-0.66 on gender) named 10 of its 60 correctly labelled persons as gender
# suspects, a 100-person run of oof_f1 0.75 (0.82-0.85) no false one.
UNSURE = 0.75
NOT_VALUES = ("temperature", "swap rate", "log-likelihood ratio")


def audited_scores(run: Path, blend: Path | None):
    """(the run the audit reports on, whose out-of-fold table (sorted by path) the scores align with, per-row
    log-probabilities, views)."""
    if blend is None:
        source = load_run(run)
        return source, source.logp(), source.tta
    spec = read_blend(blend)
    runs = load_runs([Path(r) for r in spec["runs"]])
    check_shared_folds(runs)
    # the blend's weights, not its class biases: those shift decisions towards macro F1 and are no evidence
    combined = tuning.log_softmax(tuning.blend(np.stack([r.logp() for r in runs]), np.asarray(spec["weights"])))
    return runs[0], combined, f"blend of {len(runs)} runs ({runs[0].tta})"


def person_ids(root: Path) -> dict[str, str]:
    """Person folder -> train.csv id of a competition-layout root (label fixes name persons by id)."""
    table = read_csv(root / "train" / "train.csv", dtype={"id": str, "path": str})
    return dict(zip(table["path"], table["id"], strict=True))


FIX_OF = {"gender": lambda s: f"to_{s}", "mask_swap": lambda s: "swap_incorrect_normal"}


def merged_fixes(issues: pd.DataFrame, ids: dict[str, str], previous: Path | None,
                 age_names: list[str]) -> pd.DataFrame:
    """The run's own label fixes with the suspects' fixes merged in: a new gender or age fix replaces the old one
    of its kind, and a suspected swap of a person already swapped undoes that swap (the run trained on the swap)."""
    fixes: dict[tuple[str, str], str] = {}  # (id, kind) -> fix
    if previous is not None:
        for pid, fix in zip(*[read_csv(previous, dtype={"id": str})[c] for c in ("id", "fix")], strict=True):
            fixes[(str(pid), "gender" if fix.startswith("to_") else fix.split("=")[0])] = fix
    for person, kind, suggested in zip(issues["person"], issues["kind"], issues["suggested"], strict=True):
        pid = ids[person]
        if kind == "age":
            fixes[(pid, "age_group")] = f"age_group={age_names.index(suggested)}"
        elif kind == "mask_swap" and (pid, "swap_incorrect_normal") in fixes:
            del fixes[(pid, "swap_incorrect_normal")]
        else:
            fixes[(pid, "gender" if kind == "gender" else "swap_incorrect_normal")] = FIX_OF[kind](suggested)
    rows = sorted((pid, fix) for (pid, _), fix in fixes.items())
    return pd.DataFrame(rows, columns=["id", "fix"])


def draw_suspects(issues: pd.DataFrame, root: Path, out: Path, max_persons: int = GRID_PERSONS) -> None:
    """A grid of the top suspects: one row per person, their photos the evidence rests on, the given and suggested
    labels and the score in the row's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foldtrain.data.cache import decode_resized

    top = issues.head(max_persons)
    if top.empty:
        return
    photos = [row.split(";")[:7] for row in top["images"]]
    cols = max(len(p) for p in photos)
    fig, axes = plt.subplots(len(top), cols, figsize=(1.6 * cols, 1.9 * len(top)), squeeze=False)
    for r, (issue, paths) in enumerate(zip(top.itertuples(), photos, strict=True)):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(paths):
                ax.imshow(decode_resized(inside_root(root, paths[c], "label_issues.csv", r + 1), (128, 96)))
                ax.set_title(Path(paths[c]).stem, fontsize=7)
        axes[r][0].text(0, 1.22, f"{issue.person}  {issue.kind}: {issue.given} -> {issue.suggested}  "
                                 f"(score {issue.score:.2f})", transform=axes[r][0].transAxes, fontsize=8,
                        va="bottom", fontweight="bold")
    fig.subplots_adjust(hspace=0.75, top=1 - 0.5 / len(top), bottom=0.02)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def audit(run: Path, out: Path | None, blend: Path | None) -> Path:
    source, logp, views = audited_scores(run, blend)
    oof = source.oof
    cfg, folder = source.cfg, source.folder
    set_pixel_budget(cfg.data.max_pixels)
    out = out or (blend.parent / "audit" if blend is not None else folder / "audit")
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.data.root)
    folds_table = read_csv(folder.folds_file, dtype={"person": str})
    table = oof[["path", "label", "fold"]].assign(
        person=folds_table.set_index("path").loc[oof["path"], "person"].to_numpy())
    log.info("auditing %d out-of-fold images of %d persons (%s views)", len(table), table["person"].nunique(), views)
    mask_layout = len(source.summary["classes"]) == 18 and source.cfg.data.format in ("mask", "auto") \
        and (root / "train" / "train.csv").is_file()
    found: list[Found] = (audit_mask_layout(logp, table, tuple(cfg.data.age_bins)) if mask_layout
                          else audit_labels(logp, table, source.summary["classes"]))
    issues = sorted_issues(found)
    write_csv(out / "label_issues.csv", issues)
    for f in found:
        thresholds = ", ".join(f"{k} {v:.3f}" for k, v in f.thresholds.items())
        log.info("%s: %d suspect(s) among %d persons (%s)", f.kind, len(f.issues), f.persons, thresholds)
        unsure = {k: v for k, v in f.thresholds.items() if k not in NOT_VALUES and v < UNSURE}
        if unsure and len(f.issues):
            log.warning("%s: the models are unsure of %s (mean pooled probability of the given value %s): many of "
                        "these suspects may be the models' mistakes, not wrong labels; train longer, or look at "
                        "suspects.png before applying the fixes", f.kind, ", ".join(unsure),
                        ", ".join(f"{v:.2f}" for v in unsure.values()))

    start = time.perf_counter()
    thumbs = np.stack([thumbnail(inside_root(root, p, folder.folds_file, i + 1))
                       for i, p in enumerate(folds_table["path"])])
    person_fold = folds_table.groupby("person")["fold"].first().to_dict()
    duplicates = duplicate_persons(thumbs, folds_table["person"].to_numpy(), person_fold)
    write_csv(out / "duplicates.csv", duplicates)
    log.info("duplicates: %d pair(s) of persons with copied photos among %d photos (%.1fs)", len(duplicates),
             len(thumbs), time.perf_counter() - start)
    if mask_layout:
        from foldtrain.data.labels import age_names

        previous = Path(cfg.data.label_fixes) if cfg.data.label_fixes else None
        if previous is not None and not previous.is_file():
            log.warning("the run's data.label_fixes %s is not found from here: label_fixes.csv holds only the "
                        "audit's fixes; run the audit from the training's folder to merge them", previous)
            previous = None
        fixes = merged_fixes(issues, person_ids(root), previous, list(age_names(tuple(cfg.data.age_bins))))
        write_csv(out / "label_fixes.csv", fixes)
        log.info("label_fixes.csv: %d fix(es); apply with data.label_fixes=%s", len(fixes), out / "label_fixes.csv")
    draw_suspects(issues, root, out / "suspects.png")
    log_to_mlflow(folder, out)
    return out


def log_to_mlflow(folder: RunFolder, out: Path) -> None:
    """The audit's tables and picture to the run's parent, under `audit/` (best effort)."""
    from foldtrain.track.mlflow_tracker import MLflowTracker

    tracking = folder.tracking()
    if not tracking.get("parent_id"):
        return
    tracker = MLflowTracker(tracking.get("experiment", "foldtrain"), tracking.get("tracking_uri"))
    for name in ("label_issues.csv", "duplicates.csv", "label_fixes.csv", "suspects.png"):
        tracker.log_artifact(tracking["parent_id"], out / name, "audit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ensemble.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run folder (with --blend: the blend's runs)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN/audit, or audit/ beside the blend)")
    parser.add_argument("--blend", type=Path, help="audit with a blend's combined out-of-fold scores")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    from foldtrain.errors import EXPECTED

    try:
        if args.run is None and args.blend is None:
            raise UserError("give --run RUN (or --blend BLEND.json)")
        out = audit(args.run, args.out, args.blend)
    except EXPECTED as err:
        print(f"ensemble.audit: error: {err}", file=sys.stderr)
        return 1
    print(f"audit -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
