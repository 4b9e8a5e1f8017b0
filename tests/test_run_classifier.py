"""End to end: run_classifier.py as a user runs it, on tiny BERT configs and real files."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import e2e_util
import fixtures
from e2e_util import classifier_args, read_eval_results, run_classifier

REPO_ROOT = e2e_util.REPO_ROOT
sys.path.insert(0, REPO_ROOT)

from bert_classifier.core import checkpoint_names  # noqa: E402

from bert_classifier.core import checkpoints  # noqa: E402
from bert_classifier.workflow import features  # noqa: E402
import modeling  # noqa: E402

# Every test here starts a subprocess or trains: `pytest -m "not slow"` skips the file.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return e2e_util.make_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="module")
def sim_run(tiny_bert, tmp_path_factory):
    """One full sim run (train, eval, predict) whose outputs several tests inspect."""
    base = tmp_path_factory.mktemp("sim_run")
    data_dir, output_dir = str(base / "data"), str(base / "out")
    fixtures.write_sim(data_dir)
    proc = run_classifier(classifier_args(
        tiny_bert, data_dir, output_dir, "sim", do_train="true", do_eval="true",
        do_predict="true", num_train_epochs=2.0, save_checkpoints_steps=3,
        iterations_per_loop=2, seed=3))
    from processors import get_processor
    processor = get_processor("sim")
    return {
        "data_dir": data_dir, "output_dir": output_dir, "log": proc.stderr,
        "num_train": len(processor.get_train_examples(data_dir)),
        "num_dev": len(processor.get_dev_examples(data_dir)),
        "num_test": len(processor.get_test_examples(data_dir)),
        "config": tiny_bert["config"],
    }


def _float32_text(text: str) -> bool:
    """True when `text` is how str() prints a numpy float32 (the original's format)."""
    return str(np.float32(float(text))) == text


def test_sim_eval_results_format_and_steps(sim_run):
    with open(os.path.join(sim_run["output_dir"], "eval_results.txt")) as f:
        lines = f.read().splitlines()
    keys = [line.split(" = ")[0] for line in lines]
    assert keys == ["eval_accuracy", "eval_loss", "global_step", "loss"]
    results = read_eval_results(sim_run["output_dir"])
    expected_steps = int(sim_run["num_train"] / 8 * 2.0)
    assert results["global_step"] == str(expected_steps)
    for key in ("eval_accuracy", "eval_loss", "loss"):
        assert _float32_text(results[key]), (key, results[key])
    assert 0.0 <= float(results["eval_accuracy"]) <= 1.0


def _model_outputs(output_dir, config_path, record_file, num_labels=2):
    """Per-example logits, labels and weights, recomputed from the latest checkpoint."""
    config = modeling.BertConfig.from_json_file(config_path)
    model = modeling.BertClassifier(config, num_labels)
    ones = tf.ones([1, 2], tf.int32)
    model(ones, ones, tf.zeros([1, 2], tf.int32), training=False)
    checkpoints.restore_checkpoint(checkpoints.latest_checkpoint(output_dir),
                                   checkpoint_names.variables_by_checkpoint_name(model))
    spec = features.name_to_features(32)
    batches = tf.data.TFRecordDataset(record_file).map(
        lambda r: features.decode_record(r, spec)).batch(64)
    logits, labels, weights = [], [], []
    for b in batches:
        logits.append(model(b["input_ids"], b["input_mask"], b["segment_ids"],
                            training=False).numpy())
        labels.append(b["label_ids"].numpy())
        weights.append(b["is_real_example"].numpy())
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(weights)


def test_sim_eval_metrics_match_recomputation(sim_run):
    """eval_accuracy / eval_loss weighted by is_real_example; loss = mean of batch means."""
    out = sim_run["output_dir"]
    logits, labels, weights = _model_outputs(out, sim_run["config"],
                                             os.path.join(out, "eval.tf_record"))
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    per_example = -log_probs[np.arange(len(labels)), labels]
    w = weights.astype(np.float64)
    accuracy = np.sum((np.argmax(logits, -1) == labels) * w) / np.sum(w)
    eval_loss = np.sum(per_example * w) / np.sum(w)
    batch_means = [per_example[i:i + 8].mean() for i in range(0, len(per_example), 8)]
    results = read_eval_results(out)
    assert float(results["eval_accuracy"]) == pytest.approx(accuracy, abs=1e-6)
    assert float(results["eval_loss"]) == pytest.approx(eval_loss, abs=1e-5)
    assert float(results["loss"]) == pytest.approx(np.mean(batch_means), abs=1e-5)
    assert len(labels) == sim_run["num_dev"]


def test_sim_eval_metrics_json_matches_sklearn(sim_run):
    """eval_metrics.json: the original's numbers plus per-class, macro-F1, MCC, ROC AUC and the
    confusion matrix, checked against scikit-learn on outputs recomputed from the checkpoint."""
    from sklearn import metrics as sk
    out = sim_run["output_dir"]
    logits, labels, _ = _model_outputs(out, sim_run["config"], os.path.join(out, "eval.tf_record"))
    predictions = logits.argmax(-1)
    probabilities = tf.nn.softmax(logits).numpy()
    with open(os.path.join(out, "eval_metrics.json")) as f:
        report = json.load(f)
    results = read_eval_results(out)
    for key in ("eval_accuracy", "eval_loss", "loss"):
        assert str(np.float32(report[key])) == results[key]
    assert report["global_step"] == int(results["global_step"])
    assert report["labels"] == ["0", "1"] and report["num_examples"] == sim_run["num_dev"]
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        labels, predictions, labels=[0, 1], zero_division=0)
    for i, entry in enumerate(report["per_class"]):
        assert entry["label"] == str(i) and entry["support"] == support[i]
        assert (entry["precision"], entry["recall"], entry["f1"]) == pytest.approx(
            (precision[i], recall[i], f1[i]), abs=1e-9)
    assert report["macro_f1"] == pytest.approx(
        sk.f1_score(labels, predictions, average="macro", zero_division=0), abs=1e-9)
    assert report["mcc"] == pytest.approx(sk.matthews_corrcoef(labels, predictions), abs=1e-9)
    assert report["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, probabilities[:, 1]),
                                              abs=1e-6)
    assert report["confusion_matrix"] == sk.confusion_matrix(labels, predictions).tolist()


