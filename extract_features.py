#!/usr/bin/env python
"""Extract pre-computed feature vectors from BERT: google-research/bert's extract_features.py.

The original's flags, input and output:

    python extract_features.py --input_file=input.txt --output_file=output.jsonl \
      --vocab_file=$BERT_BASE_DIR/vocab.txt --bert_config_file=$BERT_BASE_DIR/bert_config.json \
      --init_checkpoint=$BERT_BASE_DIR/bert_model.ckpt --layers=-1,-2,-3,-4 \
      --max_seq_length=128 --batch_size=8

reads one example a line (a pair written `text_a ||| text_b`) and writes one JSON line per input
line: {"linex_index": i, "features": [{"token": t, "layers": [{"index": -1, "values": [...]},
...]}, ...]} with every value rounded to 6 decimals, for the real tokens only.

Sentence vectors (an addition): --pooling=cls|mean|pooled [--normalize] writes one vector per
line instead: a float32 array [lines, hidden] when --output_file ends in .npy, else JSON lines
{"linex_index": i, "vector": [...]}. --init_checkpoint may also be a folder -- a pre-trained one
(pretrained/minilm_L-6_H-384_A-12) or a run_classifier output_dir, whose bert/ variables are
used -- and then --vocab_file and --bert_config_file default to the folder's files.
"""
import collections
import io
import json
# The environment TensorFlow reads at import (tf_keras, the BFC allocator, quiet C++ logs).
from bert_classifier.cli import script_env  # noqa: F401  (first: before TensorFlow is imported)

import os
import re
from typing import List, Optional, Tuple

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.cli import classifier_flags  # noqa: E402
from bert_classifier.core import files  # noqa: E402
from bert_classifier.core import progress  # noqa: E402
from bert_classifier.cli import errors  # noqa: E402
from bert_classifier.api import inference  # noqa: E402
from bert_classifier.workflow import model_dir  # noqa: E402
from bert_classifier.checks import preflight  # noqa: E402
from bert_classifier.workflow import input_pipeline  # noqa: E402
from bert_classifier.workflow import strategies  # noqa: E402
from processors import set_input_encoding  # noqa: E402
from processors.base import decode_text  # noqa: E402

classifier_flags.define_extract_features_flags()
FLAGS = classifier_flags.FLAGS

# The original's pattern: greedy, so a line splits at its LAST " ||| ".
_PAIR_RE = re.compile(r"^(.*) \|\|\| (.*)$")


def read_examples(input_file: str) -> List[Tuple[str, Optional[str]]]:
    """The original's read_examples: one (text_a, text_b or None) per line of the file.

    As the original reads it through tf.gfile: lines end at "\\n" only and a "\\r" is dropped;
    each line is stripped; every line counts, a blank one included (it becomes an empty text,
    `[CLS] [SEP]`); a pair is split at the last " ||| ". The file is decoded with --encoding
    (processors.base.decode_text: UTF-8 by default, where the original stopped at a byte that
    is not UTF-8, its bytes are dropped with a warning). Warns once about blank lines and about
    lines holding several " ||| ".
    """
    with tf.io.gfile.GFile(input_file, "rb") as f:
        text = decode_text(f.read(), input_file)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    examples = []
    blank, several = [], []
    for number, raw in enumerate(lines, start=1):
        line = raw.replace("\r", "").strip()
        match = _PAIR_RE.match(line)
        if match is None:
            examples.append((line, None))
        else:
            examples.append((match.group(1), match.group(2)))
            if " ||| " in match.group(1):
                several.append(number)
        if not line:
            blank.append(number)
    if blank:
        logging.warning("%s: %d blank line(s) (the first is line %d) are kept as empty texts "
                        "and get a linex_index, as in the original", input_file, len(blank),
                        blank[0])
    if several:
        logging.warning("%s: %d line(s) (the first is line %d) hold several \" ||| \"; each is "
                        "split at the last one, as in the original", input_file, len(several),
                        several[0])
    return examples


def _layer_indexes(value: str) -> List[int]:
    try:
        return [int(x) for x in value.split(",")]
    except ValueError:
        raise ValueError("--layers=%s: expected comma-separated layer indexes such as -1,-2,-3,-4"
                         % value) from None


def _model_info() -> model_dir.ModelInfo:
    """What to load: the flags, or for a folder --init_checkpoint the folder's files and
    settings (flags given explicitly win)."""
    checkpoint = FLAGS.init_checkpoint
    if tf.io.gfile.isdir(checkpoint):
        explicit = {name: FLAGS[name].value for name in ("do_lower_case", "max_seq_length")
                    if FLAGS[name].present}
        return model_dir.load_model_info(
            checkpoint, bert_config_file=FLAGS.bert_config_file, vocab_file=FLAGS.vocab_file,
            flag_hint="--vocab_file and --bert_config_file", **explicit)
    for name in ("vocab_file", "bert_config_file"):
        if not FLAGS[name].value:
            raise ValueError("--%s is required (unless --init_checkpoint is a folder that holds "
                             "%s)" % (name, "vocab.txt" if name == "vocab_file"
                                      else "bert_config.json"))
    return model_dir.ModelInfo(
        model_dir=os.path.dirname(checkpoint), bert_config_file=FLAGS.bert_config_file,
        vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case,
        max_seq_length=FLAGS.max_seq_length,
        checkpoint=preflight.check_checkpoint_readable(checkpoint, "init_checkpoint"))


