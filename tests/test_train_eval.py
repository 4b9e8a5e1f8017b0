"""Evaluation during training: --eval_every_steps, --eval_at_checkpoints, --keep_best_checkpoint,
--early_stopping_patience (train_eval.py), end to end on tiny models and in pieces."""

import json
import os
import re
import types

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as sk

from bert_classifier.core import checkpoint_names

from bert_classifier.core import checkpoints
import e2e_util
from bert_classifier.workflow import features
import modeling
from bert_classifier.workflow import train_eval
from e2e_util import classifier_args, read_eval_results, run_classifier

# sim fixture: 30 training examples at batch 8 -> 3 steps per epoch; 12 dev examples.
EPOCHS, STEPS, NUM_DEV = 4.0, 15, 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny checkpoint holding every weight (head included), no dropout: runs on one device
    and on two mirrored replicas train the same steps."""
    return e2e_util.no_dropout_sim_setup(tmp_path_factory.mktemp("train_eval"))


def _args(setup, output_dir, **flags):
    tiny, data_dir, _ = setup
    args = dict(do_train="true", do_eval="true", seed=11, num_train_epochs=EPOCHS,
                learning_rate=5e-3)
    args.update(flags)
    return classifier_args(tiny, data_dir, output_dir, "sim", **args)


def _read_history(output_dir):
    with open(os.path.join(output_dir, "eval_history.tsv")) as f:
        lines = f.read().splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def _checkpoint_outputs(prefix, config_path, record_file):
    """Logits, labels and is_real_example of every record, from checkpoint `prefix`."""
    config = modeling.BertConfig.from_json_file(config_path)
    model = modeling.BertClassifier(config, 2)
    model.build_variables()
    checkpoints.restore_checkpoint(prefix, checkpoint_names.variables_by_checkpoint_name(model))
    data = next(iter(tf.data.TFRecordDataset(record_file).map(
        lambda r: features.decode_record(r, features.name_to_features(32))).batch(1000)))
    logits = model(data["input_ids"], data["input_mask"], data["segment_ids"]).numpy()
    return logits, data["label_ids"].numpy(), data["is_real_example"].numpy()


def _expected_row(logits, labels, real):
    """The history row's metrics recomputed independently (numpy and scikit-learn)."""
    logits, labels = logits[real == 1], labels[real == 1]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    predictions = logits.argmax(-1)
    return {"eval_accuracy": np.mean(predictions == labels),
            "eval_loss": -np.mean(log_probs[np.arange(len(labels)), labels]),
            "macro_f1": sk.f1_score(labels, predictions, average="macro", zero_division=0),
            "mcc": sk.matthews_corrcoef(labels, predictions),
            "roc_auc": sk.roc_auc_score(labels, np.exp(log_probs[:, 1]))}


def _event_steps(directory):
    """{tag: sorted steps} of the scalar summaries in directory's event files."""
    steps = {}
    for name in os.listdir(directory):
        if name.startswith("events.out.tfevents"):
            for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    steps.setdefault(value.tag, []).append(event.step)
    return {tag: sorted(s) for tag, s in steps.items()}


# --------------------------------------------------------------------------------------------
# End to end: one device, two mirrored replicas, early stopping.
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_device_run(setup):
    out = str(setup[2] / "one_device")
    proc = run_classifier(_args(setup, out, eval_every_steps=4, save_checkpoints_steps=4,
                                keep_checkpoint_max=100, keep_best_checkpoint="eval_loss"))
    return out, proc.stderr


@pytest.mark.slow
def test_history_rows_are_the_evaluations_of_those_steps(setup, one_device_run):
    out, log = one_device_run
    header, rows = _read_history(out)
    assert header == ["global_step", "eval_accuracy", "eval_loss", "loss", "macro_f1", "mcc",
                      "roc_auc"]
    assert [int(r["global_step"]) for r in rows] == [4, 8, 12, STEPS]  # and the last step
    for row in rows:
        step = int(row["global_step"])
        assert f"Evaluation at global_step {step}: eval_accuracy = {row['eval_accuracy']}" in log
        want = _expected_row(*_checkpoint_outputs(os.path.join(out, f"model.ckpt-{step}"),
                                                  setup[0]["config"],
                                                  os.path.join(out, "eval.tf_record")))
        for key, value in want.items():
            assert float(row[key]) == pytest.approx(value, abs=2e-5), (step, key)
    # Training moved the model between evaluations (so the rows are not trivially equal).
    assert len({r["eval_loss"] for r in rows}) == len(rows)
    # The last row is the final evaluation, in eval_results.txt's text.
    final = read_eval_results(out)
    assert final["global_step"] == str(STEPS)
    for key in ("eval_accuracy", "eval_loss", "loss"):
        assert rows[-1][key] == final[key]


