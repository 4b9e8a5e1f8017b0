"""Training and inference speed and peak memory: this project's loop vs two BERT peers, each
as given and compiled (torch.compile, XLA).

Frameworks (each in its own worker subprocess, so threads never fight and peak RSS is
per framework, shape and mode):
  * ours:     the project's real path. `forward.build_classifier` +
              `optimization.create_optimizer` + `train_loop.make_train_loop`, fed by
              `input_pipeline.input_fn` (tf.data over a real .tf_record written with the project's
              record spec) through `strategy.distribute_datasets_from_function`, running
              `--steps` steps per host call (run_classifier's iterations_per_loop). Inference:
              predict()'s step (`strategy.run` of model + softmax under tf.function, one
              host call per batch, `.numpy()` per batch, op by op as --xla_inference's
              default; `--variants ours_xla` adds the XLA-compiled step) over predict's input
              pipeline, read through one long-lived iterator.
  * hf:       Hugging Face transformers `BertForSequenceClassification` on PyTorch (CPU),
              torch.optim.AdamW, clip_grad_norm_(1.0), one Python step per batch; inference
              under torch.inference_mode().
  * hf_compile: the same with the model under torch.compile (inductor, default mode; the
              shapes are fixed, so one compilation).
  * official: tf-models-official `models.BertClassifier(networks.BertEncoder)` with a
              tf.function train step (official.nlp.optimization AdamWeightDecay, which clips
              at global norm 1.0 itself) and a tf.function inference step.
  * official_xla: the same steps under tf.function(jit_compile=True).
The peers' models and steps are built by bench/common.py (shared with bench/finetune.py).
Variants of ours (`--variants ours_noxla,ours_unfused,ours_xla,ours_noonednn`, run in
`--variant_modes`) show the effect of each speed fix as extra columns; see VARIANTS.

All use random weights of the same shapes, random token ids, 2 labels, dropout 0.1,
tanh-GELU, type_vocab_size 2, seq 128, train batch 32, inference batch 64. The peers get
pre-built in-memory batches (no input pipeline cost); ours reads its .tf_record.

Per shape and mode the workers are started one after another (build, trace/compile
and `--warmup` steps, reported separately), then each repeat runs them in turn, rotating the
order (A B C, B C A, C A B, ...); idle workers block on stdin and use no CPU. Reported: the
median examples/s over repeats, the per-repeat ratios ours/peer, and each worker's peak RSS
(ru_maxrss, which includes the framework's import and the first call, plus its child processes':
common.peak_rss_mb), each worker's thread pools, and the package versions.

  .venv-bench/bin/python bench/train_throughput.py                     # default, ~50 min on 2 cores
  .venv-bench/bin/python bench/train_throughput.py --shapes minilm --repeats 5 \
      --steps minilm.train=8,minilm.infer=8
"""
import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
PROTO = "@@BENCH "

SHAPES = {
    # name: (layers, hidden, heads, intermediate)
    "minilm": (6, 384, 12, 1536),
    "base": (12, 768, 12, 3072),
}
VOCAB_SIZE = 30522
SEQ_LENGTH = 128
TRAIN_BATCH = 32
INFER_BATCH = 64
NUM_LABELS = 2
DEFAULT_STEPS = {
    "minilm.train": 4, "minilm.infer": 4,
    "base.train": 2, "base.infer": 2,
}
# Workers resident at once per shape.mode (0: all). BERT-base training needs 5-8 GB per worker:
# five at once were OOM-killed on a 23 GB machine, so there the peers run in groups, each with
# ours resident beside them (see run_benchmark).
DEFAULT_MAX_WORKERS = {"minilm.train": 0, "minilm.infer": 0, "base.train": 3, "base.infer": 0}
# Untimed steps after the first call (which traces and runs 1 step); BERT-base steps are slow.
DEFAULT_WARMUP = {"minilm": 1, "base": 0}
# Peers and their options: hf_compile = torch.compile(model); official_xla = the step under
# tf.function(jit_compile=True).
PEER_OPTIONS = {"hf": {}, "hf_compile": {"compile": True}, "official": {},
                "official_xla": {"jit_compile": True}}
