"""The training options beyond the original, in-process on a tiny BERT: length-aware batches
(--length_multiple, --bucket_by_length), gradient accumulation, class weights and precision
(--precision, fused_ops in bfloat16, float16 loss scaling)."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_classifier.core import checkpoint_names

from bert_classifier.core import checkpoints
import e2e_util
from bert_classifier.workflow import features
import fixtures
from bert_classifier.core import fused_ops
import modeling
import optimization
from bert_classifier.core import precision
import tokenization
from bert_classifier.workflow import forward
from bert_classifier.workflow import input_pipeline
from bert_classifier.workflow import train_loop
from processors import InputExample

SEQ = 48
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "classifier_dropout_prob": 0.0}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A .tf_record of 64 examples of lengths 5-48 (single sentences and pairs), SEQ 48."""
    path = str(tmp_path_factory.mktemp("records") / "train.tf_record")
    tokenizer = tokenization.FullTokenizer(e2e_util.minilm_vocab_path(), do_lower_case=True)
    pool = fixtures.SENTENCES
    examples = [InputExample(f"train-{i}", pool[i % len(pool)],
                             pool[(i * 7 + 3) % len(pool)] if i % 3 else None, str(i % 2))
                for i in range(64)]
    features.file_based_convert_examples_to_features(examples, ["0", "1"], SEQ, tokenizer, path,
                                                     num_workers=1)
    return path


def _batches(dataset, n=None):
    dataset = dataset if n is None else dataset.take(n)
    return [{k: v.numpy() for k, v in b.items()} for b in dataset]


def _lengths(batch):
    return batch["input_mask"].sum(axis=1)


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test starts and ends with the float32 policy (the precision tests change it)."""
    tf_keras.mixed_precision.set_global_policy("float32")
    yield
    tf_keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------------------------------------
# Length-aware batches
# ---------------------------------------------------------------------------------------------
def test_cut_to_longest_rounds_up_and_stays_within_bounds():
    def batch(lengths, width=40):
        mask = (np.arange(width)[None] < np.array(lengths)[:, None]).astype(np.int32)
        return {"input_ids": mask * 7, "input_mask": mask, "segment_ids": mask,
                "label_ids": np.zeros(len(lengths), np.int32)}

    for lengths, multiple, expected in [([3, 9, 5], 8, 16), ([3, 8, 5], 8, 8), ([17], 16, 32),
                                        ([33], 16, 40), ([0, 0], 8, 8), ([2], 64, 40)]:
        cut = input_pipeline.cut_to_longest(
            {k: tf.constant(v) for k, v in batch(lengths).items()}, multiple, 40)
        assert cut["input_ids"].shape == (len(lengths), expected), (lengths, multiple)
        assert cut["input_mask"].shape == cut["segment_ids"].shape == (len(lengths), expected)
        assert cut["label_ids"].shape == (len(lengths),)
        np.testing.assert_array_equal(cut["input_mask"].numpy().sum(1),
                                      np.minimum(lengths, expected))


def test_length_aware_batches_hold_the_same_examples(records):
    fixed = _batches(input_pipeline.input_fn(records, SEQ, 8, is_training=False,
                                             drop_remainder=False)(tf.distribute.InputContext()))
    cut = _batches(input_pipeline.input_fn(records, SEQ, 8, is_training=False, drop_remainder=False,
                                           length_multiple=8)(tf.distribute.InputContext()))
    assert len(cut) == len(fixed) == 8
    widths = [b["input_ids"].shape[1] for b in cut]
    assert len(set(widths)) > 1 and max(widths) <= SEQ and min(widths) < SEQ
    for f, c in zip(fixed, cut):
        width = c["input_ids"].shape[1]
        assert width % 8 == 0 and width >= _lengths(f).max() > width - 8
        for key in ("input_ids", "input_mask", "segment_ids"):
            np.testing.assert_array_equal(c[key], f[key][:, :width])
            assert not f[key][:, width:].any()  # only padding was cut
        np.testing.assert_array_equal(c["label_ids"], f["label_ids"])


def _pipeline_parts(fn, steps):
    """The single pipeline's global batches and, per step, the 2 pipelines x 2 replicas parts."""
    single = _batches(fn(tf.distribute.InputContext(1, 0, 1)), steps)
    parts = [_batches(fn(tf.distribute.InputContext(2, i, 4)), 2 * steps) for i in range(2)]
    return single, [[parts[p][2 * step + r] for p in range(2) for r in range(2)]
                    for step in range(steps)]


