"""Google checkpoint names <-> model variables, and name-based (TF1-compatible) checkpoints.

This is the one place that knows Google's names (`bert/embeddings/word_embeddings`,
`bert/encoder/layer_N/attention/self/query/kernel`, ..., `bert/pooler/dense/kernel`, and the
classifier's top-level `output_weights`/`output_bias`). Checkpoints are TensorFlow's V2 bundle
format (`prefix.index` + `prefix.data-00000-of-00001`) with exactly those keys, so they are
read by the original TF1 code (`tf.train.init_from_checkpoint`, `Saver.restore`), by Hugging
Face's TF converter, and by `tf.train.load_checkpoint` here.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import contextlib  # noqa: E402
import re  # noqa: E402
from typing import Dict, Iterable, List, Mapping, Optional, Set, Union  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402
from google.protobuf import text_format  # noqa: E402
# The `checkpoint` state file's message (the one tf.train.get_checkpoint_state parses).
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState  # noqa: E402

import modeling  # noqa: E402

STATE_FILENAME = "checkpoint"
CHECKPOINT_BASENAME = "model.ckpt"
GLOBAL_STEP_NAME = "global_step"


def _layer_norm_names(prefix: str, layer_norm: modeling.LayerNorm) -> Dict[str, tf.Variable]:
    return {prefix + "/LayerNorm/beta": layer_norm.beta,
            prefix + "/LayerNorm/gamma": layer_norm.gamma}


def _dense_names(prefix: str, dense: modeling.Dense) -> Dict[str, tf.Variable]:
    return {prefix + "/kernel": dense.kernel, prefix + "/bias": dense.bias}


def variables_by_checkpoint_name(
        model: Union[modeling.BertModel, modeling.BertClassifier]) -> Dict[str, tf.Variable]:
    """Maps Google's checkpoint names to the model's variables, in model order.

    Builds the variables first if needed (inside the strategy the model was created under).
    For a BertClassifier the dict ends with `output_weights` [num_labels, H] and `output_bias`.
    """
    if isinstance(model, modeling.BertClassifier):
        model.build_variables()
        bert = model.bert
    elif isinstance(model, modeling.BertModel):
        model.build_variables()
        bert = model
    else:
        raise TypeError("expected a modeling.BertModel or BertClassifier, got %r" % type(model))

    names: Dict[str, tf.Variable] = {}
    emb = bert.embeddings
    names["bert/embeddings/word_embeddings"] = emb.word_embeddings
    names["bert/embeddings/token_type_embeddings"] = emb.token_type_embeddings
    names["bert/embeddings/position_embeddings"] = emb.position_embeddings
    names.update(_layer_norm_names("bert/embeddings", emb.LayerNorm))
    for index, layer in enumerate(bert.encoder.layers):
        prefix = "bert/encoder/layer_%d" % index
        attention = layer.attention
        self_attention = attention.self_attention
        names.update(_dense_names(prefix + "/attention/self/query", self_attention.query))
        names.update(_dense_names(prefix + "/attention/self/key", self_attention.key))
        names.update(_dense_names(prefix + "/attention/self/value", self_attention.value))
        names.update(_dense_names(prefix + "/attention/output/dense",
                                  attention.attention_output.dense))
        names.update(_layer_norm_names(prefix + "/attention/output",
                                       attention.attention_output.LayerNorm))
        names.update(_dense_names(prefix + "/intermediate/dense", layer.intermediate.dense))
        names.update(_dense_names(prefix + "/output/dense", layer.output_block.dense))
        names.update(_layer_norm_names(prefix + "/output", layer.output_block.LayerNorm))
    names.update(_dense_names("bert/pooler/dense", bert.pooler.dense))
    if isinstance(model, modeling.BertClassifier):
        names["output_weights"] = model.output_weights
        names["output_bias"] = model.output_bias
    return names


def resolve_checkpoint_path(checkpoint_path: str) -> str:
    """A checkpoint prefix from a prefix (`.../bert_model.ckpt`, `.../model.ckpt-343`) or a
    directory (its latest checkpoint). Raises ValueError when neither exists."""
    if not checkpoint_path:
        raise ValueError("no checkpoint path given")
    if tf.io.gfile.isdir(checkpoint_path):
        latest = latest_checkpoint(checkpoint_path)
        if latest is None:
            # A folder unzipped from Google's release has no `checkpoint` state file, only
            # bert_model.ckpt.*: take its single checkpoint.
            indexes = tf.io.gfile.glob(os.path.join(checkpoint_path, "*.index"))
            if len(indexes) == 1:
                return indexes[0][:-len(".index")]
            if len(indexes) > 1:
                raise ValueError("directory %s holds several checkpoints and no `checkpoint` "
                                 "state file; pass one prefix: %s" % (checkpoint_path, ", ".join(
                                     sorted(i[:-len(".index")] for i in indexes))))
            raise ValueError("no checkpoint found in directory %s (expected a `checkpoint` state "
                             "file or a prefix such as %s/bert_model.ckpt)"
                             % (checkpoint_path, checkpoint_path))
        return latest
    if not tf.io.gfile.exists(checkpoint_path + ".index"):
        raise ValueError("checkpoint %s not found: expected the file %s.index (pass the prefix, "
                         "e.g. .../bert_model.ckpt, not one of its files)"
                         % (checkpoint_path, checkpoint_path))
    return checkpoint_path


@contextlib.contextmanager
def _cross_replica(variable: tf.Variable):
    """Enters the variable's distribution strategy scope when it has one and none is active,
    so assigning a mirrored variable updates every replica from cross-replica context."""
    strategy = getattr(variable, "_distribute_strategy", None)
    if strategy is not None and not tf.distribute.has_strategy():
        with strategy.scope():
            yield
    else:
        yield


def _assign_from_checkpoint(path: str, dtypes: Mapping[str, tf.DType],
                            name_to_variable: Mapping[str, tf.Variable],
                            names: Iterable[str]) -> None:
    """Assigns one tensor at a time, read by RestoreV2 straight into a tensor (no numpy copy),
    so at most one checkpoint value is alive besides the variables themselves."""
    for name in names:
        variable = name_to_variable[name]
        with tf.device("/cpu:0"):
            value = tf.raw_ops.RestoreV2(prefix=path, tensor_names=[name], shape_and_slices=[""],
                                         dtypes=[dtypes[name]])[0]
        if value.dtype != variable.dtype:
            value = tf.cast(value, variable.dtype)
        with _cross_replica(variable):
            variable.assign(value)
        del value


def _check_shapes(checkpoint_path: str, shapes: Mapping[str, List[int]],
                  name_to_variable: Mapping[str, tf.Variable], names: Iterable[str]) -> None:
    for name in names:
        want = list(name_to_variable[name].shape)
        have = list(shapes[name])
        if want != have:
            raise ValueError(
                "Shape of variable %s in checkpoint %s is %s, but the model's variable has shape "
                "%s (does bert_config.json / num_labels match the checkpoint?)"
                % (name, checkpoint_path, have, want))


def log_trainable_variables(name_to_variable: Mapping[str, tf.Variable],
                            initialized: Set[str] = frozenset()) -> None:
    """The original's block: every variable, the ones read from the checkpoint marked
    `*INIT_FROM_CKPT*` (none when training starts from random weights)."""
    logging.info("**** Trainable Variables ****")
    for name, variable in name_to_variable.items():
        init_string = ", *INIT_FROM_CKPT*" if name in initialized else ""
        logging.info("  name = %s, shape = %s%s", name + ":0", variable.shape, init_string)


def init_from_checkpoint(name_to_variable: Mapping[str, tf.Variable],
                         checkpoint_path: str) -> Set[str]:
    """Initializes variables from a checkpoint by Google name; returns the names assigned.

    Names the checkpoint lacks keep their values (e.g. output_weights from a pre-trained
    checkpoint) except that every `bert/` name must be present; checkpoint names the model lacks
    (cls/*, */adam_m, global_step, ...) are ignored. Shape mismatches raise ValueError.
    `checkpoint_path` is a prefix or a directory (its latest checkpoint).
    """
    path = resolve_checkpoint_path(checkpoint_path)
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    missing = [n for n in name_to_variable if n.startswith("bert/") and n not in shapes]
    if missing:
        raise ValueError("checkpoint %s lacks %d BERT variable(s) of the model (is it a BERT "
                         "checkpoint with the same number of layers?): %s"
                         % (path, len(missing), ", ".join(missing)))
    present = [n for n in name_to_variable if n in shapes]
    _check_shapes(path, shapes, name_to_variable, present)
    _assign_from_checkpoint(path, reader.get_variable_to_dtype_map(), name_to_variable, present)
    initialized = set(present)
    log_trainable_variables(name_to_variable, initialized)
    return initialized


def restore_checkpoint(checkpoint_path: str, name_to_variable: Mapping[str, tf.Variable]) -> str:
    """Restores every variable (model, optimizer slots, global_step...) by name; all must be in
    the checkpoint. Returns the resolved checkpoint prefix."""
    path = resolve_checkpoint_path(checkpoint_path)
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    missing = [n for n in name_to_variable if n not in shapes]
    if missing:
        raise ValueError("checkpoint %s lacks %d variable(s) needed to resume: %s"
                         % (path, len(missing), ", ".join(missing)))
    _check_shapes(path, shapes, name_to_variable, name_to_variable.keys())
    _assign_from_checkpoint(path, reader.get_variable_to_dtype_map(), name_to_variable,
                            name_to_variable.keys())
    return path


def _as_tensor(value) -> tf.Tensor:
    """A tensor for SaveV2: a variable's current value (no copy on CPU), or the array."""
    if isinstance(value, tf.Variable) or hasattr(value, "read_value"):
        with _cross_replica(value):
            return tf.convert_to_tensor(value.read_value())
    return tf.convert_to_tensor(value)


