"""tf.distribute: 2 mirrored replicas and 2 worker processes train like one device.

Runs start from a checkpoint that holds every weight (classifier head included), with all
dropout off and a seeded shuffle, so the only difference between the runs is how each global
batch is split over replicas and combined again.
"""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import e2e_util
from e2e_util import classifier_args, run_classifier

# Every test here starts a subprocess or trains: `pytest -m "not slow"` skips the file.
pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return e2e_util.no_dropout_sim_setup(tmp_path_factory.mktemp("dist"))


def _args(setup, output_dir, **flags):
    tiny, data_dir, _ = setup
    # Two steps per host call: a loss summary every 2 steps to compare between the runs.
    return classifier_args(tiny, data_dir, output_dir, "sim", **dict(
        dict(do_train="true", seed=11, num_train_epochs=2.0, learning_rate=5e-3,
             iterations_per_loop=2), **flags))


def _final_weights(output_dir):
    reader = tf.train.load_checkpoint(output_dir)
    names = [n for n, _ in tf.train.list_variables(output_dir)]
    return {n: reader.get_tensor(n) for n in names}


@pytest.fixture(scope="module")
def one_device_dir(setup):
    out = str(setup[2] / "one_device")
    run_classifier(_args(setup, out))
    return out


@pytest.fixture(scope="module")
def one_device(one_device_dir):
    return _final_weights(one_device_dir)


def _assert_same_training(a, b, atol=2e-5):
    assert set(a) == set(b)
    assert int(a["global_step"]) == int(b["global_step"]) > 0
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=atol, rtol=1e-4, err_msg=name)


def _events_files(directory):
    return [n for n in os.listdir(directory) if n.startswith("events.out.tfevents")]


def _logged_losses(directory):
    """step -> the `loss` scalar of the TensorBoard events in `directory` (one file)."""
    (name,) = _events_files(directory)
    losses = {}
    for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            if value.tag == "loss":
                losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def _assert_same_logged_loss(one_device_dir, other_dir):
    """The loss a multi-replica run logs is the global batch's mean, as one device's: the
    replicas' shares are summed (a MEAN over 2 replicas would halve it)."""
    expected, logged = _logged_losses(one_device_dir), _logged_losses(other_dir)
    assert sorted(logged) == sorted(expected) and len(expected) > 1
    for step, loss in expected.items():
        assert logged[step] == pytest.approx(loss, rel=1e-4), step


