#!/usr/bin/env python
"""Classify raw text with a fine-tuned model: no test.tsv, no task flags, the model loaded once.

    python predict.py --model_dir=output/sim_bbc --text_a="Ad sales boost Time Warner profit" \
      --text_b="Quarterly profits at US media giant TimeWarner jumped 76% ..."
    python predict.py --model_dir=output/sim_bbc --input_file=pairs.tsv --output_file=pred.tsv

--model_dir is a run_classifier.py --do_train output_dir: its model_info.json (labels,
max_seq_length, do_lower_case), bert_config.json, vocab.txt and latest checkpoint are all this
needs. The output is a TSV: a header `guid, label, <one column per label>`, then one row per
example with the predicted label's name and the probabilities printed as test_results.tsv
prints them (the same numbers as run_classifier.py --do_predict for the same texts, up to float
noise). Texts longer than max_seq_length are truncated as in training; the log says how many.
"""
# The environment TensorFlow reads at import (tf_keras, the BFC allocator, quiet C++ logs).
from bert_classifier.cli import script_env  # noqa: F401  (first: before TensorFlow is imported)

import os
import sys

import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.cli import classifier_flags  # noqa: E402
from bert_classifier.core import files  # noqa: E402
from bert_classifier.core import progress  # noqa: E402
from bert_classifier.cli import errors  # noqa: E402
from bert_classifier.api import inference  # noqa: E402
from bert_classifier.workflow import outputs  # noqa: E402
from bert_classifier.workflow import strategies  # noqa: E402
from bert_classifier.checks import preflight  # noqa: E402
from processors import InputExample, set_input_encoding  # noqa: E402
from processors import raw_input  # noqa: E402

classifier_flags.define_predict_flags()
FLAGS = classifier_flags.FLAGS



def _read_examples() -> list:
    """The examples from --text_a/--text_b or --input_file."""
    if FLAGS.text_a is not None:
        if FLAGS.input_file:
            raise ValueError("pass either --text_a (with --text_b) or --input_file, not both")
        return [InputExample(guid="0", text_a=FLAGS.text_a, text_b=FLAGS.text_b or None)]
    if FLAGS.text_b is not None:
        raise ValueError("--text_b needs --text_a")
    if not FLAGS.input_file:
        raise ValueError("nothing to classify: pass --input_file=FILE (or - for stdin) or "
                         "--text_a")
    if FLAGS.input_file != "-":
        if not tf.io.gfile.exists(FLAGS.input_file):
            raise ValueError("--input_file=%s: no such file" % FLAGS.input_file)
        if tf.io.gfile.isdir(FLAGS.input_file):
            raise ValueError("--input_file=%s is a directory: expected a .tsv, .csv or .jsonl "
                             "file" % FLAGS.input_file)
    # The format is decided (and said) before reading: a wrong guess shows in the log first.
    fmt = raw_input.format_from_name(FLAGS.input_file, FLAGS.input_format)
    name = "stdin" if FLAGS.input_file == "-" else FLAGS.input_file
    logging.info("Reading %s as %s", name, raw_input.FORMAT_NAMES[fmt] if fmt else
                 "JSON lines if it starts with {, else tab-separated values")
    examples = raw_input.read_raw_examples(FLAGS.input_file, FLAGS.input_format)
    if not examples:
        logging.warning("%s holds no text to classify (it is empty or holds only a header "
                        "row): the output is the header row alone", name)
    return examples


def main(_):
    logging.set_verbosity(logging.INFO)
    strategies.configure_cpu_devices(FLAGS.num_cpu_devices)
    preflight.check_positive_int("batch_size", FLAGS.batch_size)
    preflight.check_encoding("encoding", FLAGS.encoding)
    # Before any work: the output must be writable (its folder is made, as extract_features
    # does), so no prediction is computed for a path that cannot take it.
    preflight.check_output_file("output_file", FLAGS.output_file, allow_stdout=True)
    if FLAGS.output_file != "-" and os.path.dirname(FLAGS.output_file):
        tf.io.gfile.makedirs(os.path.dirname(FLAGS.output_file))
    set_input_encoding(FLAGS.encoding)
    examples = _read_examples()

    strategy = strategies.create_strategy(FLAGS.distribution_strategy)
    classifier = inference.Classifier.load(
        FLAGS.model_dir, FLAGS.checkpoint,
        labels=errors.labels_from_flags(FLAGS.labels, FLAGS.task_name, FLAGS.processor_module),
        do_lower_case=FLAGS.do_lower_case, max_seq_length=FLAGS.max_seq_length,
        bert_config_file=FLAGS.bert_config_file, vocab_file=FLAGS.vocab_file,
        strategy=strategy, jit_compile=FLAGS.xla_inference, batch_size=FLAGS.batch_size,
        micro_batch_size=FLAGS.inference_micro_batch_size, flag_hint=errors.FALLBACK_FLAGS)
    logging.info("Predicting %d example(s) with checkpoint %s (labels %s, max_seq_length %d)",
                 len(examples), classifier.checkpoint, classifier.labels,
                 classifier.max_seq_length)

    result = classifier.predict([(e.text_a, e.text_b) for e in examples],
                                progress=progress.enabled_setting(FLAGS.progress_bar))
    truncated = int(result.truncated.sum())
    if truncated:
        logging.warning("%d of %d example(s) were longer than max_seq_length=%d tokens and were "
                        "truncated (as in training)", truncated, len(examples),
                        classifier.max_seq_length)
    table = outputs.prediction_table([e.guid for e in examples], result.probabilities,
                                     result.label_names)
    if FLAGS.output_file == "-":
        sys.stdout.write(table)
        sys.stdout.flush()
    else:
        files.write_file(FLAGS.output_file, table)
        logging.info("Wrote %d prediction(s) to %s", len(examples), FLAGS.output_file)


def console_main() -> None:
    """The `bert-predict` command installed by `pip install .`."""
    classifier_flags.flags.mark_flag_as_required("model_dir")
    app.run(errors.main_with_clean_errors(
        main, "predict.py", interrupted=lambda: None if FLAGS.output_file == "-"
        else "%s left as it was" % FLAGS.output_file))


if __name__ == "__main__":
    console_main()
