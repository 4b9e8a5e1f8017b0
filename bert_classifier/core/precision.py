"""--precision: float32 (the original), bfloat16 or mixed_float16 compute.

Mixed precision here is tf_keras's policy mechanism: `configure` sets the global policy
(`mixed_bfloat16` or `mixed_float16`) before the model is built, so every layer computes in
16 bits while its variables stay float32 (tf_keras AutoCastVariables, cast on read inside a
layer). What stays float32 whatever the policy:

- the variables, AdamWeightDecay's slots and the checkpoints (Google's names, float32 values);
- LayerNorm's statistics, the GELU and the attention softmax (fused_ops.py computes them in
  float32 and casts the result back);
- the classifier head (pooled output @ output_weights), the logits, the loss, and the
  eval/predict outputs.

float16 has a narrow exponent range, so its gradients need loss scaling: `LossScaling` wraps
AdamWeightDecay in tf_keras's dynamic LossScaleOptimizer (the loss is multiplied by a scale
starting at 2^15; a step whose summed gradients are not finite is skipped and halves the scale;
2000 finite steps in a row double it) and counts the skipped steps. bfloat16 has float32's
exponent range and needs none.

Where each precision runs (`check_supported`): bfloat16 on a TPU, on a GPU of compute
capability >= 8.0, or on a CPU with bfloat16 instructions (x86 AVX512_BF16 or AMX_BF16, Arm
BF16) with oneDNN on; elsewhere TensorFlow would emulate it, slower than float32, so it is an
error. mixed_float16 only on a GPU (float16 matrix products on a CPU are emulated; on a TPU use
bfloat16).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from typing import Optional, Set  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from absl import logging  # noqa: E402

PRECISIONS = ("float32", "bfloat16", "mixed_float16")
# The tf_keras policy of each --precision value.
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
             "mixed_float16": "mixed_float16"}
# /proc/cpuinfo flags of CPUs that compute bfloat16 matrix products natively (x86: AVX512_BF16,
# AMX; Arm: the BF16 extension, "bf16" in the Features line).
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# A float16 run whose loss scaler skipped this many steps in a row stops: by then the scale has
# fallen from 2^15 to its minimum of 1, so the gradients are not finite at any scale.
MAX_CONSECUTIVE_SKIPPED_STEPS = 20


def cpu_bfloat16_flags(cpuinfo_path: str = "/proc/cpuinfo") -> Set[str]:
    """The bfloat16 instruction flags this CPU advertises (empty where none or not Linux)."""
    try:
        with open(cpuinfo_path) as f:
            text = f.read()
    except OSError:
        return set()
    found = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(flag for flag in value.split() if flag in _BF16_CPU_FLAGS)
    return found


def _tensorflow_onednn_on() -> bool:
    """Whether TensorFlow turned its oneDNN kernels on in this process: by default only on CPUs
    with AVX512/AMX features; TF_ENABLE_ONEDNN_OPTS overrides it either way."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow build without the module: assume the default (on)
        return True
    return bool(_pywrap_util_port.IsMklEnabled())


def _onednn_turned_off_by_environment() -> bool:
    """Whether TF_ENABLE_ONEDNN_OPTS asks TensorFlow to leave oneDNN off."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") in ("0", "false", "False")


def onednn_enabled() -> bool:
    """Whether TensorFlow runs CPU matrix products through oneDNN (where bfloat16 is native)."""
    return _tensorflow_onednn_on() and not _onednn_turned_off_by_environment()


def _gpu_compute_capability() -> Optional[tuple]:
    """(major, minor) of the first GPU, or None without a GPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return tuple(details.get("compute_capability") or (0, 0))


