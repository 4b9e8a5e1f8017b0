"""The exported SavedModel's speed: raw strings in (tokenized in the graph) vs ids in plus Python
tokenization, and vs the Python predict path, in one process and one run.

Model: the embedded MiniLM with a seeded 2-label head, exported by export_saved_model.py (a
classifier; max_seq_length 128). Texts: (headline, sentence) pairs from BBC News.

Paths (each warmed up over every request first, then timed; the order rotates per repeat):
  string   the export's serving_default(text_a, text_b): tokenization, trimming and the model
           in one graph call;
  ids+py   the project's Python tokenizer (features.encode_texts, FullTokenizer), the batch cut
           to its longest pair (as the string signature does), then the
           export's from_ids(input_ids, input_mask, segment_ids);
  predict  inference.Classifier.predict (the Python API behind predict.py: Python tokenizer,
           XLA-compiled model step).
Reported: batch 1 latency p50/p99 over --num_single requests, batch 64 throughput (pairs/s)
over --num_batched pairs; the targets: string at batch 64 within 10% of ids+py, and faster than
ids+py at batch 1.

  .venv/bin/python bench/serving.py
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import REPO_ROOT, bbc_texts, minilm_classifier_dir

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, REPO_ROOT)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_single", type=int, default=300)
    parser.add_argument("--num_batched", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from common import environment_line  # versions and thread settings, for the record
    print(environment_line(), flush=True)

    work = tempfile.mkdtemp(prefix="bench_serving_")
    model_dir = minilm_classifier_dir(work, sys.executable)
    export_dir = os.path.join(work, "export")
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "export_saved_model.py"),
                    "--model_dir=" + model_dir, "--export_dir=" + export_dir], check=True,
                   capture_output=True, env=dict(os.environ, PYTHONPATH=REPO_ROOT))

    import numpy as np
    import tensorflow as tf
    from bert_classifier.workflow import features
    from bert_classifier.api import inference

    saved = tf.saved_model.load(export_dir)
    serve, from_ids = saved.signatures["serving_default"], saved.signatures["from_ids"]
    classifier = inference.Classifier.load(model_dir, batch_size=args.batch_size)
    tokenizer, max_seq_length = classifier.tokenizer, classifier.max_seq_length
    pairs = bbc_texts("predict", args.num_single + args.num_batched)
    single, batched = pairs[:args.num_single], pairs[args.num_single:]

    def string_path(batch):
        return serve(text_a=tf.constant([a for a, _ in batch]),
                     text_b=tf.constant([b for _, b in batch]))["probabilities"].numpy()

    def ids_path(batch):
        encoded = features.encode_texts(batch, max_seq_length, tokenizer)
        longest = int(encoded.lengths.max())
        length = longest  # as wide as the longest pair, as the string signature runs it
        return from_ids(input_ids=tf.constant(encoded.input_ids[:, :length]),
                        input_mask=tf.constant(encoded.input_mask[:, :length]),
                        segment_ids=tf.constant(encoded.segment_ids[:, :length])
                        )["probabilities"].numpy()

    def predict_path(batch):
        return classifier.predict_proba(batch)

    paths = {"string": string_path, "ids+py": ids_path, "predict": predict_path}
    chunks = [batched[i:i + args.batch_size] for i in range(0, len(batched), args.batch_size)]
    # Warm-up: every request once (graph traces, XLA shapes, tokenizer memos), and agreement.
    reference = None
    for name, run in paths.items():
        for pair in single:
            run([pair])
        out = np.concatenate([run(chunk) for chunk in chunks])
        reference = out if reference is None else reference
        print("%-8s warm; max |p - string| = %.2e" % (name, np.abs(out - reference).max()),
              flush=True)

    latency = {name: [] for name in paths}
    throughput = {name: [] for name in paths}
    names = list(paths)
    for repeat in range(args.repeats):
        order = names[repeat % 3:] + names[:repeat % 3]
        for name in order:
            run = paths[name]
            times = []
            for pair in single:
                start = time.perf_counter()
                run([pair])
                times.append(time.perf_counter() - start)
            latency[name].append((float(np.percentile(times, 50)) * 1000,
                                  float(np.percentile(times, 99)) * 1000))
            start = time.perf_counter()
            for chunk in chunks:
                run(chunk)
            throughput[name].append(len(batched) / (time.perf_counter() - start))
            print("repeat %d %-8s batch 1 p50 %.2f ms p99 %.2f ms; batch %d %.1f pairs/s"
                  % (repeat, name, latency[name][-1][0], latency[name][-1][1],
                     args.batch_size, throughput[name][-1]), flush=True)
    summary = {
        "load_average": os.getloadavg()[0],
        "batch1_p50_ms": {n: statistics.median(x[0] for x in latency[n]) for n in names},
        "batch1_p99_ms": {n: statistics.median(x[1] for x in latency[n]) for n in names},
        "batch%d_pairs_per_s" % args.batch_size: {n: statistics.median(throughput[n])
                                                  for n in names},
        "string_vs_ids+py_batch%d_per_repeat" % args.batch_size: [
            s / i for s, i in zip(throughput["string"], throughput["ids+py"])],
        "string_vs_ids+py_batch1_p50_per_repeat": [
            i[0] / s[0] for s, i in zip(latency["string"], latency["ids+py"])],
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
