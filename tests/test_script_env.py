"""cli/script_env.py: the environment every script sets before TensorFlow; the user's values win."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

import e2e_util

# Every test here starts a subprocess or trains: `pytest -m "not slow"` skips the file.
pytestmark = pytest.mark.slow

_REPORT = ("import json, os; from bert_classifier.cli import script_env; "
           "print(json.dumps({k: os.environ.get(k) for k in "
           "('TF_USE_LEGACY_KERAS', 'TF_CPU_ALLOCATOR_USE_BFC', 'TF_CPP_MIN_LOG_LEVEL')} | "
           "{'abseil': script_env.ABSEIL_LOG_LEVEL_SET, 'tf': 'tensorflow' in __import__('sys')"
           ".modules, 'probed': script_env.DRIVERLESS_GPU_PROBE_QUIETED}))")
_NAMES = ("TF_USE_LEGACY_KERAS", "TF_CPU_ALLOCATOR_USE_BFC", "TF_CPP_MIN_LOG_LEVEL")


def _report(**preset):
    env = {k: v for k, v in os.environ.items() if k not in _NAMES}
    env.update(PYTHONPATH=e2e_util.REPO_ROOT, **preset)
    proc = subprocess.run([sys.executable, "-c", _REPORT], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(proc.stdout)


def _driver_missing():
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return True
    return False


def test_defaults_importing_tensorflow_only_to_probe_a_driverless_machine():
    report = _report()
    # TensorFlow is imported (after the environment is set) only for the quiet GPU probe of a
    # machine without the NVIDIA driver.
    assert report == {"TF_USE_LEGACY_KERAS": "1", "TF_CPU_ALLOCATOR_USE_BFC": "true",
                      "TF_CPP_MIN_LOG_LEVEL": "2", "abseil": True, "tf": _driver_missing(),
                      "probed": _driver_missing()}


def _first_op_stderr(**preset):
    env = {k: v for k, v in os.environ.items() if k not in _NAMES}
    env.update(PYTHONPATH=e2e_util.REPO_ROOT, **preset)
    code = ("from bert_classifier.cli import script_env; import tensorflow as tf; "
            "tf.config.list_physical_devices('GPU'); print(int(tf.constant(2) + 3))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "5"
    return proc.stderr


@pytest.mark.skipif(not _driver_missing(), reason="the machine has the NVIDIA driver")
def test_no_cuinit_error_without_a_driver():
    assert _first_op_stderr() == ""
    # The user's TF_CPP_MIN_LOG_LEVEL=0 keeps every line, the driver's error too.
    assert "failed call to cuInit" in _first_op_stderr(TF_CPP_MIN_LOG_LEVEL="0")


def test_ctrl_c_during_import_is_one_line():
    # SIGINT while TensorFlow is being imported (a tenth of a second into the process).
    env = dict(os.environ, PYTHONPATH=e2e_util.REPO_ROOT)
    env.pop("BERT_TRACEBACK", None)
    code = ("import signal, threading, os; "
            "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start(); "
            "from bert_classifier.cli import script_env; import tensorflow, time; time.sleep(30)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["-c: interrupted"]


def test_values_in_the_environment_win():
    report = _report(TF_CPU_ALLOCATOR_USE_BFC="false", TF_CPP_MIN_LOG_LEVEL="0")
    assert report["TF_CPU_ALLOCATOR_USE_BFC"] == "false"
    assert report["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert report["TF_USE_LEGACY_KERAS"] == "1"
