"""Name-based (TF1-compatible) checkpoints: reading, checking, restoring and writing them, and
the checkpoints of a run's output_dir (the state file, the newest intact one).

The names are Google's, from checkpoint_names.py (the one place that knows them). Checkpoints
are TensorFlow's V2 bundle
format (`prefix.index` + `prefix.data-00000-of-00001`) with exactly those keys, so they are
read by the original TF1 code (`tf.train.init_from_checkpoint`, `Saver.restore`), by Hugging
Face's TF converter, and by `tf.train.load_checkpoint` here.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import contextlib  # noqa: E402
import re  # noqa: E402
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402
from google.protobuf import text_format  # noqa: E402
# The `checkpoint` state file's message (the one tf.train.get_checkpoint_state parses).
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState  # noqa: E402

from bert_classifier.core import checkpoint_names  # noqa: E402
from bert_classifier.core import files  # noqa: E402

STATE_FILENAME = "checkpoint"
CHECKPOINT_BASENAME = "model.ckpt"


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


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_DATA_SHARD_RE = re.compile(r"\.data-(\d+)-of-(\d+)$")


def checkpoint_problem(prefix: str) -> Optional[str]:
    """Why the checkpoint `prefix` cannot be restored (a short phrase), or None when it is intact
    (see _open_intact)."""
    return _open_intact(prefix)[0]


def _open_intact(prefix: str):
    """(why the checkpoint `prefix` cannot be restored, a short phrase, or None when it is
    intact; its index reader, or None), the index read once.

    Cheap whatever the checkpoint's size: it reads the index (kilobytes) and the sizes of the
    data files, never the tensors. Intact means: the index parses, every data shard it needs
    exists, and together they hold at least the bytes of the index's numeric tensors (a copy or
    a write that was cut short leaves them smaller). Bits flipped inside a complete file are
    found later, when RestoreV2 checks each tensor's CRC32C (a ValueError naming the checkpoint).
    """
    index = prefix + ".index"
    if not tf.io.gfile.exists(index):
        return "its index file %s is missing" % index, None
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as error:
        return "its index file %s cannot be read (%s)" % (index, _first_line(error)), None
    needed = sum(int(np.prod(shapes[name], dtype=np.int64)) * dtypes[name].size
                 for name in shapes if dtypes[name] != tf.string)
    shard_files = [f for f in tf.io.gfile.glob(prefix + ".data-*-of-*")
                   if _DATA_SHARD_RE.search(f)]
    num_shards = max([int(_DATA_SHARD_RE.search(f).group(2)) for f in shard_files] or [1])
    wanted = ["%s.data-%05d-of-%05d" % (prefix, i, num_shards) for i in range(num_shards)]
    missing = [f for f in wanted if not tf.io.gfile.exists(f)]
    if missing:
        return "its data file %s is missing" % ", ".join(missing), None
    have = sum(tf.io.gfile.stat(f).length for f in wanted)
    if have < needed:
        return ("its data file holds %d bytes but its index lists %d (a truncated copy or an "
                "interrupted write)" % (have, needed)), None
    return None, reader


def open_checkpoint(checkpoint_path: str):
    """(resolved prefix, index reader) of `checkpoint_path` (a prefix or a directory, see
    resolve_checkpoint_path), its index read once; ValueError naming it when it is missing or
    not intact."""
    path = resolve_checkpoint_path(checkpoint_path)
    problem, reader = _open_intact(path)
    if problem:
        raise ValueError("checkpoint %s cannot be read: %s" % (path, problem))
    return path, reader


def check_checkpoint_readable(checkpoint_path: str) -> str:
    """The resolved prefix of `checkpoint_path` (see open_checkpoint)."""
    return open_checkpoint(checkpoint_path)[0]


def _is_slot(name: str, variable_names: Set[str]) -> bool:
    """True for an optimizer slot (`<var>/adam_m`, `<var>/Adam_1`, ...) of one of the
    variable_names: a name one of whose proper prefixes ending before a '/' is a variable."""
    parts = name.split("/")
    return any("/".join(parts[:k]) in variable_names for k in range(1, len(parts)))


def _summarize_names(names: List[str]) -> str:
    """Names joined by ", ", each encoder layer with more than 3 of them as one
    `bert/encoder/layer_N/* (k variables)` entry, so a whole missing layer is one item."""
    groups: Dict[str, List[str]] = {}
    for name in names:
        match = re.match(r"(bert/encoder/layer_\d+/)", name)
        groups.setdefault(match.group(1) if match else name, []).append(name)
    parts = []
    for key, members in groups.items():
        if key.endswith("/") and len(members) > 3:
            parts.append("%s* (%d variables)" % (key, len(members)))
        else:
            parts.extend(members)
    return ", ".join(parts)


def check_checkpoint_fits(checkpoint_path: str, checkpoint_shapes: Mapping[str, List[int]],
                          model_shapes: Mapping[str, List[int]],
                          allow_partial: bool = False, complete: bool = False,
                          described_as: Optional[str] = None) -> List[str]:
    """Compares a checkpoint with a model by Google name; returns the model's names that the
    checkpoint provides (in model order). The one "does this checkpoint fit this model" check:
    initialization, resuming, restoring a trained model, the Python API and the preflight.

    Errors (ValueError naming the checkpoint -- or `described_as` -- and listing the variables):
    with `complete` (a resume or a trained model), any variable of model_shapes the checkpoint
    lacks (a missing classifier head is named as such); a shape that differs (a head for
    another number of labels is named as such); a `bert/` variable of the model that the
    checkpoint lacks; a `bert/` variable of the checkpoint that the model leaves unused (e.g. a
    3-layer bert_config.json against a 6-layer checkpoint). Otherwise optimizer slots
    (`<var>/adam_m`), `global_step`, `cls/*` and a missing classifier head are not errors. With
    allow_partial the missing and unused `bert/` variables are logged as a warning instead
    (shapes must still match).
    """
    described_as = described_as or "checkpoint %s" % checkpoint_path
    if complete:
        lacking = [n for n in model_shapes if n not in checkpoint_shapes]
        if lacking:
            head = (": it has no classifier head (output_weights), so it is a pre-trained "
                    "checkpoint, not one written by run_classifier.py --do_train"
                    if "output_weights" in lacking else "")
            raise ValueError("%s lacks %d variable(s) of this model (%s%s)%s" % (
                described_as, len(lacking), ", ".join(lacking[:5]),
                ", ..." if len(lacking) > 5 else "", head))
    present = [n for n in model_shapes if n in checkpoint_shapes]
    for name in present:
        want, have = list(model_shapes[name]), list(checkpoint_shapes[name])
        if want != have:
            hint = "does bert_config.json / num_labels match the checkpoint?"
            if name == "output_weights" and want[1:] == have[1:]:
                hint = ("the checkpoint has a classifier head for %d labels, but the label list "
                        "has %d; pass the labels the model was trained with" % (have[0], want[0]))
            raise ValueError(
                "Shape of variable %s in %s is %s, but the model's variable has shape %s (%s)"
                % (name, described_as, have, want, hint))
    missing = [n for n in model_shapes if n.startswith("bert/") and n not in checkpoint_shapes]
    variable_names = set(model_shapes) | set(checkpoint_shapes)
    unused = sorted(n for n in checkpoint_shapes if n.startswith("bert/")
                    and n not in model_shapes and not _is_slot(n, variable_names))
    problems = []
    if missing:
        problems.append("checkpoint %s lacks %d BERT variable(s) of the model (is it a BERT "
                        "checkpoint with the same number of layers?): %s"
                        % (checkpoint_path, len(missing), _summarize_names(missing)))
    if unused:
        problems.append("the model would leave %d BERT variable(s) of checkpoint %s unused (does "
                        "bert_config.json describe the checkpoint's model, e.g. its "
                        "num_hidden_layers?): %s"
                        % (len(unused), checkpoint_path, _summarize_names(unused)))
    if problems and not allow_partial:
        raise ValueError("; ".join(problems) + "; pass --allow_partial_checkpoint=true to load "
                         "only the variables that match")
    for problem in problems:
        logging.warning("Partial checkpoint load (allowed): %s", problem)
    return present


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
        try:
            with tf.device("/cpu:0"):
                value = tf.raw_ops.RestoreV2(prefix=path, tensor_names=[name],
                                             shape_and_slices=[""], dtypes=[dtypes[name]])[0]
        except tf.errors.OpError as error:  # DataLoss (CRC mismatch), OutOfRange (truncated)
            raise ValueError("checkpoint %s cannot be read: variable %s: %s"
                             % (path, name, _first_line(error))) from None
        if value.dtype != variable.dtype:
            value = tf.cast(value, variable.dtype)
        with _cross_replica(variable):
            variable.assign(value)
        del value


def log_trainable_variables(name_to_variable: Mapping[str, tf.Variable],
                            initialized: Set[str] = frozenset()) -> None:
    """The original's block: every variable, the ones read from the checkpoint marked
    `*INIT_FROM_CKPT*` (none when training starts from random weights)."""
    logging.info("**** Trainable Variables ****")
    for name, variable in name_to_variable.items():
        init_string = ", *INIT_FROM_CKPT*" if name in initialized else ""
        logging.info("  name = %s, shape = %s%s", name + ":0", variable.shape, init_string)


def init_from_checkpoint(name_to_variable: Mapping[str, tf.Variable],
                         checkpoint_path: str, allow_partial: bool = False,
                         complete: bool = False) -> Set[str]:
    """Initializes variables from a checkpoint by Google name; returns the names assigned.

    Names the checkpoint lacks keep their values (e.g. output_weights from a pre-trained
    checkpoint); slots, global_step and cls/* of the checkpoint are ignored. A checkpoint that
    cannot be read, a shape mismatch, a `bert/` variable of the model the checkpoint lacks and a
    `bert/` variable of the checkpoint the model leaves unused raise ValueError (the last two
    only warn with allow_partial; with `complete` every variable must be there; see
    check_checkpoint_fits). `checkpoint_path` is a prefix or a directory (its latest checkpoint).
    The index is read once.
    """
    path, reader = open_checkpoint(checkpoint_path)
    model_shapes = {n: list(v.shape) for n, v in name_to_variable.items()}
    present = check_checkpoint_fits(path, reader.get_variable_to_shape_map(), model_shapes,
                                    allow_partial, complete)
    _assign_from_checkpoint(path, reader.get_variable_to_dtype_map(), name_to_variable, present)
    initialized = set(present)
    log_trainable_variables(name_to_variable, initialized)
    return initialized


def restore_checkpoint(checkpoint_path: str, name_to_variable: Mapping[str, tf.Variable],
                       with_global_step: bool = False):
    """Restores every variable (model, optimizer slots, global_step...) by name; all must be in
    the checkpoint, with their shapes (check_checkpoint_fits, complete). Returns the resolved
    checkpoint prefix, or (prefix, checkpoint_global_step) with with_global_step. The index is
    read once."""
    path, reader = open_checkpoint(checkpoint_path)
    check_checkpoint_fits(path, reader.get_variable_to_shape_map(),
                          {n: list(v.shape) for n, v in name_to_variable.items()}, complete=True)
    _assign_from_checkpoint(path, reader.get_variable_to_dtype_map(), name_to_variable,
                            name_to_variable.keys())
    return (path, _global_step(path, reader)) if with_global_step else path


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


def _state_paths(output_dir: str) -> Tuple[Optional[str], List[str]]:
    """(latest, all) checkpoint prefixes that `output_dir/checkpoint` names, as paths usable
    from here: tf.train.get_checkpoint_state has already joined a relative entry onto
    output_dir (joining it again doubled a relative --output_dir). (None, []) when there is no
    state file or it cannot be parsed."""
    state = tf.train.get_checkpoint_state(output_dir)
    if state is None:
        return None, []
    return state.model_checkpoint_path or None, [p for p in state.all_model_checkpoint_paths if p]


def _relative(output_dir: str, path: str) -> str:
    """`path` as the state file records it: relative to output_dir (a basename for a checkpoint
    in it), absolute or remote paths as they are."""
    if "://" in path or "://" in output_dir:
        if os.path.dirname(path).rstrip("/") == output_dir.rstrip("/"):
            return os.path.basename(path)
        return path
    if os.path.normpath(os.path.dirname(path) or ".") == os.path.normpath(output_dir):
        return os.path.basename(path)
    return path if os.path.isabs(path) else os.path.relpath(path, output_dir)


def _write_state_file(output_dir: str, latest: str, all_paths: List[str]) -> None:
    """Replaces `output_dir/checkpoint` atomically (write a temporary file, then rename)."""
    state = CheckpointState(model_checkpoint_path=latest, all_model_checkpoint_paths=all_paths)
    files.write_file(os.path.join(output_dir, STATE_FILENAME),
                     text_format.MessageToString(state))


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
    if checkpoint_names.GLOBAL_STEP_NAME not in values:
        values[checkpoint_names.GLOBAL_STEP_NAME] = np.array(int(global_step), dtype=np.int64)
    write_checkpoint(prefix, values)

    latest, listed = _state_paths(output_dir)
    kept = [_relative(output_dir, p) for p in (listed or ([latest] if latest else []))]
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


_STEP_SUFFIX_RE = re.compile(r"-(\d+)$")
# (output_dir, unusable, used) fallbacks already warned about: preflight, training, eval and
# predict each look for the latest checkpoint, the warning is given once.
_WARNED_FALLBACKS: Set[tuple] = set()


def _step_of(prefix: str) -> int:
    match = _STEP_SUFFIX_RE.search(prefix)
    return int(match.group(1)) if match else -1


def checkpoint_candidates(output_dir: str) -> List[str]:
    """The checkpoint prefixes `output_dir` holds, newest (highest step) first: those its
    `checkpoint` state file names and every `model.ckpt-N` with a file on disk (an index or a
    data shard), whether intact or not."""
    if not output_dir or not tf.io.gfile.isdir(output_dir):
        return []
    latest, listed = _state_paths(output_dir)
    prefixes = ([latest] if latest else []) + listed
    pattern = os.path.join(output_dir, CHECKPOINT_BASENAME + "-*")
    for filename in tf.io.gfile.glob(pattern + ".index") + tf.io.gfile.glob(pattern + ".data-*"):
        prefix = re.sub(r"\.(index|data-\d+-of-\d+)$", "", filename)
        if prefix != filename and _STEP_SUFFIX_RE.search(prefix):
            prefixes.append(prefix)
    unique = list(dict.fromkeys(prefixes))  # keeps the state file's latest first among ties
    return sorted(unique, key=_step_of, reverse=True)


def latest_checkpoint(output_dir: str) -> Optional[str]:
    """The newest intact checkpoint prefix in `output_dir`, or None when it holds none at all.

    When the newest one cannot be restored (index missing, data file truncated: see
    checkpoint_problem) the newest intact one is returned, with a warning naming both. When
    output_dir holds checkpoints but none is intact, ValueError names them and what to do: a run
    never silently starts again from the initial checkpoint over a run's checkpoints.
    """
    candidates = checkpoint_candidates(output_dir)
    problems = []
    for prefix in candidates:
        problem = checkpoint_problem(prefix)
        if problem is None:
            if problems:
                key = (output_dir, tuple(problems), prefix)
                if key not in _WARNED_FALLBACKS:
                    _WARNED_FALLBACKS.add(key)
                    logging.warning("Checkpoint %s cannot be restored (%s); using %s, the newest "
                                    "intact checkpoint in %s", problems[0][0], problems[0][1],
                                    prefix, output_dir)
            return prefix
        problems.append((prefix, problem))
    if problems:
        raise ValueError(
            "%s holds checkpoints but none can be restored (%s). Put the missing files back, or "
            "move model.ckpt-* and `checkpoint` out of %s to train from the start again"
            % (output_dir, "; ".join("%s: %s" % (os.path.basename(p), why) for p, why in problems),
               output_dir))
    return None


def checkpoint_global_step(checkpoint_path: str) -> int:
    """The checkpoint's `global_step` value, else the number after the last '-' of its name
    (`model.ckpt-343` -> 343). Raises ValueError when it has neither or cannot be read."""
    return _global_step(*open_checkpoint(checkpoint_path))


def _global_step(path: str, reader) -> int:
    if reader.has_tensor(checkpoint_names.GLOBAL_STEP_NAME):
        try:
            return int(reader.get_tensor(checkpoint_names.GLOBAL_STEP_NAME))
        except tf.errors.OpError as error:
            raise ValueError("checkpoint %s cannot be read: %s: %s" % (
                path, checkpoint_names.GLOBAL_STEP_NAME, _first_line(error))) from None
    match = _STEP_SUFFIX_RE.search(path)
    if match:
        return int(match.group(1))
    raise ValueError("checkpoint %s has no global_step entry and no -<step> suffix" % path)
