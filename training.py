"""The training loop, evaluation and prediction of run_classifier, on tf.distribute.

This is the TF2 replacement of the original's TPUEstimator + model_fn_builder +
file_based_input_fn_builder, written once for every script:

- `create_strategy`: one device (the original's CPU/GPU behaviour), all local GPUs
  (MirroredStrategy), several machines (MultiWorkerMirroredStrategy via TF_CONFIG) or a TPU.
- `input_fn`: the original's TFRecord pipeline (repeat, shuffle, drop_remainder for training),
  split over replicas so that a global batch is the same examples whatever the replica count.
- `train`: a custom loop running `iterations_per_loop` steps per host call, Google's
  AdamWeightDecay on the cross-replica sum of gradients clipped at global norm 1.0,
  checkpoints in Google's names every `save_checkpoints_steps`, resume from the latest.
- `evaluate` / `predict`: restore the latest checkpoint of output_dir (else init_checkpoint),
  as the Estimator did, and compute the original's metrics and probabilities.
"""

import dataclasses
import json
import os
import socket
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Union

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

import checkpoints  # noqa: E402
import features  # noqa: E402
import fused_ops  # noqa: E402
import kill_points  # noqa: E402
import metrics  # noqa: E402
import modeling  # noqa: E402
import optimization  # noqa: E402
import precision  # noqa: E402
from progress import ProgressBar  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Devices and strategies
# ---------------------------------------------------------------------------------------------
def configure_cpu_devices(num_cpu_devices: int) -> None:
    """Splits the CPU into `num_cpu_devices` logical devices. Must run before any TF op."""
    if num_cpu_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)


def _check_tpu_address_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A grpc:// TPU address that nobody answers makes TPU initialization hang forever."""
    host_port = address[len("grpc://"):] if address.startswith("grpc://") else address
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as err:
        raise ValueError(
            f"--tpu_name={address}: no TPU answers at {host_port} ({err}); expected the "
            "grpc://ip:8470 address of a running TPU node") from None


def create_tpu_strategy(tpu_name: Optional[str], tpu_zone: Optional[str] = None,
                        gcp_project: Optional[str] = None) -> tf.distribute.Strategy:
    """A TPUStrategy for a local TPU VM (tpu_name empty or 'local'), a TPU node name, or a
    grpc:// address. Without a TPU it raises a one-line ValueError, never hangs."""
    name = (tpu_name or "").strip()
    resolver_name = "local" if name in ("", "local") else name
    if resolver_name.startswith("grpc://"):
        _check_tpu_address_reachable(resolver_name)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=resolver_name, zone=tpu_zone, project=gcp_project)
        if resolver_name != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as err:  # The resolver/initializer raise many types (URLError, NotFound).
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"--use_tpu=True but no TPU could be used (--tpu_name={tpu_name or ''!r}): "
            f"{first_line}. On a Colab/Cloud TPU VM install tensorflow and tensorflow-tpu of the "
            "same version and pass --tpu_name=local; for a TPU node pass its name or "
            "grpc://ip:8470.") from None
    if not tf.config.list_logical_devices("TPU"):
        raise ValueError(f"--use_tpu=True but no TPU device is visible (--tpu_name={name!r})")
    return tf.distribute.TPUStrategy(resolver)