PEERS = tuple(PEER_OPTIONS)
# Variants of "ours" (prototypes of possible fixes): extra env vars and options.
VARIANTS = {
    "ours": ({}, {}),
    # oneDNN off: TF's plain Eigen kernels instead of the oneDNN graph rewrites.
    "ours_noonednn": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    # XLA-compiled host call (train loop / predict step).
    "ours_xla": ({}, {"jit_compile": True}),
    # Inference op by op (--xla_inference=false, the default; the same as "ours").
    "ours_noxla": ({}, {"jit_compile": False}),
    # Without fused_ops (GELU, LayerNorm, ... as chains of plain TensorFlow ops).
    "ours_unfused": ({"BERT_FUSED_OPS": "0"}, {}),
    # Inference on the whole batch at once (--inference_micro_batch_size=0).
    "ours_whole_batch": ({}, {"micro_batch_size": 0}),
    # glibc malloc instead of TensorFlow's BFC allocator for CPU tensors.
    "ours_malloc": ({"TF_CPU_ALLOCATOR_USE_BFC": "false"}, {}),
}


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------
def _emit(obj):
    sys.stdout.write(PROTO + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _peak_rss_mb() -> float:
    """This worker's peak RSS plus its child processes' (torch.compile's compile workers)."""
    sys.path.insert(0, BENCH_DIR)
    from common import peak_rss_mb
    return peak_rss_mb()


def _cpu_s() -> float:
    """CPU seconds of this process (all threads, user + system): on a shared machine a steadier
    measure of the work than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _random_batches(rng, batch, count):
    """`count` random batches as numpy: ids [batch, S] int32 (pads at the end), labels [batch]."""
    out = []
    for _ in range(count):
        lengths = rng.integers(SEQ_LENGTH // 2, SEQ_LENGTH + 1, size=batch)
        mask = (np.arange(SEQ_LENGTH)[None, :] < lengths[:, None]).astype(np.int32)
        ids = rng.integers(1000, VOCAB_SIZE, size=(batch, SEQ_LENGTH)).astype(np.int32) * mask
        ids[:, 0] = 101
        segments = ((np.arange(SEQ_LENGTH)[None, :] >= (lengths // 2)[:, None]) * mask).astype(np.int32)
        labels = rng.integers(0, NUM_LABELS, size=batch).astype(np.int32)
        out.append((ids, mask, segments, labels))
    return out


def _tf_threads():
    import tensorflow as tf
    return (tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads())


def setup_ours(shape, mode, workdir, options):
    """The project's path; returns run(n) that runs n steps/batches and syncs."""
    sys.path.insert(0, REPO_ROOT)
    # The environment run_classifier.py sets before importing TensorFlow.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    import tensorflow as tf
    from bert_classifier.core import checkpoint_names
    from bert_classifier.workflow import features
    import modeling
    import optimization
    from bert_classifier.workflow import forward
    from bert_classifier.workflow import input_pipeline
    from bert_classifier.workflow import strategies
    from bert_classifier.workflow import train_loop

    layers, hidden, heads, inter = SHAPES[shape]
    config = modeling.BertConfig(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=inter, hidden_act="gelu",
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        max_position_embeddings=512, type_vocab_size=2)
    # A real .tf_record in the project's format (features.name_to_features is its spec).
    # One file per worker process: variants of ours run at the same time as ours.
    record = os.path.join(workdir, f"ours_{shape}_{mode}_{os.getpid()}.tf_record")
    spec = features.name_to_features(SEQ_LENGTH)
    rng = np.random.default_rng(1)
    num_records = 1024
    with tf.io.TFRecordWriter(record) as writer:
        for ids, mask, segments, labels in _random_batches(rng, 64, num_records // 64):
            for i in range(64):
                values = {"input_ids": ids[i], "input_mask": mask[i], "segment_ids": segments[i],
                          "label_ids": [labels[i]], "is_real_example": [1]}
                example = tf.train.Example(features=tf.train.Features(feature={
                    name: tf.train.Feature(int64_list=tf.train.Int64List(
                        value=[int(x) for x in values[name]])) for name in spec}))
                writer.write(example.SerializeToString())

    strategy = strategies.create_strategy("one_device")
    tf.random.set_seed(0)
    model = forward.build_classifier(config, NUM_LABELS, strategy)
    # run_classifier's defaults: training and eval/predict op by op (training with fused_ops).
    jit = bool(options.get("jit_compile", False))

    if mode == "train":
        name_to_variable = checkpoint_names.variables_by_checkpoint_name(model)
        with strategy.scope():
            optimizer = optimization.create_optimizer(
                2e-5, 100000, 10000, name_to_variable=name_to_variable)
            optimizer.create_slots(list(name_to_variable.values()))
        dataset = strategy.distribute_datasets_from_function(input_pipeline.input_fn(
            record, SEQ_LENGTH, TRAIN_BATCH, is_training=True, drop_remainder=True, seed=0))
        iterator = iter(dataset)
        loop = train_loop.make_train_loop(model, optimizer, strategy, NUM_LABELS, TRAIN_BATCH,
                                          jit_compile=jit)

        def run(n):
            mean_loss, last_loss = loop(iterator, tf.constant(n, tf.int32))
            value = float(last_loss)  # what train() reads back after each host call
            if not np.isfinite(value):
                raise FloatingPointError(value)
            return n * TRAIN_BATCH
        return run

    # predict()'s host call, with run_classifier's default --inference_micro_batch_size.
    from bert_classifier.cli import classifier_flags
    classifier_flags.define_run_classifier_flags()
    default_micro = classifier_flags.FLAGS["inference_micro_batch_size"].default
    run_step = forward.make_predict_step(
        model, strategy, jit_compile=jit,
        micro_batch_size=options.get("micro_batch_size", default_micro))

    # predict()'s input pipeline (input_pipeline.input_fn, is_training=False), repeated and read
    # through one long-lived iterator: each timed call is n steady-state batches, as the peers'
    # in-memory batches are. (Breaking out of a fresh pass per call instead made the iterator's
    # teardown -- it waits for its prefetch threads -- part of the timing: +9 s or +30 s on
    # some calls, seen as bimodal 12 vs 22 ex/s.)
    pipeline = input_pipeline.input_fn(record, SEQ_LENGTH, INFER_BATCH, is_training=False,
                                       drop_remainder=False)
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda ctx: pipeline(ctx).repeat()))

    def run(n):
        chunks = []
        for _ in range(n):
            for local in strategy.experimental_local_results(run_step(next(iterator))):
                chunks.append(local.numpy())
        return n * INFER_BATCH
    return run


