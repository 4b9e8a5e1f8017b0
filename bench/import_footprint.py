"""Peak RSS of a framework's import plus one op: the fixed memory cost under every benchmark row.

Both sides import what their benchmark worker imports before building a model: TensorFlow with
the project's training and modeling modules, and PyTorch with transformers'
BertForSequenceClassification (transformers loads its model classes only when first named).

Each case runs in a fresh subprocess of this interpreter and prints ru_maxrss in MB. The TF
cases block chosen top-level packages (the import system reports them as not installed), to
show what TensorFlow pulls in opportunistically: tf_keras/keras, and pandas (imported by
tf_keras's data adapters), scipy, pyarrow, googleapiclient when they are installed.

  .venv-bench/bin/python bench/import_footprint.py   # the benchmark's interpreter
  .venv/bin/python bench/import_footprint.py         # the project's own (no torch peer cases
                                                     # if transformers is missing)
"""
import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CASE = r"""
import importlib.abc, importlib.util, json, os, resource, sys
blocked = set(filter(None, sys.argv[1].split(",")))
_find_spec = importlib.util.find_spec
def find_spec(name, package=None):
    return None if name.split(".")[0] in blocked else _find_spec(name, package)
importlib.util.find_spec = find_spec  # TensorFlow probes for keras with find_spec
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError("blocked: " + name, name=name)
sys.meta_path.insert(0, Block())
if sys.argv[2].startswith("tf"):
    import tensorflow as tf
    if sys.argv[2] == "tf_project":  # what ours imports: the training loop and the model
        sys.path.insert(0, sys.argv[3])
        import modeling
        from bert_classifier.workflow import train_loop
    tf.constant(1.0) + 1.0
else:
    import torch, transformers
    if sys.argv[2] == "torch_bert":  # transformers imports its model classes lazily
        from transformers import BertForSequenceClassification
    torch.ones(1) + 1.0
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                  "modules": len(sys.modules)}))
"""

# (label, framework, blocked packages, extra environment)
CASES = [
    ("import tensorflow (TF_USE_LEGACY_KERAS=1: tf_keras), as ours runs", "tf", "",
     {"TF_USE_LEGACY_KERAS": "1"}),
    ("  same, pandas blocked", "tf", "pandas", {"TF_USE_LEGACY_KERAS": "1"}),
    ("import tensorflow, no Keras at all (keras blocked)", "tf", "keras",
     {"TF_USE_LEGACY_KERAS": "0"}),
    ("  same, pandas and scipy blocked too", "tf", "keras,pandas,scipy",
     {"TF_USE_LEGACY_KERAS": "0"}),
    ("import tensorflow + the project's training, modeling (what ours imports)", "tf_project",
     "", {"TF_USE_LEGACY_KERAS": "1"}),
    ("import torch, transformers", "torch", "", {}),
    ("import torch, transformers.BertForSequenceClassification (the hf peer)", "torch_bert", "",
     {}),
]


def main() -> None:
    from common import environment_line  # versions and thread settings, for the record
    print(environment_line(), flush=True)
    for label, framework, blocked, env in CASES:
        if framework.startswith("torch") and _missing("transformers"):
            continue
        out = subprocess.run(
            [sys.executable, "-c", _CASE, blocked, framework, REPO_ROOT], capture_output=True,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env), timeout=600)
        if out.returncode != 0:
            print("%-74s failed: %s" % (label, out.stderr.strip().splitlines()[-1]))
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print("%-74s %5d MB  %5d modules" % (label, result["rss_mb"], result["modules"]))


def _missing(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is None


if __name__ == "__main__":
    main()