def compute_device(use_tpu: bool) -> str:
    """'TPU', 'GPU' or 'CPU': where create_strategy puts the model for these flags."""
    if use_tpu:
        return "TPU"
    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def check_supported(precision: str, use_tpu: bool,
                    cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """Raises a one-line ValueError naming --precision when the device cannot compute in it
    natively; returns what the log should say is used (e.g. 'bfloat16 on CPU (avx512_bf16,
    oneDNN)')."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision={precision}: expected one of {', '.join(PRECISIONS)}")
    device = compute_device(use_tpu)
    if precision == "float32":
        return f"float32 on {device}"
    if precision == "mixed_float16":
        if device != "GPU":
            raise ValueError(
                f"--precision=mixed_float16 needs a GPU (this run computes on the {device}, "
                "where float16 is emulated); use --precision=bfloat16 on a TPU or a CPU with "
                "AVX512_BF16/AMX, else --precision=float32")
        return "float16 with dynamic loss scaling on GPU"
    # bfloat16
    if device == "TPU":
        return "bfloat16 on TPU"
    if device == "GPU":
        capability = _gpu_compute_capability() or (0, 0)
        if capability < (8, 0):
            raise ValueError(
                f"--precision=bfloat16 needs a GPU of compute capability 8.0 or newer (this "
                f"one is {capability[0]}.{capability[1]}); use --precision=mixed_float16")
        return f"bfloat16 on GPU (compute capability {capability[0]}.{capability[1]})"
    flags = cpu_bfloat16_flags(cpuinfo_path)
    if not flags:
        raise ValueError(
            "--precision=bfloat16: this CPU has no bfloat16 instructions (no avx512_bf16, "
            f"amx_bf16 or bf16 flag in {cpuinfo_path}), so TensorFlow would emulate them, "
            "slower than float32; use --precision=float32")
    if not onednn_enabled():
        if _onednn_turned_off_by_environment():
            raise ValueError(
                "--precision=bfloat16 on CPU needs TensorFlow's oneDNN kernels, which "
                "TF_ENABLE_ONEDNN_OPTS=0 turned off; unset it or use --precision=float32")
        raise ValueError(
            "--precision=bfloat16 on CPU needs TensorFlow's oneDNN kernels, which TensorFlow "
            "left off on this CPU; set TF_ENABLE_ONEDNN_OPTS=1 or use "
            "--precision=float32")
    return f"bfloat16 on CPU ({', '.join(sorted(flags))}, oneDNN)"


def configure(precision: str, use_tpu: bool = False) -> str:
    """Checks the precision (check_supported), sets tf_keras's global policy for the models
    built after it, and logs what is used. Returns the log's description."""
    description = check_supported(precision, use_tpu)
    tf_keras.mixed_precision.set_global_policy(_POLICIES[precision])
    logging.info("Precision: %s (tf_keras policy %s: float32 variables and outputs)",
                 description, _POLICIES[precision])
    return description


def set_policy(precision: str) -> None:
    """Sets tf_keras's global policy for `precision` without any device check (for tests and
    library callers that chose the device themselves)."""
    tf_keras.mixed_precision.set_global_policy(_POLICIES[precision])


def compute_dtype(model: tf_keras.layers.Layer) -> tf.DType:
    """The dtype a built model computes in (its policy's compute dtype)."""
    return tf.as_dtype(model.dtype_policy.compute_dtype)


class LossScaling:
    """Dynamic loss scaling for float16 training, and the count of the steps it skipped.

    Create it under the strategy's scope with the AdamWeightDecay it wraps. In the replica step:
    `scale_loss(loss)` before the gradients, then apply through `optimizer` (the
    LossScaleOptimizer) with the gradients divided by `loss_scale()` after the cross-replica sum
    (optimization.all_reduce_clip_and_apply(..., loss_scale=...)): a step whose gradients are
    not finite changes no weight and no slot (global_step still advances, as tf_keras counts
    it). In the host loop (cross-replica context): `record(skipped)` after each step.
    """

    def __init__(self, optimizer: tf_keras.optimizers.legacy.Optimizer):
        self.optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
        # The training step scales the loss and unscales the gradients itself (after their
        # cross-replica sum, with the scale read once per step), not through the wrapper's
        # get_scaled_loss/get_unscaled_gradients, whose flags would otherwise warn.
        self.optimizer._loss_has_been_scaled = True
        self.optimizer._gradients_have_been_unscaled = True
        with tf.init_scope():
            # Host-side counters, outside any strategy: the host loop updates them once a step.
            self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                             name="skipped_steps")
            self.consecutive_skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                                         name="consecutive_skipped_steps")
        self.logged_skipped_steps = 0  # what the training log has reported so far

    def loss_scale(self) -> tf.Tensor:
        """The current scale, a float32 scalar."""
        return tf.cast(self.optimizer.loss_scale, tf.float32)

    def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
        return loss * self.loss_scale()

    def record(self, skipped: tf.Tensor) -> None:
        """Counts one step, skipped (bool scalar) or not."""
        skipped = tf.cast(skipped, tf.int64)
        self.skipped_steps.assign_add(skipped)
        self.consecutive_skipped_steps.assign((self.consecutive_skipped_steps + 1) * skipped)
