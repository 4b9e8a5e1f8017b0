"""fused_ops: the fused kernels give the values and gradients of the plain formulas."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import e2e_util  # noqa: E402
from bert_classifier.core import fused_ops  # noqa: E402


def _value_and_grads(fn, inputs, dy, seed=None):
    inputs = [tf.constant(a) for a in inputs]
    with tf.GradientTape() as tape:
        for t in inputs:
            tape.watch(t)
        if seed is not None:
            tf.random.set_seed(seed)
        y = fn(*inputs)
    grads = tape.gradient(y, inputs, output_gradients=tf.constant(dy, y.dtype))
    return y.numpy(), [g.numpy() for g in grads]


def _fused_matching_plain(fn, inputs, dy, atol_value, atol_grad, seed=None):
    """fn's value and gradients with fused_ops on, after checking them against the plain
    TensorFlow ops (fused_ops off; the same seed, so the same dropout masks)."""
    fused_ops.ENABLED = False
    try:
        plain = _value_and_grads(fn, inputs, dy, seed)
    finally:
        fused_ops.ENABLED = True
    fused = _value_and_grads(fn, inputs, dy, seed)
    np.testing.assert_allclose(fused[0], plain[0], rtol=0, atol=atol_value)
    for a, b in zip(fused[1], plain[1]):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol_grad)
    return fused


def _gelu_tanh_np(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _gelu_erf_np(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _numeric_grad(f, x, dy, eps=1e-5):
    """d(sum(f(x) * dy))/dx by central differences, elementwise f, float64."""
    return (f(x + eps) - f(x - eps)) / (2 * eps) * dy


@pytest.mark.parametrize("name, reference", [("gelu_tanh", _gelu_tanh_np),
                                             ("gelu_erf", _gelu_erf_np)])
def test_gelu_values_and_gradient_match_float64(name, reference):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 3, 3997), [0.0, -1e-3, 1e-3, 8.0, -8.0, 20.0, -20.0]])
    x = x.astype(np.float32).reshape(-1, 7)
    dy = rng.normal(size=x.shape).astype(np.float32)
    y, (dx,) = _value_and_grads(getattr(fused_ops, name), [x], dy)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y, reference(x64), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(dx, _numeric_grad(reference, x64, dy), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("name, approximate", [("gelu_tanh", True), ("gelu_erf", False)])
def test_gelu_matches_tf_nn_gelu(name, approximate):
    x = np.random.default_rng(1).normal(0, 2, (64, 96)).astype(np.float32)
    dy = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    fused = _fused_matching_plain(getattr(fused_ops, name), [x], dy, 2e-6, 1e-5)
    reference = tf.nn.gelu(x, approximate=approximate).numpy()
    np.testing.assert_allclose(fused[0], reference, atol=2e-6)


def _layer_norm_np(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_layer_norm_values_and_gradients_match_float64():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(2, 5, 48)) * 3 + 1).astype(np.float32)
    gamma = rng.normal(1, 0.2, 48).astype(np.float32)
    beta = rng.normal(0, 0.2, 48).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    eps = 1e-12
    y, (dx, dgamma, dbeta) = _value_and_grads(
        lambda x, g, b: fused_ops.layer_norm(x, g, b, eps), [x, gamma, beta], dy)
    x64, g64, b64 = (a.astype(np.float64) for a in (x, gamma, beta))
    np.testing.assert_allclose(y, _layer_norm_np(x64, g64, b64, eps), atol=1e-5)
    # Gradients in float64 by autodiff of the same formula (tf float64, no fused path).
    with tf.GradientTape() as tape:
        t = [tf.constant(a) for a in (x64, g64, b64)]
        for v in t:
            tape.watch(v)
        mean = tf.reduce_mean(t[0], -1, keepdims=True)
        var = tf.reduce_mean((t[0] - mean) ** 2, -1, keepdims=True)
        y64 = (t[0] - mean) / tf.sqrt(var + eps) * t[1] + t[2]
    expected = tape.gradient(y64, t, output_gradients=tf.constant(dy, tf.float64))
    np.testing.assert_allclose(dx, expected[0].numpy(), atol=2e-5)
    np.testing.assert_allclose(dgamma, expected[1].numpy(), atol=5e-5)
    np.testing.assert_allclose(dbeta, expected[2].numpy(), atol=5e-5)


def test_layer_norm_fused_matches_unfused():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 32)).astype(np.float32)
    gamma, beta = rng.normal(size=32).astype(np.float32), rng.normal(size=32).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    fn = lambda x, g, b: fused_ops.layer_norm(x, g, b, 1e-12)  # noqa: E731
    _fused_matching_plain(fn, [x, gamma, beta], dy, 2e-6, 2e-5)


def _attention_inputs(dtype=np.float32):
    rng = np.random.default_rng(5)
    scores = rng.normal(0, 4, (2, 3, 6, 6)).astype(dtype)
    mask = np.ones((2, 6), np.float32)
    mask[1, 4:] = 0
    adder = ((1.0 - mask) * -10000.0).reshape(2, 1, 1, 6)
    value = rng.normal(size=(2, 3, 6, 5)).astype(dtype)
    dy = rng.normal(size=(2, 3, 6, 5)).astype(dtype)
    return scores, adder, value, dy


def _softmax_np(scores, adder, scale):
    logits = scores.astype(np.float64) * scale + adder
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True)


def test_attention_context_is_the_original_attention_without_dropout():
    scores, adder, value, dy = _attention_inputs()
    scale = 1 / math.sqrt(8)
    context, (d_scores, d_value) = _value_and_grads(
        lambda s, v: fused_ops.attention_context(s, adder, v, scale), [scores, value], dy)
    probs = _softmax_np(scores, adder, scale)
    np.testing.assert_allclose(context, probs @ value, atol=1e-5)
    assert np.all(probs[1, :, :, 4:] < 1e-4)  # padding gets no attention
    d_probs = dy @ np.swapaxes(value, -1, -2)
    expected = probs * (d_probs - (d_probs * probs).sum(-1, keepdims=True)) * scale
    np.testing.assert_allclose(d_scores, expected, atol=1e-5)
    np.testing.assert_allclose(d_value, np.swapaxes(probs, -1, -2) @ dy, atol=1e-5)
    # training=True with rate 0 and training=False with a rate are the same function.
    same = fused_ops.attention_context(scores, adder, value, scale, 0.1, training=False)
    np.testing.assert_array_equal(same.numpy(), context)


def test_attention_context_dropout_matches_unfused_with_the_same_seed():
    scores, adder, value, dy = _attention_inputs()
    fn = lambda s, v: fused_ops.attention_context(s, adder, v, 0.25, 0.3, training=True)  # noqa
    fused = _fused_matching_plain(fn, [scores, value], dy, 1e-5, 1e-5, seed=7)
    # The same mask again, to read it off: the dropped probabilities give the context.
    tf.random.set_seed(7)
    keep = (tf.random.uniform(scores.shape) >= 0.3).numpy()
    assert 0.15 < 1 - keep.mean() < 0.45  # about 30% of 216 probabilities
    dropped = np.where(keep, _softmax_np(scores, adder, 0.25) / 0.7, 0.0)
    np.testing.assert_allclose(fused[0], dropped @ value, atol=1e-5)
    np.testing.assert_allclose(fused[1][1], np.swapaxes(dropped, -1, -2) @ dy, atol=1e-5)


def test_dropout_keeps_tf_nn_dropout_values_and_gradient():
    x = np.random.default_rng(8).normal(size=(64, 32)).astype(np.float32)
    dy = np.random.default_rng(9).normal(size=x.shape).astype(np.float32)
    fn = lambda x: fused_ops.dropout(x, 0.25, training=True)  # noqa: E731
    y, (dx,) = _fused_matching_plain(fn, [x], dy, 0.0, 0.0, seed=11)  # bit-identical
    kept = y != 0
    assert 0.2 < 1 - kept.mean() < 0.3
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    np.testing.assert_allclose(dx, np.where(kept, dy / 0.75, 0.0), rtol=1e-6)
    # tf.nn.dropout's test (uniform >= rate) on the same stream: the same mask.
    tf.random.set_seed(11)
    np.testing.assert_array_equal(
        kept, (tf.random.uniform(x.shape) >= 0.25).numpy())
    np.testing.assert_array_equal(fused_ops.dropout(tf.constant(x), 0.25).numpy(), x)
    np.testing.assert_array_equal(fused_ops.dropout(tf.constant(x), 0.0, training=True), x)


@pytest.mark.parametrize("activation", ["gelu_tanh", "gelu_erf", "relu"])
def test_activation_dense_values_and_gradients(activation):
    rng = np.random.default_rng(10)
    x = rng.normal(0, 2, (24, 16)).astype(np.float32)
    kernel = rng.normal(0, 0.3, (16, 8)).astype(np.float32)
    bias = rng.normal(size=8).astype(np.float32)
    dy = rng.normal(size=(24, 8)).astype(np.float32)
    act = tf.nn.relu if activation == "relu" else getattr(fused_ops, activation)
    fn = lambda x, k, b: fused_ops.activation_dense(x, k, b, act)  # noqa: E731
    fused = _fused_matching_plain(fn, [x, kernel, bias], dy, 1e-5, 1e-5)
    # Against float64: y = act(x) @ kernel + bias and its three gradients.
    h = act(tf.constant(x, tf.float64)).numpy() if activation == "relu" else None
    if h is None:
        h = (_gelu_tanh_np if activation == "gelu_tanh" else _gelu_erf_np)(x.astype(np.float64))
    np.testing.assert_allclose(fused[0], h @ kernel + bias, atol=1e-4)
    np.testing.assert_allclose(fused[1][1], h.T @ dy, atol=1e-4)
    np.testing.assert_allclose(fused[1][2], dy.sum(0), atol=1e-4)


_PEAK_SCRIPT = """
import json, sys
import tensorflow as tf
import modeling
from bert_classifier.core import fused_ops
tf.config.threading.set_inter_op_parallelism_threads(1)  # one op at a time: repeatable peaks
config = modeling.BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=int(sys.argv[1]),
                             num_attention_heads=4, intermediate_size=1024,
                             max_position_embeddings=64)