@pytest.mark.parametrize("bucket", [False, True])
def test_every_pipeline_sees_the_same_cut_global_batches(records, bucket):
    # The shuffle order depends on the global seed too (tests before this one may set it).
    tf.random.set_seed(0)
    fn = input_pipeline.input_fn(records, SEQ, 8, is_training=True, drop_remainder=True, seed=5,
                                 length_multiple=8, bucket_by_length=bucket)
    single, pieces_per_step = _pipeline_parts(fn, 12)
    widths = [b["input_ids"].shape[1] for b in single]
    assert widths == [input_pipeline.batch_length(int(b["input_mask"].sum(1).max()), 8, SEQ)
                      for b in single]
    assert min(widths) < SEQ  # the batches were cut
    for global_batch, pieces in zip(single, pieces_per_step):
        for key, value in global_batch.items():
            # Same examples, same cut width on every replica of the step.
            np.testing.assert_array_equal(np.concatenate([p[key] for p in pieces]), value)


def test_bucket_by_length_is_seeded_and_groups_similar_lengths(records):
    def stream(seed, bucket):
        return _batches(input_pipeline.input_fn(
            records, SEQ, 4, is_training=True, drop_remainder=True, seed=seed,
            bucket_by_length=bucket)(tf.distribute.InputContext()), 2 * 16)

    plain, bucketed = stream(5, False), stream(5, True)
    again, other_seed = stream(5, True), stream(6, True)
    for a, b in zip(bucketed, again):  # reproducible
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a["input_ids"], b["input_ids"])
               for a, b in zip(bucketed, other_seed))
    # Each window of 16 batches holds the same examples as the plain stream's window...
    def rows(batches):
        return sorted(tuple(row) for b in batches for row in b["input_ids"])
    for window in range(2):
        sl = slice(16 * window, 16 * (window + 1))
        assert rows(bucketed[sl]) == rows(plain[sl])
    # ...grouped by length: far less padding to the longest example of each batch.
    def padding(batches):
        return sum(int((_lengths(b).max() - _lengths(b)).sum()) for b in batches)
    assert padding(bucketed) < padding(plain) / 3
    # ...and each window's batches come out shuffled, not shortest to longest (seeding alone
    # does not show it: the upstream shuffle is seeded too).
    for window in range(2):
        longest = [int(_lengths(b).max()) for b in bucketed[16 * window:16 * (window + 1)]]
        assert longest != sorted(longest) and longest != sorted(longest, reverse=True), longest


def _tiny(overrides=None):
    return modeling.BertConfig.from_dict(dict(e2e_util.TINY_CONFIG, **(overrides or {})))


def _train(records, steps_per_call=2, calls=2, seed=11, config=None, batch_size=8,
           learning_rate=1e-3, **options):
    """Trains a fresh tiny classifier (initial weights from `seed`) on `records`; returns
    (losses per call, {checkpoint name: final value}, initial output_weights)."""
    strategy = tf.distribute.get_strategy()
    tf.random.set_seed(seed)
    model = forward.build_classifier(config or _tiny(NO_DROPOUT), 2, strategy)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    optimizer = optimization.create_optimizer(learning_rate, 10, 0, name_to_variable=names)
    length_multiple = options.get("length_multiple", 0)
    dataset = input_pipeline.input_fn(records, SEQ, batch_size, is_training=True,
                                      drop_remainder=True, seed=5, length_multiple=length_multiple,
                                      )(tf.distribute.InputContext())
    loss_scaling = options.pop("loss_scaling", None)
    if loss_scaling:
        optimizer.create_slots(list(names.values()))
        loss_scaling = precision.LossScaling(optimizer)
    loop = train_loop.make_train_loop(model, optimizer, strategy, 2, batch_size,
                                      loss_scaling=loss_scaling, **options)
    initial = names["output_weights"].numpy()
    iterator = iter(dataset)
    losses = [float(loop(iterator, tf.constant(steps_per_call))[1]) for _ in range(calls)]
    return losses, {n: v.numpy() for n, v in names.items()}, initial


# Measured on this CPU after 4 steps: losses equal to the printed digits, weights within 2.4e-7.
WEIGHT_ATOL = 2e-6