@pytest.mark.slow
def test_best_checkpoint_is_the_lowest_eval_loss(setup, one_device_run):
    out, log = one_device_run
    _, rows = _read_history(out)
    best_step = int(min(rows, key=lambda r: float(r["eval_loss"]))["global_step"])
    best_dir = os.path.join(out, "best")
    prefix = checkpoints.latest_checkpoint(best_dir)
    assert prefix == os.path.join(best_dir, f"model.ckpt-{best_step}")
    assert sorted(os.listdir(best_dir)) == sorted([
        "checkpoint", "eval_metrics.json", f"model.ckpt-{best_step}.index",
        f"model.ckpt-{best_step}.data-00000-of-00001"])
    with open(os.path.join(best_dir, "checkpoint")) as f:
        assert f.read().count("model.ckpt-") == 2  # model_checkpoint_path and one all_ entry
    best = tf.train.load_checkpoint(prefix)
    same_step = tf.train.load_checkpoint(os.path.join(out, f"model.ckpt-{best_step}"))
    names = [n for n, _ in tf.train.list_variables(prefix)]
    assert "output_weights" in names and "bert/pooler/dense/kernel" in names
    assert not [n for n in names if n.endswith(("/adam_m", "/adam_v"))]  # weights only
    assert best.get_tensor("global_step") == best_step
    for name in names:
        np.testing.assert_array_equal(best.get_tensor(name), same_step.get_tensor(name), name)
    with open(os.path.join(best_dir, "eval_metrics.json")) as f:
        report = json.load(f)
    assert report["global_step"] == best_step
    row = next(r for r in rows if int(r["global_step"]) == best_step)
    assert str(np.float32(report["eval_loss"])) == row["eval_loss"]
    assert f"New best eval_loss = {row['eval_loss']} at global_step {best_step}" in log


@pytest.mark.slow
def test_the_best_checkpoint_evaluated_as_flags_md_says(setup, one_device_run, tmp_path):
    """flags.md: --do_eval --init_checkpoint=OUT/best with an output_dir holding no checkpoint
    evaluates the best checkpoint: the numbers best/eval_metrics.json recorded in training."""
    best_dir = os.path.join(one_device_run[0], "best")
    out = str(tmp_path / "best_eval")
    tiny, data_dir, _ = setup
    run_classifier(classifier_args(tiny, data_dir, out, "sim", do_eval="true",
                                   init_checkpoint=best_dir))
    with open(os.path.join(best_dir, "eval_metrics.json")) as f:
        recorded = json.load(f)
    results = read_eval_results(out)
    for key in ("eval_accuracy", "eval_loss"):
        assert results[key] == str(np.float32(recorded[key])), key


@pytest.mark.slow
def test_eval_summaries_at_every_evaluation(one_device_run):
    out, _ = one_device_run
    steps = _event_steps(os.path.join(out, "eval"))
    for tag in ("macro_f1", "mcc", "roc_auc"):
        assert steps[tag] == [4, 8, 12, STEPS], tag
    # Each evaluation during training, and the final evaluation of run_classifier.
    for tag in ("eval_accuracy", "eval_loss", "loss"):
        assert steps[tag] == [4, 8, 12, STEPS, STEPS], tag
    assert not [n for n in os.listdir(out) if ".tmp" in n]


@pytest.mark.slow
def test_mirrored_replicas_evaluate_like_one_device(setup, one_device_run):
    out = str(setup[2] / "mirrored")
    proc = run_classifier(_args(setup, out, eval_every_steps=4, save_checkpoints_steps=4,
                                keep_best_checkpoint="macro_f1",
                                distribution_strategy="mirrored", num_cpu_devices=2))
    assert "MirroredStrategy with 2 replica(s) in sync" in proc.stderr
    # The dev set is padded to full batches over the replicas...
    assert f"Num examples = 16 ({NUM_DEV} actual, 4 padding)" in proc.stderr
    _, mirrored = _read_history(out)
    _, single = _read_history(one_device_run[0])
    assert [r["global_step"] for r in mirrored] == [r["global_step"] for r in single]
    # (`loss`, the Estimator's unweighted mean of batch means, counts the padding rows too.)
    for a, b in zip(mirrored, single):
        for key in ("eval_accuracy", "eval_loss", "macro_f1", "mcc", "roc_auc"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-4), (a, b, key)
    # ...and the padding rows are in no metric.
    for path in (os.path.join(out, "eval_metrics.json"),
                 os.path.join(out, "best", "eval_metrics.json")):
        with open(path) as f:
            report = json.load(f)
        assert report["num_examples"] == NUM_DEV
        assert np.sum(report["confusion_matrix"]) == NUM_DEV
    best_step = int(max(mirrored, key=lambda r: float(r["macro_f1"]))["global_step"])
    assert checkpoints.checkpoint_global_step(os.path.join(out, "best")) == best_step