model = modeling.BertClassifier(config, 2)
ids = tf.ones([32, 64], tf.int32)
labels = tf.zeros([32], tf.int32)

@tf.function
def step():
    with tf.GradientTape() as tape:
        logits = model(ids, ids, tf.zeros_like(ids), training=True)
        loss = tf.reduce_mean(modeling.classifier_loss(logits, labels, 2))
    return tape.gradient(loss, model.trainable_variables)

step()
before = tf.config.experimental.get_memory_info("CPU:0")["current"]
tf.config.experimental.reset_memory_stats("CPU:0")
step()
print(json.dumps(tf.config.experimental.get_memory_info("CPU:0")["peak"] - before))
"""


@pytest.mark.slow
def test_fused_training_step_holds_less_memory():
    # What the fused ops are for, measured by TensorFlow's own allocator statistics (BFC): the
    # peak tensor memory of a forward + backward step, and how much each layer adds to it
    # (what the layer keeps for the backward pass). Per layer the fused ops keep the feed-
    # forward pre-activation [tokens, intermediate], the attention probabilities, boolean
    # dropout masks and [tokens, hidden] tensors; autodiff of the plain ops (or a recomputation
    # the executor runs early) also keeps the GELU output, the dropped probabilities, the
    # dropout inputs and intermediates of softmax/LayerNorm/GELU.
    import json

    def peak(fused, layers):
        out = e2e_util.run_python(_PEAK_SCRIPT, args=[str(layers)], extra_env={
            "TF_CPU_ALLOCATOR_USE_BFC": "true", "BERT_FUSED_OPS": fused})
        return json.loads(out.stdout.strip().splitlines()[-1]) / 2**20

    activation_mb = 32 * 64 * 1024 * 4 / 2**20  # one [tokens, intermediate] float32 tensor
    fused_2, fused_8, plain_2 = peak("1", 2), peak("1", 8), peak("0", 2)
    assert fused_2 < 0.6 * plain_2, (fused_2, plain_2)
    per_layer = (fused_8 - fused_2) / 6
    # Measured: 2.2 activations per layer (before recomputing the GELU output and the dropped
    # probabilities, and before the boolean-mask dropout: 3.5; plain ops: 6.3).
    assert per_layer < 2.6 * activation_mb, per_layer / activation_mb


def test_fused_ops_work_under_tf_function_xla_and_bfloat16():
    scores, adder, value, dy = _attention_inputs()
    x = np.random.default_rng(6).normal(size=(8, 16)).astype(np.float32)
    gamma, beta = np.ones(16, np.float32), np.zeros(16, np.float32)

    def block(x, scores, value):
        h = fused_ops.gelu_tanh(x) + fused_ops.gelu_erf(x)
        h = fused_ops.layer_norm(h, gamma, beta, 1e-12)
        return h, fused_ops.attention_context(scores, adder, value, 0.5)

    eager = block(x, scores, value)
    for fn in (tf.function(block), tf.function(block, jit_compile=True)):
        for a, b in zip(fn(x, scores, value), eager):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    h16, c16 = block(tf.cast(x, tf.bfloat16), tf.cast(scores, tf.bfloat16),
                     tf.cast(value, tf.bfloat16))
    assert h16.dtype == tf.bfloat16 and c16.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(h16, tf.float32).numpy(), eager[0].numpy(), atol=0.05)
