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
"""
import json
import os
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_original():
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers = types.ModuleType("tensorflow.contrib.layers")
    sys.modules.setdefault("tensorflow.contrib", contrib)
    sys.modules.setdefault("tensorflow.contrib.layers", contrib.layers)
    from absl import flags
    from bert import run_classifier, tokenization
    flags.FLAGS.mark_as_parsed()
    return run_classifier, tokenization


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


def main(argv):
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
