"""Parts of BERT as fused kernels with hand-written gradients that keep little for the backward.

TensorFlow runs `tf.nn.gelu` or a LayerNorm written with `tf.nn.moments` as a chain of
separate elementwise ops, each one a full pass over a [tokens, width] tensor, and its autodiff
keeps most of the intermediate tensors alive for the backward pass. On CPU those passes cost
about as much as the matrix products next to them (measured in bench/README.md). Here each
function's forward and backward are one XLA-compiled computation (`tf.function(jit_compile=True)`,
which XLA fuses into one loop), joined by `tf.custom_gradient`, so:

* the forward is one pass and keeps only its input (and, for LayerNorm, two per-row floats);
* the backward is one pass that recomputes what it needs from that input.

Three functions go further and recompute in the backward what autodiff would keep: dropout keeps
only its boolean mask (not its input), `activation_dense` keeps the pre-activation but not the
activation's output, and `attention_context` keeps the probabilities but not their dropped
copy. A recomputation waits for the incoming gradient (a control dependency): TensorFlow's
executor otherwise runs any op whose inputs are ready, and would recompute during the forward
pass and keep the result after all.

The matrix products stay outside, on TensorFlow's own (oneDNN) kernels. The formulas are the
same as the unfused ones; XLA evaluates tanh/erf with its own polynomial approximations, so
values agree with them to float32 rounding (tests/test_fused_ops.py bounds the differences).

`ENABLED = False` (or the environment variable BERT_FUSED_OPS=0 before import) switches every
caller back to the plain TensorFlow ops, e.g. on a TensorFlow build without XLA.
"""
import contextlib
import math
import os
from typing import Callable, Iterator

import tensorflow as tf

ENABLED = os.environ.get("BERT_FUSED_OPS", "1") != "0"


@contextlib.contextmanager
def plain_ops() -> Iterator[None]:
    """Within the block, functions traced use the plain TensorFlow ops (ENABLED = False): what a
    SavedModel for servers without XLA needs. The formulas are the same."""
    global ENABLED
    saved = ENABLED
    ENABLED = False
    try:
        yield
    finally:
        ENABLED = saved

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# The public functions are straight-line Python around tf.functions and tf.custom_gradient.
# AutoGraph (which converts what a tf.function calls) has nothing to convert in them, and
# converting the closures below mixed up which tf.function a closure called in a test run
# ("_gelu_tanh_backward() missing 1 required positional argument"), so it is kept out.
_plain_python = tf.autograph.experimental.do_not_convert


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


@_plain_python
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


@_plain_python
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


@_plain_python
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
# Dropout: where(keep, x / keep_prob, 0)

def _random_keep_mask(x, rate):
    """A boolean mask shaped like x, True with probability 1 - rate: tf.nn.dropout's test
    (uniform >= rate), from tf.random.uniform, so --seed / tf.random.set_seed reproduce it."""
    return tf.random.uniform(tf.shape(x), dtype=tf.float32) >= rate


def _dropout_forward(x, keep, scale):
    return tf.where(keep, x * tf.cast(scale, x.dtype), tf.zeros([], x.dtype))


_dropout_xla = _xla(_dropout_forward)


@_plain_python
def dropout(x: tf.Tensor, rate: float, training: bool = False) -> tf.Tensor:
    """Inverted dropout of x (any shape/float dtype) while training; x unchanged otherwise.

    tf.nn.dropout's values (x * 1/(1 - rate) where uniform >= rate, else 0), but its backward
    keeps only the boolean mask: tf.nn.dropout's autodiff also keeps x, a full float tensor
    per dropout site.
    """
    if not training or rate <= 0:
        return x
    keep = _random_keep_mask(x, rate)
    scale = 1.0 / (1.0 - rate)
    if not ENABLED:
        return _dropout_forward(x, keep, scale)

    @tf.custom_gradient
    def fused(x):
        def grad(dy):
            return _dropout_xla(dy, keep, scale)
        return _dropout_xla(x, keep, scale), grad

    return fused(x)


# ---------------------------------------------------------------------------------------------
# Dense layer after an activation, y = activation(x) @ kernel + bias, keeping x only