def write_checkpoint(prefix: str, name_to_value: Mapping[str, object]) -> str:
    """Writes a name-based V2 checkpoint (`prefix.index`, `prefix.data-00000-of-00001`) whose
    keys are exactly the given names. Values: tf.Variables, tensors or numpy arrays.

    Variables are read without copying; a numpy value is copied once into a tensor at write
    time. Returns `prefix`.
    """
    if not name_to_value:
        raise ValueError("nothing to write to checkpoint %s" % prefix)
    directory = os.path.dirname(prefix)
    if directory:
        tf.io.gfile.makedirs(directory)
    names = list(name_to_value)
    tensors = [_as_tensor(name_to_value[n]) for n in names]
    # SaveV2 writes the bundle through temporary files that are renamed when complete.
    with tf.device("/cpu:0"):
        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=tensors)
    return prefix


def _checkpoint_files(prefix: str) -> List[str]:
    # "model.ckpt-34.*" does not match "model.ckpt-343.index": the dot follows the number.
    return tf.io.gfile.glob(prefix + ".index") + tf.io.gfile.glob(prefix + ".data-*") + \
        tf.io.gfile.glob(prefix + ".meta")


def _relative(output_dir: str, path: str) -> str:
    if os.path.isabs(path) or "://" in path:
        if os.path.dirname(path).rstrip("/") == output_dir.rstrip("/"):
            return os.path.basename(path)
    return path


