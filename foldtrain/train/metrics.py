"""Classification metrics on gathered predictions (scikit-learn does the arithmetic)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> float:
    """Macro F1 over all `num_classes` (a class absent from both counts as 0, as the competition scores)."""
    return float(f1_score(labels, preds, labels=list(range(num_classes)), average="macro", zero_division=0))


def per_class_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """F1 of each class."""
    return f1_score(labels, preds, labels=list(range(num_classes)), average=None, zero_division=0)


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Fraction of correct predictions."""
    return float(accuracy_score(labels, preds))


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts, rows true, columns predicted."""
    return confusion_matrix(labels, preds, labels=list(range(num_classes)))


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Per-row log-probabilities of class scores (logits, or the joint log-probabilities of three heads)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_loss_per_row(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each row's class scores against its integer label."""
    return -log_softmax(scores)[np.arange(len(labels)), labels]


def log_loss(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of class scores against integer labels."""
    return float(log_loss_per_row(scores, labels).mean()) if len(labels) else float("nan")
