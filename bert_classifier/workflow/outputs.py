"""The files run_classifier writes after eval and predict: eval_results.txt, test_results.tsv,
test_predictions.tsv, eval_metrics.json and the TensorBoard eval summaries, each written whole or
not at all.
"""

import json
import os
from typing import Dict, List, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.core import files  # noqa: E402
from bert_classifier.core import metrics  # noqa: E402
from bert_classifier.workflow import forward  # noqa: E402


def write_eval_results(path: str, results: Dict[str, object]) -> None:
    """eval_results.txt: sorted keys, `key = value`, values as str() of float32/int64."""
    logging.info("***** Eval results *****")
    lines = []
    for key in sorted(results):
        logging.info("  %s = %s", key, str(results[key]))
        lines.append("%s = %s\n" % (key, str(results[key])))
    files.write_file(path, "".join(lines))


def write_eval_summaries(output_dir: str, results: Dict[str, object]) -> None:
    """TensorBoard scalars of the eval metrics in output_dir/eval (the Estimator's place),
    at the evaluated checkpoint's global_step."""
    writer = tf.summary.create_file_writer(os.path.join(output_dir, "eval"))
    with writer.as_default(step=int(results["global_step"])):
        for key, value in sorted(results.items()):
            if key != "global_step":
                tf.summary.scalar(key, float(value))
    writer.close()


def _probability_fields(row: np.ndarray) -> List[str]:
    """A row of probabilities as the original's test_results.tsv prints it: str() of each
    float32 (e.g. 0.6534671)."""
    return [str(p) for p in row.astype(np.float32)]


def write_test_results(path: str, probabilities: np.ndarray) -> int:
    """test_results.tsv: one line per example, tab-joined str() of float32 probabilities."""
    logging.info("***** Predict results *****")
    lines = ["\t".join(_probability_fields(row)) + "\n" for row in probabilities]
    files.write_file(path, "".join(lines))
    return len(lines)


def prediction_table(guids: Sequence[str], probabilities: np.ndarray,
                     label_names: Sequence[str]) -> str:
    """A TSV with the header `guid, label, <one column per label name>` and one row per example:
    its guid, the predicted (most probable) label's name, and its probabilities printed as in
    test_results.tsv. probabilities: [examples, labels], columns in label_names order."""
    lines = ["\t".join(["guid", "label"] + [str(name) for name in label_names]) + "\n"]
    for guid, row, label in zip(guids, probabilities,
                                forward.predicted_labels(probabilities, label_names)):
        lines.append("\t".join([str(guid), str(label)] + _probability_fields(row)) + "\n")
    return "".join(lines)


def write_test_predictions(path: str, guids: Sequence[str], probabilities: np.ndarray,
                           label_names: Sequence[str]) -> None:
    """test_predictions.tsv (an addition of this port, written beside test_results.tsv): the
    prediction_table of the test examples."""
    files.write_file(path, prediction_table(guids, probabilities, label_names))


def eval_metrics_report(outputs: forward.EvalOutputs, label_names: List[str]) -> Dict[str, object]:
    """eval_metrics.json's content: the original's metrics (eval_accuracy, eval_loss, loss,
    global_step) and metrics.classification_metrics over the real examples."""
    # float32 values as their shortest text (0.8455882, as in eval_results.txt).
    report: Dict[str, object] = {key: (int(value) if key == "global_step" else float(str(value)))
                                 for key, value in outputs.results.items()}
    report.update(metrics.classification_metrics(
        outputs.label_ids, outputs.predictions, outputs.probabilities, label_names,
        outputs.is_real_example))
    return report


def write_json(path: str, obj) -> None:
    files.write_file(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
