"""Fold progress records, early stopping, and the honest choice of epochs."""

from __future__ import annotations

from foldtrain.train.progress import EarlyStopping, EpochRecord, FoldProgress
from foldtrain.train.rules import RULES


def record(epoch: int, f1: float | None) -> EpochRecord:
    return EpochRecord(epoch, 1.0, 0.01, 100.0 + epoch, 101.0 + epoch, val_f1=f1)


def test_best_epoch_and_round_trip():
    progress = FoldProgress(fold=2, epochs=5, started=99.0)
    assert [progress.record(record(e, f)) for e, f in enumerate([0.2, 0.5, 0.4])] == [True, True, False]
    assert (progress.best_epoch, progress.best_f1, progress.next_epoch) == (1, 0.5, 3)
    again = FoldProgress.from_dict(progress.to_dict())
    assert again == progress and again.history[2].seconds == 1.0


def test_without_validation_every_epoch_is_kept():
    progress = FoldProgress(fold=-1, epochs=3, started=0.0)
    assert all(progress.record(record(e, None)) for e in range(3)) and progress.best_epoch == 2


def test_early_stopping_after_patience_epochs_without_gain():
    progress = FoldProgress(fold=0, epochs=10, started=0.0)
    stopping = EarlyStopping(2)
    decisions = []
    for epoch, f1 in enumerate([0.3, 0.5, 0.45, 0.5, 0.6, 0.59, 0.58]):
        progress.record(record(epoch, f1))
        decisions.append(stopping.should_stop(progress))
    assert decisions == [False, False, False, True, False, False, True]
    assert not EarlyStopping(0).should_stop(progress)


def results_of(best: dict[int, int], epochs_run: dict[int, int], planned: int = 10) -> dict[int, dict]:
    return {f: {"best_epoch": b, "epochs_run": epochs_run[f], "stopped_early": epochs_run[f] < planned}
            for f, b in best.items()}


def test_honest_epochs_use_only_the_other_folds():
    honest = RULES["honest"]
    best = {0: 9, 1: 3, 2: 5, 3: 5, 4: 7}
    full = results_of(best, {f: 10 for f in best})
    assert honest.epochs(full) == {0: 5, 1: 6, 2: 6, 3: 6, 4: 5}
    assert honest.chosen_on_own_rows(full) is None and RULES["last"].chosen_on_own_rows(full) is None
    assert honest.epochs(results_of({0: 8, 1: 2}, {0: 10, 1: 4})) == {0: 2, 1: 3}  # within the epochs a fold ran
    assert honest.epochs(results_of({3: 4}, {3: 6})) == {3: 4}


def test_rules_say_when_a_folds_own_rows_chose_its_epoch():
    honest, last = RULES["honest"], RULES["last"]
    assert "one trained fold" in honest.chosen_on_own_rows(results_of({3: 4}, {3: 10}))
    # fold 1 stopped early at epoch 3, before the others' median best (8): reading it at 3 is its own rows' choice
    cut = results_of({0: 8, 1: 1, 2: 8}, {0: 10, 1: 4, 2: 10})
    assert "folds [1]" in honest.chosen_on_own_rows(cut) and "folds [1]" in last.chosen_on_own_rows(cut)
    # a fold that stopped early after the others' median best is read at an epoch its rows did not choose
    late = results_of({0: 2, 1: 3, 2: 2}, {0: 10, 1: 6, 2: 10})
    assert honest.chosen_on_own_rows(late) is None and last.chosen_on_own_rows(late) is not None
    assert "optimistic" in RULES["best"].chosen_on_own_rows(late)
