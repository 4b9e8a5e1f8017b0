#!/usr/bin/env python
"""Export a fine-tuned model for serving: a SavedModel that takes raw strings, tokenizes them in
the graph exactly as Google's tokenizer, and returns probabilities -- or a weights-only
checkpoint.

    python export_saved_model.py --model_dir=output/sim_bbc --export_dir=export/sim_bbc
    python export_saved_model.py --model_dir=pretrained/minilm_L-6_H-384_A-12 \
      --export_dir=export/minilm --encoder --pooling=mean --normalize
    python export_saved_model.py --model_dir=output/sim_bbc --export_dir=export/weights \
      --weights_only

The SavedModel's signatures (serving.py): serving_default (text_a, text_b -> probabilities,
label), from_ids (input_ids, input_mask, segment_ids -> probabilities) and tokenize (text_a,
text_b -> the features run_classifier builds); with --encoder, serving_default (text -> vector).
It needs only core TensorFlow ops: `tf.saved_model.load`, `saved_model_cli run` and TensorFlow
Serving load it without this project or tensorflow-text.

--weights_only writes export_dir/bert_model.ckpt with Google's variable names (bert/...,
output_weights, output_bias) and no optimizer slots -- about a third of the fine-tuned
checkpoint -- beside bert_config.json, vocab.txt and model_info.json: usable as
--init_checkpoint (or as a model_dir) and readable by Google's original code.
"""
# The environment TensorFlow reads at import (tf_keras, the BFC allocator, quiet C++ logs).
from bert_classifier.cli import script_env  # noqa: F401  (first: before TensorFlow is imported)

import os

import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.core import checkpoint_names  # noqa: E402

from bert_classifier.core import checkpoints  # noqa: E402
from bert_classifier.cli import classifier_flags  # noqa: E402
from bert_classifier.core import files  # noqa: E402
from bert_classifier.cli import errors  # noqa: E402
from bert_classifier.core import fused_ops  # noqa: E402
from bert_classifier.core import graph_tokenizer  # noqa: E402
from bert_classifier.core import kill_points  # noqa: E402
from bert_classifier.api import inference  # noqa: E402
from bert_classifier.workflow import model_dir  # noqa: E402
from bert_classifier.api import serving  # noqa: E402

classifier_flags.define_export_flags()
FLAGS = classifier_flags.FLAGS

WEIGHTS_CHECKPOINT = "bert_model.ckpt"


def _check_export_dir(path: str) -> None:
    if tf.io.gfile.exists(path) and (not tf.io.gfile.isdir(path) or tf.io.gfile.listdir(path)):
        raise ValueError("--export_dir=%s exists and is not an empty folder; pick a new one"
                         % path)


def _write_new_folder(export_dir: str, write) -> None:
    """Runs write(folder) on a temporary sibling of export_dir (files.into_place), so an
    interrupted export never leaves a half-written export_dir."""
    tf.io.gfile.makedirs(os.path.dirname(export_dir.rstrip("/")) or ".")
    with files.into_place(export_dir) as folder:
        write(folder)
        kill_points.reached("export_written")


def export_weights(classifier: inference.Classifier, export_dir: str) -> str:
    """Writes bert_model.ckpt (the model's variables by Google's names, nothing else) with
    bert_config.json, vocab.txt and model_info.json into export_dir."""
    info = classifier.info

    def write(folder: str) -> None:
        names = checkpoint_names.variables_by_checkpoint_name(classifier.model)
        checkpoints.write_checkpoint(os.path.join(folder, WEIGHTS_CHECKPOINT), names)
        model_dir.write_model_info(folder, info.task_name or "", classifier.labels,
                                   info.max_seq_length, info.do_lower_case,
                                   info.bert_config_file, info.vocab_file,
                                   length_multiple=info.length_multiple)
    _write_new_folder(export_dir, write)
    return os.path.join(export_dir, WEIGHTS_CHECKPOINT)


def export_saved_model(module: tf.Module, export_dir: str) -> None:
    """tf.saved_model.save of a serving module with its signatures, written into place. Saving
    traces the module's functions again, so it too runs with the plain TensorFlow ops."""
    with fused_ops.plain_ops():
        signatures = module.signatures()
        _write_new_folder(export_dir, lambda folder: tf.saved_model.save(
            module, folder, signatures=signatures))


def main(_):
    logging.set_verbosity(logging.INFO)
    _check_export_dir(FLAGS.export_dir)
    # The default strategy: the exported functions must not be tied to a device strategy.
    strategy = tf.distribute.get_strategy()
    common = dict(do_lower_case=FLAGS.do_lower_case, max_seq_length=FLAGS.max_seq_length,
                  bert_config_file=FLAGS.bert_config_file, vocab_file=FLAGS.vocab_file,
                  strategy=strategy, jit_compile=False)
    if FLAGS.encoder:
        if FLAGS.weights_only:
            raise ValueError("--weights_only exports a classifier's checkpoint; drop --encoder "
                             "(a pre-trained folder already is a weights-only checkpoint)")
        encoder = inference.Encoder.load(FLAGS.model_dir, FLAGS.checkpoint, **common)
        info = encoder.info
        tokenizer = graph_tokenizer.GraphTokenizer(info.vocab_file, info.do_lower_case,
                                                   info.max_seq_length)
        export_saved_model(serving.EncoderModule(encoder.bert, tokenizer, FLAGS.pooling,
                                                 FLAGS.normalize, info.length_multiple),
                           FLAGS.export_dir)
        logging.info("Exported the %s-pooling encoder of %s (max_seq_length %d, hidden %d) to %s",
                     FLAGS.pooling, encoder.checkpoint, info.max_seq_length,
                     encoder.hidden_size, FLAGS.export_dir)
        return
    classifier = inference.Classifier.load(FLAGS.model_dir, FLAGS.checkpoint,
                                           labels=errors.labels_from_flags(
                                               FLAGS.labels, FLAGS.task_name,
                                               FLAGS.processor_module),
                                           flag_hint=errors.FALLBACK_FLAGS,
                                           **common)
    if FLAGS.weights_only:
        path = export_weights(classifier, FLAGS.export_dir)
        logging.info("Wrote the weights of %s (no optimizer slots) to %s", classifier.checkpoint,
                     path)
        return
    info = classifier.info
    tokenizer = graph_tokenizer.GraphTokenizer(info.vocab_file, info.do_lower_case,
                                               info.max_seq_length)
    export_saved_model(serving.ClassifierModule(classifier.model, tokenizer, classifier.labels,
                                                info.length_multiple), FLAGS.export_dir)
    logging.info("Exported the classifier of %s (labels %s, max_seq_length %d) to %s",
                 classifier.checkpoint, classifier.labels, info.max_seq_length, FLAGS.export_dir)


def console_main() -> None:
    """The `bert-export-saved-model` command installed by `pip install .`."""
    for name in ("model_dir", "export_dir"):
        classifier_flags.flags.mark_flag_as_required(name)
    app.run(errors.main_with_clean_errors(
        main, "export_saved_model.py",
        interrupted=lambda: "%s left as it was" % FLAGS.export_dir))


if __name__ == "__main__":
    console_main()