def _bert_config(shape):
    """A bert_config.json dict of the benchmark's shape (tanh GELU, dropout 0.1)."""
    layers, hidden, heads, inter = SHAPES[shape]
    return {"vocab_size": VOCAB_SIZE, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": inter, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 512, "type_vocab_size": 2}


def setup_hf(shape, mode, workdir, options):
    import torch
    sys.path.insert(0, BENCH_DIR)
    from common import hf_bert_classifier
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = hf_bert_classifier(_bert_config(shape), NUM_LABELS)
    # hf_compile: torch.compile (inductor, its default mode); the shapes here are fixed.
    forward = torch.compile(model) if options.get("compile") else model
    rng = np.random.default_rng(2)
    batch = TRAIN_BATCH if mode == "train" else INFER_BATCH
    batches = [tuple(torch.from_numpy(a.astype(np.int64)) for a in b)
               for b in _random_batches(rng, batch, 8)]
    next_batch = itertools.cycle(batches).__next__

    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01, eps=1e-6)

        def run(n):
            for _ in range(n):
                ids, mask, segments, labels = next_batch()
                out = forward(input_ids=ids, attention_mask=mask, token_type_ids=segments,
                              labels=labels)
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                value = out.loss.item()
                if not np.isfinite(value):
                    raise FloatingPointError(value)
            return n * TRAIN_BATCH
        return run

    model.eval()

    def run(n):
        with torch.inference_mode():
            for _ in range(n):
                ids, mask, segments, _ = next_batch()
                logits = forward(input_ids=ids, attention_mask=mask,
                                 token_type_ids=segments).logits
                torch.softmax(logits, dim=-1).numpy()
        return n * INFER_BATCH
    return run


def setup_official(shape, mode, workdir, options):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    from official.nlp import optimization as official_optimization
    sys.path.insert(0, BENCH_DIR)
    from common import official_bert_classifier, official_train_step

    tf.random.set_seed(0)
    model = official_bert_classifier(_bert_config(shape), NUM_LABELS)
    # official_xla: the train / inference step under tf.function(jit_compile=True).
    jit = bool(options.get("jit_compile"))
    rng = np.random.default_rng(3)
    batch = TRAIN_BATCH if mode == "train" else INFER_BATCH
    batches = [({"input_word_ids": tf.constant(ids), "input_mask": tf.constant(mask),
                 "input_type_ids": tf.constant(segments)}, tf.constant(labels))
               for ids, mask, segments, labels in _random_batches(rng, batch, 8)]
    model(batches[0][0], training=False)
    next_batch = itertools.cycle(batches).__next__

    if mode == "train":
        optimizer = official_optimization.create_optimizer(2e-5, 100000, 10000)
        train_step = official_train_step(model, optimizer, jit)

        def run(n):
            for _ in range(n):
                value = float(train_step(*next_batch()))
                if not np.isfinite(value):
                    raise FloatingPointError(value)
            return n * TRAIN_BATCH
        return run

    @tf.function(jit_compile=jit)
    def infer_step(inputs):
        return tf.nn.softmax(model(inputs, training=False), axis=-1)

    def run(n):
        for _ in range(n):
            infer_step(next_batch()[0]).numpy()
        return n * INFER_BATCH
    return run


