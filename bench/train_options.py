"""Speed of the training options on the embedded sim job: fixed vs length-aware batches
(--length_multiple, --bucket_by_length), float32 vs bfloat16 (--precision), gradient
accumulation (--gradient_accumulation_steps), class weights (--class_weights), and what one
evaluation of the dev set costs (what --eval_every_steps pays at each evaluation).

Each configuration runs in its own fresh process (so compilations and allocator pools start
cold, as in a real run) on the real data of the default job: `data/sim_bbc` featurized with the
MiniLM vocabulary at --max_seq_length, the MiniLM-L6 architecture of
`pretrained/minilm_L-6_H-384_A-12` (random weights: same speed), batch 32, dropout 0.1, through
the project's own path (`input_pipeline.input_fn` -> `train_loop.make_train_loop`, predict's
`forward.predict`). Reported per configuration:

  job_s      the time of the job's first --steps training steps (75 = the default job's 2
             epochs), host calls of 25 steps: what a run pays, first-call compilation included
             (every new batch length compiles the fused kernels once more);
  ex/s       examples/s over --steady_steps more steps, after those (steady state);
  eval_s     forward.evaluate over the dev set (300 pairs, batch 8, run_classifier's
             defaults: op by op, micro-batches of 16): first pass / second pass; an
             evaluation during training (--eval_every_steps) costs about the second pass;
  predict_s  predict over the dev set, the same way: first pass / second pass;
  RSS        the process's peak RSS (MB), after all of the above.
Each also as CPU seconds of the process (user + system), which a shared machine disturbs less
than wall time: on 2 cores TensorFlow keeps both busy, so CPU time ~ 2x wall when alone.

    .venv/bin/python bench/train_options.py                          # all configurations
    .venv/bin/python bench/train_options.py --configs fixed,len16 --precisions float32 \\
        --max_seq_length 128
    .venv/bin/python bench/train_options.py --configs len16,len16_accum2,len16_accum4,len16_weighted \\
        --precisions float32
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = "@@RESULT "
MODEL_DIR = os.path.join(REPO_ROOT, "pretrained", "minilm_L-6_H-384_A-12")
DATA_DIR = os.path.join(REPO_ROOT, "data", "sim_bbc")
# name: (length_multiple, bucket_by_length, gradient_accumulation_steps, class_weights)
CONFIGS = {"fixed": (0, False, 1, None), "len8": (8, False, 1, None),
           "len16": (16, False, 1, None), "bucket8": (8, True, 1, None),
           "bucket16": (16, True, 1, None)}
# Not in the default list: the same batch of 32 as 2 or 4 micro-batches (each cut to its own
# longest example), and the loss weighted per class (label 1 three times label 0).
OPTION_CONFIGS = {"len16_accum2": (16, False, 2, None), "len16_accum4": (16, False, 4, None),
                  "len16_weighted": (16, False, 1, (1.0, 3.0))}
ALL_CONFIGS = {**CONFIGS, **OPTION_CONFIGS}
BATCH = 32
PREDICT_BATCH = 8
STEPS_PER_CALL = 25


def featurize(workdir: str, max_seq_length: int) -> dict:
    """The sim data's train and dev sets as .tf_records at max_seq_length: {"train": path,
    "dev": path, "train_count": n, "dev_count": n} (bench/train_startup.py uses it too)."""
    sys.path.insert(0, REPO_ROOT)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from bert_classifier.workflow import features
    import tokenization
    from processors import get_processor
    processor = get_processor("sim")
    tokenizer = tokenization.FullTokenizer(os.path.join(MODEL_DIR, "vocab.txt"), True)
    paths = {}
    for name, examples in (("train", processor.get_train_examples(DATA_DIR)),
                           ("dev", processor.get_dev_examples(DATA_DIR))):
        paths[name] = os.path.join(workdir, f"{name}_{max_seq_length}.tf_record")
        features.file_based_convert_examples_to_features(
            examples, processor.get_labels(), max_seq_length, tokenizer, paths[name],
            num_workers=1)
        paths[name + "_count"] = len(examples)
    return paths


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(args) -> None:
    sys.path.insert(0, REPO_ROOT)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # as run_classifier.py
    import numpy as np
    import tensorflow as tf
    from bert_classifier.core import checkpoint_names
    import modeling
    import optimization
    from bert_classifier.core import precision
    from bert_classifier.workflow import forward
    from bert_classifier.workflow import input_pipeline
    from bert_classifier.workflow import strategies
    from bert_classifier.workflow import train_loop

    length_multiple, bucket, accumulation, class_weights = ALL_CONFIGS[args.config]
    precision.set_policy(args.precision)
    config = modeling.BertConfig.from_json_file(os.path.join(MODEL_DIR, "bert_config.json"))
    strategy = strategies.create_strategy("one_device")
    tf.random.set_seed(0)
    model = forward.build_classifier(config, 2, strategy)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    with strategy.scope():
        optimizer = optimization.create_optimizer(5e-5, 1000, 7, name_to_variable=names)
        optimizer.create_slots(list(names.values()))
        # mixed_float16 (a GPU): dynamic loss scaling, as train_loop.train sets it up.
        loss_scaling = (precision.LossScaling(optimizer)
                        if precision.compute_dtype(model) == tf.float16 else None)
    dataset = strategy.distribute_datasets_from_function(input_pipeline.input_fn(
        args.train_file, args.max_seq_length, BATCH, is_training=True, drop_remainder=True,
        seed=12345, length_multiple=length_multiple, bucket_by_length=bucket))
    iterator = iter(dataset)
    loop = train_loop.make_train_loop(model, optimizer, strategy, 2, BATCH,
                                      gradient_accumulation_steps=accumulation,
                                      class_weights=class_weights, loss_scaling=loss_scaling,
                                      length_multiple=length_multiple)

    def run(steps):
        for _ in range(steps // STEPS_PER_CALL):
            loss = float(loop(iterator, tf.constant(STEPS_PER_CALL))[1])
            assert np.isfinite(loss), loss

    def timed(fn):
        wall, cpu = time.perf_counter(), _cpu_s()
        fn()
        return time.perf_counter() - wall, _cpu_s() - cpu

    job_s, job_cpu = timed(lambda: run(args.steps))
    steady_s, steady_cpu = timed(lambda: run(args.steady_steps))
    # Eval and predict as run_classifier's defaults: op by op (--xla_inference=false),
    # micro-batches of 16, batches cut by the configuration's --length_multiple.
    evals = [timed(lambda: forward.evaluate(
        model, 2, args.dev_file, args.max_seq_length, PREDICT_BATCH, strategy,
        drop_remainder=False, global_step=0, progress_bar=False, micro_batch_size=16,
        length_multiple=length_multiple)) for _ in range(2)]
    predict = [timed(lambda: forward.predict(
        model, args.dev_file, args.max_seq_length, PREDICT_BATCH, strategy,
        drop_remainder=False, num_examples=args.dev_count, progress_bar=False,
        micro_batch_size=16, length_multiple=length_multiple)) for _ in range(2)]
    print(PROTO + json.dumps({
        "config": args.config, "precision": args.precision, "job_s": job_s, "job_cpu": job_cpu,
        "ex_per_s": args.steady_steps * BATCH / steady_s,
        "ex_per_cpu_s": args.steady_steps * BATCH / steady_cpu,
        "eval_s": [e[0] for e in evals], "eval_cpu": [e[1] for e in evals],
        "predict_s": [p[0] for p in predict], "predict_cpu": [p[1] for p in predict],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}),
        flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma list of " + ", ".join(ALL_CONFIGS))
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=75)
    parser.add_argument("--steady_steps", type=int, default=50)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--train_file", help=argparse.SUPPRESS)
    parser.add_argument("--dev_file", help=argparse.SUPPRESS)
    parser.add_argument("--dev_count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.configs.split(",")) - set(ALL_CONFIGS)
    if unknown:
        raise SystemExit(f"--configs: unknown {', '.join(sorted(unknown))}; expected "
                         + ", ".join(ALL_CONFIGS))
    if args.worker:
        worker(args)
        return
    from common import environment_line  # versions and thread settings, for the record
    print(environment_line(), flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        paths = featurize(workdir, args.max_seq_length)
        print(f"max_seq_length {args.max_seq_length}, load average before: "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        print("| config | precision | job s (CPU s), first %d steps | ex/s (ex/CPU s), %d more "
              "steps | eval s (CPU s), first / second pass | predict s (CPU s), first / second "
              "pass | peak RSS MB | load after |" % (args.steps, args.steady_steps))
        print("|---|---|---|---|---|---|---|---|")
        for precision_name in args.precisions.split(","):
            for config in args.configs.split(","):
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", config,
                       "--precision", precision_name, "--train_file", paths["train"],
                       "--dev_file", paths["dev"], "--dev_count", str(paths["dev_count"]),
                       "--max_seq_length", str(args.max_seq_length), "--steps",
                       str(args.steps), "--steady_steps", str(args.steady_steps)]
                env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                lines = [l for l in proc.stdout.splitlines() if l.startswith(PROTO)]
                if proc.returncode or not lines:
                    print(f"| {config} | {precision_name} | failed: "
                          f"{proc.stderr.strip().splitlines()[-1:]} |", flush=True)
                    continue
                r = json.loads(lines[-1][len(PROTO):])
                print(f"| {config} | {precision_name} | {r['job_s']:.1f} ({r['job_cpu']:.1f}) | "
                      f"{r['ex_per_s']:.1f} ({r['ex_per_cpu_s']:.1f}) | "
                      f"{r['eval_s'][0]:.1f} ({r['eval_cpu'][0]:.1f}) / "
                      f"{r['eval_s'][1]:.1f} ({r['eval_cpu'][1]:.1f}) | "
                      f"{r['predict_s'][0]:.1f} ({r['predict_cpu'][0]:.1f}) / "
                      f"{r['predict_s'][1]:.1f} ({r['predict_cpu'][1]:.1f}) | "
                      f"{r['peak_rss_mb']:.0f} | {os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
