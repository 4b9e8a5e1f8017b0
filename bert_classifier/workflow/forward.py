"""Forward-only steps (eval, predict, encode) and the loops around them: restore the latest
checkpoint of output_dir (else init_checkpoint), as the Estimator did, and compute the original's
metrics and probabilities.
"""

import dataclasses
import os
from typing import Callable, Dict, List, Optional, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.core import checkpoint_names  # noqa: E402

from bert_classifier.core import checkpoints  # noqa: E402
from bert_classifier.core import fused_ops  # noqa: E402
import modeling  # noqa: E402
from bert_classifier.core import precision  # noqa: E402
from bert_classifier.core.progress import ProgressBar  # noqa: E402
from bert_classifier.workflow import input_pipeline  # noqa: E402


def build_classifier(bert_config: modeling.BertConfig, num_labels: int,
                     strategy: tf.distribute.Strategy) -> modeling.BertClassifier:
    """A BertClassifier with all variables created under the strategy's scope."""
    with strategy.scope():
        model = modeling.BertClassifier(bert_config, num_labels)
        # Variables only: an eager dummy forward pass would also compile every fused kernel
        # (fused_ops.py) for a shape no later step uses.
        model.build_variables()
    return model


def build_encoder(bert_config: modeling.BertConfig,
                  strategy: tf.distribute.Strategy) -> modeling.BertModel:
    """A BertModel (no head) with all variables created under the strategy's scope."""
    with strategy.scope():
        bert = modeling.BertModel(bert_config)
        bert.build_variables()
    return bert


@dataclasses.dataclass
class LoadedWeights:
    """Where load_weights took the weights from: checkpoint (None: random weights),
    global_step (0 unless restored from output_dir), resumed (from output_dir's latest)."""
    checkpoint: Optional[str]
    global_step: int
    resumed: bool


def load_weights(name_to_variable: Dict[str, tf.Variable], output_dir: Optional[str] = None,
                 checkpoint: Optional[str] = None, allow_partial: bool = False,
                 complete: bool = False, state: Optional[Dict[str, tf.Variable]] = None,
                 log_fallback: bool = False) -> LoadedWeights:
    """Loads a built classifier's or encoder's weights: the one loader of training, of
    run_classifier's eval and predict, of the Python API and of the exporter. The Estimator's
    rule, each checkpoint's index read once:

    1. output_dir holds a checkpoint: its latest, which must hold every variable of `state`
       (default name_to_variable; training adds the optimizer's slots and global_step).
    2. else `checkpoint` (a prefix or a folder): with `complete` (a trained classifier, an
       encoder) every variable of name_to_variable; otherwise (run_classifier's
       init_checkpoint, the original's init_from_checkpoint) the variables it holds, a missing
       classifier head allowed, missing or unused `bert/` variables only with allow_partial.
    3. else random weights (the variables are logged).
    A checkpoint that does not fit the model raises ValueError (checkpoints.check_checkpoint_fits).
    log_fallback: log the Estimator's line when output_dir holds no checkpoint.
    """
    latest = checkpoints.latest_checkpoint(output_dir) if output_dir else None
    if latest:
        path, step = checkpoints.restore_checkpoint(
            latest, state if state is not None else name_to_variable, with_global_step=True)
        return LoadedWeights(path, step, resumed=True)
    if log_fallback:
        logging.info("Could not find trained model in model_dir: %s, running initialization "
                     "from %s", output_dir, checkpoint or "random weights")
    if checkpoint and complete:
        return LoadedWeights(checkpoints.restore_checkpoint(checkpoint, name_to_variable), 0,
                             resumed=False)
    if checkpoint:
        checkpoints.init_from_checkpoint(name_to_variable, checkpoint, allow_partial)
    else:
        checkpoints.log_trainable_variables(name_to_variable)
    return LoadedWeights(checkpoint, 0, resumed=False)