def create_strategy(distribution_strategy: str = "one_device", use_tpu: bool = False,
                    tpu_name: Optional[str] = None, tpu_zone: Optional[str] = None,
                    gcp_project: Optional[str] = None) -> tf.distribute.Strategy:
    """The strategy for the flags: TPU if use_tpu, else one_device / mirrored /
    multi_worker_mirrored (TF_CONFIG describes the cluster)."""
    if use_tpu:
        return create_tpu_strategy(tpu_name, tpu_zone, gcp_project)
    if distribution_strategy == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if distribution_strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if distribution_strategy == "multi_worker_mirrored":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--distribution_strategy=multi_worker_mirrored needs the TF_CONFIG "
                             "environment variable describing the cluster and this task")
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"--distribution_strategy={distribution_strategy}: expected one_device, "
                     "mirrored or multi_worker_mirrored")


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public class name of a strategy (TF's own classes are private subclasses)."""
    for cls, name in ((tf.distribute.TPUStrategy, "TPUStrategy"),
                      (tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
                      (tf.distribute.MirroredStrategy, "MirroredStrategy"),
                      (tf.distribute.OneDeviceStrategy, "OneDeviceStrategy")):
        if isinstance(strategy, cls):
            return name
    return type(strategy).__name__


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief_task(task_type: Optional[str], task_id: Optional[int],
                  cluster: Dict[str, object]) -> bool:
    """True for the one task of a TF_CONFIG cluster that writes into output_dir: the 'chief'
    task when the cluster has one, else worker 0 (no task type: a single process)."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one task that writes into output_dir (worker 0, or the 'chief' task)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    return is_chief_task(resolver.task_type, resolver.task_id,
                         resolver.cluster_spec().as_dict())


# ---------------------------------------------------------------------------------------------
# Input pipeline
# ---------------------------------------------------------------------------------------------
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


def cut_to_longest(batch: Dict[str, tf.Tensor], length_multiple: int,
                   max_length) -> Dict[str, tf.Tensor]:
    """The batch with its [B, S] features cut to [B, L]: L = the longest example (input_mask
    sum) rounded up to a multiple of length_multiple, at most max_length, at least
    min(length_multiple, max_length). The positions cut off are padding (mask 0) in every
    row, which BERT's attention gives exp(-10000) ~ 0 weight, so the model's outputs for the
    kept positions are the same up to float rounding. Rounding bounds the distinct shapes
    (max_length / length_multiple), each of which XLA compiles once."""
    longest = tf.reduce_max(tf.reduce_sum(batch["input_mask"], axis=1))
    rounded = (longest + length_multiple - 1) // length_multiple * length_multiple
    length = tf.clip_by_value(rounded, tf.minimum(length_multiple, max_length), max_length)
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


# ---------------------------------------------------------------------------------------------
# Model state
# ---------------------------------------------------------------------------------------------
def build_classifier(bert_config: modeling.BertConfig, num_labels: int,
                     strategy: tf.distribute.Strategy) -> modeling.BertClassifier:
    """A BertClassifier with all variables created under the strategy's scope."""
    with strategy.scope():
        model = modeling.BertClassifier(bert_config, num_labels)
        # Variables only: an eager dummy forward pass would also compile every fused kernel
        # (fused_ops.py) for a shape no later step uses.
        model.build_variables()
    return model


def initialize_model(name_to_variable: Dict[str, tf.Variable],
                     init_checkpoint: Optional[str], allow_partial: bool = False) -> None:
    """Loads what `init_checkpoint` holds into the model (the original's init_from_checkpoint;
    a checkpoint that does not fit the model is an error unless allow_partial)."""
    if init_checkpoint:
        checkpoints.init_from_checkpoint(name_to_variable, init_checkpoint, allow_partial)
    else:
        checkpoints.log_trainable_variables(name_to_variable)


class TrainHook(Protocol):
    """What train() calls between host calls (run_classifier's evaluation during training is
    one, train_eval.TrainingEvaluator). Every worker calls it at the same steps; its answers
    must be the same on every worker (a multi-worker hook agrees through a collective)."""

    def begin(self, model: modeling.BertClassifier, name_to_variable: Dict[str, tf.Variable],
              global_step: int) -> bool:
        """Before the first step of this run (after any resume); True: do not train on."""

    def steps_until_due(self, global_step: int) -> int:
        """How many steps may run before the hook wants to be called again (>= 1)."""

    def after_steps(self, global_step: int, checkpoint_saved: bool, final: bool) -> bool:
        """After the host call that reached global_step; True: stop training here."""


@dataclasses.dataclass
class TrainConfig:
    """What `train` needs beyond the model config (the original's flags of the same names)."""
    output_dir: str
    train_file: str
    max_seq_length: int
    train_batch_size: int
    learning_rate: float
    num_train_steps: int
    num_warmup_steps: int
    init_checkpoint: Optional[str] = None
    save_checkpoints_steps: int = 1000
    iterations_per_loop: int = 1000
    keep_checkpoint_max: int = 5
    log_step_count_steps: int = 100
    shuffle_buffer_size: int = 100
    seed: Optional[int] = None
    progress_bar: Optional[bool] = None
    allow_partial_checkpoint: bool = False
    hook: Optional[TrainHook] = None  # e.g. evaluation during training
    # Speed and loss options of this port (the defaults are the original's behaviour).
    length_multiple: int = 0  # cut batches to their longest example (0: max_seq_length)
    bucket_by_length: bool = False
    gradient_accumulation_steps: int = 1
    class_weights: Optional[List[float]] = None
    adam_bias_correction: bool = False  # standard Adam's moments (optimization.py)


def make_train_loop(model: modeling.BertClassifier, optimizer: optimization.AdamWeightDecay,
                    strategy: tf.distribute.Strategy, num_labels: int, global_batch_size: int,
                    jit_compile: bool = False, gradient_accumulation_steps: int = 1,
                    class_weights: Optional[Sequence[float]] = None,
                    loss_scaling: Optional[precision.LossScaling] = None,
                    length_multiple: int = 0):
    """The compiled host call of the training loop: `loop(iterator, num_steps)` runs num_steps
    training steps on the device(s) and returns (mean loss, last step's loss), float32 scalars.

    Each step: forward with dropout, the original's loss (mean over the global batch), the
    gradients summed over replicas, clipped at global norm 1.0, AdamWeightDecay applied.
    jit_compile XLA-compiles the per-replica step (the host loop and iterator stay as they are).

    Additions (the defaults give the step above, op for op):
    gradient_accumulation_steps N > 1: each replica's batch is run as N micro-batches in turn
      (accumulate_gradients), their gradients summed before the cross-replica sum and the clip:
      the same update as the whole batch, with one micro-batch's activations in memory (each
      micro-batch cut to its own longest example when length_multiple > 0 and not jit_compile).
    class_weights [num_labels]: each example's loss is multiplied by its label's weight (still
      divided by the global batch size).
    loss_scaling (float16): the loss is scaled, the summed gradients unscaled, a non-finite step
      skipped by the LossScaleOptimizer and counted in loss_scaling's counters.
    """
    trainable = [v for v in model.trainable_variables]
    weights = None if class_weights is None else tf.constant(list(class_weights), tf.float32)
    apply_with = optimizer if loss_scaling is None else loss_scaling.optimizer
    micro_length_multiple = 0 if jit_compile else length_multiple

    def loss_and_gradients(batch, scale):
        with tf.GradientTape() as tape:
            logits = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                           training=True)
            per_example_loss = modeling.classifier_loss(logits, batch["label_ids"], num_labels)
            if weights is not None:
                per_example_loss *= tf.gather(weights, batch["label_ids"])
            # Each replica's share of the global mean, so the cross-replica sum is the mean.
            loss = tf.reduce_sum(per_example_loss) / global_batch_size
            scaled_loss = loss if scale is None else loss * scale
        return loss, tape.gradient(scaled_loss, trainable)

    def step_fn(batch):
        # Read once per step: the LossScaleOptimizer updates the scale when it applies.
        scale = None if loss_scaling is None else loss_scaling.loss_scale()
        if gradient_accumulation_steps > 1:
            loss, grads = accumulate_gradients(
                lambda micro_batch: loss_and_gradients(micro_batch, scale), batch,
                gradient_accumulation_steps, trainable, micro_length_multiple)
        else:
            loss, grads = loss_and_gradients(batch, scale)
        global_norm = optimization.all_reduce_clip_and_apply(
            apply_with, grads, trainable, clip_norm=1.0, loss_scale=scale)
        return loss, tf.logical_not(tf.math.is_finite(global_norm))

    # AutoGraph converts the loop below (tf.range); the step itself has no Python control flow
    # on tensors, and converting the model's code took about a second of every trace.
    step = _maybe_xla(tf.autograph.experimental.do_not_convert(step_fn), jit_compile, strategy)

    @tf.function
    def train_loop(iterator, num_steps):
        total = tf.constant(0.0)
        last = tf.constant(0.0)
        for _ in tf.range(num_steps):
            loss, skipped = strategy.run(step, args=(next(iterator),))
            last = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
            total += last
            if loss_scaling is not None:
                # The gradients were summed over replicas first: every replica agrees.
                loss_scaling.record(strategy.experimental_local_results(skipped)[0])
        return total / tf.cast(num_steps, tf.float32), last

    return train_loop


def _skipping_steps(dataset_fn, global_steps: int):
    """dataset_fn with the batches of the first `global_steps` global steps left out: a resumed
    run reads on from where the checkpointed one was (with a seed, the very same batches an
    uninterrupted run reads), instead of starting the data over as the Estimator did."""
    if not global_steps:
        return dataset_fn

    def skipping_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        # Each pipeline yields one per-replica batch per local replica and global step.
        replicas_per_pipeline = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        return dataset_fn(ctx).skip(global_steps * replicas_per_pipeline)
    return skipping_fn


def accumulate_gradients(loss_and_gradients: Callable, batch: Dict[str, tf.Tensor],
                         num_micro_batches: int, variables: List[tf.Variable],
                         length_multiple: int = 0):
    """(loss, gradients) of a replica's batch [B, S] computed num_micro_batches times on
    B / num_micro_batches consecutive examples, one after another (a while loop of one
    parallel iteration, so one micro-batch's activations are alive at a time), and summed.

    loss_and_gradients(micro_batch) -> (loss, gradients of `variables`) where the loss is
    already divided by the global batch size, so the sums are the whole batch's. Gradients
    come back dense (None where the variable gets none). length_multiple > 0 cuts each
    micro-batch to its own longest example (cut_to_longest).
    """
    def fold(t):  # [B, ...] -> [num_micro_batches, B / num_micro_batches, ...]
        return tf.reshape(t, tf.concat([[num_micro_batches, -1], tf.shape(t)[1:]], axis=0))

    folded = {key: fold(value) for key, value in batch.items()}
    has_gradient = []  # filled while the loop body is traced (once)

    def body(i, loss_sum, gradient_sums):
        micro_batch = {key: value[i] for key, value in folded.items()}
        if length_multiple:
            micro_batch = cut_to_longest(micro_batch, length_multiple,
                                         tf.shape(micro_batch["input_ids"])[1])
        loss, grads = loss_and_gradients(micro_batch)
        has_gradient[:] = [g is not None for g in grads]
        return i + 1, loss_sum + loss, [
            total if g is None else total + tf.convert_to_tensor(g)
            for total, g in zip(gradient_sums, grads)]

    zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
    _, loss, gradients = tf.while_loop(
        lambda i, *_: i < num_micro_batches, body, [tf.constant(0), tf.constant(0.0), zeros],
        parallel_iterations=1)
    return loss, [g if present else None for g, present in zip(gradients, has_gradient)]


def check_gradient_accumulation(train_batch_size: int, gradient_accumulation_steps: int,
                                num_replicas: int) -> int:
    """Raises a one-line ValueError naming the flags unless gradient_accumulation_steps >= 1
    divides the per-replica batch; returns the micro-batch size (examples per replica)."""
    per_replica = train_batch_size // max(num_replicas, 1)
    if gradient_accumulation_steps < 1 or per_replica % gradient_accumulation_steps:
        raise ValueError(
            f"--gradient_accumulation_steps={gradient_accumulation_steps} must be a positive "
            f"divisor of the per-replica batch (--train_batch_size={train_batch_size} over "
            f"{num_replicas} replica(s) = {per_replica} examples)")
    return per_replica // gradient_accumulation_steps


def class_weights_from_flag(value: Optional[str], label_list: Sequence[str],
                            train_labels: Optional[Sequence[str]] = None
                            ) -> Optional[List[float]]:
    """--class_weights as one float per label (in label_list order), or None when unset.

    "auto": inverse frequency in train_labels, w_c = N / (C * n_c) for the C labels that occur
    (N examples, n_c with label c; 0 for a label that never occurs), so the weights average 1
    over the training examples. "w0,w1,...": one non-negative number per label, not all zero.
    Anything else raises a one-line ValueError naming the flag.
    """
    if value is None or not value.strip():
        return None
    if value.strip().lower() == "auto":
        if not train_labels:
            raise ValueError("--class_weights=auto needs training examples (--do_train=true)")
        counts = {label: 0 for label in label_list}
        for label in train_labels:
            counts[label] += 1
        present = sum(1 for n in counts.values() if n)
        total = len(train_labels)
        return [total / (present * counts[label]) if counts[label] else 0.0
                for label in label_list]
    parts = value.split(",")
    try:
        weights = [float(part) for part in parts]
    except ValueError:
        raise ValueError(f"--class_weights={value}: expected 'auto' or {len(label_list)} "
                         f"comma-separated numbers (one per label: {', '.join(label_list)})"
                         ) from None
    if len(weights) != len(label_list):
        raise ValueError(f"--class_weights={value}: {len(weights)} weights for "
                         f"{len(label_list)} labels ({', '.join(label_list)}); expected one "
                         "per label, in that order")
    if any(not np.isfinite(w) or w < 0 for w in weights) or not any(weights):
        raise ValueError(f"--class_weights={value}: expected finite weights >= 0, not all 0")
    return weights


def _steps_per_host_call(cfg: TrainConfig, strategy: tf.distribute.Strategy,
                         progress_shown: bool) -> int:
    """Steps per call of the compiled loop. On TPU: iterations_per_loop, as TPUEstimator (a host
    round trip is expensive there). On CPU/GPU, where the original's Estimator ignored the flag
    and a round trip costs about a millisecond, calls are also cut at every logging interval,
    and at every step while a progress bar is drawn, so the log and the bar stay live."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return cfg.iterations_per_loop
    return max(1, min(cfg.iterations_per_loop, cfg.log_step_count_steps,
                      1 if progress_shown else cfg.log_step_count_steps))


def _log_batching(cfg: TrainConfig, replicas: int) -> None:
    """Says how training batches are formed when this port's options change it."""
    if cfg.length_multiple:
        logging.info("Training batches cut to their longest example, rounded up to a multiple "
                     "of %d (--length_multiple)%s", cfg.length_multiple,
                     ", of examples of similar length (--bucket_by_length)"
                     if cfg.bucket_by_length else "")
    if cfg.gradient_accumulation_steps > 1:
        logging.info("Each step accumulates %d micro-batches of %d examples per replica "
                     "(--gradient_accumulation_steps)", cfg.gradient_accumulation_steps,
                     cfg.train_batch_size // replicas // cfg.gradient_accumulation_steps)


def _check_skipped_steps(loss_scaling: precision.LossScaling, step: int) -> None:
    """Logs the float16 steps the loss scaler skipped since the last call; raises
    FloatingPointError when MAX_CONSECUTIVE_SKIPPED_STEPS steps in a row were skipped."""
    skipped = int(loss_scaling.skipped_steps.numpy())
    logged = loss_scaling.logged_skipped_steps
    if skipped > logged:
        logging.warning("float16: %d step(s) skipped for non-finite gradients (%d in all, "
                        "loss scale now %g), global_step %d", skipped - logged, skipped,
                        float(loss_scaling.loss_scale()), step)
        loss_scaling.logged_skipped_steps = skipped
    in_a_row = int(loss_scaling.consecutive_skipped_steps.numpy())
    if in_a_row >= precision.MAX_CONSECUTIVE_SKIPPED_STEPS:
        raise FloatingPointError(
            f"training loss or gradients not finite in the last {in_a_row} steps at any loss "
            f"scale (--precision=mixed_float16), at global_step {step}")


def train(bert_config: modeling.BertConfig, num_labels: int, cfg: TrainConfig,
          strategy: tf.distribute.Strategy) -> int:
    """Fine-tunes a BertClassifier; returns the global step reached.

    Resumes from the latest checkpoint in cfg.output_dir when there is one (the original's
    Estimator behaviour, including "Skipping training since max_steps has already saved.").
    """
    chief = is_chief(strategy)
    check_batch_size("train_batch_size", cfg.train_batch_size, strategy)
    check_gradient_accumulation(cfg.train_batch_size, cfg.gradient_accumulation_steps,
                                strategy.num_replicas_in_sync)
    if cfg.seed is not None:
        tf.random.set_seed(cfg.seed)
    model = build_classifier(bert_config, num_labels, strategy)
    name_to_variable = checkpoints.variables_by_checkpoint_name(model)
    with strategy.scope():
        optimizer = optimization.create_optimizer(
            cfg.learning_rate, cfg.num_train_steps, cfg.num_warmup_steps,
            name_to_variable=name_to_variable, bias_correction=cfg.adam_bias_correction)
        optimizer.create_slots(list(name_to_variable.values()))
        # float16 compute: dynamic loss scaling (precision.py); its state is not checkpointed.
        loss_scaling = (precision.LossScaling(optimizer)
                        if precision.compute_dtype(model) == tf.float16 else None)
    state = dict(name_to_variable)
    state.update(optimizer.slot_variables_by_checkpoint_name(name_to_variable))
    state["global_step"] = optimizer.iterations

    latest = checkpoints.latest_checkpoint(cfg.output_dir)
    if latest:
        checkpoints.restore_checkpoint(latest, state)
        logging.info("Restored model and optimizer state from %s (global_step = %d)", latest,
                     int(optimizer.iterations.numpy()))
    else:
        initialize_model(name_to_variable, cfg.init_checkpoint, cfg.allow_partial_checkpoint)

    step = int(optimizer.iterations.numpy())
    if step >= cfg.num_train_steps:
        logging.info("Skipping training since max_steps has already saved.")
        return step
    if step:
        logging.info("Resuming training at global_step %d of %d", step, cfg.num_train_steps)
    if cfg.hook is not None and cfg.hook.begin(model, name_to_variable, step):
        return step

    dataset_fn = input_fn(
        cfg.train_file, cfg.max_seq_length, cfg.train_batch_size, is_training=True,
        drop_remainder=True, shuffle_buffer_size=cfg.shuffle_buffer_size, seed=cfg.seed,
        length_multiple=cfg.length_multiple, bucket_by_length=cfg.bucket_by_length)
    dataset = strategy.distribute_datasets_from_function(_skipping_steps(dataset_fn, step))
    iterator = iter(dataset)
    _log_batching(cfg, strategy.num_replicas_in_sync)
    train_loop = make_train_loop(
        model, optimizer, strategy, num_labels, cfg.train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        class_weights=cfg.class_weights, loss_scaling=loss_scaling,
        length_multiple=cfg.length_multiple)

    writer = tf.summary.create_file_writer(cfg.output_dir) if chief else None
    save_dir = cfg.output_dir if chief else tempfile.mkdtemp(prefix="worker_ckpt_")
    bar = ProgressBar(cfg.num_train_steps, "train", enabled=cfg.progress_bar if chief else False,
                      unit="steps", initial=step)
    schedule = optimizer.learning_rate_schedule
    steps_per_call = _steps_per_host_call(cfg, strategy, bar.enabled)
    last_log_step, last_log_time = step, time.monotonic()
    while step < cfg.num_train_steps:
        next_save = (step // cfg.save_checkpoints_steps + 1) * cfg.save_checkpoints_steps
        n = min(steps_per_call, cfg.num_train_steps - step, next_save - step)
        if cfg.hook is not None:
            n = min(n, cfg.hook.steps_until_due(step))
        mean_loss, last_loss = train_loop(iterator, tf.constant(n, tf.int32))
        step = int(optimizer.iterations.numpy())
        mean_loss, last_loss = float(mean_loss), float(last_loss)
        if loss_scaling is not None:
            _check_skipped_steps(loss_scaling, step)
        elif not np.isfinite(last_loss):
            raise FloatingPointError(f"training loss became {last_loss} at global_step {step}")
        bar.update(n, loss=last_loss)
        if step - last_log_step >= cfg.log_step_count_steps or step == cfg.num_train_steps:
            now = time.monotonic()
            logging.info("loss = %s, step = %d (%.3f sec)", np.float32(last_loss), step,
                         now - last_log_time)
            logging.info("global_step/sec: %g", (step - last_log_step) / max(now - last_log_time, 1e-9))
            last_log_step, last_log_time = step, now
        if writer is not None:
            with writer.as_default(step=step):
                tf.summary.scalar("loss", mean_loss)
                tf.summary.scalar("learning_rate", float(schedule(step - 1)))
        kill_points.reached("train_step")
        saved = step % cfg.save_checkpoints_steps == 0 or step == cfg.num_train_steps
        if saved:
            path = checkpoints.save_checkpoint(save_dir, state, step, cfg.keep_checkpoint_max)
            if chief:
                logging.info("Saving checkpoints for %d into %s.", step, path)
            kill_points.reached("checkpoint_saved")
        if cfg.hook is not None and cfg.hook.after_steps(step, saved,
                                                         step == cfg.num_train_steps):
            logging.info("Stopping early at global_step %d of %d.", step, cfg.num_train_steps)
            if not saved:  # the step training stopped at is the final checkpoint
                path = checkpoints.save_checkpoint(save_dir, state, step, cfg.keep_checkpoint_max)
                if chief:
                    logging.info("Saving checkpoints for %d into %s.", step, path)
            break
    bar.close()
    if writer is not None:
        writer.close()
    if not chief:
        tf.io.gfile.rmtree(save_dir)
    logging.info("Loss for final step: %s.", np.float32(last_loss))
    return step


# ---------------------------------------------------------------------------------------------
# Evaluation and prediction
# ---------------------------------------------------------------------------------------------
def load_for_inference(bert_config: modeling.BertConfig, num_labels: int, output_dir: str,
                       init_checkpoint: Optional[str], strategy: tf.distribute.Strategy,
                       allow_partial_checkpoint: bool = False):
    """A classifier restored as the Estimator did: the latest checkpoint in output_dir, else
    init_checkpoint (logging which). Returns (model, checkpoint_path, global_step)."""
    model = build_classifier(bert_config, num_labels, strategy)
    name_to_variable = checkpoints.variables_by_checkpoint_name(model)
    latest = checkpoints.latest_checkpoint(output_dir)
    if latest:
        checkpoints.restore_checkpoint(latest, name_to_variable)
        global_step = checkpoints.checkpoint_global_step(latest)
        logging.info("Restoring parameters from %s", latest)
        return model, latest, global_step
    logging.info("Could not find trained model in model_dir: %s, running initialization from "
                 "%s", output_dir, init_checkpoint or "random weights")
    initialize_model(name_to_variable, init_checkpoint, allow_partial_checkpoint)
    return model, init_checkpoint, 0


def _distributed_batches(strategy, input_file, seq_length, batch_size, drop_remainder,
                         num_batches: Optional[int] = None, length_multiple: int = 0):
    """The file's eval/predict batches in order (each cut to its longest example, rounded up to
    length_multiple, when that is > 0). With num_batches, exactly that many, read from the file
    repeated: the loop never reaches the end of the data, so TensorFlow does not log "Local
    rendezvous is aborting with status: OUT_OF_RANGE" after every pass."""
    dataset_fn = input_fn(input_file, seq_length, batch_size, is_training=False,
                          drop_remainder=drop_remainder, length_multiple=length_multiple)
    if num_batches is None:
        yield from strategy.distribute_datasets_from_function(dataset_fn)
        return
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda ctx: dataset_fn(ctx).repeat()))
    for _ in range(num_batches):
        yield next(iterator)


def _maybe_xla(step_fn, jit_compile: bool, strategy: tf.distribute.Strategy):
    """step_fn XLA-compiled when asked and there is one replica per process (or a TPU, which
    compiles everything anyway). With several mirrored replicas in one process, XLA refuses the
    mirrored variables of the other devices ("Trying to access resource ... located in device
    CPU:1 from device CPU:0"), so the step then runs op by op."""
    if not jit_compile:
        return step_fn
    try:
        local_replicas = len(strategy.extended.worker_devices)
    except RuntimeError:  # the default (no-op) strategy: one device
        local_replicas = 1
    if local_replicas > 1 and not isinstance(strategy, tf.distribute.TPUStrategy):
        logging.info("XLA is off with %d replicas in one process; the step runs op by op.",
                     local_replicas)
        return step_fn
    return tf.function(step_fn, jit_compile=True, autograph=False)


def _forward_only(step_fn, strategy: tf.distribute.Strategy):
    """step_fn (a step without gradients: eval, predict, encode) traced with plain TensorFlow
    ops instead of fused_ops' kernels on a CPU where TensorFlow runs oneDNN: there its graph
    rewrites fuse MatMul+BiasAdd+GELU and LayerNorm themselves, and each new sequence length
    does not compile XLA kernels. Measured (bench/README, "Sentence vectors and raw-text
    prediction"): faster in steady state and on the first pass there, slower in steady state
    where oneDNN is off. The fused kernels' other gain, the backward's memory, does not apply
    to a forward pass. Elsewhere (GPU, TPU, CPU without oneDNN) step_fn is returned as it is."""
    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    if precision.compute_device(on_tpu) != "CPU" or not precision.onednn_enabled():
        return step_fn

    def plain_step(*args):
        with fused_ops.plain_ops():  # while tracing: the ops are chosen then
            return step_fn(*args)
    return plain_step


def _traced_for_any_shape(run_step, strategy: tf.distribute.Strategy):
    """run_step (a tf.function of one batch, a nest of tensors) traced on its first call for
    every batch size and length of that call's structure and dtypes: later batches cut to other
    lengths, and a smaller last batch, reuse that one graph instead of tracing again (each trace
    of BERT costs about a second, and reduce_retracing alone traces twice more before it
    relaxes both dimensions). Only where the batch arrives as plain tensors (one replica, not a
    TPU, whose shapes stay static); otherwise run_step is called as it is."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return run_step
    traced = []

    def call(batch):
        if not traced:
            traced.append(True)
            if all(isinstance(t, tf.Tensor) for t in tf.nest.flatten(batch)):
                run_step.get_concrete_function(tf.nest.map_structure(
                    lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), batch))
        return run_step(batch)
    call.traced_function = run_step  # the tf.function (e.g. its tracing count)
    return call


def _forward_host_call(step_fn, strategy: tf.distribute.Strategy, jit_compile: bool,
                       finish: Optional[Callable] = None):
    """The host call of a forward-only step (eval, predict, encode): step_fn run by strategy.run
    on one distributed batch (plain ops where oneDNN runs, see _forward_only; XLA-compiled if
    jit_compile), then `finish` (if given) on its per-replica outputs, in a tf.function
    without AutoGraph that callers with length-trimmed batches reuse for every shape: one trace
    where the batch is plain tensors (_traced_for_any_shape), reduce_retracing otherwise. An
    XLA step still compiles once per concrete shape."""
    step = _maybe_xla(_forward_only(step_fn, strategy), jit_compile, strategy)

    @tf.function(reduce_retracing=True, autograph=False)
    def run_step(batch):
        outputs = strategy.run(step, args=(batch,))
        return outputs if finish is None else finish(outputs)
    return _traced_for_any_shape(run_step, strategy)


def inference_logits(model: modeling.BertClassifier, batch: Dict[str, tf.Tensor],
                     micro_batch_size: int = 0) -> tf.Tensor:
    """model(...) logits [B, num_labels] (training=False) for a batch of features [B, S],
    computed micro_batch_size examples at a time (0: the whole batch at once).

    The micro-batches run in a loop inside the step (one XLA while loop when compiled), so the
    activations held at once -- [m, heads, S, S] attention scores, [m*S, intermediate] feed-
    forward -- scale with micro_batch_size instead of the batch size. The last micro-batch is
    padded with all-padding rows, whose logits are dropped.
    """
    ids, mask, segments = batch["input_ids"], batch["input_mask"], batch["segment_ids"]
    static_batch = ids.shape[0]
    if not micro_batch_size or (static_batch is not None and static_batch <= micro_batch_size):
        return model(ids, mask, segments, training=False)
    batch_size = tf.shape(ids)[0]
    num_micro = (batch_size + micro_batch_size - 1) // micro_batch_size
    padding = num_micro * micro_batch_size - batch_size

    def fold(t):  # [B, S] -> [num_micro, micro_batch_size, S]
        t = tf.pad(t, [[0, padding], [0, 0]])
        return tf.reshape(t, [num_micro, micro_batch_size, -1])

    logits = tf.map_fn(lambda xs: model(*xs, training=False),
                       (fold(ids), fold(mask), fold(segments)),
                       fn_output_signature=tf.TensorSpec([micro_batch_size, model.num_labels],
                                                         tf.float32))
    return tf.reshape(logits, [-1, model.num_labels])[:batch_size]


def make_predict_step(model: modeling.BertClassifier, strategy: tf.distribute.Strategy,
                      jit_compile: bool = False, micro_batch_size: int = 0):
    """predict's host call: a tf.function mapping one distributed batch of features to the
    per-replica softmax probabilities [local batch, num_labels] (float32)."""

    def predict_step(batch):
        return tf.nn.softmax(inference_logits(model, batch, micro_batch_size), axis=-1)

    return _forward_host_call(predict_step, strategy, jit_compile)


POOLINGS = ("cls", "mean", "pooled")


def pool_sequence(outputs: Dict[str, object], input_mask: tf.Tensor, pooling: str,
                  normalize: bool) -> tf.Tensor:
    """One vector per example from BertModel outputs: [B, H] float32.

    cls: the last layer's [CLS] state; mean: the mean of the last layer over real tokens
    ([CLS] and [SEP] included, as sentence-transformers' mean pooling); pooled: the pooler's
    tanh(dense([CLS])). normalize divides by the L2 norm (at least 1e-12).
    """
    sequence = tf.cast(outputs["sequence_output"], tf.float32)  # [B, S, H]
    if pooling == "cls":
        vectors = sequence[:, 0]
    elif pooling == "mean":
        mask = tf.cast(input_mask, tf.float32)[:, :, tf.newaxis]  # [B, S, 1]
        vectors = tf.reduce_sum(sequence * mask, axis=1) / tf.maximum(
            tf.reduce_sum(mask, axis=1), 1e-9)
    elif pooling == "pooled":
        vectors = tf.cast(outputs["pooled_output"], tf.float32)
    else:
        raise ValueError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")
    if normalize:
        norm = tf.norm(vectors, axis=-1, keepdims=True)
        vectors = vectors / tf.maximum(norm, 1e-12)
    return vectors


def make_encode_step(bert: modeling.BertModel, strategy: tf.distribute.Strategy,
                     jit_compile: bool = False, pooling: Optional[str] = None,
                     normalize: bool = False, layer_indexes: Sequence[int] = ()):
    """The host call of the sentence-vector / token-feature paths: a tf.function mapping one
    distributed batch of features [b, S] to per-replica dicts, with
    "vector" [b, H] (when pooling is set, see pool_sequence) and "layer_<i>" [b, S, H] for
    every i in layer_indexes (encoder layers, negative = from the last), float32."""

    def encode_step(batch):
        outputs = bert(batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                       training=False)
        result = {}
        if pooling:
            result["vector"] = pool_sequence(outputs, batch["input_mask"], pooling, normalize)
        layers = outputs["all_encoder_layers"]
        for index in layer_indexes:
            result["layer_%d" % index] = tf.cast(layers[index], tf.float32)
        return result

    return _forward_host_call(encode_step, strategy, jit_compile)


def make_eval_step(model: modeling.BertClassifier, num_labels: int,
                   strategy: tf.distribute.Strategy, jit_compile: bool = False,
                   micro_batch_size: int = 0):
    """evaluate's host call: one distributed batch -> (sums, per_example).

    sums: [5] float32 summed over replicas: weighted correct, weighted loss, weight (number of
    real examples), loss sum and count of every row. per_example: per-replica (label_ids [b]
    int32, predictions [b] int32 = argmax of the logits, probabilities [b, num_labels] float32,
    is_real_example [b] int32). Built once, it can evaluate the same model many times.
    """

    def eval_step(batch):
        logits = inference_logits(model, batch, micro_batch_size)
        per_example_loss = modeling.classifier_loss(logits, batch["label_ids"], num_labels)
        weights = tf.cast(batch["is_real_example"], tf.float32)
        predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predictions, batch["label_ids"]), tf.float32)
        sums = tf.stack([tf.reduce_sum(correct * weights), tf.reduce_sum(per_example_loss * weights),
                         tf.reduce_sum(weights), tf.reduce_sum(per_example_loss),
                         tf.cast(tf.size(per_example_loss), tf.float32)])
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        return sums, (batch["label_ids"], predictions, probabilities, batch["is_real_example"])

    def sum_over_replicas(outputs):
        sums, per_example = outputs
        return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None), per_example
    return _forward_host_call(eval_step, strategy, jit_compile, sum_over_replicas)


@dataclasses.dataclass
class EvalOutputs:
    """What one evaluation gives: the original's metrics and every row's outputs (padding rows
    included, marked by is_real_example = 0), in the order the replicas return them."""
    results: Dict[str, object]  # eval_accuracy, eval_loss, global_step, loss (see evaluate)
    label_ids: np.ndarray  # [N] int32
    predictions: np.ndarray  # [N] int32, argmax of the logits
    probabilities: np.ndarray  # [N, num_labels] float32
    is_real_example: np.ndarray  # [N] int32


def evaluate(model: modeling.BertClassifier, num_labels: int, eval_file: str, seq_length: int,
             eval_batch_size: int, strategy: tf.distribute.Strategy, drop_remainder: bool,
             global_step: int, progress_bar: Optional[bool] = None,
             num_batches: Optional[int] = None, jit_compile: bool = False,
             micro_batch_size: int = 0, length_multiple: int = 0) -> Dict[str, object]:
    """The original's EVAL metrics over eval_file (the model step XLA-compiled if jit_compile;
    the model run micro_batch_size examples at a time, see inference_logits; each batch cut to
    its longest example when length_multiple > 0, see cut_to_longest).

    eval_accuracy and eval_loss are weighted by is_real_example; `loss` is the Estimator's
    own: the unweighted mean over batches of each batch's mean loss.
    Returns {"eval_accuracy": np.float32, "eval_loss": np.float32, "global_step": np.int64,
    "loss": np.float32}.
    """
    return evaluate_with_outputs(
        model, num_labels, eval_file, seq_length, eval_batch_size, strategy, drop_remainder,
        global_step, progress_bar, num_batches, jit_compile, micro_batch_size,
        length_multiple=length_multiple).results


def evaluate_with_outputs(model: modeling.BertClassifier, num_labels: int, eval_file: str,
                          seq_length: int, eval_batch_size: int,
                          strategy: tf.distribute.Strategy, drop_remainder: bool,
                          global_step: int, progress_bar: Optional[bool] = None,
                          num_batches: Optional[int] = None, jit_compile: bool = False,
                          micro_batch_size: int = 0, run_step=None,
                          length_multiple: int = 0) -> EvalOutputs:
    """evaluate's metrics and the per-example outputs behind them (for eval_metrics.json).
    run_step: a make_eval_step of this model, to reuse (else one is built)."""
    check_batch_size("eval_batch_size", eval_batch_size, strategy)
    if run_step is None:
        run_step = make_eval_step(model, num_labels, strategy, jit_compile, micro_batch_size)

    sums = np.zeros(3, np.float64)
    batch_means: List[float] = []
    rows: List[List[np.ndarray]] = [[], [], [], []]
    bar = ProgressBar(num_batches or 0, "eval", enabled=progress_bar, unit="batches")
    for batch in _distributed_batches(strategy, eval_file, seq_length, eval_batch_size,
                                      drop_remainder, num_batches, length_multiple):
        batch_sums, per_example = run_step(batch)
        correct, weighted_loss, weight, loss_sum, count = batch_sums.numpy()
        sums += (correct, weighted_loss, weight)
        if count:
            batch_means.append(loss_sum / count)
        for column, value in zip(rows, per_example):
            column.extend(local.numpy() for local in strategy.experimental_local_results(value))
        bar.update(1)
    bar.close()
    correct, weighted_loss, weight = sums
    results = {
        "eval_accuracy": np.float32(correct / weight if weight else 0.0),
        "eval_loss": np.float32(weighted_loss / weight if weight else 0.0),
        "global_step": np.int64(global_step),
        "loss": np.float32(np.mean(np.asarray(batch_means, np.float32)) if batch_means else 0.0),
    }
    if not rows[0]:  # an empty eval file
        return EvalOutputs(results, np.zeros(0, np.int32), np.zeros(0, np.int32),
                           np.zeros((0, num_labels), np.float32), np.zeros(0, np.int32))
    return EvalOutputs(results, *(np.concatenate(column) for column in rows))


def predict(model: modeling.BertClassifier, predict_file: str, seq_length: int,
            predict_batch_size: int, strategy: tf.distribute.Strategy, drop_remainder: bool,
            num_examples: int, progress_bar: Optional[bool] = None,
            jit_compile: bool = False, micro_batch_size: int = 0,
            length_multiple: int = 0) -> np.ndarray:
    """Softmax probabilities [num_examples, num_labels] (float32) in the file's order (the model
    step XLA-compiled if jit_compile; the model run micro_batch_size examples at a time; each
    batch cut to its longest example when length_multiple > 0)."""
    check_batch_size("predict_batch_size", predict_batch_size, strategy)
    run_step = make_predict_step(model, strategy, jit_compile, micro_batch_size)
    chunks = []
    num_batches = -(-num_examples // predict_batch_size)
    bar = ProgressBar(num_batches, "predict", enabled=progress_bar, unit="batches")
    for batch in _distributed_batches(strategy, predict_file, seq_length, predict_batch_size,
                                      drop_remainder, num_batches, length_multiple):
        # Replicas hold consecutive slices of the global batch (see input_fn).
        for local in strategy.experimental_local_results(run_step(batch)):
            chunks.append(local.numpy())
        bar.update(1)
    bar.close()
    probabilities = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 0), np.float32)
    return probabilities[:num_examples]


# ---------------------------------------------------------------------------------------------
# Output files (original formats), written atomically
# ---------------------------------------------------------------------------------------------
def write_file_atomically(path: str, text: Union[str, bytes, Iterable[Union[str, bytes]]]
                          ) -> None:
    """Writes `text` (a str, bytes, or an iterable of pieces streamed one by one) to `path`
    (local or gs://) under a temporary name, then renames it into place: a reader never sees a
    half-written file, and a failure leaves no temporary file behind."""
    tmp = f"{path}.tmp-{os.getpid()}"
    pieces = [text] if isinstance(text, (str, bytes)) else text
    try:
        with tf.io.gfile.GFile(tmp, "w") as f:
            for piece in pieces:
                f.write(piece)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException as error:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        if isinstance(error, tf.errors.OpError):
            # The user's path, not the temporary name, and one line.
            reason = (error.message or "").split("\n")[0].replace(tmp, path)
            raise OSError("cannot write %s: %s" % (path, reason)) from None
        raise


def write_eval_results(path: str, results: Dict[str, object]) -> None:
    """eval_results.txt: sorted keys, `key = value`, values as str() of float32/int64."""
    logging.info("***** Eval results *****")
    lines = []
    for key in sorted(results):
        logging.info("  %s = %s", key, str(results[key]))
        lines.append("%s = %s\n" % (key, str(results[key])))
    write_file_atomically(path, "".join(lines))


def write_eval_summaries(output_dir: str, results: Dict[str, object]) -> None:
    """TensorBoard scalars of the eval metrics in output_dir/eval (the Estimator's place),
    at the evaluated checkpoint's global_step."""
    writer = tf.summary.create_file_writer(os.path.join(output_dir, "eval"))
    with writer.as_default(step=int(results["global_step"])):
        for key, value in sorted(results.items()):
            if key != "global_step":
                tf.summary.scalar(key, float(value))
    writer.close()


def _probability_fields(row: np.ndarray) -> List[str]:
    """A row of probabilities as the original's test_results.tsv prints it: str() of each
    float32 (e.g. 0.6534671)."""
    return [str(p) for p in row.astype(np.float32)]


def write_test_results(path: str, probabilities: np.ndarray) -> int:
    """test_results.tsv: one line per example, tab-joined str() of float32 probabilities."""
    logging.info("***** Predict results *****")
    lines = ["\t".join(_probability_fields(row)) + "\n" for row in probabilities]
    write_file_atomically(path, "".join(lines))
    return len(lines)


def prediction_table(guids: Sequence[str], probabilities: np.ndarray,
                     label_names: Sequence[str]) -> str:
    """A TSV with the header `guid, label, <one column per label name>` and one row per example:
    its guid, the predicted (most probable) label's name, and its probabilities printed as in
    test_results.tsv. probabilities: [examples, labels], columns in label_names order."""
    lines = ["\t".join(["guid", "label"] + [str(name) for name in label_names]) + "\n"]
    for guid, row in zip(guids, probabilities):
        label = label_names[int(np.argmax(row))]
        lines.append("\t".join([str(guid), str(label)] + _probability_fields(row)) + "\n")
    return "".join(lines)


def write_test_predictions(path: str, guids: Sequence[str], probabilities: np.ndarray,
                           label_names: Sequence[str]) -> None:
    """test_predictions.tsv (an addition of this port, written beside test_results.tsv): the
    prediction_table of the test examples."""
    write_file_atomically(path, prediction_table(guids, probabilities, label_names))


def eval_metrics_report(outputs: EvalOutputs, label_names: List[str]) -> Dict[str, object]:
    """eval_metrics.json's content: the original's metrics (eval_accuracy, eval_loss, loss,
    global_step) and metrics.classification_metrics over the real examples."""
    # float32 values as their shortest text (0.8455882, as in eval_results.txt).
    report: Dict[str, object] = {key: (int(value) if key == "global_step" else float(str(value)))
                                 for key, value in outputs.results.items()}
    report.update(metrics.classification_metrics(
        outputs.label_ids, outputs.predictions, outputs.probabilities, label_names,
        outputs.is_real_example))
    return report


def write_json(path: str, obj) -> None:
    write_file_atomically(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
