"""Epoch rules: which epoch of each fold a CV run reads, and whether fold k's own validation rows chose it.

Every fold keeps every epoch's validation scores, so the out-of-fold table can be read under any rule:
- `best`: each fold's best epoch by its own validation F1. Choosing on the rows that score it is optimistic (the
  max of noisy epoch scores is biased upward), so its figure is always named `..._best`.
- `last`: each fold's last epoch. Honest, unless `train.early_stopping` ended a fold: its last epoch is then its
  best + patience, chosen on its own rows.
- `honest`: each fold at the median best epoch of the *other* folds. Honest, unless there is no other fold
  (`cv.only=[k]`), or a fold stopped early before that epoch (reading it at its own stop would be its rows' choice).

A rule answers `epochs(results)` and `chosen_on_own_rows(results)`: the reason its figure is not an honest estimate,
or None. The estimates, the kept checkpoints, blending and the log all ask these objects, never the rule's name.
"""

from __future__ import annotations

import numpy as np


def stopped_early(results: dict[int, dict]) -> list[int]:
    """Folds that early stopping ended before their planned epochs."""
    return [f for f, r in results.items() if r.get("stopped_early")]


class EpochRule:
    name = ""

    def epochs(self, results: dict[int, dict]) -> dict[int, int]:
        """The epoch each fold is read at, from the folds' result.json."""
        raise NotImplementedError

    def chosen_on_own_rows(self, results: dict[int, dict]) -> str | None:
        """Why a fold's own validation rows chose its epoch under this rule, or None when they chose nothing."""
        raise NotImplementedError


class Best(EpochRule):
    name = "best"

    def epochs(self, results):
        return {f: r["best_epoch"] for f, r in results.items()}

    def chosen_on_own_rows(self, results):
        return "each fold's epoch is its best by validation F1 on the rows it scores (optimistic)"


class Last(EpochRule):
    name = "last"

    def epochs(self, results):
        return {f: r["epochs_run"] - 1 for f, r in results.items()}

    def chosen_on_own_rows(self, results):
        stopped = stopped_early(results)
        if stopped:
            return (f"folds {stopped} stopped early on their own validation F1 (train.early_stopping), so their last "
                    f"epoch was chosen on the rows it scores")
        return None


class Honest(EpochRule):
    name = "honest"

    @staticmethod
    def others_median(results: dict[int, dict]) -> dict[int, int | None]:
        """Each fold's median best epoch of the other folds (None for a lone fold)."""
        best = {f: r["best_epoch"] for f, r in results.items()}
        return {f: int(np.floor(np.median([e for g, e in best.items() if g != f]) + 0.5)) if len(best) > 1 else None
                for f in best}

    def epochs(self, results):
        """The other folds' median best epoch, within the epochs the fold ran; a lone fold keeps its own best."""
        medians = self.others_median(results)
        return {f: r["best_epoch"] if medians[f] is None else min(medians[f], r["epochs_run"] - 1)
                for f, r in results.items()}

    def chosen_on_own_rows(self, results):
        if len(results) < 2:
            return "one trained fold: no other folds to choose its epoch, so it is its own best (optimistic)"
        medians = self.others_median(results)
        cut = [f for f in stopped_early(results) if medians[f] > results[f]["epochs_run"] - 1]
        if cut:
            return (f"folds {cut} stopped early (on their own validation F1) before the other folds' median best "
                    f"epoch, so their epoch was chosen on the rows it scores")
        return None


RULES: dict[str, EpochRule] = {rule.name: rule for rule in (Best(), Last(), Honest())}