def _token_features_line(index: int, item: inference.TokenLayers, layer_indexes: List[int]
                         ) -> str:
    """One line of the original's output (its key order, spellings and rounding)."""
    all_features = []
    for position, token in enumerate(item.tokens):
        all_layers = []
        for layer_index in layer_indexes:
            layer = collections.OrderedDict()
            layer["index"] = layer_index
            layer["values"] = [round(x, 6) for x in item.layers[layer_index][position].tolist()]
            all_layers.append(layer)
        token_features = collections.OrderedDict()
        token_features["token"] = token
        token_features["layers"] = all_layers
        all_features.append(token_features)
    output = collections.OrderedDict()
    output["linex_index"] = index
    output["features"] = all_features
    return json.dumps(output) + "\n"


def _vector_line(index: int, vector: np.ndarray) -> str:
    output = collections.OrderedDict()
    output["linex_index"] = index
    output["vector"] = [round(x, 6) for x in vector.tolist()]
    return json.dumps(output) + "\n"


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def main(_):
    logging.set_verbosity(logging.INFO)
    strategies.configure_cpu_devices(FLAGS.num_cpu_devices)
    # The checks before any work (preflight.py); the model's own (config, vocab, max_seq_length,
    # checkpoint) run when the Encoder is built, before any text is read.
    preflight.check_case(FLAGS.do_lower_case, FLAGS.init_checkpoint)
    preflight.check_positive_int("batch_size", FLAGS.batch_size)
    preflight.check_encoding("encoding", FLAGS.encoding)
    set_input_encoding(FLAGS.encoding)
    layer_indexes = _layer_indexes(FLAGS.layers) if FLAGS.pooling is None else []
    if FLAGS.normalize and FLAGS.pooling is None:
        raise ValueError("--normalize needs --pooling (it normalizes sentence vectors)")
    if not tf.io.gfile.exists(FLAGS.input_file):
        raise ValueError("--input_file=%s: no such file" % FLAGS.input_file)
    preflight.check_output_file("output_file", FLAGS.output_file)
    output_dir = os.path.dirname(FLAGS.output_file)
    if output_dir:
        tf.io.gfile.makedirs(output_dir)
    info = _model_info()

    strategy = strategies.create_strategy(FLAGS.distribution_strategy, FLAGS.use_tpu,
                                          FLAGS.tpu_name, FLAGS.tpu_zone, FLAGS.gcp_project)
    if not strategies.is_chief(strategy):
        return
    strategy = strategies.inference_strategy(strategy)  # as run_classifier's eval/predict
    input_pipeline.check_batch_size("batch_size", FLAGS.batch_size, strategy)
    encoder = inference.Encoder(info, strategy=strategy, jit_compile=FLAGS.xla_inference,
                                batch_size=FLAGS.batch_size, checkpoint_flag="init_checkpoint")
    examples = read_examples(FLAGS.input_file)
    if not examples:
        logging.warning("%s is empty: %s will hold no %s", FLAGS.input_file, FLAGS.output_file,
                        "vectors" if FLAGS.pooling else "lines")
    logging.info("Extracting %s for %d line(s) of %s with checkpoint %s (max_seq_length %d)",
                 "%s vectors" % FLAGS.pooling if FLAGS.pooling else "layers %s" % layer_indexes,
                 len(examples), FLAGS.input_file, encoder.checkpoint, encoder.max_seq_length)
    show_progress = progress.enabled_setting(FLAGS.progress_bar)

    if FLAGS.pooling:
        vectors = encoder.encode(examples, pooling=FLAGS.pooling, normalize=FLAGS.normalize,
                                 progress=show_progress)
        if FLAGS.output_file.endswith(".npy"):
            files.write_file(FLAGS.output_file, _npy_bytes(vectors))
        else:
            files.write_file(
                FLAGS.output_file, (_vector_line(i, v) for i, v in enumerate(vectors)))
    else:
        # Streamed: the original's format is about 15 kB per token and layer set.
        files.write_file(FLAGS.output_file, (
            _token_features_line(index, item, layer_indexes) for index, item in
            enumerate(encoder.layer_outputs(examples, layer_indexes, progress=show_progress))))
    logging.info("Wrote %s", FLAGS.output_file)


def console_main() -> None:
    """The `bert-extract-features` command installed by `pip install .`."""
    for name in classifier_flags.EXTRACT_REQUIRED_FLAGS:
        classifier_flags.flags.mark_flag_as_required(name)
    app.run(errors.main_with_clean_errors(
        main, "extract_features.py",
        interrupted=lambda: "%s left as it was" % FLAGS.output_file))


if __name__ == "__main__":
    console_main()
