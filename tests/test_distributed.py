"""tf.distribute: 2 mirrored replicas and 2 worker processes train like one device.

Runs start from a checkpoint that holds every weight (classifier head included), with all
dropout off and a seeded shuffle, so the only difference between the runs is how each global
batch is split over replicas and combined again.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import e2e_util
import fixtures
from e2e_util import classifier_args, run_classifier

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "classifier_dropout_prob": 0.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("dist")
    tiny = e2e_util.make_tiny_bert(str(base / "bert"), NO_DROPOUT, head_labels=2)
    data_dir = str(base / "data")
    fixtures.write_sim(data_dir)
    return tiny, data_dir, base


def _args(setup, output_dir, **flags):
    tiny, data_dir, _ = setup
    return classifier_args(tiny, data_dir, output_dir, "sim", do_train="true", seed=11,
                           num_train_epochs=2.0, learning_rate=5e-3, **flags)


def _final_weights(output_dir):
    reader = tf.train.load_checkpoint(output_dir)
    names = [n for n, _ in tf.train.list_variables(output_dir)]
    return {n: reader.get_tensor(n) for n in names}


@pytest.fixture(scope="module")
def one_device(setup):
    out = str(setup[2] / "one_device")
    run_classifier(_args(setup, out))
    return _final_weights(out)


def _assert_same_training(a, b, atol=2e-5):
    assert set(a) == set(b)
    assert int(a["global_step"]) == int(b["global_step"]) > 0
    moved = 0
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=atol, rtol=1e-4, err_msg=name)
    return moved


def test_mirrored_two_cpu_replicas_match_one_device(setup, one_device):
    out = str(setup[2] / "mirrored")
    proc = run_classifier(_args(setup, out, distribution_strategy="mirrored",
                                num_cpu_devices=2, do_eval="true", do_predict="true"))
    assert "MirroredStrategy with 2 replica(s) in sync" in proc.stderr
    mirrored = _final_weights(out)
    _assert_same_training(one_device, mirrored)
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


def test_two_workers_match_one_process(setup, one_device):
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
    # Only the chief wrote into output_dir; it also ran the evaluation.
    assert os.path.exists(os.path.join(out, "eval_results.txt"))
    assert "***** Running evaluation *****" not in logs[1][1]


def test_mirrored_gradient_accumulation_matches_one_device(setup, one_device):
    # Each of 2 CPU replicas runs its 4 examples as 2 micro-batches of 2; the gradients are
    # summed over micro-batches and replicas, then clipped: the one-device full-batch update.
    out = str(setup[2] / "mirrored_accumulation")
    proc = run_classifier(_args(setup, out, distribution_strategy="mirrored",
                                num_cpu_devices=2, gradient_accumulation_steps=2))
    assert "Each step accumulates 2 micro-batches of 2 examples per replica" in proc.stderr
    _assert_same_training(one_device, _final_weights(out))
