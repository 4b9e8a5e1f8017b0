"""run_lock.py: one run per output_dir, stale locks of killed runs, their temporary files."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest

import e2e_util
from bert_classifier.checks import run_lock

# A process that takes the lock, says so on stdout, then waits until killed.
_HOLDER = """
import sys, time
from bert_classifier.checks import run_lock
run_lock.hold_until_exit(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


def _start_holder(output_dir):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, output_dir], stdout=subprocess.PIPE,
                            text=True, env=e2e_util.subprocess_env(), cwd=e2e_util.REPO_ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.slow
def test_second_run_is_refused_naming_the_holder(tmp_path):
    out = str(tmp_path)
    holder = _start_holder(out)
    try:
        with pytest.raises(run_lock.OutputDirLockedError) as error:
            run_lock.OutputDirLock(out).acquire()
        message = str(error.value)
        assert message.startswith("output_dir %s is in use by another run (pid %d on host %s, "
                                  "started 20" % (out, holder.pid, socket.gethostname()))
        assert os.path.join(out, ".run.lock") in message and "\n" not in message
        assert isinstance(error.value, ValueError)  # scripts print it as a one-line error
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
    out = str(tmp_path)
    holder = _start_holder(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with open(os.path.join(out, ".run.lock")) as f:
        assert json.load(f)["pid"] == holder.pid  # left behind
    with caplog.at_level(logging.WARNING):
        with run_lock.output_dir_lock(out):
            with open(os.path.join(out, ".run.lock")) as f:
                assert json.load(f)["pid"] == os.getpid()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "left by a run that no longer runs (pid %d on host %s" % (
        holder.pid, socket.gethostname()) in warnings[0]
    assert not os.path.exists(os.path.join(out, ".run.lock"))  # released on exit


def test_lock_of_another_host_is_not_taken_over(tmp_path):
    out = str(tmp_path)
    with open(os.path.join(out, ".run.lock"), "w") as f:
        json.dump({"host": "elsewhere", "pid": 1, "start_time": "2026-01-01 00:00:00"}, f)
    with pytest.raises(run_lock.OutputDirLockedError, match=r"pid 1 on host elsewhere, started "
                                                            r"2026-01-01 00:00:00.*delete the lock"):
        run_lock.OutputDirLock(out).acquire()


def test_released_lock_can_be_taken_again_and_release_is_idempotent(tmp_path):
    out = str(tmp_path)
    lock = run_lock.OutputDirLock(out).acquire()
    lock.release()
    lock.release()
    with run_lock.output_dir_lock(out) as again:
        assert again is not None
    with run_lock.output_dir_lock(out, enabled=False) as none:  # a worker that is not chief
        assert none is None
        assert not os.path.exists(os.path.join(out, ".run.lock"))


@pytest.mark.slow
def test_remote_file_systems_check_then_write(tmp_path, caplog):
    """The gs:// protocol, exercised through TensorFlow's file:// scheme: refuse a live holder,
    take over a dead pid of this host."""
    out = "file://" + str(tmp_path)
    lock_path = os.path.join(str(tmp_path), ".run.lock")
    with run_lock.output_dir_lock(out):
        with open(lock_path) as f:
            assert json.load(f)["pid"] == os.getpid()
        with pytest.raises(run_lock.OutputDirLockedError, match="pid %d on host" % os.getpid()):
            run_lock.OutputDirLock(out).acquire()
    assert not os.path.exists(lock_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(lock_path, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead.pid, "start_time": "then"}, f)
    with caplog.at_level(logging.WARNING):
        with run_lock.output_dir_lock(out):
            pass
    assert any("pid %d" % dead.pid in r.getMessage() for r in caplog.records)


def test_temporary_files_of_killed_runs_are_removed(tmp_path):
    out = tmp_path
    left = [".train.tf_record.tmp-1a2b3c4d", "eval_results.txt.tmp-12345", "checkpoint.tmp999",
            "model.ckpt-4.data-00000-of-00001.tempstate1234567", "model.ckpt-4.index.tempstate9"]
    kept = ["train.tf_record", "checkpoint", "model.ckpt-3.index",
            "model.ckpt-3.data-00000-of-00001", "eval_results.txt", "notes.tmp-draft"]
    for name in left + kept:
        (out / name).write_text("x")
    with run_lock.output_dir_lock(str(out)):
        assert sorted(os.listdir(out)) == sorted(kept + [".run.lock"])


def test_hold_until_exit_is_held_once_per_process(tmp_path):
    first = run_lock.hold_until_exit(str(tmp_path))
    assert run_lock.hold_until_exit(str(tmp_path)) is first  # main() run again in a notebook
    first.release()
