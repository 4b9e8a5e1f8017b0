"""Fine-tuning time on real short text: this project's length-aware batches and bfloat16 against
the peers a competent user would pick, each framework in its own fresh process.

Tasks (real text, featurized once with the project's tokenizer and the MiniLM vocabulary; every
framework trains on the same token ids):
  pairs  a short-text pair task from BBC News (bench/common.bbc_short_pairs): a headline and a
         6-20-word sentence of its own article (label 1) or of another article (0), ~20-40
         tokens a pair, max_seq_length 128;
  sim    the default job's data (data/sim_bbc, examples/sim_bbc.flags): max_seq_length 64.
Both: the MiniLM-L6 architecture of pretrained/minilm_L-6_H-384_A-12 (random weights: the same
speed), batch 32, dropout 0.1, learning rate 5e-5 with 10% warmup, `--steps` steps (75 = the
default job's 2 epochs of 1,200 examples), then `--steady_steps` more.

Configurations (CONFIGS):
  ours_fixed / ours_len16 / ours_bucket16 [_bf16]: the project's path (input_pipeline.input_fn over
      the .tf_record -> train_loop.make_train_loop, Google's AdamWeightDecay, clip 1.0) with
      --length_multiple=0 / 16 / 16 + --bucket_by_length, --precision float32 / bfloat16;
  hf_eager / hf_compile [_bf16]: transformers' BertForSequenceClassification on PyTorch, a
      DataLoader (shuffled) with DataCollatorWithPadding (each batch padded to its longest),
      torch.optim.AdamW (weight decay 0.01, eps 1e-6) with transformers' linear warmup/decay,
      clip_grad_norm_(1.0); hf_compile = torch.compile(model, dynamic=True) (one graph for every
      length); _bf16 = torch.autocast("cpu", torch.bfloat16);
  hf_grouped [_bf16]: hf_eager with transformers' LengthGroupedSampler in the DataLoader, what
      Trainer(group_by_length=True) uses: batches of examples of similar length (megabatches of
      min(50, N / (4 x 32)) batches sorted by length, the longest batch first), each padded
      to its longest;
  official_xla / official_xla_len16 [_bf16]: tf-models-official's BertClassifier with its
      AdamWeightDecay (clips at 1.0), the train step under tf.function(jit_compile=True), fed
      by tf.data from memory: fixed max_seq_length (its pipelines' padding) / each batch cut
      to its longest rounded up to 16 (three lines of tf.data, one XLA compilation per
      length); _bf16 = tf_keras's mixed_bfloat16 policy;
  official / official_len16 [_bf16]: the same without XLA (a plain tf.function step; one trace
      per length when cut). Official's workers get the TensorFlow environment of ours
      (TF_CPU_ALLOCATOR_USE_BFC=true, as run_classifier.py sets it).
  Extra (not in the default list): ours_len8 / ours_bucket8 (--length_multiple=8), hf_compile16 (torch.compile with static shapes, batches padded to a multiple of 16
  with DataCollatorWithPadding(pad_to_multiple_of=16): one compilation per length).

Reported per task and configuration (medians over --repeats; each repeat runs every
configuration once, in a rotated order, each in a fresh process):
  job s      end to end: from the worker's process start (the parent's Popen) to the last of
             the --steps steps, imports, model build and every compilation included;
  ex/s       steady-state training examples/s over --steady_steps more steps;
  tokens     mean padded length of the steps the framework actually computed;
  peak RSS   the worker's, plus its child processes' (torch.compile's compile workers):
             common.peak_rss_mb;
  CPU        the worker's CPU seconds (user + system, all threads) to the end of the job, and
             examples per CPU-second in the steady phase: steadier than wall time on a shared
             machine (on 2 idle cores a framework that keeps both busy shows CPU ~ 2x wall);
  % ceiling  analytic FLOPs (common.bert_forward_flops x 3, at those padded lengths) / time,
             over the float32 or bfloat16 matrix-product ceiling measured in the same run
             (common.matmul_ceiling: a [4096, 768] x [768, 3072] product);
and per repeat the ratios best ours / best peer.

  .venv-bench/bin/python bench/finetune.py                                  # everything
  .venv-bench/bin/python bench/finetune.py --tasks pairs --configs ours_fixed,ours_bucket16 \\
      --repeats 1 --steps 10 --steady_steps 5                               # a smoke test
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
PROTO = "@@FINETUNE "
BATCH = 32
LEARNING_RATE = 5e-5
WARMUP_PROPORTION = 0.1
SEED = 12345
# Steps per host call of ours' compiled loop (run_classifier cuts calls at every log interval).
STEPS_PER_CALL = 25
TASKS = {
    # name: (max_seq_length, number of training examples)
    "pairs": (128, 1200),
    "sim": (64, None),  # data/sim_bbc/train.tsv: 1,200 pairs
}


def _config(framework, precision="float32", length_multiple=0, bucket=False, compile=False,
            pad_multiple=None, jit=True, grouped=False):
    return {"framework": framework, "precision": precision, "length_multiple": length_multiple,
            "bucket": bucket, "compile": compile, "pad_multiple": pad_multiple, "jit": jit,
            "grouped": grouped}


CONFIGS = {}
for _suffix, _precision in (("", "float32"), ("_bf16", "bfloat16")):
    CONFIGS.update({
        "ours_fixed" + _suffix: _config("ours", _precision, 0),
        "ours_len16" + _suffix: _config("ours", _precision, 16),
        "ours_bucket16" + _suffix: _config("ours", _precision, 16, bucket=True),
        "ours_len8" + _suffix: _config("ours", _precision, 8),
        "ours_bucket8" + _suffix: _config("ours", _precision, 8, bucket=True),
        "hf_eager" + _suffix: _config("hf", _precision),
        "hf_compile" + _suffix: _config("hf", _precision, compile="dynamic"),
        "hf_compile16" + _suffix: _config("hf", _precision, compile="static", pad_multiple=16),
        "hf_grouped" + _suffix: _config("hf", _precision, grouped=True),
        "official_xla" + _suffix: _config("official", _precision, 0),
        "official_xla_len16" + _suffix: _config("official", _precision, 16),
        "official" + _suffix: _config("official", _precision, 0, jit=False),
        "official_len16" + _suffix: _config("official", _precision, 16, jit=False),
    })
DEFAULT_CONFIGS = [
    "ours_fixed", "ours_len16", "ours_bucket16",
    "ours_fixed_bf16", "ours_len16_bf16", "ours_bucket16_bf16",
    "hf_eager", "hf_compile", "hf_grouped", "hf_eager_bf16", "hf_compile_bf16",
    "hf_grouped_bf16",
    "official_xla", "official_xla_len16", "official", "official_len16",
    "official_xla_bf16", "official_xla_len16_bf16", "official_bf16", "official_len16_bf16",
]


# ---------------------------------------------------------------------------------------------
# Data (parent)
# ---------------------------------------------------------------------------------------------
def prepare_task(task: str, workdir: str) -> dict:
    """Featurizes the task's training examples once: a .tf_record (ours) and an .npz of the
    same features (the peers): input_ids / input_mask / segment_ids [N, S] int32, label_id [N],
    length [N] (real tokens). Returns their paths and statistics."""
    sys.path.insert(0, REPO_ROOT)
    import numpy as np
    from bert_classifier.workflow import features
    import tokenization
    from common import MINILM_DIR, bbc_short_pairs
    from processors import InputExample, get_processor

    max_seq_length, count = TASKS[task]
    if task == "pairs":
        examples = [InputExample(guid=f"pairs-{i}", text_a=a, text_b=b, label=label)
                    for i, (a, b, label) in enumerate(bbc_short_pairs(count))]
    else:
        examples = get_processor("sim").get_train_examples(
            os.path.join(REPO_ROOT, "data", "sim_bbc"))
    labels = ["0", "1"]
    tokenizer = tokenization.FullTokenizer(os.path.join(MINILM_DIR, "vocab.txt"), True)
    record = os.path.join(workdir, f"{task}.tf_record")
    features.file_based_convert_examples_to_features(examples, labels, max_seq_length,
                                                     tokenizer, record, num_workers=1)
    converted = features.convert_examples_to_features(examples, labels, max_seq_length,
                                                      tokenizer)
    arrays = {name: np.asarray([getattr(f, name) for f in converted], np.int32)
              for name in ("input_ids", "input_mask", "segment_ids", "label_id")}
    arrays["length"] = arrays["input_mask"].sum(axis=1).astype(np.int32)
    npz = os.path.join(workdir, f"{task}.npz")
    np.savez(npz, **arrays)
    lengths = arrays["length"]
    return {"task": task, "record": record, "npz": npz, "max_seq_length": max_seq_length,
            "num_examples": len(examples),
            "length_p10_p50_p90": [float(np.percentile(lengths, q)) for q in (10, 50, 90)],
            "length_max": int(lengths.max())}


# ---------------------------------------------------------------------------------------------
# Workers: each sets up its framework, runs `steps` steps (the job), then `steady_steps` more.
# Each setup returns run(n): runs the next n steps and returns the padded length of each.
# ---------------------------------------------------------------------------------------------
def _num_warmup(steps: int) -> int:
    return int(steps * WARMUP_PROPORTION)


def setup_ours(cfg, args, total_steps):
    sys.path.insert(0, REPO_ROOT)
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
    from common import MINILM_DIR

    precision.check_supported(cfg["precision"], use_tpu=False)  # bfloat16: a CPU that has it
    precision.set_policy(cfg["precision"])
    config = modeling.BertConfig.from_json_file(os.path.join(MINILM_DIR, "bert_config.json"))
    strategy = strategies.create_strategy("one_device")
    tf.random.set_seed(0)
    model = forward.build_classifier(config, 2, strategy)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    with strategy.scope():
        optimizer = optimization.create_optimizer(
            LEARNING_RATE, total_steps, _num_warmup(total_steps), name_to_variable=names)
        optimizer.create_slots(list(names.values()))
    dataset_fn = input_pipeline.input_fn(
        args.record, args.max_seq_length, BATCH, is_training=True, drop_remainder=True,
        seed=SEED, length_multiple=cfg["length_multiple"], bucket_by_length=cfg["bucket"])
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    loop = train_loop.make_train_loop(model, optimizer, strategy, 2, BATCH,
                                      length_multiple=cfg["length_multiple"])
    done = [0]

    def run(n):
        left = n
        while left:
            calls = min(STEPS_PER_CALL, left)
            loss = float(loop(iterator, tf.constant(calls, tf.int32))[1])
            if not np.isfinite(loss):
                raise FloatingPointError(loss)
            left -= calls
        done[0] += n
        return list(range(done[0] - n, done[0]))  # step indices: see padded_lengths

    def padded_lengths(steps):
        # The padded length of each step, read from a second copy of the same seeded pipeline
        # (the compiled loop reads its batches inside the graph), after the timed steps: it is
        # the benchmark's bookkeeping (0.2 s for 100 steps here), not part of the job.
        shadow = iter(dataset_fn(tf.distribute.InputContext()))
        lengths = [int(next(shadow)["input_ids"].shape[1]) for _ in range(total_steps)]
        return [lengths[i] for i in steps]
    run.padded_lengths = padded_lengths
    return run


def setup_hf(cfg, args, total_steps):
    import numpy as np
    import torch
    import transformers
    from common import MINILM_DIR, hf_bert_classifier, minilm_config

    torch.manual_seed(0)
    model = hf_bert_classifier(minilm_config())
    model.train()
    data = np.load(args.npz)
    examples = [{"input_ids": ids[:n].tolist(), "token_type_ids": seg[:n].tolist(),
                 "attention_mask": [1] * int(n), "labels": int(label)}
                for ids, seg, label, n in zip(data["input_ids"], data["segment_ids"],
                                              data["label_id"], data["length"])]
    tokenizer = transformers.BertTokenizerFast(
        vocab_file=os.path.join(MINILM_DIR, "vocab.txt"), do_lower_case=True)
    collator = transformers.DataCollatorWithPadding(tokenizer,
                                                    pad_to_multiple_of=cfg["pad_multiple"])
    generator = torch.Generator().manual_seed(SEED)
    if cfg["grouped"]:
        # Trainer(group_by_length=True)'s sampler; a fresh grouping each pass over the data.
        from transformers.trainer_pt_utils import LengthGroupedSampler
        sampler = LengthGroupedSampler(BATCH, lengths=[int(n) for n in data["length"]],
                                       generator=generator)
        loader = torch.utils.data.DataLoader(examples, batch_size=BATCH, sampler=sampler,
                                             drop_last=True, collate_fn=collator)
    else:
        loader = torch.utils.data.DataLoader(
            examples, batch_size=BATCH, shuffle=True, drop_last=True, collate_fn=collator,
            generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01,
                                  eps=1e-6)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, _num_warmup(total_steps), total_steps)
    forward = model
    if cfg["compile"]:
        forward = torch.compile(model, dynamic=cfg["compile"] == "dynamic")
    bf16 = cfg["precision"] == "bfloat16"

    def batches():
        while True:
            yield from loader
    stream = batches()

    def run(n):
        lengths = []
        for _ in range(n):
            batch = next(stream)
            lengths.append(int(batch["input_ids"].shape[1]))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = forward(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = loss.item()
            if not np.isfinite(value):
                raise FloatingPointError(value)
        return lengths
    return run


def setup_official(cfg, args, total_steps):
    import numpy as np
    import tensorflow as tf
    import tf_keras
    from official.nlp import optimization as official_optimization
    from common import minilm_config, official_bert_classifier, official_train_step

    if cfg["precision"] == "bfloat16":
        tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    tf.random.set_seed(0)
    model = official_bert_classifier(minilm_config())
    optimizer = official_optimization.create_optimizer(LEARNING_RATE, total_steps,
                                                       _num_warmup(total_steps))
    train_step = official_train_step(model, optimizer, cfg["jit"])
    data = np.load(args.npz)
    inputs = {"input_word_ids": data["input_ids"], "input_mask": data["input_mask"],
              "input_type_ids": data["segment_ids"]}
    dataset = tf.data.Dataset.from_tensor_slices((inputs, data["label_id"]))
    dataset = dataset.shuffle(len(data["label_id"]), seed=SEED).repeat().batch(
        BATCH, drop_remainder=True)
    multiple = cfg["length_multiple"]
    if multiple:
        def cut(features, labels):  # each batch cut to its longest, rounded up to `multiple`
            longest = tf.reduce_max(tf.reduce_sum(features["input_mask"], axis=1))
            length = tf.minimum((longest + multiple - 1) // multiple * multiple,
                                args.max_seq_length)
            return {k: v[:, :length] for k, v in features.items()}, labels
        dataset = dataset.map(cut)
    stream = iter(dataset.prefetch(tf.data.AUTOTUNE))

    def run(n):
        lengths = []
        for _ in range(n):
            features, labels = next(stream)
            lengths.append(int(features["input_word_ids"].shape[1]))
            value = float(train_step(features, labels))
            if not np.isfinite(value):
                raise FloatingPointError(value)
        return lengths
    return run


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_main(args) -> None:
    sys.path.insert(0, BENCH_DIR)
    from common import (TRAIN_FLOPS_FACTOR, bert_forward_flops, minilm_config, peak_rss_mb,
                        thread_settings)
    cfg = CONFIGS[args.config]
    total = args.steps + args.steady_steps
    setup = {"ours": setup_ours, "hf": setup_hf, "official": setup_official}[cfg["framework"]]
    run = setup(cfg, args, total)
    ready = time.time()
    first_lengths = run(1)
    first_step_end = time.time()
    job_lengths = first_lengths + run(args.steps - 1)
    job_end = time.time()
    job_cpu = _cpu_s()
    t0 = time.perf_counter()
    steady_lengths = run(args.steady_steps)
    steady_s = time.perf_counter() - t0
    steady_cpu = _cpu_s() - job_cpu
    if hasattr(run, "padded_lengths"):  # ours: run returned step indices
        lengths = run.padded_lengths(job_lengths + steady_lengths)
        job_lengths, steady_lengths = lengths[:len(job_lengths)], lengths[len(job_lengths):]
    config = minilm_config()

    def flops(lengths):
        return sum(TRAIN_FLOPS_FACTOR * bert_forward_flops(BATCH, n, config) for n in lengths)

    print(PROTO + json.dumps({
        "ready": ready, "first_step_end": first_step_end, "job_end": job_end,
        "steady_s": steady_s, "steady_examples": BATCH * len(steady_lengths),
        "job_cpu_s": job_cpu, "steady_cpu_s": steady_cpu,
        "job_flops": flops(job_lengths), "steady_flops": flops(steady_lengths),
        "job_lengths": job_lengths, "steady_lengths": steady_lengths,
        "peak_rss_mb": peak_rss_mb(), "threads": thread_settings()}),
        flush=True)


# ---------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------
def run_worker(name, task, args, workdir):
    """Starts one worker process and waits for it; returns its result with `job_s` (from just
    before the process started to its last job step), or None when it failed."""
    cfg = CONFIGS[name]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    if cfg["framework"] in ("ours", "official"):  # the same TensorFlow environment for both
        env.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # as run_classifier.py sets it
    log_path = os.path.join(workdir, f"{task['task']}_{name}_{time.time():.0f}.log")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", name,
           "--record", task["record"], "--npz", task["npz"],
           "--max_seq_length", str(task["max_seq_length"]), "--steps", str(args.steps),
           "--steady_steps", str(args.steady_steps)]
    load = os.getloadavg()[0]
    with open(log_path, "w") as log:
        start = time.time()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                              cwd=REPO_ROOT)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(PROTO)]
    if proc.returncode or not lines:
        with open(log_path) as f:
            tail = f.read().strip().splitlines()[-3:]
        print(f"  {task['task']} {name}: FAILED (exit {proc.returncode}): {tail}", flush=True)
        return None
    r = json.loads(lines[-1][len(PROTO):])
    r.update(job_s=r["job_end"] - start, setup_s=r["ready"] - start,
             first_step_s=r["first_step_end"] - r["ready"], load_before=load,
             ex_per_s=r["steady_examples"] / r["steady_s"],
             ex_per_cpu_s=r["steady_examples"] / r["steady_cpu_s"])
    return r


def _median(values):
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="pairs,sim", help="comma list of " + ", ".join(TASKS))
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help="comma list of " + ", ".join(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=75,
                        help="the job's steps (75 = 2 epochs of 1,200 examples at batch 32)")
    parser.add_argument("--steady_steps", type=int, default=25,
                        help="steps timed after the job for the steady-state examples/s")
    parser.add_argument("--ceiling_repeats", type=int, default=10)
    parser.add_argument("--json", default="", help="also write every result to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    parser.add_argument("--max_seq_length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before featurization imports TF
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if args.worker:
        worker_main(args)
        return

    tasks = args.tasks.split(",")
    configs = args.configs.split(",")
    for name in tasks:
        if name not in TASKS:
            raise SystemExit(f"finetune.py: error: --tasks: unknown task {name!r}; expected "
                             f"{', '.join(TASKS)}")
    for name in configs:
        if name not in CONFIGS:
            raise SystemExit(f"finetune.py: error: --configs: unknown configuration {name!r}; "
                             f"expected {', '.join(CONFIGS)}")
    if args.steps < 1 or args.steady_steps < 1 or args.repeats < 1:
        raise SystemExit("finetune.py: error: --steps, --steady_steps and --repeats must be >= 1")
    sys.path.insert(0, BENCH_DIR)
    from common import environment_line, matmul_ceiling

    print(environment_line(), flush=True)
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="bench_finetune_")
    prepared = {name: prepare_task(name, workdir) for name in tasks}
    for p in prepared.values():
        print(f"task {p['task']}: {p['num_examples']} examples, max_seq_length "
              f"{p['max_seq_length']}, real length p10/p50/p90 {p['length_p10_p50_p90']}, "
              f"max {p['length_max']}", flush=True)
    ceilings = [matmul_ceiling(sys.executable, args.ceiling_repeats)]
    print(f"matmul ceiling (GFLOP/s) before: {json.dumps(ceilings[0])}", flush=True)
    print(f"configs {configs}, repeats {args.repeats}, steps {args.steps} + steady "
          f"{args.steady_steps}, load average {os.getloadavg()}, workdir {workdir}", flush=True)

    results = {t: {c: [] for c in configs} for t in tasks}
    for rep in range(args.repeats):
        for task in tasks:
            order = configs[rep % len(configs):] + configs[:rep % len(configs)]
            for name in order:
                r = run_worker(name, prepared[task], args, workdir)
                results[task][name].append(r)
                if r:
                    print(f"  repeat {rep + 1} {task} {name}: job {r['job_s']:.1f} s (setup "
                          f"{r['setup_s']:.1f}, first step {r['first_step_s']:.1f}), steady "
                          f"{r['ex_per_s']:.1f} ex/s, mean length "
                          f"{statistics.mean(r['steady_lengths']):.0f}, RSS "
                          f"{r['peak_rss_mb']:.0f} MB, load before {r['load_before']:.2f}, "
                          f"threads {r['threads']}", flush=True)
    ceilings.append(matmul_ceiling(sys.executable, args.ceiling_repeats))
    print(f"matmul ceiling (GFLOP/s) after: {json.dumps(ceilings[1])}", flush=True)
    ceiling = {dtype: max(c["ceiling"][dtype] for c in ceilings)
               for dtype in ("float32", "bfloat16")}
    for task in tasks:
        print_task(task, prepared[task], configs, results[task], ceiling, args.repeats)
    elapsed = time.perf_counter() - started
    print(f"\nceiling used: float32 {ceiling['float32']:.0f}, bfloat16 "
          f"{ceiling['bfloat16']:.0f} GFLOP/s (the better of before/after, TF and PyTorch)")
    print(f"total wall time {elapsed / 60:.1f} min, load average after {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "tasks": prepared, "ceilings": ceilings,
                       "results": results, "wall_s": elapsed}, f, indent=1)


def print_task(task, prepared, configs, results, ceiling, repeats) -> None:
    """The task's table (medians), the per-repeat ratios and the issue's targets."""
    ok = {c: [r for r in results[c] if r] for c in configs}
    med = {c: {key: _median([r[key] for r in ok[c]])
               for key in ("job_s", "ex_per_s", "peak_rss_mb", "job_cpu_s", "ex_per_cpu_s")}
           for c in configs}
    base = "ours_fixed" if "ours_fixed" in configs else None
    print(f"\n### {task} (max_seq_length {prepared['max_seq_length']}, real length p50 "
          f"{prepared['length_p10_p50_p90'][1]:.0f})\n")
    print("| config | precision | job s | job vs ours_fixed | ex/s | ex/s vs ours_fixed | "
          "tokens/example | % ceiling (steady) | % ceiling (job) | job CPU s | ex/CPU-s | "
          "peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in configs:
        if not ok[c]:
            print(f"| {c} | {CONFIGS[c]['precision']} | failed | | | | | | | | | |")
            continue
        dtype = CONFIGS[c]["precision"]
        steady_pct = _median([100 * r["steady_flops"] / r["steady_s"] / 1e9 / ceiling[dtype]
                              for r in ok[c]])
        job_pct = _median([100 * r["job_flops"] / r["job_s"] / 1e9 / ceiling[dtype]
                           for r in ok[c]])
        tokens = _median([statistics.mean(r["steady_lengths"]) for r in ok[c]])
        vs_job = f"{med[base]['job_s'] / med[c]['job_s']:.2f}x" if base and ok[base] else "-"
        vs_rate = f"{med[c]['ex_per_s'] / med[base]['ex_per_s']:.2f}x" if base and ok[base] \
            else "-"
        print(f"| {c} | {dtype} | {med[c]['job_s']:.1f} | {vs_job} | {med[c]['ex_per_s']:.1f} | "
              f"{vs_rate} | {tokens:.0f} | {steady_pct:.0f}% | {job_pct:.0f}% | "
              f"{med[c]['job_cpu_s']:.0f} | {med[c]['ex_per_cpu_s']:.1f} | "
              f"{med[c]['peak_rss_mb']:.0f} |")
    ours = [c for c in configs if CONFIGS[c]["framework"] == "ours" and ok[c]]
    peers = [c for c in configs if CONFIGS[c]["framework"] != "ours" and ok[c]]
    if not ours or not peers:
        return
    print("\nper repeat: best ours / best peer (job time: peer s / ours s; steady: ex/s ratio)")
    for rep in range(repeats):
        def best(names, key, pick):
            values = [(results[c][rep][key], c) for c in names
                      if rep < len(results[c]) and results[c][rep]]
            return pick(values) if values else (float("nan"), "-")
        ours_job, ours_job_c = best(ours, "job_s", min)
        peer_job, peer_job_c = best(peers, "job_s", min)
        ours_rate, ours_rate_c = best(ours, "ex_per_s", max)
        peer_rate, peer_rate_c = best(peers, "ex_per_s", max)
        print(f"  repeat {rep + 1}: job {peer_job / ours_job:.2f}x ({ours_job_c} {ours_job:.1f} s "
              f"vs {peer_job_c} {peer_job:.1f} s); steady {ours_rate / peer_rate:.2f}x "
              f"({ours_rate_c} {ours_rate:.1f} vs {peer_rate_c} {peer_rate:.1f} ex/s)")
    best_ours_job = min(ours, key=lambda c: med[c]["job_s"])
    best_peer_job = min(peers, key=lambda c: med[c]["job_s"])
    best_ours_rate = max(ours, key=lambda c: med[c]["ex_per_s"])
    best_peer_rate = max(peers, key=lambda c: med[c]["ex_per_s"])
    job_met = med[best_ours_job]["job_s"] < med[best_peer_job]["job_s"]
    rate_met = med[best_ours_rate]["ex_per_s"] > med[best_peer_rate]["ex_per_s"]
    print(f"\ntarget 'ahead of every peer' (medians): job {best_ours_job} "
          f"{med[best_ours_job]['job_s']:.1f} s vs {best_peer_job} "
          f"{med[best_peer_job]['job_s']:.1f} s -> {'met' if job_met else 'NOT met'}; "
          f"steady {best_ours_rate} {med[best_ours_rate]['ex_per_s']:.1f} vs {best_peer_rate} "
          f"{med[best_peer_rate]['ex_per_s']:.1f} ex/s -> {'met' if rate_met else 'NOT met'}")
    if base and ok[base]:
        speedup_job = med[base]["job_s"] / med[best_ours_job]["job_s"]
        speedup_rate = med[best_ours_rate]["ex_per_s"] / med[base]["ex_per_s"]
        print(f"target '>= 2x ours_fixed (float32)': job {speedup_job:.2f}x ({best_ours_job}), "
              f"steady {speedup_rate:.2f}x ({best_ours_rate}) -> "
              f"{'met' if min(speedup_job, speedup_rate) >= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
