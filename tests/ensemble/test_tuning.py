"""Blend tuning on out-of-fold log-probabilities: weights, biases, and a nested estimate that is really held out."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ensemble import tuning


def make_runs(rows: int = 3000, classes: int = 6, runs: int = 3, seed: int = 0, skill=(1.0, 2.0, 0.5)):
    """Runs whose scores carry the label with different strength, plus a class prior that biases can undo."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(classes, rows, p=np.linspace(2, 1, classes) / np.linspace(2, 1, classes).sum())
    scores = []
    for r in range(runs):
        s = rng.normal(0, 1, (rows, classes))
        s[np.arange(rows), labels] += skill[r % len(skill)]
        s[:, 0] += 0.8  # every run over-predicts class 0
        scores.append(tuning.log_softmax(s))
    folds = rng.integers(0, 5, rows)
    return np.stack(scores), labels, folds


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    labels, preds = rng.integers(0, 7, 500), rng.integers(0, 6, 500)
    assert tuning.macro_f1(labels, preds, 8) == pytest.approx(
        f1_score(labels, preds, labels=list(range(8)), average="macro", zero_division=0))


def test_weights_are_a_distribution_and_never_below_the_best_run():
    logps, labels, _ = make_runs()
    weights = tuning.greedy_weights(logps, labels)
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    singles = [tuning.macro_f1(labels, lp.argmax(1), 6) for lp in logps]
    assert tuning.macro_f1(labels, tuning.blend(logps, weights).argmax(1), 6) >= max(singles)
    assert weights[1] == weights.max()  # the strongest run weighs most


def test_biases_raise_the_oof_score_and_no_bias_means_zeros():
    logps, labels, _ = make_runs()
    with_bias = tuning.tune(logps, labels)
    without = tuning.tune(logps, labels, biases=False)
    assert (without.bias == 0).all() and np.array_equal(with_bias.weights, without.weights)
    assert with_bias.bias[0] < 0  # undoes the shared over-prediction of class 0
    assert tuning.macro_f1(labels, with_bias.predict(logps).argmax(1), 6) > \
        tuning.macro_f1(labels, without.predict(logps).argmax(1), 6)
    equal = tuning.tune(logps, labels, weights=False, biases=False)
    assert np.allclose(equal.weights, 1 / 3)


def test_each_bias_step_is_the_exact_best_on_its_grid():
    logps, labels, _ = make_runs(rows=400, classes=4, runs=1)
    logp = logps[0]
    bias = np.array([0.3, -0.2, 0.0, 0.1])
    for c in range(4):
        value, score = tuning._best_bias(logp + bias, labels, c, bias[c], tuning.BIAS_GRID)
        brute = []
        for b in tuning.BIAS_GRID:
            trial = bias.copy()
            trial[c] = b
            brute.append(tuning.macro_f1(labels, (logp + trial).argmax(1), 4))
        assert score == pytest.approx(max(brute))
        trial = bias.copy()
        trial[c] = value
        assert tuning.macro_f1(labels, (logp + trial).argmax(1), 4) == pytest.approx(score)


def test_blending_a_run_with_itself_reproduces_it():
    logps, labels, _ = make_runs(runs=1)
    twin = np.stack([logps[0], logps[0]])
    tuned = tuning.tune(twin, labels, biases=False)
    assert tuned.weights.sum() == pytest.approx(1.0)
    assert np.allclose(tuned.predict(twin), logps[0])


def test_nested_estimate_stays_at_chance_on_noise_while_in_sample_rises():
    rng = np.random.default_rng(3)
    rows, classes = 4000, 18
    labels = rng.integers(0, classes, rows)
    logps = np.stack([tuning.log_softmax(rng.normal(0, 1, (rows, classes))) for _ in range(3)])
    folds = rng.integers(0, 5, rows)
    tuned = tuning.tune(logps, labels)
    in_sample = tuning.macro_f1(labels, tuned.predict(logps).argmax(1), classes)
    nested, preds = tuning.nested_cv(logps, labels, folds)
    chance = 1 / classes
    assert in_sample > chance + 0.01  # tuning on the rows it scores finds patterns in noise
    assert abs(nested - chance) < 0.015 and nested < in_sample - 0.005
    assert preds.shape == labels.shape


