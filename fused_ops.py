"""Elementwise parts of BERT as single fused kernels with hand-written gradients.

TensorFlow runs `tf.nn.gelu` or a LayerNorm written with `tf.nn.moments` as a chain of
separate elementwise ops, each one a full pass over a [tokens, width] tensor, and its autodiff
keeps most of the intermediate tensors alive for the backward pass. On CPU those passes cost
about as much as the matrix products next to them (measured in bench/README.md). Here each
function's forward and backward are one XLA-compiled computation (`tf.function(jit_compile=True)`,
which XLA fuses into one loop), joined by `tf.custom_gradient`, so:

* the forward is one pass and keeps only its input (and, for LayerNorm, two per-row floats);
* the backward is one pass that recomputes what it needs from that input.

The matrix products stay outside, on TensorFlow's own (oneDNN) kernels. The formulas are the
same as the unfused ones; XLA evaluates tanh/erf with its own polynomial approximations, so
values agree with them to float32 rounding (tests/test_fused_ops.py bounds the differences).

`ENABLED = False` (or the environment variable BERT_FUSED_OPS=0 before import) switches every
caller back to the plain TensorFlow ops, e.g. on a TensorFlow build without XLA.
"""
import math
import os

import tensorflow as tf

ENABLED = os.environ.get("BERT_FUSED_OPS", "1") != "0"

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _xla(fn):
    """fn compiled as one XLA computation; autograph off (the bodies are straight-line)."""
    return tf.function(fn, jit_compile=True, autograph=False)


def _fused_elementwise(forward, backward):
    """An elementwise y = f(x) whose forward(x) and backward(x, dy) are each one XLA
    computation; only x is kept for the backward."""
    forward_xla, backward_xla = _xla(forward), _xla(backward)

    @tf.custom_gradient
    def fused(x):
        def grad(dy):
            return backward_xla(x, dy)
        return forward_xla(x), grad
    return fused


# ---------------------------------------------------------------------------------------------
# GELU, tanh approximation (Google BERT's "gelu"): 0.5 x (1 + tanh(c (x + 0.044715 x^3)))

def _gelu_tanh_forward(x):
    xf = tf.cast(x, tf.float32)
    t = tf.tanh(xf * (_SQRT_2_OVER_PI + (_SQRT_2_OVER_PI * _GELU_CUBIC) * xf * xf))
    return tf.cast(0.5 * xf * (1.0 + t), x.dtype)


def _gelu_tanh_backward(x, dy):
    xf = tf.cast(x, tf.float32)
    x2 = xf * xf
    t = tf.tanh(xf * (_SQRT_2_OVER_PI + (_SQRT_2_OVER_PI * _GELU_CUBIC) * x2))
    d_inner = _SQRT_2_OVER_PI + (3.0 * _SQRT_2_OVER_PI * _GELU_CUBIC) * x2
    slope = 0.5 * (1.0 + t) + 0.5 * xf * (1.0 - t * t) * d_inner
    return tf.cast(tf.cast(dy, tf.float32) * slope, dy.dtype)


_gelu_tanh_fused = _fused_elementwise(_gelu_tanh_forward, _gelu_tanh_backward)


def gelu_tanh(x: tf.Tensor) -> tf.Tensor:
    """tanh-approximated GELU of any shape/float dtype; the same values as
    tf.nn.gelu(x, approximate=True), computed in float32."""
    if not ENABLED:
        return tf.nn.gelu(x, approximate=True)
    return _gelu_tanh_fused(x)


# ---------------------------------------------------------------------------------------------
# GELU, exact (erf) form: 0.5 x (1 + erf(x / sqrt(2)))

def _gelu_erf_forward(x):
    xf = tf.cast(x, tf.float32)
    return tf.cast(0.5 * xf * (1.0 + tf.math.erf(xf * _INV_SQRT_2)), x.dtype)


def _gelu_erf_backward(x, dy):
    xf = tf.cast(x, tf.float32)
    cdf = 0.5 * (1.0 + tf.math.erf(xf * _INV_SQRT_2))
    pdf = _INV_SQRT_2PI * tf.exp(-0.5 * xf * xf)
    return tf.cast(tf.cast(dy, tf.float32) * (cdf + xf * pdf), dy.dtype)


_gelu_erf_fused = _fused_elementwise(_gelu_erf_forward, _gelu_erf_backward)


def gelu_erf(x: tf.Tensor) -> tf.Tensor:
    """Exact GELU of any shape/float dtype; the same values as tf.nn.gelu(x, approximate=False),
    computed in float32."""
    if not ENABLED:
        return tf.nn.gelu(x, approximate=False)
    return _gelu_erf_fused(x)


# ---------------------------------------------------------------------------------------------
# LayerNorm over the last axis: y = (x - mean) * rsqrt(var + eps) * gamma + beta

