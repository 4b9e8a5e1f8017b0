"""A model folder that stands on its own.

`run_classifier.py --do_train` writes, beside its checkpoints in output_dir, what is needed to use
the fine-tuned model later without the original flags:

    output_dir/model_info.json   task_name, labels (get_labels() order), max_seq_length,
                                 do_lower_case, and the names of the two files below
    output_dir/bert_config.json  a copy of --bert_config_file
    output_dir/vocab.txt         a copy of --vocab_file

`load_model_info` reads such a folder, and also a folder of pre-trained weights (Google's
released `uncased_L-12_H-768_A-12/`, the embedded `pretrained/minilm_L-6_H-384_A-12/`), which has
`bert_config.json`, `vocab.txt` and one checkpoint but no labels; settings a folder does not
record can be given by the caller (the scripts' flags).
"""
import dataclasses
import os
from typing import List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.core import checkpoints  # noqa: E402
from bert_classifier.core import files  # noqa: E402
import tokenization  # noqa: E402
from bert_classifier.workflow import input_pipeline  # noqa: E402
from bert_classifier.workflow import outputs  # noqa: E402

MODEL_INFO_FILENAME = "model_info.json"
CONFIG_FILENAME = "bert_config.json"
VOCAB_FILENAME = "vocab.txt"
FORMAT_VERSION = 1
# extract_features.py's default, used for a folder that records no max_seq_length.
DEFAULT_MAX_SEQ_LENGTH = 128
# A vocabulary with more than this share of upper-case tokens (brackets aside) is a cased one.
_CASED_VOCAB_SHARE = 0.01


@dataclasses.dataclass
class ModelInfo:
    """Everything needed to tokenize text for a model and rebuild it.

    bert_config_file, vocab_file: paths; checkpoint: the checkpoint prefix to load (None when
    the folder holds none); labels: get_labels() of the task it was fine-tuned on, None for a
    pre-trained folder; task_name likewise; length_multiple: the batch-length rule's multiple
    (input_pipeline.batch_length) the model was trained with.
    """
    model_dir: str
    bert_config_file: str
    vocab_file: str
    do_lower_case: bool
    max_seq_length: int
    checkpoint: Optional[str]
    labels: Optional[List[str]] = None
    task_name: Optional[str] = None
    length_multiple: int = input_pipeline.DEFAULT_LENGTH_MULTIPLE


def write_model_info(output_dir: str, task_name: str, labels: List[str], max_seq_length: int,
                     do_lower_case: bool, bert_config_file: str, vocab_file: str,
                     length_multiple: int = input_pipeline.DEFAULT_LENGTH_MULTIPLE) -> str:
    """Writes model_info.json and copies bert_config.json and vocab.txt into output_dir.

    Each file is written under a temporary name and renamed into place, the JSON last, so a
    folder with a model_info.json always has the two files it names. Returns its path.
    """
    tf.io.gfile.makedirs(output_dir)
    files.copy_file(bert_config_file, os.path.join(output_dir, CONFIG_FILENAME))
    files.copy_file(vocab_file, os.path.join(output_dir, VOCAB_FILENAME))
    info = {
        "format_version": FORMAT_VERSION,
        "task_name": task_name,
        "labels": [str(label) for label in labels],
        "max_seq_length": int(max_seq_length),
        "do_lower_case": bool(do_lower_case),
        "bert_config_file": CONFIG_FILENAME,
        "vocab_file": VOCAB_FILENAME,
        "length_multiple": int(length_multiple),
    }
    path = os.path.join(output_dir, MODEL_INFO_FILENAME)
    outputs.write_json(path, info)
    return path


def vocab_is_cased(vocab_file: str) -> bool:
    """True when the vocabulary keeps upper-case letters (a cased model's vocab.txt): more than
    1% of its tokens, bracketed special tokens aside, contain an upper-case character."""
    tokens = [t for t in tokenization.load_vocab(vocab_file) if not t.startswith("[")]
    upper = sum(1 for t in tokens if any(ch.isupper() for ch in t))
    return bool(tokens) and upper > _CASED_VOCAB_SHARE * len(tokens)


def _infer_do_lower_case(model_dir: str, vocab_file: str) -> bool:
    """do_lower_case of a folder that does not record it: from Google's model names (the
    original's list), else from the vocabulary's letters."""
    name = os.path.basename(os.path.normpath(model_dir))
    if name in tokenization._LOWERCASED_MODELS:
        return True
    if name in tokenization._CASED_MODELS:
        return False
    cased = vocab_is_cased(vocab_file)
    logging.info("%s records no do_lower_case; the vocabulary is %s, so do_lower_case=%s "
                 "(pass --do_lower_case to override)", model_dir,
                 "cased" if cased else "lower-case", not cased)
    return not cased


