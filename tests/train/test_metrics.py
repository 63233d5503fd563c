import numpy as np
from sklearn.metrics import f1_score

from foldtrain.train import metrics


def test_macro_f1_counts_absent_classes_as_zero():
    labels = np.array([0, 0, 1, 1])
    preds = np.array([0, 0, 1, 0])
    two = metrics.macro_f1(labels, preds, 2)
    assert np.isclose(two, f1_score(labels, preds, average="macro"))
    assert np.isclose(metrics.macro_f1(labels, preds, 4), two / 2)  # classes 2, 3 absent: scored 0


def test_accuracy_confusion_and_per_class():
    labels = np.array([0, 1, 2, 2])
    preds = np.array([0, 2, 2, 2])
    assert metrics.accuracy(labels, preds) == 0.75
    matrix = metrics.confusion(labels, preds, 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert np.allclose(metrics.per_class_f1(labels, preds, 3), [1.0, 0.0, 0.8])
