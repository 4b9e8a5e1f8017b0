"""Where a training job's start goes: imports, model, optimizer, pipeline, the training loop's
trace, its first call, and the steps after it; or the optimizer's update alone.

One process, the project's own path on the embedded sim data (`data/sim_bbc/train.tsv`
featurized with the MiniLM vocabulary), the MiniLM-L6 architecture (random weights), batch 32,
as bench/finetune.py's `ours_*` configurations. It is a probe for changes to the first step,
not a comparison with peers (bench/finetune.py is that); run the variants alternately, several
times, on a quiet machine: single first-step timings move by +-0.4 s.

    .venv/bin/python bench/train_startup.py                          # --part step
    .venv/bin/python bench/train_startup.py --trace_first --steps 2   # trace, then first call
    .venv/bin/python bench/train_startup.py --grappler '{"disable_meta_optimizer": true}'
    .venv/bin/python bench/train_startup.py --precision bfloat16 --steps 80
    .venv/bin/python bench/train_startup.py --part optimizer          # the update alone
    .venv/bin/python bench/train_startup.py --part setup              # imports .. pipeline

`--grappler` takes tf.config.optimizer.set_experimental_options's dict as JSON. Environment
variables such as BERT_FUSED_OPS=0 or TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR
apply as usual.
"""
import argparse
import json
import os
import sys
import tempfile
import time

START = time.time()
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(REPO_ROOT, "pretrained", "minilm_L-6_H-384_A-12")
BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default="step", choices=("step", "optimizer", "setup"))
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--length_multiple", type=int, default=16)
    parser.add_argument("--bucket_by_length", type=int, default=1)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="steps timed after the first")
    parser.add_argument("--trace_first", action="store_true",
                        help="trace the loop before its first call, and time the two apart")
    parser.add_argument("--grappler", default="", help="Grappler options as a JSON dict")
    args = parser.parse_args()
    from common import environment_line  # versions and thread settings, for the record
    print(environment_line(), flush=True)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # as run_classifier.py
    sys.path.insert(0, REPO_ROOT)  # (bench/, this script's folder, is on the path already)
    import numpy as np
    import tensorflow as tf
    tf_imported = time.time()
    from bert_classifier.core import checkpoint_names
    import modeling
    import optimization
    from bert_classifier.core import precision
    from bert_classifier.workflow import forward
    from bert_classifier.workflow import input_pipeline
    from bert_classifier.workflow import strategies
    from bert_classifier.workflow import train_loop
    import train_options
    times = {"import tensorflow": tf_imported - START,
             "import project": time.time() - tf_imported}

    precision.set_policy(args.precision)
    if args.grappler:
        tf.config.optimizer.set_experimental_options(json.loads(args.grappler))
    scratch = tempfile.TemporaryDirectory(prefix="train_startup_")  # removed at exit
    workdir = scratch.name
    # not timed: the job's featurization (train_options' copy of the sim data)
    record = train_options.featurize(workdir, args.max_seq_length)["train"]

    t = time.time()
    config = modeling.BertConfig.from_json_file(os.path.join(MODEL_DIR, "bert_config.json"))
    strategy = strategies.create_strategy("one_device")
    tf.random.set_seed(0)
    model = forward.build_classifier(config, 2, strategy)
    times["model"] = time.time() - t
    t = time.time()
    names = checkpoint_names.variables_by_checkpoint_name(model)
    with strategy.scope():
        optimizer = optimization.create_optimizer(5e-5, 1000, 100, name_to_variable=names)
        optimizer.create_slots(list(names.values()))
    times["optimizer"] = time.time() - t

    if args.part == "optimizer":
        variables = list(model.trainable_variables)
        grads = [tf.random.normal(v.shape, seed=1) * 1e-3 for v in variables]

        @tf.function(autograph=False)
        def update(grads):
            strategy.run(lambda g: optimization.all_reduce_clip_and_apply(
                optimizer, g, variables), args=(grads,))
        t = time.time()
        traced = update.get_concrete_function(grads)
        times["trace"] = time.time() - t
        times["ops"] = len(traced.graph.get_operations())
        t = time.time()
        update(grads)
        times["first call"] = time.time() - t
        steps = []
        for _ in range(args.steps):
            t = time.time()
            update(grads)
            steps.append(time.time() - t)
        times["median step"] = float(np.median(steps))
        print(json.dumps({k: round(v, 4) for k, v in times.items()}))
        return

    t = time.time()
    dataset_fn = input_pipeline.input_fn(record, args.max_seq_length, BATCH, is_training=True,
                                         drop_remainder=True, seed=1,
                                         length_multiple=args.length_multiple,
                                         bucket_by_length=bool(args.bucket_by_length))
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    times["pipeline"] = time.time() - t
    if args.part == "setup":
        print(json.dumps({k: round(v, 3) for k, v in times.items()}))
        return
    loop = train_loop.make_train_loop(model, optimizer, strategy, 2, BATCH,
                                      length_multiple=args.length_multiple)
    one = tf.constant(1, tf.int32)
    if args.trace_first:
        t = time.time()
        traced = loop.get_concrete_function(iterator, tf.TensorSpec([], tf.int32))
        times["trace"] = time.time() - t
        times["ops (outer graph)"] = len(traced.graph.get_operations())
    t = time.time()
    loop(iterator, one)
    times["first call"] = time.time() - t
    steps = []
    for _ in range(args.steps):
        t = time.time()
        loop(iterator, one)
        steps.append(time.time() - t)
    times["median step"] = float(np.median(steps)) if steps else float("nan")
    times["total"] = time.time() - START
    print(json.dumps({k: round(v, 3) for k, v in times.items()}))
    print("steps: " + " ".join(f"{s:.2f}" for s in steps))


if __name__ == "__main__":
    main()