def _find_checkpoint(model_dir: str, checkpoint: Optional[str]) -> Optional[str]:
    """The checkpoint prefix to load: `checkpoint` (a prefix, a folder, or a name inside
    model_dir such as model.ckpt-75 or best), else model_dir's latest, else its only one."""
    if checkpoint:
        inside = os.path.join(model_dir, checkpoint)
        if not tf.io.gfile.exists(checkpoint + ".index") and not tf.io.gfile.isdir(checkpoint) \
                and (tf.io.gfile.exists(inside + ".index") or tf.io.gfile.isdir(inside)):
            checkpoint = inside
        return checkpoints.resolve_checkpoint_path(checkpoint)
    latest = checkpoints.latest_checkpoint(model_dir)
    if latest:
        return latest
    indexes = tf.io.gfile.glob(os.path.join(model_dir, "*.index"))
    return checkpoints.resolve_checkpoint_path(model_dir) if indexes else None


def load_model_info(model_dir: str, checkpoint: Optional[str] = None,
                    bert_config_file: Optional[str] = None, vocab_file: Optional[str] = None,
                    do_lower_case: Optional[bool] = None, max_seq_length: Optional[int] = None,
                    labels: Optional[List[str]] = None, task_name: Optional[str] = None,
                    require_labels: bool = False, flag_hint: str = "",
                    length_multiple: Optional[int] = None) -> ModelInfo:
    """Reads model_dir (a trained output_dir or a pre-trained folder) into a ModelInfo.

    Arguments given here override what the folder records. What neither gives raises one
    ValueError naming the missing file and `flag_hint` (the flags that can stand in for it).
    require_labels: the folder must record labels (or `labels` be given) -- a classifier.
    """
    if not model_dir or not tf.io.gfile.isdir(model_dir):
        raise ValueError("model_dir %s is not a folder (expected a run_classifier.py output_dir "
                         "or a pre-trained model folder)" % model_dir)
    recorded = {}
    info_path = os.path.join(model_dir, MODEL_INFO_FILENAME)
    if tf.io.gfile.exists(info_path):
        with tf.io.gfile.GFile(info_path, "r") as f:
            try:
                recorded = json.loads(f.read())
            except json.JSONDecodeError as err:
                raise ValueError("%s is not valid JSON: %s" % (info_path, err)) from None
        if not isinstance(recorded, dict):
            raise ValueError("%s must hold a JSON object" % info_path)

    def file_in_dir(given: Optional[str], key: str, default_name: str, what: str) -> str:
        if given:
            return given
        path = os.path.join(model_dir, recorded.get(key) or default_name)
        if not tf.io.gfile.exists(path):
            hint = (" (written by run_classifier.py --do_train with %s)" % MODEL_INFO_FILENAME
                    if not recorded else "")
            raise ValueError("%s has no %s%s; pass %s" % (
                model_dir, os.path.basename(path), hint, flag_hint or what))
        return path

    config_path = file_in_dir(bert_config_file, "bert_config_file", CONFIG_FILENAME,
                              "--bert_config_file")
    vocab_path = file_in_dir(vocab_file, "vocab_file", VOCAB_FILENAME, "--vocab_file")
    if labels is None and recorded.get("labels") is not None:
        labels = [str(label) for label in recorded["labels"]]
    if require_labels and not labels:
        raise ValueError("%s has no %s with the task's labels (run_classifier.py --do_train "
                         "writes it); pass %s" % (model_dir, MODEL_INFO_FILENAME,
                                                  flag_hint or "the labels"))
    if do_lower_case is None:
        do_lower_case = recorded.get("do_lower_case")
        if do_lower_case is None:
            do_lower_case = _infer_do_lower_case(model_dir, vocab_path)
    if max_seq_length is None:
        max_seq_length = recorded.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH
    if length_multiple is None:
        length_multiple = recorded.get("length_multiple", input_pipeline.DEFAULT_LENGTH_MULTIPLE)
    if isinstance(length_multiple, bool) or not isinstance(length_multiple, int) \
            or length_multiple < 0:
        raise ValueError("length_multiple=%r (%s): expected a whole number >= 0"
                         % (length_multiple, info_path))
    return ModelInfo(
        model_dir=model_dir, bert_config_file=config_path, vocab_file=vocab_path,
        do_lower_case=bool(do_lower_case), max_seq_length=int(max_seq_length),
        checkpoint=_find_checkpoint(model_dir, checkpoint), labels=labels,
        task_name=task_name or recorded.get("task_name"), length_multiple=length_multiple)
