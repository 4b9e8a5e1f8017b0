"""Inference step variants timed in one process: this project's predict step (XLA or op by op,
micro-batched or not, fused kernels or plain ops) against tf-models-official's BertClassifier
step with and without XLA, on the same fixed random batches.

Built for the question "why does BERT-base inference trail official + XLA" (bench/README.md,
attempts list): every variant runs in the same process on the same inputs, in rounds that
alternate the variants, so the load of a shared machine hits them alike. Reported: the first
call (trace + compile + 1 batch) and the median seconds per batch over the rounds.

Variants (--variants):
  ours_xla_m16   forward.make_predict_step(jit_compile=True, micro_batch_size=16): the default
  ours_xla_m0    the same, whole batch at once (--inference_micro_batch_size=0)
  ours_xla_m32   micro-batches of 32
  ours_xla_plain XLA, whole batch, fused_ops off (plain TensorFlow ops inside the cluster)
  ours_noxla_m0  op by op (--xla_inference=false), whole batch
  ours_noxla_m16 op by op, micro-batches of 16
  ours_pipeline  the default step (XLA, micro-batches of 16) fed as predict feeds it: the same
                 batch written to a .tf_record, read by input_pipeline.input_fn (repeated) through
                 strategy.distribute_datasets_from_function, as bench/train_throughput.py does
  official_xla   official BertClassifier, softmax, tf.function(jit_compile=True)
  official       the same without XLA
XLA_FLAGS and other environment variables apply to the whole process (run it once per value).

With --predict_task (sim: data/sim_bbc/dev.tsv at max_seq_length 64; pairs: 300 short BBC
pairs at 128) it times what a run pays instead: predict over that real set with batches cut to
their longest example (--length_multiple, default 16 as run_classifier), each variant in a fresh
process (so every compilation is paid), on the MiniLM shape: pass 1 (each distinct batch shape
compiles the XLA step, or the fused kernels op by op) and pass 2 with the same step (steady).
Variants: xla_m16 (the default), xla_m0, noxla_m16, noxla_m0.

  .venv-bench/bin/python bench/inference_probe.py --shape base --batch 64 --seq 128 \\
      --variants ours_xla_m16,ours_xla_m0,official_xla --rounds 3
  .venv-bench/bin/python bench/inference_probe.py --shape minilm --batch 64 --seq 32 \\
      --variants ours_xla_m16,ours_noxla_m16,ours_noxla_m0,official_xla --rounds 5
  .venv-bench/bin/python bench/inference_probe.py --predict_task sim --batch 8 \\
      --variants xla_m16,noxla_m16
"""
import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
SHAPES = {"minilm": (6, 384, 12, 1536), "base": (12, 768, 12, 3072)}
VARIANTS = ("ours_xla_m16", "ours_xla_m0", "ours_xla_m32", "ours_xla_plain", "ours_noxla_m0",
            "ours_noxla_m16", "ours_pipeline", "official_xla", "official")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="base", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--variants", default="ours_xla_m16,ours_xla_m0,official_xla")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches_per_call", type=int, default=1)
    parser.add_argument("--predict_task", default="", choices=["", "sim", "pairs"])
    parser.add_argument("--length_multiple", type=int, default=16)
    parser.add_argument("--predict_worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--record", default="", help=argparse.SUPPRESS)
    parser.add_argument("--max_seq_length", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.predict_worker:
        predict_worker(args)
        return
    if args.predict_task:
        predict_main(args)
        return
    from common import environment_line  # versions and thread settings, for the record
    print(environment_line(), flush=True)
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"inference_probe.py: error: --variants: unknown {v!r}; expected "
                             f"{', '.join(VARIANTS)}")

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # as run_classifier.py
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [REPO_ROOT, BENCH_DIR]
    import numpy as np
    import tensorflow as tf
    from bert_classifier.core import fused_ops
    import modeling
    from bert_classifier.workflow import forward
    from bert_classifier.workflow import input_pipeline
    from bert_classifier.workflow import strategies
    from common import official_bert_classifier

    layers, hidden, heads, inter = SHAPES[args.shape]
    config = {"vocab_size": 30522, "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": heads, "intermediate_size": inter, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "max_position_embeddings": 512, "type_vocab_size": 2}
    rng = np.random.default_rng(0)
    lengths = rng.integers(args.seq // 2, args.seq + 1, size=args.batch)
    lengths[0] = args.seq
    mask = (np.arange(args.seq)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(1000, 30522, size=(args.batch, args.seq)).astype(np.int32) * mask
    segments = ((np.arange(args.seq)[None, :] >= (lengths // 2)[:, None]) * mask).astype(np.int32)
    batch = {"input_ids": tf.constant(ids), "input_mask": tf.constant(mask),
             "segment_ids": tf.constant(segments)}
    official_inputs = {"input_word_ids": batch["input_ids"], "input_mask": batch["input_mask"],
                       "input_type_ids": batch["segment_ids"]}

    steps = {}
    strategy = strategies.create_strategy("one_device")
    if any(v.startswith("ours") for v in variants):
        tf.random.set_seed(0)
        model = forward.build_classifier(modeling.BertConfig.from_dict(config), 2, strategy)
        for v in variants:
            if not v.startswith("ours"):
                continue
            jit = "_xla" in v or v == "ours_pipeline"
            micro = {"ours_xla_plain": 0, "ours_pipeline": 16}.get(v) if v in (
                "ours_xla_plain", "ours_pipeline") else int(v.rsplit("_m", 1)[1])
            step = forward.make_predict_step(model, strategy, jit_compile=jit,
                                             micro_batch_size=micro)
            if v == "ours_pipeline":
                from bert_classifier.workflow import features
                record = os.path.join(tempfile.mkdtemp(prefix="probe_"), "batch.tf_record")
                with tf.io.TFRecordWriter(record) as writer:
                    for i in range(args.batch):
                        values = {"input_ids": ids[i], "input_mask": mask[i],
                                  "segment_ids": segments[i], "label_ids": [0],
                                  "is_real_example": [1]}
                        writer.write(tf.train.Example(features=tf.train.Features(feature={
                            name: tf.train.Feature(int64_list=tf.train.Int64List(
                                value=[int(x) for x in values[name]]))
                            for name in features.name_to_features(args.seq)})).SerializeToString())
                pipeline = input_pipeline.input_fn(record, args.seq, args.batch, is_training=False,
                                                   drop_remainder=False)
                iterator = iter(strategy.distribute_datasets_from_function(
                    lambda ctx, pipeline=pipeline: pipeline(ctx).repeat()))

                def from_pipeline(b, step=step, iterator=iterator):
                    return [local.numpy() for local in
                            strategy.experimental_local_results(step(next(iterator)))]
                steps[v] = from_pipeline
            elif v == "ours_xla_plain":
                def traced_plain(b, step=step):
                    # The first call traces; fused_ops' plain ops are chosen at trace time.
                    with fused_ops.plain_ops():
                        return step(b)
                steps[v] = traced_plain
            else:
                steps[v] = step
    if any(v.startswith("official") for v in variants):
        tf.random.set_seed(0)
        official = official_bert_classifier(config)
        official(official_inputs, training=False)
        for v in variants:
            if v.startswith("official"):
                @tf.function(jit_compile=(v == "official_xla"))
                def official_step(inputs, official=official):
                    return tf.nn.softmax(official(inputs, training=False), axis=-1)
                steps[v] = lambda b, f=official_step: f(official_inputs)

    def call(v):
        for _ in range(args.batches_per_call):
            np.asarray(steps[v](batch))

    print(f"shape {args.shape}, batch {args.batch}, seq {args.seq}, load average "
          f"{os.getloadavg()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
    first = {}
    for v in variants:
        t = time.perf_counter()
        call(v)
        first[v] = time.perf_counter() - t
        print(f"  {v}: first call {first[v]:.1f} s", flush=True)
    def cpu_s():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    times = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            t, c = time.perf_counter(), cpu_s()
            call(v)
            times[v].append((time.perf_counter() - t) / args.batches_per_call)
            cpu[v].append((cpu_s() - c) / args.batches_per_call)
        print(f"  round {r + 1}: " + ", ".join(f"{v} {times[v][-1]:.3f} (CPU {cpu[v][-1]:.3f})"
                                               for v in variants) + " s/batch", flush=True)
    reference = variants[0]
    print(f"\n| variant | first call s | s/batch (median of {args.rounds}) | CPU s/batch | "
          f"ex/s | vs {reference} (wall) | vs {reference} (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        med, med_cpu = statistics.median(times[v]), statistics.median(cpu[v])
        print(f"| {v} | {first[v]:.1f} | {med:.3f} | {med_cpu:.3f} | {args.batch / med:.1f} | "
              f"{statistics.median(times[reference]) / med:.2f}x | "
              f"{statistics.median(cpu[reference]) / med_cpu:.2f}x |")
    print(f"load average after {os.getloadavg()}")


PREDICT_VARIANTS = ("xla_m16", "xla_m0", "noxla_m16", "noxla_m0")


def predict_main(args) -> None:
    """Featurizes the task's set, then runs each variant in a fresh process, in rounds."""
    import json
    import subprocess
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [REPO_ROOT, BENCH_DIR]
    from bert_classifier.workflow import features
    import tokenization
    from common import MINILM_DIR, bbc_short_pairs
    from processors import InputExample, get_processor
    variants = args.variants.split(",")
    for v in variants:
        if v not in PREDICT_VARIANTS:
            raise SystemExit(f"inference_probe.py: error: --variants: unknown {v!r} with "
                             f"--predict_task; expected {', '.join(PREDICT_VARIANTS)}")
    if args.predict_task == "sim":
        max_seq_length = 64
        examples = get_processor("sim").get_dev_examples(os.path.join(REPO_ROOT, "data",
                                                                      "sim_bbc"))
    else:
        max_seq_length = 128
        examples = [InputExample(guid=str(i), text_a=a, text_b=b, label=label)
                    for i, (a, b, label) in enumerate(bbc_short_pairs(1500)[1200:])]
    record = os.path.join(tempfile.mkdtemp(prefix="probe_predict_"), "predict.tf_record")
    tokenizer = tokenization.FullTokenizer(os.path.join(MINILM_DIR, "vocab.txt"), True)
    features.file_based_convert_examples_to_features(examples, ["0", "1"], max_seq_length,
                                                     tokenizer, record, num_workers=1)
    print(f"predict {args.predict_task}: {len(examples)} examples, batch {args.batch}, "
          f"max_seq_length {max_seq_length}, length_multiple {args.length_multiple}, load "
          f"average {os.getloadavg()}", flush=True)
    results = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--predict_worker", v, "--record",
                 record, "--max_seq_length", str(max_seq_length), "--batch", str(args.batch),
                 "--length_multiple", str(args.length_multiple)],
                capture_output=True, text=True, env=dict(os.environ))
            lines = [l for l in out.stdout.splitlines() if l.startswith("@@")]
            if out.returncode or not lines:
                raise SystemExit(f"{v} failed: {out.stderr.strip()[-2000:]}")
            results[v].append(json.loads(lines[-1][2:]))
            res = results[v][-1]
            print(f"  round {r + 1} {v}: pass 1 {res['pass1_s']:.2f} s (CPU "
                  f"{res['pass1_cpu']:.2f}), pass 2 {res['pass2_s']:.2f} s (CPU "
                  f"{res['pass2_cpu']:.2f}), {res['shapes']} batch shapes", flush=True)
    print("\n| variant | pass 1 s (compiles) | pass 1 CPU s | pass 2 s (steady) | pass 2 CPU s "
          "| batch shapes |")
    print("|---|---|---|---|---|---|")
    for v in variants:
        med = {k: statistics.median(r[k] for r in results[v])
               for k in ("pass1_s", "pass1_cpu", "pass2_s", "pass2_cpu")}
        print(f"| {v} | {med['pass1_s']:.2f} | {med['pass1_cpu']:.2f} | {med['pass2_s']:.2f} | "
              f"{med['pass2_cpu']:.2f} | {results[v][0]['shapes']} |")
    print(f"load average after {os.getloadavg()}")


def predict_worker(args) -> None:
    """One variant in a fresh process: predict()'s step and input pipeline, two passes."""
    import json
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [REPO_ROOT, BENCH_DIR]
    import numpy as np
    import tensorflow as tf
    import modeling
    from bert_classifier.workflow import forward, input_pipeline, strategies
    from common import minilm_config

    def cpu_s():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    strategy = strategies.create_strategy("one_device")
    tf.random.set_seed(0)
    model = forward.build_classifier(modeling.BertConfig.from_dict(minilm_config()), 2,
                                     strategy)
    v = args.predict_worker
    step = forward.make_predict_step(model, strategy, jit_compile=v.startswith("xla"),
                                     micro_batch_size=int(v.rsplit("_m", 1)[1]))
    shapes = set()

    def one_pass():
        dataset = strategy.distribute_datasets_from_function(input_pipeline.input_fn(
            args.record, args.max_seq_length, args.batch, is_training=False,
            drop_remainder=False, length_multiple=args.length_multiple))
        for batch in dataset:
            shapes.add(tuple(batch["input_ids"].shape))
            for local in strategy.experimental_local_results(step(batch)):
                np.asarray(local)

    result = {}
    for name in ("pass1", "pass2"):
        t, c = time.perf_counter(), cpu_s()
        one_pass()
        result[name + "_s"], result[name + "_cpu"] = time.perf_counter() - t, cpu_s() - c
    result["shapes"] = len(shapes)
    print("@@" + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
