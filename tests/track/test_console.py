"""The progress lines: folds and epochs counted from 1, and a time left measured on the epochs run so far."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from foldtrain.track import console
from foldtrain.track.console import ConsoleProgress, clock
from foldtrain.train.progress import EpochRecord, FoldProgress


def test_clock_reads_as_minutes_or_hours():
    assert [clock(5), clock(65), clock(3725)] == ["0:05", "1:05", "1:02:05"]


def spec(fold: int, epochs: int = 2):
    return SimpleNamespace(fold=fold, epochs=epochs, out_dir=Path(f"fold{fold}"), train_rows=np.arange(8),
                           val_rows=np.arange(2))


def run_epochs(hook: ConsoleProgress, now: list[float], fold: int, epochs: int, first: int = 0,
               seconds: float = 10.0) -> None:
    progress = FoldProgress(fold, epochs, started=now[0])
    progress.history = [EpochRecord(e, 1.0, 0.1, 0.0, 1.0, 1.0, 0.5, 0.5) for e in range(first)]
    hook.fold_started(spec(fold, epochs), progress)
    for epoch in range(first, epochs):
        now[0] += seconds
        progress.record(EpochRecord(epoch, 1.0, 0.1, now[0] - seconds, now[0], 1.0, 0.5, 0.5))
        hook.epoch_ended(spec(fold, epochs), progress)
    hook.fold_ended(spec(fold, epochs), progress, {})


@pytest.fixture()
def now(monkeypatch) -> list[float]:
    clock_now = [1000.0]
    monkeypatch.setattr(console.time, "time", lambda: clock_now[0])
    return clock_now


def epoch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if " epoch " in r.getMessage() and "|" in r.getMessage()]


def test_each_epoch_says_where_the_run_is_and_how_long_it_has_left(caplog, now):
    hook = ConsoleProgress(5, {0: 2, 1: 2})
    with caplog.at_level(logging.INFO, logger="foldtrain"):
        run_epochs(hook, now, 0, 2)
        run_epochs(hook, now, 1, 2, seconds=20.0)
    lines = epoch_lines(caplog)
    assert [line.split(":")[0] for line in lines] == ["fold 1/5 epoch 1/2", "fold 1/5 epoch 2/2",
                                                       "fold 2/5 epoch 1/2", "fold 2/5 epoch 2/2"]
    # 10 s an epoch so far, 3 epochs to go; then the slower second fold raises the estimate
    assert lines[0].endswith("| 0:10 in, fold ~0:10 left, run ~0:30 left")
    assert lines[2].endswith("| 0:40 in, fold ~0:20 left, run ~0:13 left")
    assert lines[3].endswith("| 1:00 in, fold ~0:00 left, run ~0:00 left")
    assert "fold 1/5 (fold0): 8 training and 2 validation images" in caplog.text


def test_a_resumed_fold_counts_only_the_epochs_it_has_left(caplog, now):
    hook = ConsoleProgress(3, {2: 4, -1: 4})
    with caplog.at_level(logging.INFO, logger="foldtrain"):
        run_epochs(hook, now, 2, 4, first=2)
    lines = epoch_lines(caplog)
    assert [line.split(":")[0] for line in lines] == ["fold 3/3 epoch 3/4", "fold 3/3 epoch 4/4"]
    assert lines[0].endswith("fold ~0:10 left, run ~0:50 left")  # 1 epoch of this fold and the 4 of the full fit
    assert "epochs 3-4 of 4" in caplog.text


def test_quiet_leaves_the_epoch_lines_out(caplog, now):
    hook = ConsoleProgress(5, {0: 2}, quiet=True)
    with caplog.at_level(logging.INFO, logger="foldtrain"):
        run_epochs(hook, now, 0, 2)
    assert not caplog.records
