"""Google BERT's fine-tuning optimizer for TensorFlow 2 (tf_keras legacy optimizer API).

The algorithm is the one `run_classifier.py` trains with, which is NOT the usual Adam:

    m      = beta_1 * m + (1 - beta_1) * g
    v      = beta_2 * v + (1 - beta_2) * g^2
    update = m / (sqrt(v) + epsilon)                  # no bias correction
    update += weight_decay_rate * param               # unless the name is excluded
    param  -= lr * update

with weight_decay_rate 0.01, beta_1 0.9, beta_2 0.999, epsilon 1e-6, and no decay for any
variable whose *checkpoint* name (Google's, e.g. `bert/encoder/layer_0/output/LayerNorm/gamma`,
`output_bias`) contains a match of "LayerNorm", "layer_norm" or "bias" (`re.search`).
The learning rate decays linearly from `init_lr` at step 0 to 0 at `num_train_steps`, with a
linear warmup over the first `num_warmup_steps` steps; the update from step k to k+1 uses the
rate at step k (so with warmup the first update has rate 0).

`tf-models-official`'s AdamWeightDecay is a different algorithm (bias-corrected Adam), so it is
not used here. `bias_correction=True` (opt-in, `--adam_bias_correction`) divides the moments by
(1 - beta^t) at step t = 1, 2, ... as standard Adam/AdamW do:

    update = (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon) + weight_decay_rate * param

In a short fine-tuning run this matters: without it, v at step t is (1 - beta_2^t) of its
corrected value (~7% at t = 75), so early updates are several times larger (bench/README.md,
"Accuracy ablation").

How a custom training loop uses this module (inside `strategy.run`, i.e. replica context):

    opt = optimization.create_optimizer(lr, num_train_steps, num_warmup_steps,
                                        name_to_variable=name_to_var)   # under strategy.scope()
    opt.build()                                # (or create_slots) slots now exist: restore/save
    slots = opt.slot_variables_by_checkpoint_name()          # {"<name>/adam_m": slot, ...}
    ...
    grads = tape.gradient(loss, variables)     # loss already scaled by 1/global_batch_size
    optimization.all_reduce_clip_and_apply(opt, grads, variables)

which is the same as: sum the gradients across replicas, `clip_gradients(grads, 1.0)` over the
whole model, then `opt.apply_gradients(zip(grads, variables), experimental_aggregate_gradients=False)`.
The global step is `opt.iterations` (int64; `opt.global_step` is the same variable).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import re  # noqa: E402
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from tf_keras.src.optimizers.legacy import optimizer_v2  # noqa: E402

# The names Google's create_optimizer excludes from weight decay (regexes, searched anywhere).
DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")

# Slot suffixes as they appear in Google's checkpoints: `<variable name>/adam_m`.
SLOT_NAMES = ("adam_m", "adam_v")


@tf_keras.utils.register_keras_serializable(package="bert_tf2")
class WarmupPolynomialDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Google's learning rate: polynomial decay measured from step 0, with linear warmup.

    rate(step) = (init_lr - end_lr) * (1 - min(step, N) / N) ** power + end_lr, N = num_train_steps
    and, if num_warmup_steps > 0 and step < num_warmup_steps (integer comparison),
    rate(step) = init_lr * step / num_warmup_steps. Steps past N stay at end_lr (no cycling).
    Computed in float32 like the original. `num_train_steps == 0` is treated as 1 (no update
    ever reads the rate then).
    """

    def __init__(
        self,
        init_lr: float,
        num_train_steps: int,
        num_warmup_steps: int = 0,
        end_learning_rate: float = 0.0,
        power: float = 1.0,
        name: Optional[str] = None,
    ):
        super().__init__()
        if int(num_train_steps) < 0 or int(num_warmup_steps) < 0:
            raise ValueError(
                "num_train_steps and num_warmup_steps must be >= 0, got %d and %d"
                % (num_train_steps, num_warmup_steps)
            )
        self.init_lr = float(init_lr)
        self.num_train_steps = int(num_train_steps)
        self.num_warmup_steps = int(num_warmup_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.power = float(power)
        self.name = name

    def __call__(self, step) -> tf.Tensor:
        """Rate at `step` (scalar, any real or integer dtype; whole numbers) as a float32 scalar."""
        with tf.name_scope(self.name or "WarmupPolynomialDecay"):
            # The optimizer hands over its step as a float; the warmup test is on integers.
            step_int = tf.cast(tf.round(tf.cast(step, tf.float64)), tf.int64)
            decay_steps = float(max(self.num_train_steps, 1))
            clipped = tf.cast(tf.minimum(step_int, int(decay_steps)), tf.float32)
            fraction_left = 1.0 - clipped / tf.constant(decay_steps, tf.float32)
            rate = (self.init_lr - self.end_learning_rate) * tf.pow(
                fraction_left, self.power
            ) + self.end_learning_rate
            if self.num_warmup_steps:
                warmup_rate = self.init_lr * (
                    tf.cast(step_int, tf.float32) / float(self.num_warmup_steps)
                )
                rate = tf.where(step_int < self.num_warmup_steps, warmup_rate, rate)
            return tf.cast(rate, tf.float32)

    def get_config(self) -> dict:
        return {
            "init_lr": self.init_lr,
            "num_train_steps": self.num_train_steps,
            "num_warmup_steps": self.num_warmup_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "name": self.name,
        }


def _strip_tensor_suffix(name: str) -> str:
    """'dense/bias:0' -> 'dense/bias' (what the original does to graph variable names)."""
    match = re.match(r"^(.*):\d+$", name)
    return match.group(1) if match else name


@tf_keras.utils.register_keras_serializable(package="bert_tf2")
class AdamWeightDecay(tf_keras.optimizers.legacy.Optimizer):
    """Adam with decoupled weight decay and (by default) NO bias correction (Google BERT's).

    Args:
      learning_rate: float or a tf_keras `LearningRateSchedule` (called with `iterations`).
      weight_decay_rate: decay coefficient; 0 disables decay everywhere (original class default).
      beta_1, beta_2, epsilon: Adam constants (epsilon added outside the square root).
      exclude_from_weight_decay: regexes; a variable whose name matches any (`re.search`) gets
        no decay.
      bias_correction: divide m and v by (1 - beta^t) (standard Adam); False is the original.
      name_to_variable: {checkpoint name: tf.Variable}, e.g.
        `checkpoint_names.variables_by_checkpoint_name(model)`. The exclusion regexes run on these
        names, because TF2 variable names need not be Google's. A variable that is not in the
        mapping falls back to its TF2 name without ":0".
      name: optimizer name.

    Slots are named "adam_m" and "adam_v". Gradients may be dense tensors or `tf.IndexedSlices`;
    IndexedSlices are applied as their dense sum (every row's m and v decay every step, as in
    the original). The optimizer never clips or sums gradients across replicas itself when
    called with `experimental_aggregate_gradients=False`: see `all_reduce_clip_and_apply`.
    """

    _HAS_AGGREGATE_GRAD = True

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay_rate: float = 0.0,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-6,
        exclude_from_weight_decay: Optional[Sequence[str]] = None,
        name_to_variable: Optional[Mapping[str, tf.Variable]] = None,
        name: str = "AdamWeightDecay",
        bias_correction: bool = False,
        **kwargs,
    ):
        super().__init__(name, **kwargs)
        self._set_hyper("learning_rate", learning_rate)
        self.weight_decay_rate = float(weight_decay_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.exclude_from_weight_decay = list(exclude_from_weight_decay or [])
        self.bias_correction = bool(bias_correction)
        self.name_to_variable: Dict[str, tf.Variable] = dict(name_to_variable or {})
        # Keyed the way the base class keys slots, so distributed components find their name.
        self._checkpoint_names = {
            optimizer_v2._var_key(var): name for name, var in self.name_to_variable.items()
        }

    @property
    def global_step(self) -> tf.Variable:
        """The int64 step counter (`iterations`), incremented once per `apply_gradients`."""
        return self.iterations

    def checkpoint_name(self, var: tf.Variable) -> str:
        """The name the decay exclusion is tested on: the checkpoint name, else `var.name` minus ':0'."""
        key = optimizer_v2._var_key(var)
        if key in self._checkpoint_names:
            return self._checkpoint_names[key]
        if hasattr(var, "_distributed_container"):
            var = var._distributed_container()
        return _strip_tensor_suffix(var.name)

    def use_weight_decay(self, param_name: str) -> bool:
        """Whether a variable with checkpoint name `param_name` is decayed (original's rule)."""
        if not self.weight_decay_rate:
            return False
        for pattern in self.exclude_from_weight_decay:
            if re.search(pattern, param_name) is not None:
                return False
        return True

    def build(self, var_list: Optional[Iterable[tf.Variable]] = None) -> None:
        """Create `iterations` and the adam_m/adam_v slots now (all zero).

        Call it under the same `strategy.scope()` the model was built in, before restoring a
        checkpoint into the slots. `var_list` defaults to the variables of `name_to_variable`.
        """
        if var_list is None:
            var_list = list(self.name_to_variable.values())
        with tf.init_scope():
            self._create_all_weights(list(var_list))

    def create_slots(self, var_list: Optional[Iterable[tf.Variable]] = None) -> None:
        """Same as `build(var_list)`."""
        self.build(var_list)

    @property
    def learning_rate_schedule(self) -> Callable[[int], tf.Tensor]:
        """The rate as a function of the step (the schedule, or a constant for a fixed rate)."""
        rate = self._get_hyper("learning_rate")
        if isinstance(rate, tf_keras.optimizers.schedules.LearningRateSchedule):
            return rate
        return lambda step: tf.convert_to_tensor(rate, tf.float32)

    def slot_variables_by_checkpoint_name(
        self, name_to_variable: Optional[Mapping[str, tf.Variable]] = None
    ) -> Dict[str, tf.Variable]:
        """{"<name>/adam_m": slot, "<name>/adam_v": slot} for every variable that has slots.

        `name_to_variable` defaults to the mapping given at construction. Call `build()` (or
        apply a step) first; a variable without slots is a ValueError.
        """
        if name_to_variable is None:
            name_to_variable = self.name_to_variable
        slots = {}
        for name, var in name_to_variable.items():
            for slot_name in SLOT_NAMES:
                try:
                    slots[f"{name}/{slot_name}"] = self.get_slot(var, slot_name)
                except KeyError:
                    raise ValueError(
                        f"optimizer has no {slot_name} slot for {name}: call build() first"
                    ) from None
        return slots

    def _create_slots(self, var_list):
        for var in var_list:
            for slot_name in SLOT_NAMES:
                self.add_slot(var, slot_name)

    def _prepare_local(self, var_device, var_dtype, apply_state):
        super()._prepare_local(var_device, var_dtype, apply_state)
        apply_state[(var_device, var_dtype)].update(
            beta_1=tf.constant(self.beta_1, var_dtype),
            beta_2=tf.constant(self.beta_2, var_dtype),
            one_minus_beta_1=tf.constant(1.0 - self.beta_1, var_dtype),
            one_minus_beta_2=tf.constant(1.0 - self.beta_2, var_dtype),
            epsilon=tf.constant(self.epsilon, var_dtype),
            weight_decay_rate=tf.constant(self.weight_decay_rate, var_dtype),
        )
        if self.bias_correction:
            # t = 1 for the first update (iterations counts the updates already applied).
            step = tf.cast(self.iterations + 1, var_dtype)
            apply_state[(var_device, var_dtype)].update(
                m_correction=1.0 - tf.pow(tf.constant(self.beta_1, var_dtype), step),
                v_correction=1.0 - tf.pow(tf.constant(self.beta_2, var_dtype), step),
            )

    def _resource_apply_dense(self, grad, var, apply_state=None):
        var_device, var_dtype = var.device, var.dtype.base_dtype
        coef = (apply_state or {}).get((var_device, var_dtype)) or self._fallback_apply_state(
            var_device, var_dtype
        )
        m = self.get_slot(var, "adam_m")
        v = self.get_slot(var, "adam_v")
        # Read m, v and var only once the gradient exists. Otherwise TensorFlow's executor runs
        # `beta_1 * m`, `beta_2 * v` and `weight_decay_rate * var` (which need no gradient) at
        # the start of the step and keeps those three parameter-sized tensors alive through the
        # whole forward and backward pass: +3x the model's size at the peak (bench/README.md).
        with tf.control_dependencies([grad]):
            m_value, v_value = m.read_value(), v.read_value()
            var_value = tf.identity(var)
        next_m = coef["beta_1"] * m_value + coef["one_minus_beta_1"] * grad
        next_v = coef["beta_2"] * v_value + coef["one_minus_beta_2"] * tf.square(grad)
        if self.bias_correction:
            update = (next_m / coef["m_correction"]) / (
                tf.sqrt(next_v / coef["v_correction"]) + coef["epsilon"])
        else:
            update = next_m / (tf.sqrt(next_v) + coef["epsilon"])
        if self.use_weight_decay(self.checkpoint_name(var)):
            update += coef["weight_decay_rate"] * var_value
        # All three values are computed from the old state before any assignment.
        return tf.group(
            var.assign_sub(coef["lr_t"] * update, read_value=False),
            m.assign(next_m, read_value=False),
            v.assign(next_v, read_value=False),
        )

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        # Dense semantics: the original turns the gathered gradient into a dense tensor, so the
        # moments of rows with no gradient still decay.
        rows = var.shape[0] if var.shape[0] is not None else tf.shape(var)[0]
        dense = tf.math.unsorted_segment_sum(grad, indices, num_segments=rows)
        return self._resource_apply_dense(dense, var, apply_state)

    def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices, **kwargs):
        # unsorted_segment_sum already adds duplicate rows; skip the base class's dedup pass.
        return self._resource_apply_sparse(grad, handle, indices, **kwargs)

    def get_config(self) -> dict:
        """Serialisable config (the name mapping is not serialised: pass it again)."""
        config = super().get_config()
        config.update(
            learning_rate=self._serialize_hyperparameter("learning_rate"),
            weight_decay_rate=self.weight_decay_rate,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            exclude_from_weight_decay=list(self.exclude_from_weight_decay),
            bias_correction=self.bias_correction,
        )
        return config


