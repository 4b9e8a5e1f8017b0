"""Checks that run before any work starts: flags, files, checkpoints.

Every check raises ValueError with one line naming the flag or file and what was expected, so
a mistake costs seconds, not a featurization or a training run. The small checks are shared
by the scripts (run_classifier.py, extract_features.py, predict.py, export_saved_model.py);
`check_run_classifier_flags` is run_classifier's sequence of them:

1. the original's checks, in its order and with its messages: the case of `do_lower_case`
   against Google's model names in `init_checkpoint` (here also in the folder form), at least
   one of `do_train`/`do_eval`/`do_predict`, `max_seq_length` within the model's positions;
   then `output_dir` (the original made it there) and the task name ("Task not found");
2. then this port's: numeric ranges of every flag the run uses, `--encoding`, the vocab file
   against the config, and the checkpoint the run will start from (readable, intact, fitting
   the model of bert_config.json).

Layer: between the scripts and the workflow; imports processors, tokenization, modeling and
checkpoints, never a script.
"""

import math
import os
import re
from typing import Optional, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from bert_classifier.core import checkpoint_names  # noqa: E402

from bert_classifier.core import checkpoints  # noqa: E402
import modeling  # noqa: E402
import processors  # noqa: E402
import tokenization  # noqa: E402

# The tokens features.py writes into every example, and [UNK] for words not in the vocab.
REQUIRED_VOCAB_TOKENS = ("[CLS]", "[SEP]", "[UNK]")
# [CLS] a [SEP] b [SEP]: a pair needs 3 positions before any word.
MIN_SEQ_LENGTH = 3


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------
def check_positive_int(flag: str, value) -> None:
    """`value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"--{flag}={value}: expected a positive integer")


def check_non_negative_int(flag: str, value) -> None:
    """`value` is an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"--{flag}={value}: expected an integer >= 0")


def check_positive_float(flag: str, value) -> None:
    """`value` is a finite number > 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"--{flag}={value}: expected a number > 0")


def check_range(flag: str, value, lo: float, hi: float) -> None:
    """`value` is a number with lo <= value <= hi."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"--{flag}={value}: expected a number from {lo} to {hi}")


def check_seq_length_fits_model(max_seq_length: int, bert_config: modeling.BertConfig) -> None:
    """The original's check: max_seq_length within the model's max_position_embeddings."""
    if max_seq_length > bert_config.max_position_embeddings:
        raise ValueError(
            "Cannot use sequence length %d because the BERT model "
            "was only trained up to sequence length %d" %
            (max_seq_length, bert_config.max_position_embeddings))


def check_max_seq_length(max_seq_length: int, bert_config: modeling.BertConfig,
                         flag: str = "max_seq_length") -> None:
    """check_seq_length_fits_model, and at least 3 ([CLS] a [SEP] b [SEP] needs 3 positions
    before any word; 2 made the original's truncation pop from an empty list)."""
    check_seq_length_fits_model(max_seq_length, bert_config)
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or \
            max_seq_length < MIN_SEQ_LENGTH:
        raise ValueError(f"--{flag}={max_seq_length}: expected at least {MIN_SEQ_LENGTH} "
                         "([CLS] and two [SEP] take 3 positions)")


def check_encoding(flag: str, encoding: str) -> None:
    """`encoding` is a codec name Python knows (utf-8, utf-16, cp1252, ...)."""
    import codecs
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(f"--{flag}={encoding}: unknown encoding (expected a Python codec name "
                         "such as utf-8, utf-16, cp1252 or latin-1)") from None


# ---------------------------------------------------------------------------------------------
# Files and folders
# ---------------------------------------------------------------------------------------------
def _check_can_make(flag: str, path: str, folder: str, what: str) -> None:
    """`folder` (local, absolute) exists or can be made: its nearest existing ancestor is a
    writable directory. The errors name the flag, the user's path and `what` is to be made."""
    ancestor = folder
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ValueError(f"--{flag}={path}: cannot make {what}, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--{flag}={path}: cannot write there (no write permission on "
                         f"{ancestor})")


def check_output_dir(flag: str, path: str) -> None:
    """`path` is a directory, or one can be made there (its nearest existing ancestor is a
    writable directory); an existing file is refused. For gs:// and other remote paths only
    "not a file" is checked."""
    if not path:
        raise ValueError(f"--{flag} is empty: expected a directory")
    if "://" in path:
        if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
            raise ValueError(f"--{flag}={path} is a file: expected a directory")
        return
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise ValueError(f"--{flag}={path} is a file: expected a directory (or a path where one "
                         "can be made)")
    _check_can_make(flag, path, full, "a directory there")


