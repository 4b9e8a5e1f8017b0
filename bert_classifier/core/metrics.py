"""Classification metrics beyond the original's accuracy and loss, in numpy only.

`classification_metrics` gives what `eval_metrics.json` holds: per-class precision, recall, F1
and support, macro-F1, Matthews correlation (CoLA's official metric), ROC AUC for two labels and
the confusion matrix. Definitions follow scikit-learn's (the tests compare against it), so the
numbers mean what users expect from `sklearn.metrics`:

- precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2 tp / (2 tp + fp + fn); a ratio
  whose denominator is 0 (a label never predicted, or never true) is 0, as scikit-learn's
  `zero_division=0`.
- macro_f1 is the mean F1 over the labels that occur among the true or the predicted labels
  (scikit-learn's `f1_score(average="macro")`); a label absent from both has no F1 to average.
- mcc is the multi-class Matthews correlation; 0 when undefined (one label only).
- roc_auc (two labels only) ranks the examples by the probability of the second label, ties
  counting one half; None (null in JSON) when only one label occurs, or with more than two.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np


def confusion_matrix(label_ids: np.ndarray, predictions: np.ndarray,
                     num_labels: int) -> np.ndarray:
    """Counts [num_labels, num_labels] int64: rows = true label id, columns = predicted id."""
    matrix = np.zeros((num_labels, num_labels), np.int64)
    np.add.at(matrix, (np.asarray(label_ids, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, 0 where the denominator is 0."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def matthews_corrcoef(matrix: np.ndarray) -> float:
    """Multi-class Matthews correlation of a confusion matrix (Gorodkin's R_K); 0 if undefined."""
    matrix = np.asarray(matrix, np.float64)
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    n, correct = matrix.sum(), np.trace(matrix)
    covariance = correct * n - np.dot(true_counts, predicted_counts)
    true_variance = n * n - np.dot(true_counts, true_counts)
    predicted_variance = n * n - np.dot(predicted_counts, predicted_counts)
    if true_variance * predicted_variance == 0:
        return 0.0
    return float(covariance / np.sqrt(true_variance * predicted_variance))


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> Optional[float]:
    """Area under the ROC curve of `scores` [N] for the boolean labels `is_positive` [N]: the
    probability that a positive outranks a negative (ties count 1/2, the Mann-Whitney U).
    None when the positives or the negatives are missing."""
    is_positive = np.asarray(is_positive, bool)
    num_positive = int(is_positive.sum())
    num_negative = len(is_positive) - num_positive
    if num_positive == 0 or num_negative == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(scores, np.float64), return_inverse=True,
                                   return_counts=True)
    # 1-based ranks; tied scores share the mean of the ranks they span.
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = mean_rank[inverse.reshape(-1)]
    u = ranks[is_positive].sum() - num_positive * (num_positive + 1) / 2.0
    return float(u / (num_positive * num_negative))


def classification_metrics(label_ids: np.ndarray, predictions: np.ndarray,
                           probabilities: np.ndarray, label_names: Sequence[str],
                           is_real_example: Optional[np.ndarray] = None) -> Dict[str, object]:
    """The metrics of eval_metrics.json over the real examples.

    Args:
      label_ids: [N] true label ids (indexes into label_names).
      predictions: [N] predicted label ids (the argmax of the logits).
      probabilities: [N, num_labels] class probabilities (softmax); ROC AUC uses column 1.
      label_names: the task's get_labels(), in id order.
      is_real_example: [N] 1 for real examples, 0 for padding rows (TPU / several replicas),
        which are left out of every number. None: all rows are real.

    Returns a JSON-ready dict: labels, num_examples, per_class (a list in label order of
    {label, precision, recall, f1, support}), macro_f1, mcc, roc_auc (None unless two labels
    both occur) and confusion_matrix (rows = true label, columns = predicted, label order).
    """
    num_labels = len(label_names)
    label_ids = np.asarray(label_ids).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)
    probabilities = np.asarray(probabilities, np.float64).reshape(-1, num_labels)
    if is_real_example is not None:
        real = np.asarray(is_real_example).reshape(-1) != 0
        label_ids, predictions, probabilities = label_ids[real], predictions[real], \
            probabilities[real]
    matrix = confusion_matrix(label_ids, predictions, num_labels)
    true_positives = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * true_positives, support + predicted)
    occurring = (support + predicted) > 0
    per_class: List[Dict[str, object]] = [
        {"label": name, "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(label_names)]
    return {
        "labels": list(label_names),
        "num_examples": int(len(label_ids)),
        "per_class": per_class,
        "macro_f1": float(f1[occurring].mean()) if occurring.any() else 0.0,
        "mcc": matthews_corrcoef(matrix),
        "roc_auc": (roc_auc(label_ids == 1, probabilities[:, 1]) if num_labels == 2 else None),
        "confusion_matrix": matrix.tolist(),
    }