@pytest.mark.slow
def test_early_stopping_keeps_the_best_and_a_rerun_does_not_train_on(setup):
    """learning_rate 1e-30 (run_classifier refuses 0; updates this small vanish in float32):
    every evaluation gives the same numbers, so the first is the best
    (ties are no improvement) and patience 2 stops training at the third."""
    out = str(setup[2] / "early_stop")
    args = _args(setup, out, learning_rate=1e-30, eval_at_checkpoints="true",
                 save_checkpoints_steps=2, keep_checkpoint_max=1,
                 keep_best_checkpoint="eval_accuracy", early_stopping_patience=2)
    log = run_classifier(args).stderr
    _, rows = _read_history(out)
    assert [int(r["global_step"]) for r in rows] == [2, 4, 6]
    assert len({tuple(r[k] for k in r if k != "global_step") for r in rows}) == 1
    assert "Early stopping: eval_accuracy has not improved for 2 evaluations" in log
    assert f"Stopping early at global_step 6 of {STEPS}." in log
    # The step training stopped at is the final checkpoint, the one eval_results.txt describes.
    assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-6")
    assert read_eval_results(out)["global_step"] == "6"
    # keep_checkpoint_max=1 deleted model.ckpt-2 from output_dir, never best/'s copy.
    kept = [n for n in os.listdir(out) if re.match(r"model\.ckpt-\d+\.index$", n)]
    assert kept == ["model.ckpt-6.index"]
    assert checkpoints.latest_checkpoint(os.path.join(out, "best")) == os.path.join(
        out, "best", "model.ckpt-2")

    again = run_classifier(args).stderr
    assert "Restored model and optimizer state" in again
    assert "has not improved for 2 evaluations (best 0." in again and "not training on" in again
    assert "Evaluation at global_step" not in again
    assert [int(r["global_step"]) for r in _read_history(out)[1]] == [2, 4, 6]
    assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-6")


@pytest.mark.slow
def test_evaluating_does_not_change_training(setup, tmp_path):
    """With dropout on and a seed, evaluating after every step leaves the trained weights
    exactly those of a run without evaluation (no random state or batch is consumed)."""
    tiny = e2e_util.make_tiny_bert(str(tmp_path / "bert"))  # dropout 0.1
    _, data_dir, _ = setup
    finals = []
    for name, flags in (("plain", {}), ("evaluated", dict(do_eval="true", eval_every_steps=1))):
        out = str(tmp_path / name)
        run_classifier(classifier_args(tiny, data_dir, out, "sim", do_train="true", seed=5,
                                       **flags))
        reader = tf.train.load_checkpoint(out)
        finals.append({n: reader.get_tensor(n) for n, _ in tf.train.list_variables(out)})
    assert finals[1]["global_step"] == 3
    with open(os.path.join(str(tmp_path / "evaluated"), "eval_history.tsv")) as f:
        assert len(f.read().splitlines()) == 4  # header and steps 1, 2, 3
    initial = tf.train.load_variable(tiny["checkpoint"], "bert/pooler/dense/kernel")
    assert np.abs(finals[0]["bert/pooler/dense/kernel"] - initial).max() > 1e-4
    assert finals[0].keys() == finals[1].keys()
    for name in finals[0]:
        np.testing.assert_array_equal(finals[1][name], finals[0][name], err_msg=name)


# --------------------------------------------------------------------------------------------
# Flags that cannot work: one line naming the flags, before anything is written.
# --------------------------------------------------------------------------------------------
def _flags(**values):
    defaults = dict(do_train=True, do_eval=True, eval_every_steps=None, eval_at_checkpoints=False,
                    keep_best_checkpoint=None, early_stopping_patience=None)
    defaults.update(values)
    return types.SimpleNamespace(**defaults)