def worker_main(args):
    framework = args.worker
    base = framework.split("_")[0]  # ours, hf or official
    options = PEER_OPTIONS[framework] if framework in PEER_OPTIONS else VARIANTS[framework][1]
    t0 = time.perf_counter()
    setup = {"ours": setup_ours, "hf": setup_hf, "official": setup_official}[base]
    run = setup(args.shape, args.mode, args.workdir, options)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(1)  # traces / compiles
    first_call_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if int(args.warmup):
        run(int(args.warmup))
    warmup_s = time.perf_counter() - t0
    threads = {}
    if base == "hf":
        import torch
        threads = {"torch_threads": torch.get_num_threads(),
                   "torch_interop_threads": torch.get_num_interop_threads()}
    else:
        threads = dict(zip(("tf_intra_op", "tf_inter_op"), _tf_threads()))
    _emit({"ready": True, "build_s": build_s, "first_call_s": first_call_s,
           "warmup_s": warmup_s, "threads": threads, "pid": os.getpid()})
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "run":
            n = int(cmd[1])
            t0, c0 = time.perf_counter(), _cpu_s()
            examples = run(n)
            seconds, cpu_seconds = time.perf_counter() - t0, _cpu_s() - c0
            _emit({"examples": examples, "seconds": seconds, "cpu_seconds": cpu_seconds})
        elif cmd[0] == "quit":
            _emit({"peak_rss_mb": _peak_rss_mb()})
            return


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------
class Worker:
    """A framework's worker process, driven line by line over stdin/stdout."""

    def __init__(self, framework, shape, mode, warmup, args, workdir):
        self.framework = framework
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["TF_USE_LEGACY_KERAS"] = "1"
        env.update(VARIANTS.get(framework, ({}, {}))[0])
        self.log = open(os.path.join(workdir, f"{framework}_{shape}_{mode}.stderr"), "w")
        self.log_path = self.log.name
        python = args.ours_python if framework.startswith("ours") and args.ours_python \
            else sys.executable
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--worker", framework, "--shape", shape,
             "--mode", mode, "--workdir", workdir, "--warmup", str(warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=env, cwd=REPO_ROOT)

    def read(self):
        for line in self.proc.stdout:
            if line.startswith(PROTO):
                return json.loads(line[len(PROTO):])
        self.proc.wait()
        with open(self.log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"worker {self.framework} exited with {self.proc.returncode}:\n{tail}")

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self):
        self.send("quit")
        result = self.read()
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self.log.close()
        return result


def parse_steps(text, defaults=None, flag="--steps"):
    """SHAPE.MODE=N entries (or one integer for all) over `defaults` (DEFAULT_STEPS)."""
    steps = dict(DEFAULT_STEPS if defaults is None else defaults)
    if not text:
        return steps
    if text.isdigit():
        return {k: int(text) for k in steps}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key.strip() not in steps or not value.strip().isdigit():
            raise SystemExit(f"{flag}: bad entry {item!r}; expected e.g. minilm.train=4 "
                             f"(keys: {', '.join(steps)}) or one integer")
        steps[key.strip()] = int(value)
    return steps


def worker_groups(frameworks, max_workers):
    """The frameworks split into groups of at most max_workers resident workers, every group
    holding all of ours' columns and its share of the peers, in order (one group when
    max_workers is 0 or large enough). Ours is measured again in every group, so each peer is
    compared with ours measured beside it, in the same minutes."""
    ours = [fw for fw in frameworks if fw not in PEERS]
    peers = [fw for fw in frameworks if fw in PEERS]
    room = max_workers - len(ours)
    if not max_workers or max_workers >= len(frameworks) or not peers:
        return [frameworks]
    if room < 1:
        raise SystemExit(f"--max_workers {max_workers}: no room for a peer beside "
                         f"{len(ours)} ours column(s)")
    return [ours + peers[i:i + room] for i in range(0, len(peers), room)]


