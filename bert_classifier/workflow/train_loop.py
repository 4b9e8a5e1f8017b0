"""The training loop of run_classifier (the original's model_fn_builder train branch): a custom
loop running `iterations_per_loop` steps per host call, Google's AdamWeightDecay on the
cross-replica sum of gradients clipped at global norm 1.0, checkpoints in Google's names every
`save_checkpoints_steps`, resume from the latest.
"""

import dataclasses
import os
import tempfile
import time
from typing import Callable, Dict, List, Optional, Protocol, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.core import checkpoint_names  # noqa: E402

from bert_classifier.core import checkpoints  # noqa: E402
from bert_classifier.core import kill_points  # noqa: E402
import modeling  # noqa: E402
import optimization  # noqa: E402
from bert_classifier.core import precision  # noqa: E402
from bert_classifier.core.progress import ProgressBar  # noqa: E402
from bert_classifier.workflow import forward  # noqa: E402
from bert_classifier.workflow import input_pipeline  # noqa: E402
from bert_classifier.workflow import strategies  # noqa: E402


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
    step = forward.maybe_xla(tf.autograph.experimental.do_not_convert(step_fn), jit_compile,
                             strategy)

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
            micro_batch = input_pipeline.cut_to_longest(micro_batch, length_multiple,
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
    chief = strategies.is_chief(strategy)
    input_pipeline.check_batch_size("train_batch_size", cfg.train_batch_size, strategy)
    check_gradient_accumulation(cfg.train_batch_size, cfg.gradient_accumulation_steps,
                                strategy.num_replicas_in_sync)
    if cfg.seed is not None:
        tf.random.set_seed(cfg.seed)
    model = forward.build_classifier(bert_config, num_labels, strategy)
    name_to_variable = checkpoint_names.variables_by_checkpoint_name(model)
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

    loaded = forward.load_weights(name_to_variable, cfg.output_dir, cfg.init_checkpoint,
                                  cfg.allow_partial_checkpoint, state=state)
    if loaded.resumed:
        logging.info("Restored model and optimizer state from %s (global_step = %d)",
                     loaded.checkpoint, int(optimizer.iterations.numpy()))

    step = int(optimizer.iterations.numpy())
    if step >= cfg.num_train_steps:
        logging.info("Skipping training since max_steps has already saved.")
        return step
    if step:
        logging.info("Resuming training at global_step %d of %d", step, cfg.num_train_steps)
    if cfg.hook is not None and cfg.hook.begin(model, name_to_variable, step):
        return step

    dataset_fn = input_pipeline.input_fn(
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
            logging.info("global_step/sec: %g",
                         (step - last_log_step) / max(now - last_log_time, 1e-9))
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
