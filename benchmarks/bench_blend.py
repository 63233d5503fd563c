"""Blend tuning time at competition scale: 3 runs x 18,900 out-of-fold rows x 18 classes, on this machine.

    python benchmarks/bench_blend.py [--runs 3] [--rows 18900] [--classes 18] [--rounds 3]

Synthetic log-probabilities (each run carries the label with its own strength, all over-predict one class), five
folds; times what `ensemble.blend` does (`tuning.tune_and_estimate`): the nested-CV estimate with and without
per-class biases (each tunes five times), then the kept blend's weights and biases. Target: within 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import common
from ensemble import tuning


def synthetic(runs: int, rows: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    logps = []
    for r in range(runs):
        scores = rng.normal(0, 1, (rows, classes))
        scores[np.arange(rows), labels] += 1.0 + 0.5 * r
        scores[:, 0] += 0.5
        logps.append(tuning.log_softmax(scores))
    return np.stack(logps), labels, rng.integers(0, 5, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=18900)
    parser.add_argument("--classes", type=int, default=18)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logps, labels, folds = synthetic(args.runs, args.rows, args.classes)
    rows = []
    for r in range(args.rounds):
        start = time.perf_counter()
        estimate = tuning.tune_and_estimate(logps, labels, folds)
        seconds = time.perf_counter() - start
        in_sample = tuning.macro_f1(labels, estimate.blend.predict(logps).argmax(1), args.classes)
        rows.append([r + 1, f"{seconds:.2f}", f"{in_sample:.4f}", f"{estimate.nested_f1:.4f}",
                     "kept" if estimate.bias_kept else "zero"])
    print(common.markdown_table(["round", "total s", "oof_f1", "nested_cv_f1", "class biases"], rows))
    print(f"{args.runs} runs x {args.rows} rows x {args.classes} classes; median total "
          f"{common.median([float(r[1]) for r in rows]):.2f} s; target within 30 s")
    print(common.machine())


if __name__ == "__main__":
    main()