def _write_state_file(output_dir: str, latest: str, all_paths: List[str]) -> None:
    """Replaces `output_dir/checkpoint` atomically (write a temporary file, then rename)."""
    state = CheckpointState(model_checkpoint_path=latest, all_model_checkpoint_paths=all_paths)
    path = os.path.join(output_dir, STATE_FILENAME)
    tmp = "%s.tmp%d" % (path, os.getpid())
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text_format.MessageToString(state))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def save_checkpoint(output_dir: str, name_to_variable: Mapping[str, object], global_step: int,
                    max_to_keep: Optional[int] = 5) -> str:
    """Writes `output_dir/model.ckpt-<global_step>` and records it in the `checkpoint` state
    file (relative paths), then deletes the oldest checkpoints beyond `max_to_keep` (None or 0:
    keep all). Adds an int64 `global_step` entry when the dict has none. Returns the prefix.

    Order makes it crash-safe: the state file is replaced atomically only after the checkpoint
    is complete, and old files are deleted only after the state file no longer lists them.
    """
    tf.io.gfile.makedirs(output_dir)
    basename = "%s-%d" % (CHECKPOINT_BASENAME, int(global_step))
    prefix = os.path.join(output_dir, basename)
    values = dict(name_to_variable)
    if GLOBAL_STEP_NAME not in values:
        values[GLOBAL_STEP_NAME] = np.array(int(global_step), dtype=np.int64)
    write_checkpoint(prefix, values)

    kept: List[str] = []
    state = tf.train.get_checkpoint_state(output_dir)
    if state is not None:
        kept = [_relative(output_dir, p) for p in state.all_model_checkpoint_paths]
        if not kept and state.model_checkpoint_path:
            kept = [_relative(output_dir, state.model_checkpoint_path)]
    kept = [p for p in kept if p != basename] + [basename]
    removed: List[str] = []
    if max_to_keep and len(kept) > max_to_keep:
        removed, kept = kept[:-max_to_keep], kept[-max_to_keep:]
    _write_state_file(output_dir, basename, kept)
    for old in removed:
        old_prefix = old if os.path.isabs(old) or "://" in old else os.path.join(output_dir, old)
        for filename in _checkpoint_files(old_prefix):
            tf.io.gfile.remove(filename)
    return prefix


def latest_checkpoint(output_dir: str) -> Optional[str]:
    """The newest complete checkpoint prefix recorded in `output_dir/checkpoint`, or None."""
    if not output_dir or not tf.io.gfile.isdir(output_dir):
        return None
    return tf.train.latest_checkpoint(output_dir)


def checkpoint_global_step(checkpoint_path: str) -> int:
    """The checkpoint's `global_step` value, else the number after the last '-' of its name
    (`model.ckpt-343` -> 343). Raises ValueError when it has neither."""
    path = resolve_checkpoint_path(checkpoint_path)
    reader = tf.train.load_checkpoint(path)
    if reader.has_tensor(GLOBAL_STEP_NAME):
        return int(reader.get_tensor(GLOBAL_STEP_NAME))
    match = re.search(r"-(\d+)$", path)
    if match:
        return int(match.group(1))
    raise ValueError("checkpoint %s has no global_step entry and no -<step> suffix" % path)