def create_optimizer(
    init_lr: float,
    num_train_steps: int,
    num_warmup_steps: int,
    name_to_variable: Optional[Mapping[str, tf.Variable]] = None,
    weight_decay_rate: float = 0.01,
    bias_correction: bool = False,
) -> AdamWeightDecay:
    """Google's fine-tuning optimizer: AdamWeightDecay over a WarmupPolynomialDecay rate.

    Args:
      init_lr: peak learning rate (`--learning_rate`).
      num_train_steps: steps over which the rate decays linearly to 0.
      num_warmup_steps: linear warmup steps (0 = none).
      name_to_variable: {Google checkpoint name: tf.Variable}, from
        `checkpoint_names.variables_by_checkpoint_name(model)`; decay exclusion uses these names.
      weight_decay_rate: 0.01 as in the original.
      bias_correction: standard Adam's bias correction (`--adam_bias_correction`); False is the
        original's algorithm.

    Create it under the strategy's scope. Gradients must be summed across replicas and clipped
    by the caller (see `all_reduce_clip_and_apply`).
    """
    schedule = WarmupPolynomialDecay(
        init_lr=init_lr,
        num_train_steps=num_train_steps,
        num_warmup_steps=num_warmup_steps,
        end_learning_rate=0.0,
        power=1.0,
    )
    return AdamWeightDecay(
        learning_rate=schedule,
        weight_decay_rate=weight_decay_rate,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        exclude_from_weight_decay=list(DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY),
        name_to_variable=name_to_variable,
        bias_correction=bias_correction,
    )


