"""fused_ops: the fused kernels give the values and gradients of the plain formulas."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import fused_ops  # noqa: E402


@pytest.fixture
def unfused():
    """Runs the block with fused_ops switched off (the plain TensorFlow ops)."""
    fused_ops.ENABLED = False
    yield
    fused_ops.ENABLED = True


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
def test_gelu_matches_tf_nn_gelu(name, approximate, unfused):
    x = np.random.default_rng(1).normal(0, 2, (64, 96)).astype(np.float32)
    dy = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    plain = _value_and_grads(getattr(fused_ops, name), [x], dy)
    fused_ops.ENABLED = True
    fused = _value_and_grads(getattr(fused_ops, name), [x], dy)
    np.testing.assert_allclose(fused[0], plain[0], atol=2e-6)
    np.testing.assert_allclose(fused[1][0], plain[1][0], atol=1e-5)
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


def test_layer_norm_fused_matches_unfused(unfused):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 32)).astype(np.float32)
    gamma, beta = rng.normal(size=32).astype(np.float32), rng.normal(size=32).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    fn = lambda x, g, b: fused_ops.layer_norm(x, g, b, 1e-12)  # noqa: E731
    plain = _value_and_grads(fn, [x, gamma, beta], dy)
    fused_ops.ENABLED = True
    fused = _value_and_grads(fn, [x, gamma, beta], dy)
    np.testing.assert_allclose(fused[0], plain[0], atol=2e-6)
    for a, b in zip(fused[1], plain[1]):
        np.testing.assert_allclose(a, b, atol=2e-5)


def _attention_inputs(dtype=np.float32):
    rng = np.random.default_rng(5)
    scores = rng.normal(0, 4, (2, 3, 6, 6)).astype(dtype)
    mask = np.ones((2, 6), np.float32)
    mask[1, 4:] = 0
    adder = ((1.0 - mask) * -10000.0).reshape(2, 1, 1, 6)
    dy = rng.normal(size=scores.shape).astype(dtype)
    return scores, adder, dy


def test_attention_probs_is_the_original_softmax_without_dropout():
    scores, adder, dy = _attention_inputs()
    scale = 1 / math.sqrt(8)
    probs, (d_scores,) = _value_and_grads(
        lambda s: fused_ops.attention_probs(s, adder, scale), [scores], dy)
    logits = scores.astype(np.float64) * scale + adder
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert np.all(probs[1, :, :, 4:] < 1e-4)  # padding gets no attention
    expected_grad = expected * (dy - (dy * expected).sum(-1, keepdims=True)) * scale
    np.testing.assert_allclose(d_scores, expected_grad, atol=1e-6)
    # training=True with rate 0 and training=False with a rate are the same function.
    same = fused_ops.attention_probs(scores, adder, scale, 0.1, training=False).numpy()
    np.testing.assert_array_equal(same, probs)


def test_attention_probs_dropout_matches_unfused_with_the_same_seed(unfused):
    scores, adder, dy = _attention_inputs()
    fn = lambda s: fused_ops.attention_probs(s, adder, 0.25, 0.3, training=True)  # noqa: E731
    plain = _value_and_grads(fn, [scores], dy, seed=7)
    fused_ops.ENABLED = True
    fused = _value_and_grads(fn, [scores], dy, seed=7)
    np.testing.assert_allclose(fused[0], plain[0], atol=1e-6)
    np.testing.assert_allclose(fused[1][0], plain[1][0], atol=1e-6)
    dropped = fused[0] == 0
    assert 0.15 < dropped.mean() < 0.45  # about 30% of 216 probabilities
    # Kept probabilities are scaled by 1 / keep_prob; the gradient flows through kept ones only.
    probs = fused_ops.attention_probs(scores, adder, 0.25).numpy()
    np.testing.assert_allclose(fused[0][~dropped], probs[~dropped] / 0.7, rtol=1e-6)
    d = np.where(dropped, 0.0, dy / 0.7)
    expected_grad = probs * (d - (d * probs).sum(-1, keepdims=True)) * 0.25
    np.testing.assert_allclose(fused[1][0], expected_grad, atol=1e-6)


def test_fused_ops_work_under_tf_function_xla_and_bfloat16():
    scores, adder, dy = _attention_inputs()
    x = np.random.default_rng(6).normal(size=(8, 16)).astype(np.float32)
    gamma, beta = np.ones(16, np.float32), np.zeros(16, np.float32)

    def block(x, scores):
        h = fused_ops.gelu_tanh(x) + fused_ops.gelu_erf(x)
        h = fused_ops.layer_norm(h, gamma, beta, 1e-12)
        return h, fused_ops.attention_probs(scores, adder, 0.5)

    eager = block(x, scores)
    for fn in (tf.function(block), tf.function(block, jit_compile=True)):
        for a, b in zip(fn(x, scores), eager):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    h16, p16 = block(tf.cast(x, tf.bfloat16), tf.cast(scores, tf.bfloat16))
    assert h16.dtype == tf.bfloat16 and p16.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(h16, tf.float32).numpy(), eager[0].numpy(), atol=0.05)