@_plain_python
def activation_dense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor,
                     activation: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """y [T, out] = activation(x) @ kernel + bias for x [T, in], kernel [in, out], bias [out].

    The backward recomputes activation(x) from x instead of keeping it: in BERT's feed-forward
    block x and activation(x) are both [tokens, intermediate_size], the largest tensors of a
    layer after the attention probabilities, and autodiff of the plain form keeps both. The
    recomputation waits for the incoming gradient, so the executor cannot run it early.
    """
    # Variables (a mixed-precision policy's AutoCastVariables too) as tensors in their
    # compute dtype: the gradient reaches them through the read.
    kernel = tf.convert_to_tensor(kernel)
    bias = tf.convert_to_tensor(bias)

    def forward(x, kernel, bias):
        return tf.nn.bias_add(tf.matmul(activation(x), kernel), bias)

    if not ENABLED:  # the same formula, differentiated by TensorFlow
        return forward(x, kernel, bias)

    @tf.custom_gradient
    def fused(x, kernel, bias):
        y = forward(x, kernel, bias)

        def grad(dy):
            with tf.control_dependencies([dy]):
                x_again = tf.identity(x)
            with tf.GradientTape() as tape:
                tape.watch(x_again)
                h = activation(x_again)
            d_kernel = tf.matmul(h, dy, transpose_a=True)
            d_h = tf.matmul(dy, kernel, transpose_b=True)
            d_x = tape.gradient(h, x_again, output_gradients=d_h)
            return d_x, d_kernel, tf.reduce_sum(dy, axis=0)
        return y, grad

    return fused(x, kernel, bias)


# ---------------------------------------------------------------------------------------------
# Attention: dropout(softmax(scores * scale + adder)) @ value

def _attention_dropped(probs, keep, keep_prob, dtype):
    """The float32 probabilities after dropout (keep None: none), in dtype."""
    if keep is not None:
        probs = _dropout_forward(probs, keep, 1.0 / keep_prob)
    return tf.cast(probs, dtype)


def _attention_probs_forward(scores, adder, keep, scale, keep_prob):
    logits = tf.cast(scores, tf.float32) * scale + tf.cast(adder, tf.float32)
    probs = tf.nn.softmax(logits, axis=-1)
    return _attention_dropped(probs, keep, keep_prob, scores.dtype), probs


def _attention_probs_backward(d_dropped, probs, keep, scale, keep_prob):
    d = tf.cast(d_dropped, tf.float32)
    if keep is not None:
        d = _dropout_forward(d, keep, 1.0 / keep_prob)
    d_logits = probs * (d - tf.reduce_sum(d * probs, axis=-1, keepdims=True))
    return tf.cast(d_logits * scale, d_dropped.dtype)


_attention_probs_forward_xla = _xla(_attention_probs_forward)
_attention_dropped_xla = _xla(_attention_dropped)
_attention_probs_backward_xla = _xla(_attention_probs_backward)


@_plain_python
def attention_context(scores: tf.Tensor, adder: tf.Tensor, value: tf.Tensor, scale: float,
                      dropout_rate: float = 0.0, training: bool = False) -> tf.Tensor:
    """The attention of Google's modeling.py from the raw query.key products on:
    dropout(softmax(scores * scale + adder)) @ value, dropout only while training.

    scores [B, N, S_q, S_k]; adder broadcastable to it (0 for real tokens, -10000 for padding);
    value [B, N, S_k, D]; returns the context [B, N, S_q, D] in scores.dtype. Softmax in
    float32. The backward keeps the float32 probabilities and the dropout's boolean keep-mask,
    and recomputes the dropped probabilities (an [B, N, S, S] tensor autodiff of the matmul
    would keep) once the incoming gradient exists. The mask comes from tf.random.uniform, so
    --seed / tf.random.set_seed reproduce it.
    """
    keep = _random_keep_mask(scores, dropout_rate) if training and dropout_rate > 0 else None
    keep_prob = 1.0 - dropout_rate
    if not ENABLED:  # the same formula as plain ops, differentiated by TensorFlow
        return tf.matmul(_attention_probs_forward(scores, adder, keep, scale, keep_prob)[0], value)

    @tf.custom_gradient
    def fused(scores, value):
        dropped, probs = _attention_probs_forward_xla(scores, adder, keep, scale, keep_prob)
        context = tf.matmul(dropped, value)

        def grad(d_context):
            with tf.control_dependencies([d_context]):
                dropped_again = _attention_dropped_xla(probs, keep, keep_prob, scores.dtype)
            d_value = tf.matmul(dropped_again, d_context, transpose_a=True)
            d_dropped = tf.matmul(d_context, value, transpose_b=True)
            d_scores = _attention_probs_backward_xla(d_dropped, probs, keep, scale, keep_prob)
            return d_scores, d_value
        return context, grad

    return fused(scores, value)