def load_for_inference(bert_config: modeling.BertConfig, num_labels: int, output_dir: str,
                       init_checkpoint: Optional[str], strategy: tf.distribute.Strategy,
                       allow_partial_checkpoint: bool = False):
    """run_classifier's eval and predict: a classifier restored as the Estimator did (the latest
    checkpoint in output_dir, else init_checkpoint; see load_weights), logging which. Returns
    (model, checkpoint_path, global_step)."""
    model = build_classifier(bert_config, num_labels, strategy)
    loaded = load_weights(checkpoint_names.variables_by_checkpoint_name(model), output_dir,
                          init_checkpoint, allow_partial_checkpoint, log_fallback=True)
    if loaded.resumed:
        logging.info("Restoring parameters from %s", loaded.checkpoint)
    return model, loaded.checkpoint, loaded.global_step


def _distributed_batches(strategy, input_file, seq_length, batch_size, drop_remainder,
                         num_batches: Optional[int] = None, length_multiple: int = 0):
    """The file's eval/predict batches in order (each cut to its longest example, rounded up to
    length_multiple, when that is > 0). With num_batches, exactly that many, read from the file
    repeated: the loop never reaches the end of the data, so TensorFlow does not log "Local
    rendezvous is aborting with status: OUT_OF_RANGE" after every pass."""
    dataset_fn = input_pipeline.input_fn(input_file, seq_length, batch_size, is_training=False,
                                         drop_remainder=drop_remainder,
                                         length_multiple=length_multiple)
    if num_batches is None:
        yield from strategy.distribute_datasets_from_function(dataset_fn)
        return
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda ctx: dataset_fn(ctx).repeat()))
    for _ in range(num_batches):
        yield next(iterator)


def maybe_xla(step_fn, jit_compile: bool, strategy: tf.distribute.Strategy):
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
    step = maybe_xla(_forward_only(step_fn, strategy), jit_compile, strategy)

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


def predicted_labels(probabilities: np.ndarray, label_names: Sequence[str]) -> List:
    """The most probable label per row of probabilities [examples, labels] (columns in
    label_names order; the first of equal maxima): label_names entries, one per example."""
    return [label_names[int(i)] for i in np.argmax(probabilities, axis=-1)] \
        if len(probabilities) else []


POOLINGS = ("cls", "mean", "pooled")


def check_pooling(pooling: str) -> None:
    """Raises ValueError unless pooling is one of POOLINGS (the Encoder's, the export's and
    pool_sequence's one check)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")


def pool_sequence(outputs: Dict[str, object], input_mask: tf.Tensor, pooling: str,
                  normalize: bool) -> tf.Tensor:
    """One vector per example from BertModel outputs: [B, H] float32.

    cls: the last layer's [CLS] state; mean: the mean of the last layer over real tokens
    ([CLS] and [SEP] included, as sentence-transformers' mean pooling); pooled: the pooler's
    tanh(dense([CLS])). normalize divides by the L2 norm (at least 1e-12).
    """
    check_pooling(pooling)
    sequence = tf.cast(outputs["sequence_output"], tf.float32)  # [B, S, H]
    if pooling == "cls":
        vectors = sequence[:, 0]
    elif pooling == "mean":
        mask = tf.cast(input_mask, tf.float32)[:, :, tf.newaxis]  # [B, S, 1]
        vectors = tf.reduce_sum(sequence * mask, axis=1) / tf.maximum(
            tf.reduce_sum(mask, axis=1), 1e-9)
    else:  # pooled
        vectors = tf.cast(outputs["pooled_output"], tf.float32)
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
        sums = tf.stack([tf.reduce_sum(correct * weights),
                         tf.reduce_sum(per_example_loss * weights),
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
    input_pipeline.check_batch_size("eval_batch_size", eval_batch_size, strategy)
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
    input_pipeline.check_batch_size("predict_batch_size", predict_batch_size, strategy)
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
