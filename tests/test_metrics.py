"""metrics.py against scikit-learn (a test-only reference), edge cases included."""

import json

import numpy as np
import pytest
from sklearn import metrics as sk

from bert_classifier.core import metrics


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sklearn(labels, predictions, probabilities, num_labels):
    """What metrics.classification_metrics must equal, computed by scikit-learn."""
    ids = list(range(num_labels))
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        labels, predictions, labels=ids, zero_division=0)
    auc = None
    if num_labels == 2 and len(set(labels.tolist())) == 2:
        auc = sk.roc_auc_score(labels, probabilities[:, 1])
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "macro_f1": sk.f1_score(labels, predictions, average="macro", zero_division=0),
            "mcc": sk.matthews_corrcoef(labels, predictions), "roc_auc": auc,
            "confusion_matrix": sk.confusion_matrix(labels, predictions, labels=ids)}


def _assert_matches_sklearn(result, labels, predictions, probabilities, names):
    want = _sklearn(labels, predictions, probabilities, len(names))
    assert result["labels"] == list(names)
    assert result["num_examples"] == len(labels)
    assert [c["label"] for c in result["per_class"]] == list(names)
    for key in ("precision", "recall", "f1", "support"):
        np.testing.assert_allclose([c[key] for c in result["per_class"]], want[key], atol=1e-12,
                                   err_msg=key)
    assert result["macro_f1"] == pytest.approx(want["macro_f1"], abs=1e-12)
    assert result["mcc"] == pytest.approx(want["mcc"], abs=1e-12)
    if want["roc_auc"] is None:
        assert result["roc_auc"] is None
    else:
        assert result["roc_auc"] == pytest.approx(want["roc_auc"], abs=1e-12)
    np.testing.assert_array_equal(result["confusion_matrix"], want["confusion_matrix"])
    json.dumps(result)  # JSON-ready: plain Python numbers, None for null


@pytest.mark.parametrize("num_labels,seed", [(2, 0), (2, 1), (3, 2), (5, 3)])
def test_random_predictions_match_sklearn(num_labels, seed):
    rng = np.random.default_rng(seed)
    n = 200
    labels = rng.integers(0, num_labels, n)
    logits = rng.normal(size=(n, num_labels)) + 1.5 * np.eye(num_labels)[labels]
    probabilities = _softmax(logits).astype(np.float32)
    predictions = logits.argmax(-1)
    names = [f"label_{i}" for i in range(num_labels)]
    result = metrics.classification_metrics(labels, predictions, probabilities, names)
    _assert_matches_sklearn(result, labels, predictions, probabilities, names)
    assert 0.0 < result["macro_f1"] < 1.0 and 0.0 < result["mcc"] < 1.0  # not degenerate


def test_tied_scores_count_half_in_roc_auc():
    labels = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    scores = np.array([0.2, 0.2, 0.5, 0.5, 0.9, 0.1, 0.5, 0.7], np.float32)
    probabilities = np.stack([1 - scores, scores], axis=1)
    result = metrics.classification_metrics(labels, (scores > 0.5).astype(int), probabilities,
                                            ["0", "1"])
    assert result["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    # 16 positive/negative pairs: 11 won, 3 tied -> (11 + 1.5) / 16.
    assert result["roc_auc"] == pytest.approx(12.5 / 16)


def test_a_label_never_predicted_has_precision_zero():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 1, 0, 1, 0])  # label 2 is never predicted
    probabilities = np.full((7, 3), 1 / 3)
    names = ["a", "b", "c"]
    result = metrics.classification_metrics(labels, predictions, probabilities, names)
    _assert_matches_sklearn(result, labels, predictions, probabilities, names)
    assert result["per_class"][2] == {"label": "c", "precision": 0.0, "recall": 0.0,
                                      "f1": 0.0, "support": 3}
    assert result["roc_auc"] is None  # three labels


def test_a_label_absent_from_truth_and_predictions_is_left_out_of_macro_f1():
    labels = np.array([0, 1, 1, 0])
    predictions = np.array([0, 1, 0, 0])
    names = ["x", "y", "z"]  # "z" occurs nowhere
    result = metrics.classification_metrics(labels, predictions, np.full((4, 3), 1 / 3), names)
    _assert_matches_sklearn(result, labels, predictions, np.full((4, 3), 1 / 3), names)
    f1 = [c["f1"] for c in result["per_class"]]
    assert result["macro_f1"] == pytest.approx((f1[0] + f1[1]) / 2)


def test_a_single_class_present_has_no_auc_and_zero_mcc():
    labels = np.zeros(6, int)
    predictions = np.array([0, 0, 1, 0, 1, 0])
    probabilities = _softmax(np.random.default_rng(0).normal(size=(6, 2)))
    result = metrics.classification_metrics(labels, predictions, probabilities, ["0", "1"])
    _assert_matches_sklearn(result, labels, predictions, probabilities, ["0", "1"])
    assert result["roc_auc"] is None and result["mcc"] == 0.0
    assert json.loads(json.dumps(result))["roc_auc"] is None


def test_padding_rows_are_left_out():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 40)
    logits = rng.normal(size=(40, 2))
    probabilities, predictions = _softmax(logits), logits.argmax(-1)
    real = np.ones(40, np.int32)
    real[-6:] = 0
    # Padding rows as the records hold them: label 0, and whatever the model predicts.
    labels[-6:] = 0
    predictions[-6:] = 1
    result = metrics.classification_metrics(labels, predictions, probabilities, ["0", "1"],
                                            is_real_example=real)
    _assert_matches_sklearn(result, labels[:34], predictions[:34], probabilities[:34],
                            ["0", "1"])
    assert np.sum(result["confusion_matrix"]) == 34
    everything = metrics.classification_metrics(labels, predictions, probabilities, ["0", "1"])
    assert everything["confusion_matrix"] != result["confusion_matrix"]


def test_no_real_examples():
    result = metrics.classification_metrics(np.zeros(3, int), np.zeros(3, int),
                                            np.full((3, 2), 0.5), ["0", "1"],
                                            is_real_example=np.zeros(3))
    assert result["num_examples"] == 0 and result["roc_auc"] is None
    assert result["macro_f1"] == 0.0 and result["mcc"] == 0.0
    assert result["confusion_matrix"] == [[0, 0], [0, 0]]
