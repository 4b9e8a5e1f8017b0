"""Faults: runs killed (SIGKILL) while featurizing, while training and right after a checkpoint,
a broken newest checkpoint, a second run into a busy output_dir. Each is followed by a rerun
that must end with exactly the final state of an uninterrupted seeded run -- every weight, every
Adam slot, global_step -- or with the documented refusal.

The kill points are deterministic: kill_points.py makes the run signal itself the n-th time it
passes a named point (BERT_KILL_AT=<point>:<n>[:<signal>]). Dropout is off and the classifier
head comes from the checkpoint, so a run's result depends only on its data order (seeded).
"""

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import e2e_util
from e2e_util import classifier_args

# Every test here starts a subprocess or trains: `pytest -m "not slow"` skips the file.
pytestmark = pytest.mark.slow

# 30 training examples, batch 8, 2 epochs: 7 steps; checkpoints at 2, 4, 6 and 7.
NUM_STEPS = 7


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return e2e_util.no_dropout_sim_setup(tmp_path_factory.mktemp("faults"))


def _args(setup, output_dir, **flags):
    tiny, data_dir, _ = setup
    values = dict(do_train="true", seed=11, num_train_epochs=2.0, learning_rate=5e-3,
                  save_checkpoints_steps=2, iterations_per_loop=1, keep_checkpoint_max=10)
    values.update(flags)
    return classifier_args(tiny, data_dir, output_dir, "sim", **values)


def _run(setup, output_dir, kill_at=None, **flags):
    env = {"BERT_KILL_AT": kill_at} if kill_at else None
    return e2e_util.run_classifier(_args(setup, output_dir, **flags), env=env, check=False,
                                   timeout=300)


def _final_state(output_dir):
    """Every tensor of the newest checkpoint: weights, adam_m/adam_v slots, global_step."""
    prefix = tf.train.latest_checkpoint(output_dir)
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.fixture(scope="module")
def uninterrupted(setup):
    out = str(setup[2] / "uninterrupted")
    proc = _run(setup, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = _final_state(out)
    assert int(state["global_step"]) == NUM_STEPS
    assert any(name.endswith("/adam_m") for name in state)
    return state


def _assert_same_final_state(output_dir, expected):
    state = _final_state(output_dir)
    assert set(state) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)


def _killed(proc):
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])


def _no_leftovers(output_dir):
    names = os.listdir(output_dir)
    assert not [n for n in names if ".tmp" in n or "tempstate" in n], names
    assert ".run.lock" not in names


def test_killed_during_featurization(setup, uninterrupted):
    out = str(setup[2] / "featurize")
    _killed(_run(setup, out, kill_at="featurize_example:10"))
    left = [n for n in os.listdir(out) if n.startswith(".train.tf_record.tmp-")]
    assert len(left) == 1 and not os.path.exists(os.path.join(out, "train.tf_record"))
    assert os.path.exists(os.path.join(out, ".run.lock"))
    rerun = _run(setup, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Removed %s, left by an interrupted run" % os.path.join(out, left[0]) in rerun.stderr
    assert "Taking over the lock of output_dir %s left by a run that no longer runs" % out \
        in rerun.stderr
    _assert_same_final_state(out, uninterrupted)
    _no_leftovers(out)


def test_killed_during_training_resumes_with_progress_from_its_step(setup, uninterrupted):
    out = str(setup[2] / "training")
    _killed(_run(setup, out, kill_at="train_step:3"))  # after step 3; the last checkpoint is 2
    assert tf.train.latest_checkpoint(out).endswith("model.ckpt-2")
    rerun = _run(setup, out, progress_bar="on")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Restored model and optimizer state from %s (global_step = 2)" % os.path.join(
        out, "model.ckpt-2") in rerun.stderr
    # The resumed bar counts on from the restored step: its first drawing is step 3 of 7.
    first = re.search(r"train\s+\d+%\|[# ]*\| (\d+)/(\d+) ", rerun.stderr)
    assert first and first.groups() == ("3", str(NUM_STEPS)), rerun.stderr[-2000:]
    _assert_same_final_state(out, uninterrupted)
    _no_leftovers(out)


def test_killed_right_after_a_checkpoint(setup, uninterrupted):
    out = str(setup[2] / "after_checkpoint")
    _killed(_run(setup, out, kill_at="checkpoint_saved:2"))
    assert tf.train.latest_checkpoint(out).endswith("model.ckpt-4")
    rerun = _run(setup, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "(global_step = 4)" in rerun.stderr
    _assert_same_final_state(out, uninterrupted)
    _no_leftovers(out)
    # Once more: nothing left to do, as the Estimator said.
    again = _run(setup, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Skipping training since max_steps has already saved." in again.stderr
    assert tf.train.latest_checkpoint(out).endswith("model.ckpt-%d" % NUM_STEPS)


def test_broken_newest_checkpoint(setup, uninterrupted):
    out = str(setup[2] / "broken")
    _killed(_run(setup, out, kill_at="checkpoint_saved:2"))
    newest, older = (os.path.join(out, "model.ckpt-%d" % s) for s in (4, 2))
    # A truncated data file: evaluation falls back to the newest intact checkpoint.
    data = newest + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    evaluation = _run(setup, out, do_train="false", do_eval="true")
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "Checkpoint %s cannot be restored (its data file holds" % newest in evaluation.stderr
    assert "using %s, the newest intact checkpoint" % older in evaluation.stderr
    assert "Evaluating checkpoint %s" % older in evaluation.stderr
    assert e2e_util.read_eval_results(out)["global_step"] == "2"
    # The index gone too (the case): training resumes from model.ckpt-2, not from
    # init_checkpoint, and ends where the uninterrupted run ended.
    os.remove(newest + ".index")
    rerun = _run(setup, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Checkpoint %s cannot be restored (its index file" % newest in rerun.stderr
    assert "(global_step = 2)" in rerun.stderr
    assert "*INIT_FROM_CKPT*" not in rerun.stderr
    _assert_same_final_state(out, uninterrupted)
    # No checkpoint intact at all: the documented refusal, not a silent restart.
    for name in os.listdir(out):
        if name.endswith(".index"):
            os.remove(os.path.join(out, name))
    refused = _run(setup, out)
    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("run_classifier.py: error: %s holds checkpoints but none can be "
                           "restored (model.ckpt-7: its index file" % out), last
    assert last.endswith("to train from the start again")


def test_second_run_into_a_busy_output_dir_is_refused(setup, uninterrupted):
    out = str(setup[2] / "busy")
    # The first run stops itself (SIGSTOP) after step 2, holding output_dir.
    first = subprocess.Popen([sys.executable, e2e_util.RUN_CLASSIFIER] + _args(setup, out),
                             env=e2e_util.subprocess_env({"BERT_KILL_AT": "train_step:2:STOP"}),
                             cwd=e2e_util.REPO_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status
        before = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
        second = _run(setup, out)
        assert second.returncode == 1
        last = second.stderr.strip().splitlines()[-1]
        assert re.match(r"run_classifier\.py: error: output_dir %s is in use by another run "
                        r"\(pid %d on host .+, started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
                        % (re.escape(out), first.pid), last), last
        assert "***** Running training *****" not in second.stderr
        after = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
        assert after == before  # the refused run touched nothing
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    _assert_same_final_state(out, uninterrupted)
    _no_leftovers(out)
