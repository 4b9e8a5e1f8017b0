"""The TFRecord input pipeline (the original's file_based_input_fn_builder): repeat, shuffle and
drop_remainder for training, split over replicas so that a global batch is the same examples
whatever the replica count; the batch-length rule (cut a batch to its longest example, rounded up
to `length_multiple`) and length-bucketed batches.
"""

import os
from typing import Callable, Dict, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from bert_classifier.workflow import features  # noqa: E402


def input_fn(input_file: str, seq_length: int, global_batch_size: int, is_training: bool,
             drop_remainder: bool, shuffle_buffer_size: int = 100,
             seed: Optional[int] = None, length_multiple: int = 0,
             bucket_by_length: bool = False
             ) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """The original's file_based_input_fn_builder for `distribute_datasets_from_function`.

    Every input pipeline reads the same stream of global batches (training: repeat, then
    shuffle with the original's small buffer, then batch) and keeps its contiguous slice of
    each, cut into per-replica batches. So the examples of global step k are the same for one
    device, N mirrored replicas or N workers (given a seed), which is what makes the
    distributed runs comparable with a single-device run.

    length_multiple > 0 (CPU/GPU only: a TPU needs static shapes): each global batch is cut to
    its longest example rounded up to that multiple (cut_to_longest), before it is split, so
    every replica of a step gets the same length. bucket_by_length (training only): global
    batches are formed from examples of similar length (length_bucketed_batches).

    Returns: fn(input_context) -> dataset of dicts input_ids/input_mask/segment_ids [b, S]
      int32 (S = seq_length, or at most seq_length with length_multiple), label_ids [b] int32,
      is_real_example [b] int32.
    """
    name_to_features = features.name_to_features(seq_length)

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = ctx.get_per_replica_batch_size(global_batch_size)
        per_pipeline = global_batch_size // ctx.num_input_pipelines
        d = tf.data.TFRecordDataset(input_file)
        if is_training:
            d = d.repeat()
            d = d.shuffle(buffer_size=shuffle_buffer_size, seed=seed)
        d = d.map(lambda r: features.decode_record(r, name_to_features),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if is_training and bucket_by_length:
            d = length_bucketed_batches(d, global_batch_size, seed=seed)
        else:
            d = d.batch(global_batch_size, drop_remainder=drop_remainder)
        if length_multiple:
            d = d.map(lambda batch: cut_to_longest(batch, length_multiple, seq_length))
        if ctx.num_input_pipelines > 1 or per_replica != global_batch_size:
            start = ctx.input_pipeline_id * per_pipeline
            d = d.map(lambda batch: {k: v[start:start + per_pipeline] for k, v in batch.items()})
            d = d.unbatch().batch(per_replica, drop_remainder=drop_remainder)
        options = tf.data.Options()
        # The slicing above already gives each worker its share; auto-sharding would re-shard.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        options.deterministic = True
        return d.with_options(options).prefetch(tf.data.AUTOTUNE)

    return dataset_fn


# Features cut by cut_to_longest: the ones with a position axis.
_POSITION_FEATURES = ("input_ids", "input_mask", "segment_ids")
# length_bucketed_batches sorts windows of this many global batches by length.
BUCKET_WINDOW_BATCHES = 16


# --length_multiple's default, and the rule's for a model folder that records none
# (bench/README.md, "Length-aware batches").
DEFAULT_LENGTH_MULTIPLE = 16


def batch_length(longest, length_multiple: int, max_length):
    """The batch-length rule, the one used by training, eval, predict, the Python API and the
    exported model: a batch whose longest example has `longest` tokens is run at length L =
    longest rounded up to a multiple of length_multiple, at most max_length, at least
    min(length_multiple, max_length); length_multiple 0: always max_length (the original).
    Rounding bounds the distinct shapes (max_length / length_multiple), each of which XLA
    compiles once. Python/NumPy ints give an int, tensors an int32 scalar tensor."""
    if not length_multiple:
        return max_length
    rounded = (longest + length_multiple - 1) // length_multiple * length_multiple
    if isinstance(rounded, tf.Tensor):
        return tf.clip_by_value(rounded, tf.minimum(length_multiple, max_length), max_length)
    return int(min(max(rounded, min(length_multiple, max_length)), max_length))


def cut_to_longest(batch: Dict[str, tf.Tensor], length_multiple: int,
                   max_length) -> Dict[str, tf.Tensor]:
    """The batch with its [B, S] features cut to [B, L], L = batch_length of its longest
    example (input_mask sum). The positions cut off are padding (mask 0) in every row, which
    BERT's attention gives exp(-10000) ~ 0 weight, so the model's outputs for the kept
    positions are the same up to float rounding."""
    longest = tf.reduce_max(tf.reduce_sum(batch["input_mask"], axis=1))
    length = batch_length(longest, length_multiple, max_length)
    return {key: value[:, :length] if key in _POSITION_FEATURES else value
            for key, value in batch.items()}


def length_bucketed_batches(examples: tf.data.Dataset, global_batch_size: int,
                            seed: Optional[int] = None,
                            window_batches: int = BUCKET_WINDOW_BATCHES) -> tf.data.Dataset:
    """Global batches of examples of similar length, from an endless (repeated, shuffled)
    stream of examples: each window of window_batches * global_batch_size consecutive examples
    is sorted by length (stable) and cut into window_batches batches, which come out in a
    random order (from seed and the window's index: the same in every input pipeline)."""
    window = window_batches * global_batch_size

    def sort_window(index, w):
        order = tf.argsort(tf.reduce_sum(w["input_mask"], axis=1), stable=True)
        if seed is None:
            batch_order = tf.random.shuffle(tf.range(window_batches))
        else:
            batch_order = tf.argsort(tf.random.stateless_uniform(
                [window_batches], seed=tf.stack([tf.constant(seed, tf.int64), index])))
        order = tf.reshape(tf.gather(tf.reshape(order, [window_batches, global_batch_size]),
                                     batch_order), [-1])
        return {key: tf.reshape(tf.gather(value, order),
                                [window_batches, global_batch_size, *value.shape[1:]])
                for key, value in w.items()}

    windows = examples.batch(window, drop_remainder=True).enumerate()
    return windows.map(sort_window).unbatch()


def check_batch_size(flag_name: str, batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """Batch-size flags are global (as the original's): they must split evenly over replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size <= 0 or batch_size % replicas:
        raise ValueError(f"--{flag_name}={batch_size}: expected a positive multiple of the "
                         f"{replicas} replicas in sync (the batch size is global)")