def _to_dense(grad):
    if isinstance(grad, tf.IndexedSlices):
        return tf.convert_to_tensor(grad)
    return grad


def clip_gradients(grads: Sequence[Optional[tf.Tensor]], clip_norm: float = 1.0) -> List:
    """`tf.clip_by_global_norm` over all gradients at once (None entries stay None)."""
    clipped, _ = tf.clip_by_global_norm(list(grads), clip_norm=clip_norm)
    return clipped


def all_reduce_clip_and_apply(
    optimizer: AdamWeightDecay,
    grads: Sequence[Optional[tf.Tensor]],
    variables: Sequence[tf.Variable],
    clip_norm: float = 1.0,
    loss_scale: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Sum gradients over replicas, clip by global norm, apply; call in replica context.

    `grads[i]` (Tensor, IndexedSlices or None) is the gradient of this replica's share of the
    loss (already divided by the GLOBAL batch size) for `variables[i]`. IndexedSlices are made
    dense first. Without a strategy the sum is over the one default replica. With `loss_scale`
    (float16 training: the gradients are of loss * loss_scale) the sums are divided by it
    before clipping, and `optimizer` is the LossScaleOptimizer that skips non-finite steps.
    Returns the global norm of the summed gradients before clipping (float32 scalar; not
    finite when a gradient is not).
    """
    grads = list(grads)
    variables = list(variables)
    present = [i for i, g in enumerate(grads) if g is not None]
    if present:
        dense = [_to_dense(grads[i]) for i in present]
        summed = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, dense)
        for i, g in zip(present, summed):
            grads[i] = g if loss_scale is None else g / tf.cast(loss_scale, g.dtype)
    grads, global_norm = tf.clip_by_global_norm(grads, clip_norm=clip_norm)
    optimizer.apply_gradients(
        zip(grads, variables), experimental_aggregate_gradients=False
    )
    return global_norm
