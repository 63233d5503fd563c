"""Claiming the run folder before any work: its name, the one-writer lock, and the checks a start must pass.

Everything here runs before data preparation, so a refused start costs nothing and changes nothing on disk. The
main process decides; its verdict is broadcast, so every process stops with the same one-line reason.
"""

from __future__ import annotations

import time
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from foldtrain.config import Config, ConfigError, build_config, replace
from foldtrain.files import StorageError
from foldtrain.run.folder import RunFolder, RunFolderError, check_writable
from foldtrain.run.lock import RunLock
from foldtrain.run.recipe import check_same_recipe, recorded_recipe


def name_run(cfg: Config, accelerator: Accelerator) -> Config:
    """Fix `run.name`: the main process's timestamp when unset, shared with every process."""
    name = [cfg.run.name or time.strftime("cv-%Y%m%d-%H%M%S")]
    broadcast_object_list(name)
    return replace(cfg, run={"name": name[0]})


def check_start(cfg: Config, folder: RunFolder) -> None:
    """What a start must satisfy: results are not overwritten, and a resume keeps the run's recipe.

    Raises:
        RunFolderError: naming what to do instead.
    """
    config_file = folder.config_file
    if not cfg.train.resume:
        if folder.has_results():
            raise RunFolderError(f"{folder.path} already holds results; pick another run.name, delete the folder, "
                                 f"or continue it with train.resume=true")
        return
    if config_file.is_file():
        try:
            saved = build_config([config_file])
        except ConfigError as err:
            raise RunFolderError(f"cannot resume: {err}") from err
        check_same_recipe(saved, cfg, str(config_file))
    # every fold records the recipe too, so a lost or edited config.yaml cannot let another recipe in
    recorded = recorded_recipe(folder.path)
    if recorded is not None:
        check_same_recipe(recorded[0], cfg, f"the recipe recorded in {recorded[1]}")


def claim(cfg: Config, accelerator: Accelerator) -> tuple[Config, RunFolder, RunLock | None]:
    """(config with its run name, the run folder, the lock held by the main process).

    Raises:
        RunFolderError, StorageError: on every process, when the main process refused the start.
    """
    cfg = name_run(cfg, accelerator)
    folder = RunFolder(Path(cfg.run.dir) / cfg.run.name)
    lock, verdict = None, [None]
    if accelerator.is_main_process:
        try:
            check_writable(folder.path)
            lock = RunLock(folder.path).acquire()
            check_start(cfg, folder)
        except (RunFolderError, StorageError) as err:
            if lock is not None:
                lock.release()
            verdict = [(type(err).__name__, str(err))]
    broadcast_object_list(verdict)
    if verdict[0] is not None:
        kind, message = verdict[0]
        raise StorageError(message) if kind == StorageError.__name__ else RunFolderError(message)
    return cfg, folder, lock