def _layer_norm_forward(x, gamma, beta, epsilon):
    xf = tf.cast(x, tf.float32)
    mean = tf.reduce_mean(xf, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(xf, mean), axis=-1, keepdims=True)
    rstd = tf.math.rsqrt(variance + epsilon)
    # The original's batch_normalization form: x * (rstd * gamma) + (beta - mean * rstd * gamma).
    scale = rstd * gamma
    y = xf * scale + (beta - mean * scale)
    return tf.cast(y, x.dtype), mean, rstd


def _layer_norm_backward(dy, x, gamma, mean, rstd):
    xf = tf.cast(x, tf.float32)
    dyf = tf.cast(dy, tf.float32)
    x_hat = (xf - mean) * rstd
    rows = list(range(len(x.shape) - 1))
    d_beta = tf.reduce_sum(dyf, axis=rows)
    d_gamma = tf.reduce_sum(dyf * x_hat, axis=rows)
    g = dyf * gamma
    dx = rstd * (g - tf.reduce_mean(g, axis=-1, keepdims=True)
                 - x_hat * tf.reduce_mean(g * x_hat, axis=-1, keepdims=True))
    return tf.cast(dx, x.dtype), d_gamma, d_beta


_layer_norm_forward_xla = _xla(_layer_norm_forward)
_layer_norm_backward_xla = _xla(_layer_norm_backward)


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float) -> tf.Tensor:
    """LayerNorm of x [..., H] (any float dtype; statistics in float32) with float32 gamma and
    beta [H]; the original's formula (tf.contrib.layers.layer_norm). The backward keeps only
    x and the per-row mean and 1/std."""
    gamma = tf.convert_to_tensor(gamma)
    beta = tf.convert_to_tensor(beta)
    if not ENABLED:  # the same formula as plain ops, differentiated by TensorFlow
        return _layer_norm_forward(x, gamma, beta, epsilon)[0]

    @tf.custom_gradient
    def fused(x, gamma, beta):
        y, mean, rstd = _layer_norm_forward_xla(x, gamma, beta, epsilon)

        def grad(dy):
            return _layer_norm_backward_xla(dy, x, gamma, mean, rstd)
        return y, grad

    return fused(x, gamma, beta)


# ---------------------------------------------------------------------------------------------
# Attention probabilities: dropout(softmax(scores * scale + adder))

def _attention_probs_forward(scores, adder, keep, scale, keep_prob):
    logits = tf.cast(scores, tf.float32) * scale + tf.cast(adder, tf.float32)
    probs = tf.nn.softmax(logits, axis=-1)
    if keep is None:
        dropped = probs
    else:
        dropped = tf.where(keep, probs * (1.0 / keep_prob), 0.0)
    return tf.cast(dropped, scores.dtype), probs


def _attention_probs_backward(d_dropped, probs, keep, scale, keep_prob):
    d = tf.cast(d_dropped, tf.float32)
    if keep is not None:
        d = tf.where(keep, d * (1.0 / keep_prob), 0.0)
    d_logits = probs * (d - tf.reduce_sum(d * probs, axis=-1, keepdims=True))
    return tf.cast(d_logits * scale, d_dropped.dtype)


_attention_probs_forward_xla = _xla(_attention_probs_forward)
_attention_probs_backward_xla = _xla(_attention_probs_backward)


def attention_probs(scores: tf.Tensor, adder: tf.Tensor, scale: float,
                    dropout_rate: float = 0.0, training: bool = False) -> tf.Tensor:
    """The attention probabilities of Google's modeling.py, in one fused pass:
    softmax(scores * scale + adder) over the last axis, then (training only) dropout.

    scores [B, N, S_q, S_k] (the raw query.key products); adder broadcastable to it (0 for
    real tokens, -10000 for padding); softmax in float32, result in scores.dtype. The backward
    keeps the probabilities and the dropout's boolean keep-mask. The mask comes from
    tf.random.uniform, so --seed / tf.random.set_seed reproduce it.
    """
    use_dropout = training and dropout_rate > 0
    keep = None
    if use_dropout:
        keep = tf.random.uniform(tf.shape(scores), dtype=tf.float32) >= dropout_rate
    keep_prob = 1.0 - dropout_rate
    if not ENABLED:  # the same formula as plain ops, differentiated by TensorFlow
        return _attention_probs_forward(scores, adder, keep, scale, keep_prob)[0]

    @tf.custom_gradient
    def fused(scores):
        dropped, probs = _attention_probs_forward_xla(scores, adder, keep, scale, keep_prob)

        def grad(d_dropped):
            return _attention_probs_backward_xla(d_dropped, probs, keep, scale, keep_prob)
        return dropped, grad

    return fused(scores)