def load_bert_config(bert_config_file: str, flag: str = "bert_config_file"
                     ) -> modeling.BertConfig:
    """The BertConfig of the file; one-line errors for a missing file, bad JSON and a missing or
    non-positive vocab_size."""
    if not tf.io.gfile.exists(bert_config_file):
        raise ValueError(f"--{flag}={bert_config_file}: not found (expected the model's "
                         "bert_config.json)")
    bert_config = modeling.BertConfig.from_json_file(bert_config_file)
    vocab_size = getattr(bert_config, "vocab_size", None)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"--{flag}={bert_config_file}: vocab_size is {vocab_size!r}, expected a "
                         "positive integer (is it a BERT config?)")
    return bert_config


def check_output_file(flag: str, path: str, allow_stdout: bool = False) -> None:
    """`path` can be written as a file: not empty, not a directory, and its folder exists or
    can be made (its nearest existing ancestor is a writable directory). Checked before the
    work, so no result is computed for a path that cannot take it. "-" (stdout) passes when
    allow_stdout."""
    if allow_stdout and path == "-":
        return
    if not path:
        raise ValueError(f"--{flag} is empty: expected a file path" +
                         (" (or - for stdout)" if allow_stdout else ""))
    if path.endswith("/") or tf.io.gfile.isdir(path):
        raise ValueError(f"--{flag}={path} is a directory: expected a file path "
                         f"(e.g. {os.path.join(path, 'predictions.tsv')})")
    if "://" in path:
        return
    _check_can_make(flag, path, os.path.dirname(os.path.abspath(path)), "its folder")


def check_vocab(vocab_file: str, bert_config: Optional[modeling.BertConfig] = None,
                flag: str = "vocab_file") -> int:
    """`vocab_file` is a WordPiece vocabulary (UTF-8 text, one token a line) that has [CLS],
    [SEP] and [UNK] and, with a config, at most its vocab_size tokens (a longer vocab gives ids
    past the embedding table). Returns the number of tokens."""
    vocab = tokenization.load_vocab(vocab_file)  # ValueError for a missing or non-UTF-8 file
    missing = [t for t in REQUIRED_VOCAB_TOKENS if t not in vocab]
    if missing:
        first = next((t for t in vocab if t), "")
        hint = (" (it looks like JSON: is it bert_config.json?)"
                if first[:1] in ("{", "[") and first not in REQUIRED_VOCAB_TOKENS else "")
        raise ValueError(f"--{flag}={vocab_file} lacks {', '.join(missing)}: expected a WordPiece "
                         f"vocab.txt, one token a line{hint}")
    if bert_config is not None and len(vocab) > bert_config.vocab_size:
        raise ValueError(
            f"--{flag}={vocab_file} has {len(vocab)} tokens but the config's vocab_size is "
            f"{bert_config.vocab_size}: ids from {bert_config.vocab_size} on have no embedding "
            "(are the vocab and bert_config.json from the same model?)")
    return len(vocab)


# The folder form of a Google checkpoint: `.../uncased_L-12_H-768_A-12` or `.../<name>/`.
_MODEL_FOLDER_RE = re.compile(r"^(?:.*/)?([A-Za-z0-9_-]+)/*$")


def check_case(do_lower_case: bool, init_checkpoint: Optional[str]) -> None:
    """The original's check that `do_lower_case` fits a Google model named in init_checkpoint
    (`.../uncased_L-12_H-768_A-12/bert_model.ckpt`), extended to the folder forms
    `.../uncased_L-12_H-768_A-12` and `.../uncased_L-12_H-768_A-12/`. Other names (e.g.
    `.../model.ckpt-343`, a folder of another name) cannot be told and are accepted."""
    tokenization.validate_case_matches_checkpoint(do_lower_case, init_checkpoint)
    if not init_checkpoint:
        return
    match = _MODEL_FOLDER_RE.match(init_checkpoint)
    if match:
        tokenization.validate_case_matches_model_name(do_lower_case, init_checkpoint,
                                                      match.group(1))


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def check_checkpoint_readable(path: str, flag: str = "init_checkpoint") -> str:
    """`path` (a prefix or a folder) names an intact checkpoint; returns its prefix. The error
    names the flag and the checkpoint (missing, index unreadable, data file truncated)."""
    try:
        return checkpoints.check_checkpoint_readable(path)
    except ValueError as error:
        raise ValueError(f"--{flag}={path}: {error}") from None


