"""The MLflow runs of a CV run: a parent, and one child per fold opened when the fold starts and ended when it ends.

`FoldRuns` is attached to the fold loop as a hook on the main process. Folds that other processes fit alone
(`cv.parallel=folds`) are logged afterwards from their metrics.csv and result.json, with their own start and end
times, so every fold's run shows its true span. tracking.json in the run folder holds the run ids, so a resumed run
reattaches to the same runs and prediction logs its submission to the parent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foldtrain.config import Config
from foldtrain.files import read_csv, read_json, write_json
from foldtrain.run.folder import METRICS, TRACKING
from foldtrain.track.diagnosis import fold_findings
from foldtrain.track.mlflow_tracker import MLflowTracker
from foldtrain.track.results import span
from foldtrain.train.checkpoint import read_result


class FoldRuns:
    """Child runs per fold (hooks of `FoldFit`); `children` maps fold (or `full`) to run id."""

    def __init__(self, tracker: MLflowTracker, parent_id: str | None, cfg: Config, run_dir: Path,
                 data_frame: pd.DataFrame, num_classes: int):
        self.tracker, self.parent_id, self.cfg, self.run_dir = tracker, parent_id, cfg, run_dir
        self.frame, self.num_classes = data_frame, num_classes
        saved = read_json(run_dir / TRACKING, {}) if cfg.train.resume else {}
        self.children: dict[str, str] = dict(saved.get("children", {}))
        self.model_uri: str | None = None

    def save(self) -> None:
        if self.parent_id:
            saved = {"parent_id": self.parent_id, "tracking_uri": self.tracker.uri,
                     "experiment": self.cfg.mlflow.experiment, "children": self.children}
            write_json(self.run_dir / TRACKING, saved | ({"model_uri": self.model_uri} if self.model_uri else {}))

    def _key(self, spec) -> str:
        return "full" if spec.fold < 0 else str(spec.fold)

    def open(self, key: str, started: float) -> str | None:
        """The fold's run: reattached when a resumed run has one, else created (with its data split)."""
        if not self.parent_id:
            return None
        if key in self.children:
            return self.tracker.reattach(self.children[key])
        cfg = self.cfg
        params = {"run.name": cfg.run.name, "model.name": cfg.model.name, "data.image_size": cfg.data.image_size,
                  "cv.folds": cfg.cv.folds, "fold": key}
        # short names: the runs table cuts long ones, and the parent already says which CV run they belong to
        run_id = self.tracker.start_run("full" if key == "full" else f"fold{key}", tags={"fold": key}, params=params,
                                        parent_id=self.parent_id, start_time=started)
        if run_id:
            self.children[key] = run_id
            self.save()
            if key != "full":
                in_fold = self.frame["fold"] == int(key)
                source = str(cfg.data.root)
                self.tracker.log_dataset(run_id, self.frame[~in_fold], source, f"fold {key} training", "training")
                self.tracker.log_dataset(run_id, self.frame[in_fold], source, f"fold {key} validation",
                                         "validation")
        return run_id

    def fold_started(self, spec, progress) -> None:
        self.open(self._key(spec), progress.started)

    def epoch_ended(self, spec, progress) -> None:
        rec = progress.history[-1]
        self.tracker.log_metrics(self.children.get(self._key(spec)), rec.metrics(), step=rec.epoch,
                                 timestamp=rec.ended)

    def fold_ended(self, spec, progress, result: dict) -> None:
        self.close(self._key(spec), result)

    def close(self, key: str, result: dict) -> None:
        run_id = self.children.get(key)
        if result.get("best_f1") is not None:
            self.tracker.log_metrics(run_id, {"best_val_f1": result["best_f1"], "best_epoch": result["best_epoch"]},
                                     timestamp=result.get("ended"))
            history = read_csv(self.run_dir / f"fold{key}" / METRICS)
            self.tracker.set_tags(run_id, {"foldtrain.diagnosis": ", ".join(fold_findings(history, self.num_classes))
                                           or "ok"})
        self.tracker.end_run(run_id, end_time=result.get("ended"))

    def describe(self, summary: dict) -> None:
        """Once the run's figures are settled: each fold run's description and its F1 at the kept epoch."""
        for fold, f1 in summary["fold_f1"].items():
            run_id = self.children.get(fold)
            if not run_id:
                continue
            low, high = (summary.get("fold_f1_ci") or {}).get(fold) or [None, None]
            self.tracker.set_tags(run_id, {"mlflow.note.content": self.note(int(fold), summary)})
            self.tracker.log_metrics(run_id, {k: v for k, v in {"fold_f1": f1, "fold_f1_ci_low": low,
                                                                  "fold_f1_ci_high": high}.items() if v is not None})

    def note(self, fold: int, summary: dict) -> str:
        """`fold 2/5: 10 of 10 epochs, best epoch 7 (val F1 0.51), kept epoch 10 (last): F1 0.50 [0.41, 0.57] on 84
        images of 12 persons`; epochs counted from 1, as the progress lines count them."""
        key = str(fold)
        result = read_result(self.run_dir / f"fold{fold}")
        rows = self.frame[self.frame["fold"] == fold]
        interval = span((summary.get("fold_f1_ci") or {}).get(key))
        best = summary["best_val_f1"][key]
        return (f"fold {fold + 1}/{self.cfg.cv.folds}: {result.get('epochs_run')} of {result.get('epochs_planned')} "
                f"epochs, best epoch {summary['best_epoch'][key] + 1}"
                + (f" (val F1 {best:.4f})" if best is not None else "")
                + f", kept epoch {summary['checkpoint_epoch'][key] + 1} ({summary.get('oof_rule')}): F1 "
                f"{summary['fold_f1'][key]:.4f}{interval} on {len(rows)} images of {rows['person'].nunique()} persons")

    def log_artifact(self, key: str, path: Path) -> None:
        """A file for a fold's run (its Grad-CAM grid)."""
        self.tracker.log_artifact(self.children.get(key), path)

    def replay(self, fold: int) -> None:
        """Log a fold another process fit alone, from its files, with its own start and end times."""
        fold_dir = self.run_dir / f"fold{fold}"
        result = read_result(fold_dir)
        run_id = self.open(str(fold), result["started"])
        for row in read_csv(fold_dir / METRICS).to_dict("records"):
            metrics = {k: row[k] for k in ("train_loss", "val_loss", "val_f1", "val_acc", "lr") if k in row}
            self.tracker.log_metrics(run_id, metrics, step=int(row["epoch"]), timestamp=row.get("ended"))
        self.log_artifact(str(fold), fold_dir / "gradcam.png")
        self.close(str(fold), result)
