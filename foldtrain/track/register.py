"""Registered model versions that say what they are: `python -m foldtrain.track.register RUN NAME`.

A user choosing a version in the MLflow registry should see its score without opening the run: every version
foldtrain registers (during training with `mlflow.registered_model`, or afterwards with this command) carries the
run's `oof_f1`, honest estimate and their intervals as tags, and a description of how it was trained. The logged
model itself carries the same tags, and the run-level scores as its metrics.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from foldtrain.config import Config, build_config
from foldtrain.run.folder import RunFolder
from foldtrain.track.results import headline, span
from foldtrain.user_error import UserError

log = logging.getLogger("foldtrain")


class RegisterError(UserError):
    """A run cannot be registered (no logged model, no tracking record, an unreachable store)."""


def score_tags(summary: dict) -> dict[str, str]:
    """The run's headline scores as tags: `oof_f1` and `oof_f1_honest`, each with its interval, and the rule."""
    tags = {"foldtrain.run_name": str(summary.get("run_name")), "oof_rule": str(summary.get("oof_rule")),
            "ci_level": f"{summary.get('ci_level', 0.9):.0%}"}
    for key in ("oof_f1", "oof_f1_honest"):
        value = summary.get(key)
        tags[key] = "n/a" if value is None else f"{value:.4f}{span(summary.get(f'{key}_ci'))}"
    return tags


def describe(cfg: Config, summary: dict) -> str:
    """One line on how a run was trained and how well it does (the parent run's and a model version's)."""
    return (f"{cfg.model.name} at {cfg.data.image_size} px, {len(summary['folds_trained'])} of {cfg.cv.folds} folds, "
            f"{cfg.train.epochs} epochs, TTA {cfg.mlflow.model_tta}: {headline(summary)}")


def label_version(client, name: str, version: str, summary: dict, description: str) -> None:
    """Tag a registered version with the run's scores and describe how it was trained."""
    for key, value in score_tags(summary).items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=description)


def register(folder: RunFolder, name: str) -> tuple[str, str]:
    """Register a finished run's logged fold ensemble as a new version of `name`; returns (tracking URI, version).

    Raises:
        RegisterError: the run logged no model, or the store refuses.
    """
    summary = folder.summary()
    tracking = folder.tracking()
    model_uri, uri = summary.get("model_uri") or tracking.get("model_uri"), tracking.get("tracking_uri")
    if not model_uri or not uri:
        raise RegisterError(f"{folder.path} has no logged MLflow model (mlflow.log_model was false, tracking was off "
                            f"or model logging failed): train it again with mlflow.log_model=true")
    import mlflow
    from mlflow.exceptions import MlflowException

    cfg = build_config([folder.config_file])
    mlflow.set_tracking_uri(uri)
    try:
        version = str(mlflow.register_model(model_uri, name).version)
        label_version(mlflow.MlflowClient(uri), name, version, summary, describe(cfg, summary))
    except MlflowException as err:
        raise RegisterError(f"registering {model_uri} as {name!r} in {uri} failed: {str(err).splitlines()[0]}") from err
    return uri, version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foldtrain.track.register",
                                     description="Register a trained run's fold ensemble as a new model version.")
    parser.add_argument("run", help="the run folder (runs/<name>)")
    parser.add_argument("name", help="the registered model's name (created if new)")
    args = parser.parse_args(argv)
    from foldtrain.errors import EXPECTED

    logging.basicConfig(level=logging.WARNING)
    try:
        folder = RunFolder(Path(args.run))
        uri, version = register(folder, args.name)
    except EXPECTED as err:
        print(f"foldtrain: error: {err}", file=sys.stderr)
        return 1
    print(f"registered {args.run} as {args.name} version {version}: models:/{args.name}/{version} "
          f"(MLFLOW_TRACKING_URI={uri})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