def _assert_same_weights(a, b, atol=WEIGHT_ATOL):
    for name, value in a.items():
        np.testing.assert_allclose(b[name], value, atol=atol, rtol=0, err_msg=name)


@pytest.mark.slow
def test_length_aware_training_takes_the_same_steps(records):
    fixed_losses, fixed, initial = _train(records)
    cut_losses, cut, _ = _train(records, length_multiple=8)
    assert np.abs(fixed["output_weights"] - initial).max() > 1e-4  # the steps moved weights
    np.testing.assert_allclose(cut_losses, fixed_losses, rtol=1e-5)
    _assert_same_weights(fixed, cut)


@pytest.fixture(scope="module")
def inference_model():
    tf.random.set_seed(3)
    return forward.build_classifier(_tiny(), 2, tf.distribute.get_strategy())


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_length_aware_predict_and_evaluate_equal_fixed(records, inference_model, jit_compile):
    strategy = tf.distribute.get_strategy()
    options = dict(drop_remainder=False, jit_compile=jit_compile, micro_batch_size=3)
    fixed = forward.predict(inference_model, records, SEQ, 8, strategy, num_examples=64,
                            **options)
    cut = forward.predict(inference_model, records, SEQ, 8, strategy, num_examples=64,
                          length_multiple=8, **options)
    assert cut.shape == (64, 2) and cut.dtype == np.float32
    assert np.abs(fixed - 0.5).max() > 1e-3  # not a constant output
    np.testing.assert_allclose(cut, fixed, atol=1e-5, rtol=0)
    args = (inference_model, 2, records, SEQ, 8, strategy)
    fixed = forward.evaluate(*args, global_step=1, **options)
    cut = forward.evaluate(*args, global_step=1, length_multiple=16, **options)
    for key in ("eval_accuracy", "eval_loss", "loss"):
        assert cut[key] == pytest.approx(fixed[key], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# Gradient accumulation
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_accumulated_gradients_give_the_full_batch_update(records):
    # Class weights 20 make the gradient norm >> 1, so the clip at 1.0 is active: it must act
    # on the accumulated gradient, as on the full batch.
    weights = [20.0, 20.0]
    full_losses, full, initial = _train(records, class_weights=weights)
    for steps, multiple in ((4, 0), (2, 8)):  # 2 micro-batches each cut to its own length
        losses, accumulated, _ = _train(records, class_weights=weights,
                                        gradient_accumulation_steps=steps,
                                        length_multiple=multiple)
        np.testing.assert_allclose(losses, full_losses, rtol=1e-5)
        _assert_same_weights(full, accumulated)
    # The clip was active (the first batch's gradient norm) and the weights moved.
    strategy = tf.distribute.get_strategy()
    tf.random.set_seed(11)
    model = forward.build_classifier(_tiny(NO_DROPOUT), 2, strategy)
    batch = next(iter(input_pipeline.input_fn(records, SEQ, 8, is_training=True,
                                              drop_remainder=True,
                                              seed=5)(tf.distribute.InputContext())))
    with tf.GradientTape() as tape:
        logits = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"])
        loss = tf.reduce_sum(20.0 * modeling.classifier_loss(logits, batch["label_ids"], 2)) / 8
    assert float(tf.linalg.global_norm(tape.gradient(loss, model.trainable_variables))) > 2.0
    assert np.abs(full["output_weights"] - initial).max() > 1e-4


_ACCUMULATION_PEAK_SCRIPT = """
import json, sys
import tensorflow as tf
import modeling
from bert_classifier.workflow import train_loop
tf.config.threading.set_inter_op_parallelism_threads(1)  # one op at a time: repeatable peaks
config = modeling.BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=1024,
                             max_position_embeddings=64)
model = modeling.BertClassifier(config, 2)
model.build_variables()
variables = model.trainable_variables
steps = int(sys.argv[1])
ones = tf.ones([32, 64], tf.int32)
batch = {"input_ids": ones, "input_mask": ones, "segment_ids": ones * 0,
         "label_ids": tf.zeros([32], tf.int32)}

def loss_and_gradients(b):
    with tf.GradientTape() as tape:
        logits = model(b["input_ids"], b["input_mask"], b["segment_ids"], training=True)
        loss = tf.reduce_sum(modeling.classifier_loss(logits, b["label_ids"], 2)) / 32
    return loss, tape.gradient(loss, variables)

@tf.function
def step():
    if steps == 1:
        return loss_and_gradients(batch)
    return train_loop.accumulate_gradients(loss_and_gradients, batch, steps, variables)

step()
before = tf.config.experimental.get_memory_info("CPU:0")["current"]
tf.config.experimental.reset_memory_stats("CPU:0")
step()
print(json.dumps(tf.config.experimental.get_memory_info("CPU:0")["peak"] - before))
"""


@pytest.mark.slow
def test_accumulation_holds_one_micro_batch_of_activations():
    # TensorFlow's allocator statistics (BFC), as test_fused_ops: the peak tensor memory of a
    # batch-32 forward + backward, whole and as 8 micro-batches of 4.
    import json

    def peak(steps):
        out = e2e_util.run_python(_ACCUMULATION_PEAK_SCRIPT, args=[str(steps)],
                                  extra_env={"TF_CPU_ALLOCATOR_USE_BFC": "true"})
        return json.loads(out.stdout.strip().splitlines()[-1])

    whole, micro = peak(1), peak(8)
    # Measured: 50.8 MB whole, 9.7-9.9 MB in 8 micro-batches; 27-36 MB when the while loop
    # may run 10 iterations in parallel (the next micro-batches' forward passes start early).
    assert micro < 0.3 * whole, (micro, whole)


def test_gradient_accumulation_must_divide_the_replica_batch():
    assert train_loop.check_gradient_accumulation(32, 4, 2) == 4
    assert train_loop.check_gradient_accumulation(32, 1, 1) == 32
    for steps, replicas in ((3, 1), (0, 1), (32, 2)):
        with pytest.raises(ValueError, match=rf"^--gradient_accumulation_steps={steps} must be "
                                             r"a positive divisor of the per-replica batch "
                                             rf"\(--train_batch_size=32 over {replicas}"):
            train_loop.check_gradient_accumulation(32, steps, replicas)


# ---------------------------------------------------------------------------------------------
# Class weights
# ---------------------------------------------------------------------------------------------
def test_class_weights_from_flag():
    labels = ["a", "b", "c"]
    train = ["a"] * 6 + ["b"] * 3 + ["c"] * 1
    auto = train_loop.class_weights_from_flag("auto", labels, train)
    # w_c = N / (C * n_c): 10/18, 10/9, 10/3; they average 1 over the examples.
    np.testing.assert_allclose(auto, [10 / 18, 10 / 9, 10 / 3])
    assert np.mean([auto[labels.index(y)] for y in train]) == pytest.approx(1.0)
    # A label absent from the training set gets 0; the others still average 1.
    assert train_loop.class_weights_from_flag(" AUTO ", labels, ["a", "a", "c"]) == [0.75, 0.0, 1.5]
    assert train_loop.class_weights_from_flag("1,2.5,0", labels) == [1.0, 2.5, 0.0]
    assert train_loop.class_weights_from_flag(None, labels) is None
    assert train_loop.class_weights_from_flag("", labels) is None
    for value, message in [("1,2", "2 weights for 3 labels"), ("1,-2,1", "finite weights >= 0"),
                           ("0,0,0", "not all 0"), ("1,x,1", "expected 'auto' or 3"),
                           ("1,nan,1", "finite weights")]:
        with pytest.raises(ValueError, match=f"^--class_weights={value}: .*{message}"):
            train_loop.class_weights_from_flag(value, labels, train)
    with pytest.raises(ValueError, match="--class_weights=auto needs training examples"):
        train_loop.class_weights_from_flag("auto", labels, [])


@pytest.mark.slow
def test_class_weights_weight_the_training_loss(records):
    # Learning rate 0: every step's loss is the initial model's on that step's batch.
    weights = [0.25, 3.0]
    unweighted, _, _ = _train(records, steps_per_call=1, calls=3, learning_rate=0.0)
    ones, _, _ = _train(records, steps_per_call=1, calls=3, learning_rate=0.0,
                        class_weights=[1.0, 1.0])
    weighted, _, _ = _train(records, steps_per_call=1, calls=3, learning_rate=0.0,
                            class_weights=weights)
    assert ones == unweighted  # multiplying by 1 changes no bit
    tf.random.set_seed(11)
    model = forward.build_classifier(_tiny(NO_DROPOUT), 2, tf.distribute.get_strategy())
    batches = _batches(input_pipeline.input_fn(records, SEQ, 8, is_training=True,
                                               drop_remainder=True,
                                               seed=5)(tf.distribute.InputContext()), 3)
    for batch, loss, plain in zip(batches, weighted, unweighted):
        logits = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"]).numpy()
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        per_example = -log_probs[np.arange(8), batch["label_ids"]]
        w = np.array(weights)[batch["label_ids"]]
        assert loss == pytest.approx(np.sum(w * per_example) / 8, rel=1e-5)
        assert plain == pytest.approx(np.mean(per_example), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------
def _cpuinfo(tmp_path, text):
    path = tmp_path / f"cpuinfo{len(list(tmp_path.iterdir()))}"
    path.write_text(text)
    return str(path)


def test_bfloat16_support_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # no GPU
    # As on a CPU with AVX512/AMX, where TensorFlow turns oneDNN on (this machine may lack it).
    monkeypatch.setattr(precision, "_tensorflow_onednn_on", lambda: True)
    zen4 = _cpuinfo(tmp_path, "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 fma\n")
    assert precision.cpu_bfloat16_flags(zen4) == {"avx512_bf16"}
    assert precision.check_supported("bfloat16", False, zen4) == (
        "bfloat16 on CPU (avx512_bf16, oneDNN)")
    sapphire = _cpuinfo(tmp_path, "flags\t: avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert precision.cpu_bfloat16_flags(sapphire) == {"avx512_bf16", "amx_bf16"}
    graviton = _cpuinfo(tmp_path, "Features\t: fp asimd sve bf16 i8mm\n")
    assert precision.cpu_bfloat16_flags(graviton) == {"bf16"}
    old = _cpuinfo(tmp_path, "flags\t\t: fpu sse4_2 avx2 fma avx512f\n")
    assert precision.cpu_bfloat16_flags(old) == set()
    assert precision.cpu_bfloat16_flags(str(tmp_path / "missing")) == set()
    with pytest.raises(ValueError, match=r"^--precision=bfloat16: this CPU has no bfloat16 "
                                         r"instructions .*use --precision=float32$"):
        precision.check_supported("bfloat16", False, old)
    with pytest.raises(ValueError, match=r"^--precision=mixed_float16 needs a GPU \(this run "
                                         r"computes on the CPU"):
        precision.check_supported("mixed_float16", False, zen4)
    with pytest.raises(ValueError, match=r"^--precision=mixed_float16 needs a GPU \(this run "
                                         r"computes on the TPU"):
        precision.check_supported("mixed_float16", True, zen4)
    assert precision.check_supported("bfloat16", True, old) == "bfloat16 on TPU"
    assert precision.check_supported("float32", False, old) == "float32 on CPU"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    with pytest.raises(ValueError, match="needs TensorFlow's oneDNN kernels, which "
                                         "TF_ENABLE_ONEDNN_OPTS=0 turned off"):
        precision.check_supported("bfloat16", False, zen4)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    monkeypatch.setattr(precision, "_tensorflow_onednn_on", lambda: False)
    with pytest.raises(ValueError, match="needs TensorFlow's oneDNN kernels, which TensorFlow "
                                         "left off on this CPU; set TF_ENABLE_ONEDNN_OPTS=1"):
        precision.check_supported("bfloat16", False, zen4)


def _close_in(dtype, value, reference, grads=None, reference_grads=None):
    # bfloat16 keeps 8 significant bits: a relative error of 2^-8 per rounding.
    tol = 3e-2 if dtype == tf.bfloat16 else 3e-3
    np.testing.assert_allclose(tf.cast(value, tf.float32).numpy(), reference, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_fused_ops_compute_in_float32_under_16_bit_inputs(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 16)).astype(np.float32)
    dy = rng.normal(size=(6, 16)).astype(np.float32)
    gamma = rng.normal(size=16).astype(np.float32)
    beta = rng.normal(size=16).astype(np.float32)
    cases = [(fused_ops.gelu_tanh, lambda t: tf.nn.gelu(t, approximate=True)),
             (fused_ops.gelu_erf, lambda t: tf.nn.gelu(t, approximate=False)),
             (lambda t: fused_ops.layer_norm(t, gamma, beta, 1e-12),
              lambda t: fused_ops._layer_norm_forward(t, gamma, beta, 1e-12)[0])]
    for fused, plain in cases:
        low = tf.constant(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(low)
            y = fused(low)
        dx = tape.gradient(y, low, output_gradients=tf.constant(dy, dtype))
        assert y.dtype == dtype and dx.dtype == dtype
        ref_x = tf.constant(tf.cast(low, tf.float32).numpy())  # the same rounded input
        with tf.GradientTape() as tape:
            tape.watch(ref_x)
            ref_y = plain(ref_x)
        ref_dx = tape.gradient(ref_y, ref_x, output_gradients=tf.constant(dy))
        _close_in(dtype, y, ref_y.numpy())
        _close_in(dtype, dx, ref_dx.numpy())
    # Attention: scores [B, N, S, S], a padding mask, value [B, N, S, D].
    scores = tf.constant(rng.normal(size=(2, 2, 5, 5)).astype(np.float32))
    value = tf.constant(rng.normal(size=(2, 2, 5, 3)).astype(np.float32))
    adder = tf.constant([[[[0, 0, 0, -10000, -10000]]], [[[0, 0, 0, 0, 0]]]], tf.float32)
    low = fused_ops.attention_context(tf.cast(scores, dtype), tf.cast(adder, dtype),
                                      tf.cast(value, dtype), 0.5)
    ref = tf.matmul(tf.nn.softmax(tf.cast(tf.cast(scores, dtype), tf.float32) * 0.5 + adder),
                    tf.cast(tf.cast(value, dtype), tf.float32))
    assert low.dtype == dtype
    _close_in(dtype, low, ref.numpy())
    # Dropout keeps about 1 - rate and scales the kept values by 1 / (1 - rate).
    ones = tf.ones([200, 50], dtype)
    dropped = tf.cast(fused_ops.dropout(ones, 0.1, training=True), tf.float32).numpy()
    assert set(np.unique(dropped)) <= {0.0, float(tf.cast(tf.constant(1 / 0.9, dtype),
                                                          tf.float32))}
    assert 0.87 < (dropped > 0).mean() < 0.93


@pytest.mark.slow
def test_bfloat16_computes_in_bfloat16_and_keeps_float32_state(records, tmp_path):
    strategy = tf.distribute.get_strategy()
    tf.random.set_seed(3)
    reference = forward.build_classifier(_tiny(), 2, strategy)
    precision.set_policy("bfloat16")
    tf.random.set_seed(3)
    model = forward.build_classifier(_tiny(), 2, strategy)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    for name, value in checkpoint_names.variables_by_checkpoint_name(reference).items():
        names[name].assign(value)
    dataset_fn = input_pipeline.input_fn(records, SEQ, 16, is_training=False,
                                         drop_remainder=False)
    batch = _batches(dataset_fn(tf.distribute.InputContext()), 1)[0]
    inputs = (batch["input_ids"], batch["input_mask"], batch["segment_ids"])
    bert_out = model.bert(*inputs)
    assert bert_out["sequence_output"].dtype == tf.bfloat16  # the encoder runs in bfloat16
    logits = model(*inputs)
    assert logits.dtype == tf.float32
    reference_logits = reference(*inputs).numpy()
    assert not np.array_equal(logits.numpy(), reference_logits)
    np.testing.assert_allclose(logits.numpy(), reference_logits, atol=0.05)
    # Variables and optimizer slots float32; a checkpoint holds float32 under Google's names.
    optimizer = optimization.create_optimizer(1e-3, 10, 0, name_to_variable=names)
    optimizer.create_slots(list(names.values()))
    loop = train_loop.make_train_loop(model, optimizer, strategy, 2, 8)
    iterator = iter(input_pipeline.input_fn(records, SEQ, 8, is_training=True, drop_remainder=True,
                                            seed=5)(tf.distribute.InputContext()))
    assert np.isfinite(float(loop(iterator, tf.constant(2))[1]))
    state = dict(names)
    state.update(optimizer.slot_variables_by_checkpoint_name(names))
    state["global_step"] = optimizer.iterations
    path = checkpoints.save_checkpoint(str(tmp_path), state, 2)
    saved = dict(tf.train.list_variables(path))
    reader = tf.train.load_checkpoint(path)
    assert "bert/encoder/layer_0/attention/self/query/kernel/adam_m" in saved
    for name in saved:
        if name != "global_step":
            assert reader.get_tensor(name).dtype == np.float32, name
    assert set(saved) == set(state)


@pytest.mark.slow
def test_float16_persistent_nan_stops_training(records, tmp_path, caplog):
    precision.set_policy("mixed_float16")  # float16 runs (slowly) on CPU too
    # A NaN loss (NaN class weights) at every step: each step is skipped, counted and logged,
    # and the run stops after MAX_CONSECUTIVE_SKIPPED_STEPS steps in a row.
    cfg = train_loop.TrainConfig(output_dir=str(tmp_path / "nan"), train_file=records,
                                 max_seq_length=SEQ, train_batch_size=8, learning_rate=1e-3,
                                 num_train_steps=100, num_warmup_steps=0, seed=1,
                                 log_step_count_steps=8, class_weights=[float("nan")] * 2)
    with pytest.raises(FloatingPointError, match=r"not finite in the last (2\d) steps at any "
                                                 r"loss scale .* at global_step (2\d)"):
        train_loop.train(_tiny(NO_DROPOUT), 2, cfg, tf.distribute.get_strategy())
    assert "step(s) skipped for non-finite gradients" in caplog.text
    # float32 keeps the original's behaviour: the first non-finite loss stops the run.
    precision.set_policy("float32")
    cfg.output_dir = str(tmp_path / "nan32")
    with pytest.raises(FloatingPointError, match=r"training loss became nan at global_step 8"):
        train_loop.train(_tiny(NO_DROPOUT), 2, cfg, tf.distribute.get_strategy())


@pytest.mark.slow
def test_float16_skips_are_counted_by_the_loss_scaling(records):
    precision.set_policy("mixed_float16")
    strategy = tf.distribute.get_strategy()
    tf.random.set_seed(11)
    model = forward.build_classifier(_tiny(NO_DROPOUT), 2, strategy)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    optimizer = optimization.create_optimizer(1e-3, 10, 0, name_to_variable=names)
    optimizer.create_slots(list(names.values()))
    scaling = precision.LossScaling(optimizer)
    loop = train_loop.make_train_loop(model, optimizer, strategy, 2, 8, loss_scaling=scaling,
                                      class_weights=[1000.0, 1000.0])
    iterator = iter(input_pipeline.input_fn(records, SEQ, 8, is_training=True, drop_remainder=True,
                                            seed=5)(tf.distribute.InputContext()))
    before = {n: v.numpy() for n, v in names.items()}
    loop(iterator, tf.constant(1))
    assert int(scaling.skipped_steps.numpy()) == 1  # 2^15 overflows: skipped...
    assert int(optimizer.iterations.numpy()) == 1  # ...but counted as a step, as tf_keras does
    assert float(scaling.loss_scale()) == 2.0 ** 14
    for name, value in names.items():
        np.testing.assert_array_equal(value.numpy(), before[name], err_msg=name)
    loop(iterator, tf.constant(15))
    skipped = int(scaling.skipped_steps.numpy())
    assert 1 < skipped < 16 and int(scaling.consecutive_skipped_steps.numpy()) == 0
    assert float(scaling.loss_scale()) == 2.0 ** (15 - skipped)


def test_loss_scaled_gradients_are_unscaled_after_the_sum():
    # all_reduce_clip_and_apply(loss_scale=s) on gradients of s * loss: the same norm and the
    # same update as on the gradients of the loss.
    grads = [tf.constant([[3.0, -4.0]]), tf.constant([12.0])]  # global norm 13: clipped to 1
    results = []
    for scale in (None, 2.0 ** 15):
        variables = [tf.Variable([[1.0, 2.0]]), tf.Variable([0.5])]
        optimizer = optimization.AdamWeightDecay(learning_rate=0.1, weight_decay_rate=0.01)
        scaled = grads if scale is None else [g * scale for g in grads]
        norm = optimization.all_reduce_clip_and_apply(optimizer, scaled, variables,
                                                      loss_scale=scale)
        results.append((float(norm), [v.numpy() for v in variables]))
    assert results[0][0] == results[1][0] == pytest.approx(13.0)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(b, a, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# run_classifier.py with these flags
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("options_e2e")
    tiny = e2e_util.make_tiny_bert(str(base / "bert"))
    data_dir = str(base / "data")
    fixtures.write_sim(data_dir)
    return tiny, data_dir, base


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    ({"gradient_accumulation_steps": 3},
     "--gradient_accumulation_steps=3 must be a positive divisor of the per-replica batch "
     "(--train_batch_size=8 over 1 replica(s) = 8 examples)"),
    ({"precision": "mixed_float16"}, "--precision=mixed_float16 needs a GPU"),
    ({"class_weights": "1,2,3"}, "--class_weights=1,2,3: 3 weights for 2 labels (0, 1)"),
    ({"class_weights": "-1,1"}, "--class_weights=-1,1: expected finite weights >= 0"),
])
def test_bad_option_fails_before_featurization(tiny_sim, flags, message):
    tiny, data_dir, base = tiny_sim
    out = str(base / ("bad_" + "_".join(flags)))
    proc = e2e_util.run_classifier(e2e_util.classifier_args(
        tiny, data_dir, out, "sim", do_train="true", **flags), check=False, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("run_classifier.py: error: " + message), last
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(out, "train.tf_record"))


@pytest.mark.slow
@pytest.mark.skipif(not precision.cpu_bfloat16_flags(),
                    reason="this CPU has no bfloat16 instructions")
def test_all_options_together_end_to_end(tiny_sim):
    tiny, data_dir, base = tiny_sim
    out = str(base / "all_options")
    proc = e2e_util.run_classifier(e2e_util.classifier_args(
        tiny, data_dir, out, "sim", do_train="true", do_eval="true", do_predict="true",
        num_train_epochs=2.0, seed=3, precision="bfloat16", length_multiple=8,
        bucket_by_length="true", gradient_accumulation_steps=2, class_weights="auto"))
    log = proc.stderr
    assert "Precision: bfloat16 on CPU (" in log and "policy mixed_bfloat16" in log
    # fixtures.write_sim's 30 training rows: 16 of label 0, 14 of label 1 -> 30/32, 30/28.
    assert "Class weights (--class_weights=auto): 0: 0.9375, 1: 1.071" in log
    assert "Each step accumulates 2 micro-batches of 4 examples per replica" in log
    assert "rounded up to a multiple of 8 (--length_multiple), of examples of similar" in log
    results = e2e_util.read_eval_results(out)
    assert sorted(results) == ["eval_accuracy", "eval_loss", "global_step", "loss"]
    assert results["global_step"] == "7"
    with open(os.path.join(out, "test_results.tsv")) as f:
        rows = [[float(x) for x in line.split("\t")] for line in f.read().splitlines()]
    assert len(rows) == 10
    np.testing.assert_allclose(np.sum(rows, axis=1), 1.0, atol=1e-5)
    reader = tf.train.load_checkpoint(out)
    names = dict(tf.train.list_variables(out))
    assert "bert/encoder/layer_1/output/dense/kernel/adam_v" in names
    assert all(reader.get_tensor(n).dtype == np.float32 for n in names if n != "global_step")


@pytest.mark.slow
def test_adam_bias_correction_flag_reaches_the_optimizer(tiny_sim):
    """One step from the same start, no warmup: output_bias (zero at the start, never decayed)
    moves by lr * m/(sqrt(v)+eps). Step 1 without correction (the default): 0.1|g| / sqrt(0.001
    g^2) = 3.162 lr per element; with --adam_bias_correction: |g| / sqrt(g^2) = 1.0 lr."""
    tiny, data_dir, base = tiny_sim
    lr = 1e-3
    moved = {}
    for corrected in (False, True):
        out = str(base / f"bias_correction_{corrected}")
        e2e_util.run_classifier(e2e_util.classifier_args(
            tiny, data_dir, out, "sim", do_train="true", num_train_epochs=0.3, seed=5,
            warmup_proportion=0.0, learning_rate=lr,
            adam_bias_correction=str(corrected).lower()))
        reader = tf.train.load_checkpoint(out)
        assert int(reader.get_tensor("global_step")) == 1
        moved[corrected] = np.abs(reader.get_tensor("output_bias")) / lr
    np.testing.assert_allclose(moved[False], np.sqrt(10.0), rtol=2e-3)
    np.testing.assert_allclose(moved[True], 1.0, rtol=2e-3)