def measure_group(frameworks, shape, mode, n, warmup, args, workdir):
    """Starts the group's workers one after another (build, first call, warm-up), then runs
    `args.repeats` rounds of n steps each, rotating the order; returns {framework: rates},
    {framework: CPU rates}, {framework: peak RSS MB}, {framework: first call s}."""
    workers, ready = {}, {}
    try:
        for fw in frameworks:  # one at a time, so builds and traces don't overlap
            workers[fw] = Worker(fw, shape, mode, warmup, args, workdir)
            ready[fw] = workers[fw].read()
            r = ready[fw]
            print(f"[{shape} {mode}] {fw:14s} build {r['build_s']:.1f}s, first call "
                  f"(trace/compile + 1 step) {r['first_call_s']:.1f}s, warm-up "
                  f"{warmup} step(s) {r['warmup_s']:.1f}s, threads {r['threads']}",
                  flush=True)
        rates = {fw: [] for fw in frameworks}
        cpu_rates = {fw: [] for fw in frameworks}
        for rep in range(args.repeats):
            order = frameworks[rep % len(frameworks):] + frameworks[:rep % len(frameworks)]
            for fw in order:
                workers[fw].send(f"run {n}")
                res = workers[fw].read()
                rates[fw].append(res["examples"] / res["seconds"])
                cpu_rates[fw].append(res["examples"] / res["cpu_seconds"])
            line = ", ".join(f"{fw} {rates[fw][-1]:.2f}" for fw in frameworks)
            ratios = ", ".join(
                f"{fw}/{peer} {rates[fw][-1] / rates[peer][-1]:.2f}"
                for fw in frameworks if fw.startswith("ours")
                for peer in frameworks if peer in PEERS)
            print(f"[{shape} {mode}] repeat {rep + 1} (order {' '.join(order)}): ex/s "
                  f"{line}; {ratios}", flush=True)
        rss = {fw: workers[fw].close()["peak_rss_mb"] for fw in frameworks}
    finally:
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
    return rates, cpu_rates, rss, {fw: ready[fw]["first_call_s"] for fw in frameworks}


def run_benchmark(args):
    base_frameworks = args.frameworks.split(",")
    variants = [v for v in args.variants.split(",") if v]
    variant_modes = args.variant_modes.split(",")
    shapes = args.shapes.split(",")
    modes = args.modes.split(",")
    steps = parse_steps(args.steps)
    max_workers = parse_steps(args.max_workers, DEFAULT_MAX_WORKERS, "--max_workers")
    warmups = {shape: (int(args.warmup) if args.warmup else DEFAULT_WARMUP[shape])
               for shape in SHAPES}
    for name in shapes:
        if name not in SHAPES:
            raise SystemExit(f"--shapes: unknown shape {name!r}; expected {', '.join(SHAPES)}")
    for name in base_frameworks + variants:
        if name not in VARIANTS and name not in PEERS:
            raise SystemExit(f"--frameworks: unknown {name!r}; expected one of "
                             f"{', '.join(PEERS)} or {', '.join(VARIANTS)}")
    rows = []
    workdir = tempfile.mkdtemp(prefix="bench_train_")
    sys.path.insert(0, BENCH_DIR)
    from common import environment_line
    print(environment_line(), flush=True)
    print(f"frameworks {base_frameworks}, variants {variants} ({args.variant_modes}), "
          f"shapes {shapes}, modes {modes}, repeats {args.repeats}, steps {steps}, warmup {warmups}, python {sys.executable}, workdir {workdir}",
          flush=True)
    started = time.perf_counter()
    for shape in shapes:
        for mode in modes:
            n = steps[f"{shape}.{mode}"]
            frameworks = base_frameworks + (variants if mode in variant_modes else [])
            groups = worker_groups(frameworks, max_workers[f"{shape}.{mode}"])
            if len(groups) > 1:
                print(f"[{shape} {mode}] {len(groups)} groups of at most "
                      f"{max_workers[f'{shape}.{mode}']} resident workers: "
                      + "; ".join(" ".join(g) for g in groups), flush=True)
            rates = {fw: [] for fw in frameworks}
            cpu_rates = {fw: [] for fw in frameworks}
            rss, first_call, paired = {}, {}, {}
            for group in groups:
                g_rates, g_cpu, g_rss, g_first = measure_group(
                    group, shape, mode, n, warmups[shape], args, workdir)
                for fw in group:
                    rates[fw] += g_rates[fw]
                    cpu_rates[fw] += g_cpu[fw]
                    rss[fw] = max(rss.get(fw, 0.0), g_rss[fw])
                    first_call.setdefault(fw, []).append(g_first[fw])
                for peer in (fw for fw in group if fw in PEERS):
                    # each peer against the ours columns measured in its group
                    paired[peer] = {fw: statistics.median(g_rates[fw])
                                    for fw in group if fw not in PEERS}
                    paired[peer][peer] = statistics.median(g_rates[peer])
            rows.append({"shape": shape, "mode": mode, "steps": n, "frameworks": frameworks,
                         "groups": groups, "paired": paired,
                         "median": {fw: statistics.median(rates[fw]) for fw in frameworks},
                         "rates": rates, "rss": rss,
                         "cpu_median": {fw: statistics.median(cpu_rates[fw]) for fw in frameworks},
                         "cpu_rates": cpu_rates,
                         "first_call_s": {fw: max(first_call[fw]) for fw in frameworks}})
    elapsed = time.perf_counter() - started
    print_table(rows, base_frameworks + variants)
    print(f"total wall time {elapsed / 60:.1f} min")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "args": vars(args), "wall_s": elapsed}, f, indent=1)


