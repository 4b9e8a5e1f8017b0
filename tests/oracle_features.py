"""Runs Google's ORIGINAL code (bert-tensorflow, package `bert`) as an independent reference.

It lives in its own process because `bert.run_classifier` defines absl flags at import time
that clash with the project's. `bert.modeling` imports `tensorflow.contrib`, which TF2 lacks;
only its layer_norm is used, never by the data code, so an empty stand-in module suffices.

  python tests/oracle_features.py examples JOBS.json OUT.json
      JOBS.json: [[task, data_dir, split], ...]  (task in cola, mnli, mrpc, xnli)
      OUT.json:  per job, the original processor's examples [{guid, text_a, text_b, label}]
  python tests/oracle_features.py features JOBS.json
      JOBS.json: {"vocab_file", "do_lower_case", "jobs": [{"labels", "max_seq_length",
                  "output_file", "examples": [{guid, text_a, text_b, label} | {"padding": 1}]}]}
      runs the original file_based_convert_examples_to_features once per job and prints
      {"seconds": [time spent in each call]} as JSON (bench/featurize.py reads it).
  python tests/oracle_features.py extract JOB.json OUT.json
      JOB.json: {"vocab_file", "do_lower_case", "max_seq_length", "input_file"}
      OUT.json: the original extract_features.read_examples + convert_examples_to_features:
                [{"text_a", "text_b", "tokens", "input_ids", "input_mask", "input_type_ids"}]
  python tests/oracle_features.py classify JOB.json OUT.json
      JOB.json: {"bert_config_file", "init_checkpoint", "num_labels", "input_ids",
                 "input_mask", "segment_ids"} (int lists [N][S])
      OUT.json: {"probabilities": [N][num_labels], "initialized": [names read from the
                 checkpoint], "trainable": [every trainable variable]}: the original
                 run_classifier.create_model in a TF1 graph, its weights loaded with the
                 original's get_assignment_map_from_checkpoint + init_from_checkpoint.
"""
import json
import os
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tf.compat.v1.layers (the original's dense layers) exist only with tf_keras.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _layer_norm(inputs, begin_norm_axis=-1, begin_params_axis=-1, scope=None):
    """Stand-in for tf.contrib.layers.layer_norm as the original's modeling.layer_norm calls it:
    the same variables (<scope>/beta, <scope>/gamma) and formula, epsilon 1e-12."""
    import tensorflow.compat.v1 as tf
    with tf.variable_scope(scope, default_name="LayerNorm"):
        size = inputs.shape[-1:]
        beta = tf.get_variable("beta", size, initializer=tf.zeros_initializer())
        gamma = tf.get_variable("gamma", size, initializer=tf.ones_initializer())
        mean, variance = tf.nn.moments(inputs, [-1], keep_dims=True)
        return (inputs - mean) * tf.rsqrt(variance + 1e-12) * gamma + beta


def _import_original(module: str = "run_classifier"):
    """The original's `module` and tokenization (one script module per process: the original's
    scripts define clashing absl flags at import)."""
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers = types.ModuleType("tensorflow.contrib.layers")
    contrib.layers.layer_norm = _layer_norm
    sys.modules.setdefault("tensorflow.contrib", contrib)
    sys.modules.setdefault("tensorflow.contrib.layers", contrib.layers)
    import importlib
    from absl import flags
    from bert import tokenization
    script = importlib.import_module("bert." + module)
    flags.FLAGS.mark_as_parsed()
    return script, tokenization


def _extract(job_file: str, out_file: str) -> None:
    extract_features, tokenization = _import_original("extract_features")
    with open(job_file, encoding="utf-8") as f:
        job = json.load(f)
    tokenizer = tokenization.FullTokenizer(job["vocab_file"], do_lower_case=job["do_lower_case"])
    examples = extract_features.read_examples(job["input_file"])
    features = extract_features.convert_examples_to_features(
        examples, job["max_seq_length"], tokenizer)
    out = [{"text_a": e.text_a, "text_b": e.text_b, "tokens": f.tokens,
            "input_ids": f.input_ids, "input_mask": f.input_mask,
            "input_type_ids": f.input_type_ids} for e, f in zip(examples, features)]
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


def _examples_from_json(run_classifier, items):
    out = []
    for item in items:
        if item.get("padding"):
            out.append(run_classifier.PaddingInputExample())
        else:
            out.append(run_classifier.InputExample(guid=item["guid"], text_a=item["text_a"],
                                                   text_b=item.get("text_b"),
                                                   label=item.get("label")))
    return out


def _classify(job_file: str, out_file: str) -> None:
    run_classifier, _ = _import_original("run_classifier")
    from bert import modeling
    import numpy as np
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()  # TF1 graphs and Dimension shapes, as the original expects
    with open(job_file, encoding="utf-8") as f:
        job = json.load(f)
    config = modeling.BertConfig.from_json_file(job["bert_config_file"])
    graph = tf.Graph()
    with graph.as_default():
        ids, mask, segments = (tf.constant(np.array(job[k], np.int32))
                               for k in ("input_ids", "input_mask", "segment_ids"))
        labels = tf.zeros([len(job["input_ids"])], tf.int32)
        _, _, _, probabilities = run_classifier.create_model(
            config, False, ids, mask, segments, labels, job["num_labels"], False)
        tvars = tf.trainable_variables()
        assignment_map, initialized = modeling.get_assignment_map_from_checkpoint(
            tvars, job["init_checkpoint"])
        tf.train.init_from_checkpoint(job["init_checkpoint"], assignment_map)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(probabilities)
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump({"probabilities": values.tolist(),
                   "initialized": sorted(n[:-2] for n in initialized if n.endswith(":0")),
                   "trainable": sorted(v.name[:-2] for v in tvars)}, f)


def main(argv):
    if argv[1] == "extract":
        _extract(argv[2], argv[3])
        return
    if argv[1] == "classify":
        _classify(argv[2], argv[3])
        return
    run_classifier, tokenization = _import_original()
    import tensorflow.compat.v1 as tf
    tf.logging.set_verbosity(tf.logging.ERROR)
    mode = argv[1]
    with open(argv[2], encoding="utf-8") as f:
        jobs = json.load(f)
    if mode == "examples":
        processors = {"cola": run_classifier.ColaProcessor, "mnli": run_classifier.MnliProcessor,
                      "mrpc": run_classifier.MrpcProcessor, "xnli": run_classifier.XnliProcessor}
        results = []
        for task, data_dir, split in jobs:
            examples = getattr(processors[task](), "get_%s_examples" % split)(data_dir)
            results.append([{"guid": e.guid, "text_a": e.text_a, "text_b": e.text_b,
                             "label": e.label} for e in examples])
        with open(argv[3], "w", encoding="utf-8") as f:
            json.dump(results, f, ensure_ascii=False)
    elif mode == "features":
        tokenizer = tokenization.FullTokenizer(jobs["vocab_file"],
                                               do_lower_case=jobs["do_lower_case"])
        seconds = []
        for job in jobs["jobs"]:
            examples = _examples_from_json(run_classifier, job["examples"])
            start = time.perf_counter()
            run_classifier.file_based_convert_examples_to_features(
                examples, job["labels"], job["max_seq_length"], tokenizer, job["output_file"])
            seconds.append(time.perf_counter() - start)
        print(json.dumps({"seconds": seconds}))
    else:
        raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    main(sys.argv)
