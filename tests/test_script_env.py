"""cli/script_env.py: the environment every script sets before TensorFlow; the user's values win."""

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
           ".modules}))")
_NAMES = ("TF_USE_LEGACY_KERAS", "TF_CPU_ALLOCATOR_USE_BFC", "TF_CPP_MIN_LOG_LEVEL")


def _report(**preset):
    env = {k: v for k, v in os.environ.items() if k not in _NAMES}
    env.update(PYTHONPATH=e2e_util.REPO_ROOT, **preset)
    proc = subprocess.run([sys.executable, "-c", _REPORT], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(proc.stdout)


def test_defaults_without_importing_tensorflow():
    assert _report() == {"TF_USE_LEGACY_KERAS": "1", "TF_CPU_ALLOCATOR_USE_BFC": "true",
                         "TF_CPP_MIN_LOG_LEVEL": "2", "abseil": True, "tf": False}


def test_values_in_the_environment_win():
    report = _report(TF_CPU_ALLOCATOR_USE_BFC="false", TF_CPP_MIN_LOG_LEVEL="0")
    assert report["TF_CPU_ALLOCATOR_USE_BFC"] == "false"
    assert report["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert report["TF_USE_LEGACY_KERAS"] == "1"