def test_biases_are_kept_where_they_carry_over_to_held_out_folds():
    logps, labels, folds = make_runs()  # every run over-predicts class 0: a shift that holds on every fold
    estimate = tuning.tune_and_estimate(logps, labels, folds)
    assert estimate.bias_kept and estimate.blend.bias[0] < 0
    assert estimate.nested_f1_bias > estimate.nested_f1_no_bias
    assert estimate.nested_f1 == by_hand(logps, labels, folds) > estimate.nested_f1_no_bias


def by_hand(logps, labels, folds) -> float:
    """The honest score spelled out: for each held-out fold, decide on biases by nested CV over the other folds,
    tune on them, predict the held-out fold."""
    preds = np.zeros(len(labels), dtype=np.int64)
    for fold in np.unique(folds):
        held = folds == fold
        inner = [tuning.nested_cv(logps[:, ~held], labels[~held], folds[~held], biases=b)[0] for b in (False, True)]
        tuned = tuning.tune(logps[:, ~held], labels[~held], biases=inner[1] > inner[0])
        preds[held] = tuned.predict(logps[:, held]).argmax(1)
    return tuning.macro_f1(labels, preds, logps.shape[2])


def test_biases_fitted_to_noise_of_a_small_set_are_left_at_zero():
    # One well-calibrated run, 420 rows over 18 classes (a 60-person set): biases raise the in-sample F1 by chasing
    # single rows, and lower the held-out one.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 18, 420)
    scores = rng.normal(0, 1, (420, 18))
    scores[np.arange(420), labels] += 1.5
    logps, folds = tuning.log_softmax(scores)[None], rng.integers(0, 5, 420)
    in_sample = tuning.macro_f1(labels, tuning.tune(logps, labels).predict(logps).argmax(1), 18)
    estimate = tuning.tune_and_estimate(logps, labels, folds)
    assert not estimate.bias_kept and (estimate.blend.bias == 0).all()
    assert estimate.nested_f1_no_bias > estimate.nested_f1_bias
    assert estimate.nested_f1 == by_hand(logps, labels, folds)  # the decision made inside the loop, not the max
    assert in_sample > tuning.macro_f1(labels, logps[0].argmax(1), 18)  # what in-sample tuning alone would have kept
    assert tuning.tune_and_estimate(logps, labels, folds, biases=False).nested_f1_bias is None


@pytest.mark.parametrize("tamper, named", [
    (lambda b: b.update(weights=[1.5, 1.5]), "sum to 3"),
    (lambda b: b.update(weights=[float("nan"), 1.0]), "finite and non-negative"),
    (lambda b: b.update(weights=[-0.5, 1.5]), "finite and non-negative"),
    (lambda b: b.update(weights=["0.5", "0.5"]), "must be numbers"),
    (lambda b: b.update(weights=[0.0, 0.0]), "sum to 0"),
    (lambda b: b.update(weights=[1.0]), "2 runs need 2 weights"),
    (lambda b: b["class_bias"].__setitem__(1, float("inf")), "class_bias must be finite"),
    (lambda b: b.update(class_bias=[0.0] * 5), "one value per class (3)"),
    (lambda b: b.update(class_bias=["a", 0, 0]), "class_bias must be finite numbers"),
    (lambda b: b.pop("pins"), "lacks pins"),
    (lambda b: b.update(pins={"a": {}}), "one entry per run"),
    (lambda b: b.update(runs="a"), "non-empty list"),
])
def test_a_tampered_blend_file_is_named_for_what_is_wrong(tamper, named: str):
    from ensemble.blend_predict import blend_problem

    blend = {"runs": ["a", "b"], "weights": [0.25, 0.75], "class_bias": [0.0, 0.1, -0.2], "classes": ["x", "y", "z"],
             "pins": {"a": {}, "b": {}}}
    assert blend_problem(blend) is None
    tamper(blend)
    assert named in blend_problem(blend)
