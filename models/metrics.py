"""Classification metrics, as plain Python numbers so they go straight into JSON reports."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are true classes, columns predicted classes."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} true labels but {y_pred.size} predictions")
    for name, y in (("true label", y_true), ("prediction", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"a {name} lies outside 0..{n_classes - 1}")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def matthews_corrcoef(confusion: np.ndarray) -> float:
    """Multi-class MCC (Gorodkin 2004, R_K) from a confusion matrix; 0.0 when undefined.

        MCC = (c*s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2))

    with c correct predictions, s samples, t_k times class k truly occurred, p_k times it was
    predicted. The denominator is zero when all labels or all predictions are one class.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    c, s = np.trace(cm), cm.sum()
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - p @ t) / denominator) if denominator > 0 else 0.0


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           n_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1, MCC and the confusion matrix (rows true, columns predicted).

    Macro-F1 averages over the classes that occur in the labels or the predictions; a class
    absent from both says nothing about the classifier. `f1_per_class` holds None for those.
    Empty inputs give 0.0 everywhere, so a threshold on them fails rather than passes.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    n = int(cm.sum())
    true_pos = np.diag(cm)
    false_pos = cm.sum(axis=0) - true_pos
    false_neg = cm.sum(axis=1) - true_pos
    # F1 = 2TP / (2TP + FP + FN); the denominator is 0 only for classes absent from both.
    denominators = 2 * true_pos + false_pos + false_neg
    f1_per_class = [float(2 * tp / d) if d else None
                    for tp, d in zip(true_pos, denominators, strict=True)]
    present = [f for f in f1_per_class if f is not None]
    return {
        "accuracy": float(true_pos.sum() / n) if n else 0.0,
        "macro_f1": float(np.mean(present)) if present else 0.0,
        "mcc": matthews_corrcoef(cm),
        "f1_per_class": f1_per_class,
        "n_samples": n,
        "confusion": cm.tolist(),
    }


def top1_agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Fraction of rows whose argmax agree (ties go to the lowest class index, as in C loops)."""
    a, b = np.asarray(logits_a), np.asarray(logits_b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"logits must be two arrays of the same (N, C) shape, got {a.shape} "
                         f"and {b.shape}")
    if len(a) == 0:
        return 0.0
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))
