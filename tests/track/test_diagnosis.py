"""Reading learning curves: rising, plateau, over-fitting and chance, and the run-level advice."""

from __future__ import annotations

import numpy as np
import pandas as pd

from foldtrain.track.diagnosis import diagnose, fold_findings


def history(val_f1, val_loss=None, train_loss=None) -> pd.DataFrame:
    n = len(val_f1)
    return pd.DataFrame({"epoch": range(n), "val_f1": val_f1,
                         "val_loss": val_loss if val_loss is not None else np.linspace(2, 1, n),
                         "train_loss": train_loss if train_loss is not None else np.linspace(2.5, 0.5, n)})


RISING = history([0.1, 0.2, 0.3, 0.35, 0.45, 0.5, 0.58, 0.66])
PLATEAU = history([0.1, 0.4, 0.6, 0.7, 0.71, 0.70, 0.71, 0.705])
OVERFIT = history([0.2, 0.4, 0.5, 0.52, 0.5, 0.49, 0.48, 0.47], val_loss=[2, 1.5, 1.2, 1.1, 1.3, 1.5, 1.7, 1.9],
                  train_loss=[2.4, 1.8, 1.2, 0.8, 0.5, 0.3, 0.2, 0.1])
CHANCE = history([0.03, 0.05, 0.04, 0.06, 0.05, 0.05, 0.06, 0.06])


def test_each_curve_reads_as_what_it_is():
    assert fold_findings(RISING, 18) == ["under-trained"]
    assert fold_findings(PLATEAU, 18) == []
    assert fold_findings(OVERFIT, 18) == ["over-fitting"]
    assert "at chance" in fold_findings(CHANCE, 18)
    assert fold_findings(history([0.2, 0.4, 0.6, 0.7]), 18) == ["under-trained"]  # short runs too


def test_run_advice_names_the_key_and_the_share_of_folds():
    found = diagnose({0: RISING, 1: RISING, 2: RISING, 3: RISING, 4: PLATEAU}, 18)
    assert [d["kind"] for d in found] == ["under-trained"] and found[0]["folds"] == [0, 1, 2, 3]
    assert "4 of 5 folds" in found[0]["advice"] and "train.epochs" in found[0]["advice"]
    assert diagnose({0: RISING, 1: PLATEAU, 2: PLATEAU, 3: PLATEAU}, 18) == []  # a lone fold is no pattern
    overfit = diagnose({0: OVERFIT, 1: OVERFIT, 2: PLATEAU}, 18)
    assert overfit[0]["kind"] == "over-fitting" and "aug." in overfit[0]["advice"]
    chance = diagnose({0: CHANCE, 1: PLATEAU, 2: PLATEAU}, 18)
    assert chance[0]["kind"] == "at chance" and chance[0]["folds"] == [0]


# The five folds of a 4-epoch run on a hidden 60-person set (resnet10t, 96 px, lr 0.003): plainly short, yet three
# of them peak at the second-to-last epoch.
SHORT_RUN_VAL_F1 = [[0.049, 0.136, 0.108, 0.242], [0.066, 0.076, 0.185, 0.164], [0.044, 0.085, 0.159, 0.141],
                    [0.014, 0.035, 0.053, 0.099], [0.023, 0.084, 0.199, 0.160]]
SHORT_RUN_TRAIN_LOSS = [2.8, 2.3, 1.9, 1.7]
# A converged 12-epoch run: the loss flattened, validation F1 on a noisy plateau that happens to peak at the end.
CONVERGED_TRAIN_LOSS = [2.8, 1.6, 1.1, 0.85, 0.7, 0.6, 0.54, 0.5, 0.48, 0.47, 0.465, 0.46]
CONVERGED_VAL_F1 = [0.2, 0.45, 0.55, 0.6, 0.62, 0.61, 0.63, 0.6, 0.62, 0.61, 0.62, 0.635]


def test_a_short_run_is_under_trained_for_most_folds_though_they_peak_early():
    curves = {k: history(f1, val_loss=[2.7, 2.4, 2.2, 2.1], train_loss=SHORT_RUN_TRAIN_LOSS)
              for k, f1 in enumerate(SHORT_RUN_VAL_F1)}
    found = diagnose(curves, 18)
    under = [d for d in found if d["kind"] == "under-trained"]
    assert under and len(under[0]["folds"]) >= 4 and "train.epochs" in under[0]["advice"]


def test_a_converged_run_is_not_under_trained_even_when_the_last_epoch_is_best():
    curve = history(CONVERGED_VAL_F1, val_loss=np.linspace(2.5, 1.2, 12), train_loss=CONVERGED_TRAIN_LOSS)
    assert fold_findings(curve, 18) == []
    # the same validation curve with a loss still falling fast is short
    assert fold_findings(history(CONVERGED_VAL_F1, train_loss=np.linspace(2.8, 0.6, 12)), 18) == ["under-trained"]