@pytest.mark.parametrize("values,message", [
    (dict(eval_every_steps=0), "--eval_every_steps=0: expected a positive number"),
    (dict(eval_every_steps=-3), "--eval_every_steps=-3: expected a positive number"),
    (dict(eval_every_steps=5, early_stopping_patience=0),
     "--early_stopping_patience=0: expected a positive number"),
    (dict(eval_every_steps=5, keep_best_checkpoint="f1"),
     "--keep_best_checkpoint=f1: unknown metric; expected one of eval_accuracy, eval_loss, "
     "macro_f1, mcc, roc_auc"),
    (dict(eval_every_steps=5, early_stopping_patience=3),
     "--early_stopping_patience=3 needs --keep_best_checkpoint=METRIC"),
    (dict(keep_best_checkpoint="mcc", early_stopping_patience=3),
     "--keep_best_checkpoint and --early_stopping_patience: no evaluation during training to "
     "act on; add --eval_every_steps=N or --eval_at_checkpoints"),
    (dict(eval_every_steps=5, keep_best_checkpoint="mcc", early_stopping_patience=3,
          do_eval=False),
     "--eval_every_steps and --keep_best_checkpoint and --early_stopping_patience: evaluation "
     "during training needs --do_train=true and --do_eval=true"),
    (dict(eval_at_checkpoints=True, do_train=False),
     "--eval_at_checkpoints: evaluation during training needs --do_train=true"),
])
def test_flag_errors(values, message):
    with pytest.raises(ValueError) as error:
        train_eval.settings_from_flags(_flags(**values), num_labels=2)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_roc_auc_needs_two_labels_and_settings_otherwise():
    with pytest.raises(ValueError, match="roc_auc needs a task with two labels; this task has 3"):
        train_eval.settings_from_flags(_flags(eval_every_steps=5, keep_best_checkpoint="roc_auc"),
                                       num_labels=3)
    assert train_eval.settings_from_flags(_flags(), num_labels=2) is None
    assert train_eval.settings_from_flags(_flags(do_train=False, do_eval=False), 2) is None
    settings = train_eval.settings_from_flags(
        _flags(eval_every_steps=5, keep_best_checkpoint="eval_loss", early_stopping_patience=2), 2)
    assert settings == train_eval.EvalSettings(5, False, "eval_loss", 2)


@pytest.mark.slow
def test_bad_flags_stop_before_featurization(setup, tmp_path):
    out = str(tmp_path / "out")
    for flags, message in (
            (dict(eval_every_steps=0), "--eval_every_steps=0: expected a positive number"),
            (dict(do_eval="false", eval_every_steps=2, keep_best_checkpoint="eval_loss",
                  early_stopping_patience=2),
             "evaluation during training needs --do_train=true and --do_eval=true")):
        proc = run_classifier(_args(setup, out, **flags), check=False, timeout=120)
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("run_classifier.py: error: ") and message in last, last
        assert "Traceback" not in proc.stderr
        assert not os.path.exists(os.path.join(out, "train.tf_record"))


# --------------------------------------------------------------------------------------------
# The pieces: schedule, tracker, history, best checkpoint, resuming.
# --------------------------------------------------------------------------------------------
def test_schedule():
    every = train_eval.EvalSettings(every_steps=4)
    assert [s for s in range(1, 14) if every.due(s, s % 3 == 0, s == 13)] == [4, 8, 12, 13]
    assert [every.steps_until_due(s) for s in (0, 3, 4, 5)] == [4, 1, 4, 3]
    saves = train_eval.EvalSettings(at_checkpoints=True)
    assert [s for s in range(1, 14) if saves.due(s, s % 3 == 0, s == 13)] == [3, 6, 9, 12, 13]


@pytest.mark.parametrize("metric,values,best,stops_after", [
    ("eval_loss", [0.7, 0.6, 0.6, 0.5, 0.55, 0.5], 3, 5),  # lower is better; a tie is no gain
    ("eval_accuracy", [0.5, 0.7, 0.7, 0.6], 1, 3),
    ("mcc", [0.1, float("nan"), 0.2, None, 0.1], 2, 4),  # NaN/undefined never improve
])
def test_best_tracker(metric, values, best, stops_after):
    tracker = train_eval.BestTracker(metric, patience=2)
    stopped_at = None
    for index, value in enumerate(values):
        tracker.update(index * 10, value)
        if tracker.exhausted and stopped_at is None:
            stopped_at = index
    assert tracker.best_step == best * 10 and tracker.best_value == values[best]
    assert stopped_at == stops_after