def check_checkpoint_fits(path: str, bert_config: modeling.BertConfig, num_labels: int = 0,
                          allow_partial: bool = False, flag: str = "init_checkpoint") -> str:
    """The checkpoint `path` is readable and fits a model of bert_config (see
    checkpoints.check_checkpoint_fits: same shapes, no `bert/` variable missing or unused unless
    allow_partial), read from its index only (once). Returns the checkpoint prefix."""
    try:
        prefix, reader = checkpoints.open_checkpoint(path)
    except ValueError as error:
        raise ValueError(f"--{flag}={path}: {error}") from None
    shapes = reader.get_variable_to_shape_map()
    try:
        checkpoints.check_checkpoint_fits(
            prefix, shapes, checkpoint_names.expected_variable_shapes(bert_config, num_labels),
            allow_partial)
    except ValueError as error:
        raise ValueError(f"--{flag}={path} does not fit the model of the config: {error}") from None
    return prefix


def check_resumable(output_dir: str, bert_config: modeling.BertConfig,
                    num_labels: int) -> Optional[str]:
    """The checkpoint a run into output_dir will restore (the newest intact one, with a warning
    when a newer one is broken; see checkpoints.latest_checkpoint), checked to hold every
    variable of the classifier with its shape. None when output_dir holds no checkpoint.
    ValueError when it holds checkpoints but none is intact, or one of another model."""
    prefix = checkpoints.latest_checkpoint(output_dir)
    if prefix is None:
        return None
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    try:
        checkpoints.check_checkpoint_fits(
            prefix, shapes, checkpoint_names.expected_variable_shapes(bert_config, num_labels),
            complete=True, described_as=f"checkpoint {prefix} in --output_dir")
    except ValueError as error:
        raise ValueError(f"{error}: was output_dir used with another bert_config.json or task? "
                         "Use a new --output_dir") from None
    return prefix


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def check_examples(examples: Sequence, split: str, flag: str, task_name: str,
                   data_dir: str) -> None:
    """A data set the run needs (`flag` is do_train/do_eval/do_predict) has examples: an empty
    dev set would give every metric 0.0 and exit 0."""
    if not examples:
        raise ValueError(f"--{flag}: the {split} set of task {task_name} in {data_dir} has no "
                         "examples (an empty file?); expected at least one row")


# ---------------------------------------------------------------------------------------------
# run_classifier.py
# ---------------------------------------------------------------------------------------------
def check_run_classifier_flags(flags, processor=None) -> modeling.BertConfig:
    """Every check of run_classifier.py's flags that needs no data read (see the module
    docstring for the order). `flags` is absl's FLAGS (or fine_tune's own FlagValues);
    `processor` is the task's DataProcessor when the caller has one (fine_tune's data in
    memory), else --task_name's. Returns the BertConfig read from --bert_config_file."""
    # The original's checks, in its order.
    check_case(flags.do_lower_case, flags.init_checkpoint)
    if not flags.do_train and not flags.do_eval and not flags.do_predict:
        raise ValueError(
            "At least one of `do_train`, `do_eval` or `do_predict' must be True.")
    bert_config = load_bert_config(flags.bert_config_file)
    check_seq_length_fits_model(flags.max_seq_length, bert_config)
    check_output_dir("output_dir", flags.output_dir)
    if processor is None:
        processor = processors.get_processor(flags.task_name.lower())  # "Task not found: ..."

    # This port's, for what the run uses.
    check_max_seq_length(flags.max_seq_length, bert_config)
    if flags.do_train:
        check_positive_int("train_batch_size", flags.train_batch_size)
        check_positive_float("learning_rate", flags.learning_rate)
        check_positive_float("num_train_epochs", flags.num_train_epochs)
        check_range("warmup_proportion", flags.warmup_proportion, 0, 1)
        for name in ("save_checkpoints_steps", "iterations_per_loop", "keep_checkpoint_max",
                     "log_step_count_steps", "shuffle_buffer_size"):
            check_positive_int(name, getattr(flags, name))
    if flags.do_eval:
        check_positive_int("eval_batch_size", flags.eval_batch_size)
    if flags.do_predict:
        check_positive_int("predict_batch_size", flags.predict_batch_size)
    if flags.num_featurize_workers is not None:
        check_positive_int("num_featurize_workers", flags.num_featurize_workers)
    check_positive_int("num_cpu_devices", flags.num_cpu_devices)
    check_non_negative_int("inference_micro_batch_size", flags.inference_micro_batch_size)
    check_encoding("encoding", flags.encoding)
    check_vocab(flags.vocab_file, bert_config)
    num_labels = len(processor.get_labels())
    if check_resumable(flags.output_dir, bert_config, num_labels) is None and \
            flags.init_checkpoint:
        check_checkpoint_fits(flags.init_checkpoint, bert_config, num_labels,
                              flags.allow_partial_checkpoint)
    return bert_config