def test_mirrored_two_cpu_replicas_match_one_device(setup, one_device, one_device_dir):
    out = str(setup[2] / "mirrored")
    proc = run_classifier(_args(setup, out, distribution_strategy="mirrored",
                                num_cpu_devices=2, do_eval="true", do_predict="true"))
    assert "MirroredStrategy with 2 replica(s) in sync" in proc.stderr
    mirrored = _final_weights(out)
    _assert_same_training(one_device, mirrored)
    _assert_same_logged_loss(one_device_dir, out)
    # Eval and predict over 2 replicas pad the last batch; the padding rows are not output.
    from processors import get_processor
    processor = get_processor("sim")
    n_dev = len(processor.get_dev_examples(setup[1]))
    n_test = len(processor.get_test_examples(setup[1]))
    padded = -(-n_dev // 8) * 8
    assert f"Num examples = {padded} ({n_dev} actual, {padded - n_dev} padding)" in proc.stderr
    with open(os.path.join(out, "test_results.tsv")) as f:
        rows = [[float(x) for x in line.split("\t")] for line in f.read().splitlines()]
    assert len(rows) == n_test
    np.testing.assert_allclose(np.sum(rows, axis=1), 1.0, atol=1e-5)
    # Training really moved the weights (so equality above is not trivial).
    initial = tf.train.load_checkpoint(setup[0]["checkpoint"]).get_tensor("output_weights")
    assert np.max(np.abs(mirrored["output_weights"] - initial)) > 1e-3


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_match_one_process(setup, one_device, one_device_dir):
    out = str(setup[2] / "multi_worker")
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = e2e_util.subprocess_env({"TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})})
        # `timeout -k` because a worker whose peer never comes blocks in the strategy's
        # constructor and ignores SIGTERM.
        cmd = ["timeout", "-k", "10", "400", sys.executable, e2e_util.RUN_CLASSIFIER] + _args(
            setup, out, distribution_strategy="multi_worker_mirrored", do_eval="true")
        procs.append(subprocess.Popen(cmd, env=env, cwd=e2e_util.REPO_ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    logs = [p.communicate(timeout=450) for p in procs]
    for p, (_, err) in zip(procs, logs):
        assert p.returncode == 0, err[-4000:]
    assert "MultiWorkerMirroredStrategy with 2 replica(s) in sync" in logs[0][1]
    _assert_same_training(one_device, _final_weights(out))
    _assert_same_logged_loss(one_device_dir, out)
    # Only the chief wrote into output_dir (one events file, its checkpoints and records, no
    # lock left); it also ran the evaluation.
    steps = int(one_device["global_step"])  # the only checkpoint (saved at the end)
    expected = {"checkpoint", "train.tf_record", "eval.tf_record", "eval_results.txt", "eval",
                "eval_metrics.json", "model_info.json", "bert_config.json", "vocab.txt",
                "model.ckpt-%d.index" % steps, "model.ckpt-%d.data-00000-of-00001" % steps}
    names = set(os.listdir(out))
    assert len(_events_files(out)) == 1
    assert names - set(_events_files(out)) == expected
    assert len(_events_files(os.path.join(out, "eval"))) == 1
    assert "***** Running evaluation *****" not in logs[1][1]


def test_two_workers_stop_early_at_the_same_step(setup):
    """Evaluation during training on 2 workers: the chief alone evaluates and writes; its
    early-stopping decision reaches the other worker (else that one would wait for a step the
    chief never runs, and time out)."""
    out = str(setup[2] / "multi_worker_early_stop")
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = e2e_util.subprocess_env({"TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})})
        # learning_rate 1e-30 (0 is refused; updates this small vanish in float32): the
        # evaluations tie, so the first stays the best and patience 1
        # stops training at the second (global_step 4).
        cmd = ["timeout", "-k", "10", "200", sys.executable, e2e_util.RUN_CLASSIFIER] + _args(
            setup, out, distribution_strategy="multi_worker_mirrored", do_eval="true",
            learning_rate=1e-30, eval_every_steps=2, keep_best_checkpoint="eval_loss",
            early_stopping_patience=1)
        procs.append(subprocess.Popen(cmd, env=env, cwd=e2e_util.REPO_ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    logs = [p.communicate(timeout=250)[1] for p in procs]
    for p, err in zip(procs, logs):
        assert p.returncode == 0, err[-4000:]
    for err in logs:
        assert "Stopping early at global_step 4 of 7." in err  # int(30 / 8 * 2)
    assert "Evaluation at global_step 4" in logs[0]
    assert "Evaluation at global_step" not in logs[1]
    with open(os.path.join(out, "eval_history.tsv")) as f:
        rows = [line.split("\t") for line in f.read().splitlines()]
    assert [row[0] for row in rows] == ["global_step", "2", "4"]
    # The chief evaluated the trained weights (copied into its one-device model): the same
    # numbers as the final evaluation of the checkpoint.
    final = e2e_util.read_eval_results(out)
    assert (rows[-1][1], rows[-1][2]) == (final["eval_accuracy"], final["eval_loss"])
    # The only checkpoint of output_dir is the one saved where training stopped; best/ holds
    # the weights of step 2, saved from memory by the chief.
    assert tf.train.load_variable(out, "global_step") == 4
    assert checkpoints_in(os.path.join(out, "best")) == ["model.ckpt-2"]
    # Nothing but the chief's files: no second history, no worker checkpoints or temp files.
    assert sorted(os.listdir(out)) == sorted(
        ["best", "checkpoint", "eval", "eval.tf_record", "eval_history.tsv", "eval_metrics.json",
         "eval_results.txt", "train.tf_record", "model.ckpt-4.index",
         "model.ckpt-4.data-00000-of-00001", "model_info.json", "bert_config.json", "vocab.txt"]
        + [n for n in os.listdir(out) if n.startswith("events.out.tfevents")])


def checkpoints_in(directory):
    return sorted(m.group(1) for m in (re.match(r"(model\.ckpt-\d+)\.index$", n)
                                       for n in os.listdir(directory)) if m)


def test_mirrored_gradient_accumulation_matches_one_device(setup, one_device):
    # Each of 2 CPU replicas runs its 4 examples as 2 micro-batches of 2; the gradients are
    # summed over micro-batches and replicas, then clipped: the one-device full-batch update.
    out = str(setup[2] / "mirrored_accumulation")
    proc = run_classifier(_args(setup, out, distribution_strategy="mirrored",
                                num_cpu_devices=2, gradient_accumulation_steps=2))
    assert "Each step accumulates 2 micro-batches of 2 examples per replica" in proc.stderr
    _assert_same_training(one_device, _final_weights(out))
