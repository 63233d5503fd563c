"""What a fold has done so far, as typed records: the epochs' scores, the best one, updates, and when to stop."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

METRICS = ("train_loss", "val_loss", "val_f1", "val_acc", "lr")


@dataclass
class EpochRecord:
    """One epoch's numbers; the validation ones are None when the fit has no validation rows."""

    epoch: int
    train_loss: float
    lr: float
    started: float  # wall-clock seconds since the epoch (time.time())
    ended: float
    val_loss: float | None = None
    val_f1: float | None = None
    val_acc: float | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def metrics(self) -> dict[str, float]:
        """The metrics MLflow and metrics.csv get (absent validation metrics left out)."""
        return {k: getattr(self, k) for k in METRICS if getattr(self, k) is not None}


@dataclass
class FoldProgress:
    """A fold's history and best epoch; saved with the resume state, so a resumed fold goes on where it was."""

    fold: int
    epochs: int
    started: float
    history: list[EpochRecord] = field(default_factory=list)
    best_f1: float | None = None
    best_epoch: int = -1
    updates: int = 0

    @property
    def next_epoch(self) -> int:
        return len(self.history)

    @property
    def last_epoch(self) -> int:
        return len(self.history) - 1

    def record(self, rec: EpochRecord) -> bool:
        """Add an epoch; True when it is the new best by validation F1 (always, without validation)."""
        self.history.append(rec)
        improved = rec.val_f1 is None or self.best_f1 is None or rec.val_f1 > self.best_f1
        if improved:
            self.best_f1, self.best_epoch = rec.val_f1, rec.epoch
        return improved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldProgress:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["history"] = [EpochRecord(**rec) for rec in data.get("history", [])]
        return cls(**values)


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when validation F1 has not improved for `patience` epochs (0: never)."""

    patience: int

    def should_stop(self, progress: FoldProgress) -> bool:
        return self.patience > 0 and progress.last_epoch - progress.best_epoch >= self.patience