def test_sim_test_results_format(sim_run):
    out = sim_run["output_dir"]
    with open(os.path.join(out, "test_results.tsv")) as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    lines = lines[:-1]
    assert len(lines) == sim_run["num_test"]
    probabilities = np.array([[float(x) for x in line.split("\t")] for line in lines])
    assert probabilities.shape == (sim_run["num_test"], 2)
    assert all(_float32_text(x) for line in lines for x in line.split("\t"))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    logits, _, _ = _model_outputs(out, sim_run["config"], os.path.join(out, "predict.tf_record"))
    expected = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_sim_checkpoints_in_google_names(sim_run):
    out = sim_run["output_dir"]
    with open(os.path.join(out, "checkpoint")) as f:
        state = f.read()
    steps = int(read_eval_results(out)["global_step"])
    assert f'model_checkpoint_path: "model.ckpt-{steps}"' in state
    assert out not in state  # relative paths: the directory can be moved
    names = dict(tf.train.list_variables(os.path.join(out, f"model.ckpt-{steps}")))
    for name in ("bert/embeddings/word_embeddings", "bert/pooler/dense/kernel",
                 "bert/encoder/layer_1/output/LayerNorm/gamma", "output_weights", "output_bias",
                 "output_weights/adam_m", "output_weights/adam_v",
                 "bert/embeddings/word_embeddings/adam_m", "global_step"):
        assert name in names, name
    assert names["output_weights"] == [2, 32]
    assert tf.train.load_variable(out, "global_step") == steps
    # Saved every 3 steps and at the end; only the newest 5 kept.
    kept = sorted(int(m.group(1)) for m in
                  (re.match(r"model\.ckpt-(\d+)\.index$", n) for n in os.listdir(out)) if m)
    assert kept[-1] == steps and len(kept) <= 5
    assert all(s % 3 == 0 or s == steps for s in kept)


def _summary_tags(directory):
    """The scalar tags in the TensorBoard event files of `directory`."""
    tags = set()
    for name in os.listdir(directory):
        if name.startswith("events.out.tfevents"):
            for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                tags.update(v.tag for v in event.summary.value)
    return tags