def print_table(rows, frameworks):
    peers = [fw for fw in frameworks if fw in PEERS]
    ours = [fw for fw in frameworks if fw.startswith("ours")]
    head = ["shape", "mode", "steps"] + [f"{fw} ex/s" for fw in frameworks]
    head += [f"{fw} / fastest peer" for fw in ours] if peers else []
    head += [f"{fw} RSS MB" for fw in frameworks]
    head += [f"{fw} 1st call s" for fw in frameworks]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["shape"], row["mode"], str(row["steps"])]
        has = row["median"]
        cells += [f"{has[fw]:.2f}" if fw in has else "-" for fw in frameworks]
        if peers:
            # Each peer against ours measured beside it (its group), the worst of those ratios;
            # with one group that is ours / the fastest peer.
            paired = row["paired"]
            cells += [f"{min(paired[p][fw] / paired[p][p] for p in peers):.2f}x"
                      if fw in has else "-" for fw in ours]
        cells += [f"{row['rss'][fw]:.0f}" if fw in has else "-" for fw in frameworks]
        cells += [f"{row['first_call_s'][fw]:.1f}" if fw in has else "-" for fw in frameworks]
        print("| " + " | ".join(cells) + " |")
    print("\nExamples per CPU-second (process user + system time, all threads; medians):\n")
    print("| shape | mode | " + " | ".join(frameworks) + " |")
    print("|" + "---|" * (len(frameworks) + 2))
    for row in rows:
        has = row["cpu_median"]
        print(f"| {row['shape']} | {row['mode']} | "
              + " | ".join(f"{has[fw]:.2f}" if fw in has else "-" for fw in frameworks) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="minilm,base",
                        help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--modes", default="train,infer", help="comma list of train, infer")
    parser.add_argument("--frameworks", default="ours,hf,hf_compile,official,official_xla",
                        help="comma list of ours, " + ", ".join(PEERS) + " and ours variants "
                             f"({', '.join(VARIANTS)})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", default="",
                        help="timed steps (train) or batches (infer) per repeat: one integer, or "
                             "SHAPE.MODE=N entries, defaults "
                             + ",".join(f"{k}={v}" for k, v in DEFAULT_STEPS.items()))
    parser.add_argument("--warmup", default="",
                        help="untimed steps after the first (tracing + 1 step) call; default "
                             + ",".join(f"{k}={v}" for k, v in DEFAULT_WARMUP.items()))
    parser.add_argument("--variants", default="",
                        help="ours variants added as extra columns (" + ", ".join(
                            v for v in VARIANTS if v != "ours") + "); '' for none")
    parser.add_argument("--variant_modes", default="infer",
                        help="modes in which --variants run (comma list of train, infer)")
    parser.add_argument("--max_workers", default="",
                        help="workers resident at once: one integer or SHAPE.MODE=K entries "
                             "(0: all), defaults " + ",".join(
                                 f"{k}={v}" for k, v in DEFAULT_MAX_WORKERS.items())
                             + "; with fewer than the columns, the peers run in groups, each "
                               "beside ours")
    parser.add_argument("--ours_python", default="",
                        help="interpreter for ours (default: this one)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    # Worker mode (internal).
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