def _row(step, loss):
    return {"global_step": str(step), "eval_accuracy": "0.5", "eval_loss": str(loss),
            "loss": "0.7", "macro_f1": "0.4", "mcc": "0.0", "roc_auc": ""}


def _tiny_state(value):
    return {"w": tf.Variable(np.full([3], value, np.float32))}


def test_history_file_is_rewritten_whole(tmp_path):
    path = str(tmp_path / "eval_history.tsv")
    history = train_eval.EvalHistory(path)
    for step, loss in ((2, 0.7), (4, 0.6), (6, 0.65)):
        history.append(_row(step, loss))
    assert os.listdir(tmp_path) == ["eval_history.tsv"]  # no temporary file left
    again = train_eval.EvalHistory(path)
    assert again.rows == history.rows and again.rows[2]["roc_auc"] == ""
    assert again.keep_until(4) == 1
    with open(path) as f:
        assert f.read().splitlines()[1:] == ["2\t0.5\t0.7\t0.7\t0.4\t0.0\t",
                                             "4\t0.5\t0.6\t0.7\t0.4\t0.0\t"]
    with open(path, "a") as f:
        f.write("8\t0.5\n")
    with pytest.raises(ValueError, match=r"eval_history.tsv, row 4: expected 7 tab-separated"):
        train_eval.EvalHistory(path)


def test_best_checkpoint_replacement(tmp_path):
    best_dir = str(tmp_path / "best")
    train_eval.save_best_checkpoint(best_dir, _tiny_state(1.0), 4)
    train_eval.save_best_checkpoint(best_dir, _tiny_state(2.0), 10)
    assert sorted(os.listdir(best_dir)) == ["checkpoint", "model.ckpt-10.data-00000-of-00001",
                                            "model.ckpt-10.index"]
    # The same step again (a resumed run): replaced, not mixed.
    train_eval.save_best_checkpoint(best_dir, _tiny_state(3.0), 10)
    prefix = checkpoints.latest_checkpoint(best_dir)
    assert prefix.endswith("model.ckpt-10")
    np.testing.assert_array_equal(tf.train.load_variable(prefix, "w"), [3.0] * 3)
    assert tf.train.load_variable(prefix, "global_step") == 10


def test_resume_takes_up_best_and_patience(tmp_path):
    out = str(tmp_path)
    best_dir = os.path.join(out, "best")
    history = train_eval.EvalHistory(os.path.join(out, "eval_history.tsv"))
    for step, loss in ((2, 0.7), (4, 0.5), (6, 0.6), (8, 0.55), (10, 0.4)):
        history.append(_row(step, loss))
    train_eval.save_best_checkpoint(best_dir, _tiny_state(0.0), 4)

    # Restored at step 8: row 10 is trained again; two evaluations since the best (6 and 8).
    tracker = train_eval.BestTracker("eval_loss", patience=3)
    history = train_eval.EvalHistory(os.path.join(out, "eval_history.tsv"))
    assert train_eval.resume(history, best_dir, tracker, 8) is False
    assert [r["global_step"] for r in history.rows] == ["2", "4", "6", "8"]
    assert [r["global_step"] for r in train_eval.EvalHistory(history.path).rows] == \
        ["2", "4", "6", "8"]
    assert (tracker.best_step, tracker.best_value, tracker.evaluations_since_best) == (4, 0.5, 2)
    # Patience 2 is used up already.
    tracker = train_eval.BestTracker("eval_loss", patience=2)
    assert train_eval.resume(history, best_dir, tracker, 8) is True

    # best/eval_metrics.json wins when it describes best/'s step (here another metric's value),
    # the history row is the fallback when it does not (a crash between the two writes).
    with open(os.path.join(best_dir, "eval_metrics.json"), "w") as f:
        json.dump({"global_step": 4, "eval_loss": 0.45}, f)
    assert train_eval.recorded_best_value(best_dir, 4, "eval_loss", history.rows) == \
        pytest.approx(0.45)
    with open(os.path.join(best_dir, "eval_metrics.json"), "w") as f:
        json.dump({"global_step": 2, "eval_loss": 0.7}, f)
    assert train_eval.recorded_best_value(best_dir, 4, "eval_loss", history.rows) == 0.5
    assert train_eval.recorded_best_value(best_dir, 12, "eval_loss", history.rows) is None
