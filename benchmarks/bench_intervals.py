"""How often the person-level interval covers the true macro F1, against a row bootstrap, on simulated data.

    python benchmarks/bench_intervals.py [--trials 300] [--persons 60 120 200 540] [--classes 6 18]
    python benchmarks/bench_intervals.py --compare --trials 200 --persons 60 --classes 18   # which bootstrap

A large population of persons (7 photos each, one label per person) with clustered predictions: each person has a
skill, and a person the model gets wrong is wrong on most photos, towards one wrong class (as a wrong gender or
age is wrong on all of a person's photos). The true macro F1 is the population's. Each trial draws a set of
persons, computes the 90% basic-bootstrap interval of `foldtrain.track.intervals.f1_interval` with persons as
groups (what foldtrain reports) and with rows as groups (the usual bootstrap), and counts how often each covers the
truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402
from foldtrain.track.intervals import PersonCounts, f1_interval, macro_f1_of, person_draws  # noqa: E402
from tests.track.test_intervals import population  # noqa: E402


def coverage(persons: int, classes: int, trials: int, seed: int = 1) -> list[object]:
    rng = np.random.default_rng(seed)
    labels, preds, groups = population(rng, 200_000, classes)
    counts = PersonCounts.of(labels, preds, groups, classes)
    truth = macro_f1_of(np.ones((1, counts.persons)), counts)[0]
    by_person = labels.reshape(-1, 7), preds.reshape(-1, 7)
    hits = {"persons": 0, "rows": 0}
    widths = {"persons": [], "rows": []}
    for trial in range(trials):
        chosen = rng.choice(counts.persons, persons, replace=False)
        y, p = by_person[0][chosen].ravel(), by_person[1][chosen].ravel()
        for kind, g in (("persons", np.repeat(np.arange(persons), 7)), ("rows", np.arange(len(y)))):
            low, high = f1_interval(y, p, g, classes, level=0.9, resamples=1000, seed=trial)
            hits[kind] += low <= truth <= high
            widths[kind].append(high - low)
    return [persons, classes, f"{truth:.3f}", f"{hits['persons'] / trials:.1%}", f"{np.mean(widths['persons']):.3f}",
            f"{hits['rows'] / trials:.1%}", f"{np.mean(widths['rows']):.3f}"]


def compare_methods(persons: int, classes: int, trials: int, seed: int = 1) -> list[object]:
    """Coverage of the percentile, BCa and basic person-bootstrap intervals on the same trials (why foldtrain uses
    the basic one)."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    labels, preds, groups = population(rng, 200_000, classes)
    counts = PersonCounts.of(labels, preds, groups, classes)
    truth = macro_f1_of(np.ones((1, counts.persons)), counts)[0]
    hits = {"percentile": 0, "BCa": 0, "basic": 0}
    for trial in range(trials):
        chosen = rng.choice(counts.persons, persons, replace=False)
        sub = PersonCounts(counts.tp[chosen], counts.true[chosen], counts.pred[chosen])
        estimate = macro_f1_of(np.ones((1, persons)), sub)[0]
        boot = macro_f1_of(person_draws(persons, persons, 1000, trial), sub)
        low, high = np.percentile(boot, [5, 95])
        hits["percentile"] += low <= truth <= high
        hits["basic"] += 2 * estimate - high <= truth <= 2 * estimate - low
        jack = macro_f1_of(1 - np.eye(persons), sub)  # leave-one-person-out, for the acceleration
        bias = norm.ppf(np.clip(np.mean(boot < estimate) + 0.5 * np.mean(boot == estimate), 1e-6, 1 - 1e-6))
        spread = jack.mean() - jack
        accel = (spread ** 3).sum() / max(6 * (spread ** 2).sum() ** 1.5, 1e-12)
        z = norm.ppf([0.05, 0.95])
        low, high = np.percentile(boot, norm.cdf(bias + (bias + z) / (1 - accel * (bias + z))) * 100)
        hits["BCa"] += low <= truth <= high
    return [persons, classes, *(f"{hits[k] / trials:.1%}" for k in ("percentile", "BCa", "basic"))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--persons", type=int, nargs="+", default=[60, 120, 200, 540])
    parser.add_argument("--classes", type=int, nargs="+", default=[6, 18])
    parser.add_argument("--compare", action="store_true", help="coverage of percentile, BCa and basic intervals")
    args = parser.parse_args(argv)
    if args.compare:
        rows = [compare_methods(p, c, args.trials) for c in args.classes for p in args.persons]
        print(common.markdown_table(["persons", "classes", "percentile", "BCa", "basic (foldtrain)"], rows))
        return
    rows = []
    for classes in args.classes:
        for persons in args.persons:
            rows.append(coverage(persons, classes, args.trials))
            print("  " + " | ".join(map(str, rows[-1])), flush=True)
    print()
    print(common.markdown_table(["persons", "classes", "true macro F1", "person bootstrap: covered (90% nominal)",
                                 "mean width", "row bootstrap: covered", "mean width"], rows))
    print(f"{args.trials} trials per row, 1,000 resamples each")


if __name__ == "__main__":
    main()