def test_sim_outputs_and_logs(sim_run):
    out, log = sim_run["output_dir"], sim_run["log"]
    for name in ("train.tf_record", "eval.tf_record", "predict.tf_record"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert _summary_tags(out) >= {"loss", "learning_rate"}
    assert _summary_tags(os.path.join(out, "eval")) == {"eval_accuracy", "eval_loss", "loss"}
    for text in ("*** Example ***", "***** Running training *****",
                 f"  Num examples = {sim_run['num_train']}", "  Batch size = 8",
                 "**** Trainable Variables ****", "*INIT_FROM_CKPT*",
                 "***** Running evaluation *****", "***** Eval results *****",
                 "***** Running prediction*****", "***** Predict results *****",
                 "Evaluating checkpoint", "Predicting with checkpoint"):
        assert text in log, text


@pytest.mark.parametrize("task,writer,predict", [
    ("cola", fixtures.write_cola, True),
    ("mnli", fixtures.write_mnli, True),
    ("mrpc", fixtures.write_mrpc, True),
    ("xnli", fixtures.write_xnli, False),  # the original's XNLI has no test set
])
def test_builtin_processors_end_to_end(task, writer, predict, tiny_bert, tmp_path):
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    writer(data_dir)
    run_classifier(classifier_args(tiny_bert, data_dir, output_dir, task.upper(),
                                   do_train="true", do_eval="true",
                                   do_predict="true" if predict else "false"))
    from processors import get_processor
    processor = get_processor(task)
    results = read_eval_results(output_dir)
    n_train = len(processor.get_train_examples(data_dir))
    assert results["global_step"] == str(int(n_train / 8 * 1.0))
    if predict:
        with open(os.path.join(output_dir, "test_results.tsv")) as f:
            rows = [line.split("\t") for line in f.read().splitlines()]
        assert len(rows) == len(processor.get_test_examples(data_dir))
        assert {len(r) for r in rows} == {len(processor.get_labels())}


USER_MODULE = '''
from processors import DataProcessor, InputExample, register_processor


@register_processor("polarity")
class PolarityProcessor(DataProcessor):
    """A user's own task: one sentence, labels pos/neg, a two-column TSV."""

    def _examples(self, data_dir, name):
        path = data_dir + "/" + name + ".tsv"
        # The test set's labels are left out (None): run_classifier must not need them.
        return [InputExample(guid=f"{name}-{i}", text_a=row[1],
                             label=row[0] if name != "test" else None)
                for i, row in enumerate(self._read_tsv(path))]

    def get_train_examples(self, data_dir):
        return self._examples(data_dir, "train")

    def get_dev_examples(self, data_dir):
        return self._examples(data_dir, "dev")

    def get_test_examples(self, data_dir):
        return self._examples(data_dir, "test")

    def get_labels(self):
        return ["neg", "pos"]
'''


def _write_polarity(data_dir, n):
    os.makedirs(data_dir, exist_ok=True)
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    for name in ("train", "dev", "test"):
        with open(os.path.join(data_dir, name + ".tsv"), "w") as f:
            for i in range(n):
                label = "pos" if i % 2 else "neg"
                f.write(f"{label}\tthe film was {words[i % 6]} and {words[(i * 5) % 6]}\n")


def test_user_processor_module_and_fractional_epochs(tiny_bert, tmp_path):
    module = tmp_path / "my_tasks.py"
    module.write_text(USER_MODULE)
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    _write_polarity(data_dir, 40)
    # The flags come from a --flagfile, one per line, as absl reads them.
    flagfile = tmp_path / "polarity.flags"
    flagfile.write_text("\n".join(classifier_args(
        tiny_bert, data_dir, output_dir, "Polarity", processor_module=str(module),
        do_train="true", do_eval="true", do_predict="true", num_train_epochs=0.5)) + "\n")
    run_classifier([f"--flagfile={flagfile}"])
    results = read_eval_results(output_dir)
    assert results["global_step"] == str(int(40 / 8 * 0.5))  # 2 steps
    with open(os.path.join(output_dir, "test_results.tsv")) as f:
        assert len(f.read().splitlines()) == 40


# --------------------------------------------------------------------------------------------
# The original's checks, in its order, with its messages; and bad input.
# --------------------------------------------------------------------------------------------
def _error_of(args):
    proc = run_classifier(args, check=False, timeout=120)
    assert proc.returncode != 0
    return proc.stderr


def test_required_flags(tiny_bert, tmp_path):
    err = _error_of(["--task_name=sim", "--do_train=true"])
    assert "--data_dir" in err or "data_dir" in err


def test_inference_micro_batch_size_must_not_be_negative(tiny_bert, tmp_path):
    err = _error_of(["--task_name=sim", "--do_eval=true", "--inference_micro_batch_size=-1"])
    assert "--inference_micro_batch_size=-1: -1 is not a non-negative integer" in err


def test_error_messages_in_original_order(tiny_bert, tmp_path):
    data_dir = str(tmp_path / "data")
    fixtures.write_sim(data_dir)
    out = str(tmp_path / "out")
    # 1. The case check runs first (before the do_* check).
    case_ckpt = str(tmp_path / "uncased_L-12_H-768_A-12" / "bert_model.ckpt")
    err = _error_of(classifier_args(tiny_bert, data_dir, out, "sim", init_checkpoint=case_ckpt,
                                    do_lower_case="false"))
    assert "You passed in `--do_lower_case=False` with `--init_checkpoint=" in err
    assert "`uncased_L-12_H-768_A-12` seems to be a lowercased model" in err
    # 2. At least one do_*.
    err = _error_of(classifier_args(tiny_bert, data_dir, out, "sim"))
    assert "At least one of `do_train`, `do_eval` or `do_predict' must be True." in err
    # 3. Sequence length vs the model's positions.
    err = _error_of(classifier_args(tiny_bert, data_dir, out, "sim", do_train="true",
                                    max_seq_length=100))
    assert ("Cannot use sequence length 100 because the BERT model was only trained up to "
            "sequence length 64") in err
    # 4. Unknown task.
    err = _error_of(classifier_args(tiny_bert, data_dir, out, "nope", do_train="true"))
    assert "Task not found: nope" in err
    # None of them wrote anything.
    assert not os.path.exists(os.path.join(out, "train.tf_record"))


def test_bad_label_fails_before_training(tiny_bert, tmp_path):
    data_dir, out = str(tmp_path / "data"), str(tmp_path / "out")
    fixtures.write_sim(data_dir)
    train = os.path.join(data_dir, "train.tsv")
    with open(train) as f:
        lines = f.read().splitlines()
    fields = lines[3].split("\t")
    fields[-1] = "2"
    lines[3] = "\t".join(fields)
    with open(train, "w") as f:
        f.write("\n".join(lines) + "\n")
    err = _error_of(classifier_args(tiny_bert, data_dir, out, "sim", do_train="true"))
    last = err.strip().splitlines()[-1]
    assert last.startswith("run_classifier.py: error: ")
    assert "train.tsv" in last and "'2'" in last and "'0'" in last and "'1'" in last, last
    assert "Traceback" not in err
    assert not os.path.exists(os.path.join(out, "train.tf_record"))


def _set_label(path, row, value):
    with open(path) as f:
        lines = f.read().splitlines()
    fields = lines[row].split("\t")
    fields[-1] = value
    lines[row] = "\t".join(fields)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("split", ["dev", "test"])
def test_bad_label_in_dev_or_test_fails_before_training(tiny_bert, tmp_path, split):
    data_dir, out = str(tmp_path / "data"), str(tmp_path / "out")
    fixtures.write_sim(data_dir)
    path = os.path.join(data_dir, split + ".tsv")
    if split == "test":  # the fixture's test set has no labels: give it some
        with open(path) as f:
            rows = f.read().splitlines()
        with open(path, "w") as f:
            f.write("\n".join([rows[0] + "\tlabel"] + [r + "\t0" for r in rows[1:]]) + "\n")
    _set_label(path, 2, "maybe")
    err = _error_of(classifier_args(tiny_bert, data_dir, out, "sim", do_train="true",
                                    do_eval="true", do_predict="true"))
    last = err.strip().splitlines()[-1]
    assert last.startswith("run_classifier.py: error: %s:3: label 'maybe'"
                           % os.path.join(data_dir, split + ".tsv")), last
    assert "Traceback" not in err and "***** Running training *****" not in err
    assert not os.path.exists(os.path.join(out, "train.tf_record"))
    assert not [n for n in os.listdir(out) if n.startswith("model.ckpt")]


def test_eval_flags_are_checked_before_training(tiny_bert, tmp_path):
    """--eval_batch_size=0 used to fail with ZeroDivisionError after the whole training run."""
    data_dir, out = str(tmp_path / "data"), str(tmp_path / "out")
    fixtures.write_sim(data_dir)
    err = _error_of(classifier_args(tiny_bert, data_dir, out, "sim", do_train="true",
                                    do_eval="true", eval_batch_size=0))
    assert err.strip().splitlines()[-1] == (
        "run_classifier.py: error: --eval_batch_size=0: expected a positive integer")
    assert not os.path.exists(out)  # nothing was made, let alone written


def test_encoding_flag_reads_utf16_data(tiny_bert, tmp_path):
    data_dir, out = str(tmp_path / "data"), str(tmp_path / "out")
    fixtures.write_sim(data_dir)
    from processors import get_processor
    n_dev = len(get_processor("sim").get_dev_examples(data_dir))
    dev = os.path.join(data_dir, "dev.tsv")
    with open(dev, encoding="utf-8") as f:
        text = f.read()
    with open(dev, "wb") as f:
        f.write(text.encode("utf-16"))
    err = _error_of(classifier_args(tiny_bert, data_dir, out, "sim", do_eval="true"))
    assert "dev.tsv is UTF-16 (it starts with a UTF-16 byte-order mark)" in err
    run_classifier(classifier_args(tiny_bert, data_dir, out, "sim", do_eval="true",
                                   encoding="utf-16"))
    assert read_eval_results(out)["global_step"] == "0"
    assert sum(1 for _ in tf.data.TFRecordDataset(os.path.join(out, "eval.tf_record"))) == n_dev


# TensorFlow's C++ notices that must not reach a user's terminal by default.
_CPP_NOTICES = ("cudart_stub.cc", "oneDNN custom operations", "cpu_feature_guard.cc",
                "XLA service", "StreamExecutor device", "absl::InitializeLog",
                "Compiled cluster using XLA", "Local rendezvous is aborting")


def test_terminal_output_is_the_scripts_own(tiny_bert, tmp_path):
    """Without TF_CPP_MIN_LOG_LEVEL in the environment the run shows its log lines and progress
    bars and none of TensorFlow's C++ notices; a value in the environment wins (0 shows them),
    and even then eval/predict end without the OUT_OF_RANGE rendezvous notice."""
    data_dir = str(tmp_path / "data")
    fixtures.write_sim(data_dir)
    env = e2e_util.subprocess_env()
    del env["TF_CPP_MIN_LOG_LEVEL"]
    args = classifier_args(tiny_bert, data_dir, str(tmp_path / "out"), "sim", do_train="true",
                           do_eval="true", do_predict="true", progress_bar="on")
    quiet = subprocess.run([sys.executable, e2e_util.RUN_CLASSIFIER] + args, env=env,
                           capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    for notice in _CPP_NOTICES:
        assert notice not in quiet.stderr, notice
    for ours in ("***** Running training *****", "***** Eval results *****",
                 "***** Predict results *****", "train 100%|", "eval 100%|", "predict 100%|"):
        assert ours in quiet.stderr, ours
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    loud = subprocess.run([sys.executable, e2e_util.RUN_CLASSIFIER] + args[:-1] + [
        "--output_dir=" + str(tmp_path / "out2"), "--do_train=false", "--do_predict=false",
        "--xla_inference=true"],  # an XLA compilation: its C++ notice must show too
        env=env,
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert loud.returncode == 0, loud.stderr[-3000:]
    # The environment's value won: TensorFlow's start-up notices show (which ones depends on the
    # CPU: oneDNN's only where TensorFlow turns oneDNN on, i.e. CPUs with AVX512/AMX).
    shown = [n for n in _CPP_NOTICES if n in loud.stderr]
    assert "cpu_feature_guard.cc" in shown or "oneDNN custom operations" in shown, shown
    assert "Compiled cluster using XLA" in loud.stderr  # for the Abseil logger too
    assert "***** Eval results *****" in loud.stderr
    assert "Local rendezvous is aborting" not in loud.stderr


def test_tpu_without_tpu_is_a_clear_error(tiny_bert, tmp_path):
    data_dir = str(tmp_path / "data")
    fixtures.write_sim(data_dir)
    for name in ("local", "grpc://127.0.0.1:1"):
        start = time.time()
        err = _error_of(classifier_args(tiny_bert, data_dir, str(tmp_path / "out"), "sim",
                                        do_train="true", use_tpu="true", tpu_name=name))
        assert "--use_tpu=True but no TPU" in err or "no TPU answers" in err, err[-2000:]
        assert "IndexError" not in err and "Traceback" not in err
        assert time.time() - start < 90
