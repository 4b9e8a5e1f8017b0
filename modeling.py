"""BERT in tf_keras: Google's `BertConfig`, `BertModel` and the run_classifier head.

The numerics follow Google's original modeling.py (post-LayerNorm Transformer, LayerNorm epsilon
1e-12, attention mask adder -10000, tanh-approximated GELU for "gelu", tanh pooler on the first
token, truncated-normal kernels and zero biases). The layer structure follows the Hugging Face
style: one small class per block. Every block works on a [batch * seq, hidden] matrix, as the
original does, so each projection is a single large MatMul.

Variable names are not used to load or save weights: the mapping to Google's checkpoint names
lives in checkpoints.py. The layers are still named like the original's scopes (`embeddings`,
`encoder/layer_0/attention/self/query`, `LayerNorm`, ...) so variable names stay readable and
regexes such as "LayerNorm" or "bias" match the same variables as in the original.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Union  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from bert_classifier.core import fused_ops  # noqa: E402

# The original's LayerNorm is tf.contrib.layers.layer_norm, whose epsilon is 1e-12.
LAYER_NORM_EPSILON = 1e-12
# The original hard-codes these for the classifier head (run_classifier.create_model).
CLASSIFIER_INITIALIZER_STDDEV = 0.02
CLASSIFIER_DROPOUT_RATE = 0.1


class BertConfig(object):
    """Configuration for `BertModel` (the original's fields, defaults and JSON format)."""

    def __init__(self,
                 vocab_size: Optional[int],
                 hidden_size: int = 768,
                 num_hidden_layers: int = 12,
                 num_attention_heads: int = 12,
                 intermediate_size: int = 3072,
                 hidden_act: str = "gelu",
                 hidden_dropout_prob: float = 0.1,
                 attention_probs_dropout_prob: float = 0.1,
                 max_position_embeddings: int = 512,
                 type_vocab_size: int = 16,
                 initializer_range: float = 0.02):
        """Stores the hyper-parameters; see SPEC §B.1 for their meaning."""
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.hidden_act = hidden_act
        self.intermediate_size = intermediate_size
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range

    @classmethod
    def from_dict(cls, json_object: Dict[str, Any]) -> "BertConfig":
        """Builds a config from a dict; every key is kept, unknown ones included."""
        config = cls(vocab_size=None)
        for key, value in json_object.items():
            config.__dict__[key] = value
        return config

    @classmethod
    def from_json_file(cls, json_file: str) -> "BertConfig":
        """Reads a bert_config.json (local path or any tf.io.gfile URL such as gs://)."""
        with tf.io.gfile.GFile(json_file, "r") as reader:
            text = reader.read()
        try:
            json_object = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError("%s is not valid JSON: %s" % (json_file, e)) from e
        if not isinstance(json_object, dict):
            raise ValueError("%s must hold a JSON object of BERT hyper-parameters" % json_file)
        return cls.from_dict(json_object)

    def to_dict(self) -> Dict[str, Any]:
        """A deep copy of every attribute."""
        return copy.deepcopy(self.__dict__)

    def to_json_string(self) -> str:
        """JSON with indent 2, sorted keys and a trailing newline (the original's format)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def gelu(x: tf.Tensor) -> tf.Tensor:
    """Google BERT's GELU: the tanh approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))).

    The same values as tf.nn.gelu(x, approximate=True), run as one fused kernel forward and one
    backward (fused_ops.py).
    """
    return fused_ops.gelu_tanh(x)


def gelu_exact(x: tf.Tensor) -> tf.Tensor:
    """The erf GELU 0.5x(1 + erf(x / sqrt(2))): Hugging Face's "gelu" (fused, fused_ops.py)."""
    return fused_ops.gelu_erf(x)


def get_activation(activation_string: Optional[Union[str, Callable]]) -> Optional[Callable]:
    """Maps an activation name (case-insensitive) to a function.

    "gelu" is the tanh approximation (as Google's BERT), "gelu_exact" the erf form; also
    "relu", "tanh", "linear". None or "" gives None (no activation); a callable is returned
    unchanged; anything else raises ValueError("Unsupported activation: %s").
    """
    if not isinstance(activation_string, str):
        return activation_string
    if not activation_string:
        return None
    act = activation_string.lower()
    if act == "linear":
        return None
    if act == "relu":
        return tf.nn.relu
    if act == "gelu":
        return gelu
    if act == "gelu_exact":
        return gelu_exact
    if act == "tanh":
        return tf.tanh
    raise ValueError("Unsupported activation: %s" % act)


@tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([2], tf.int64),
                              tf.TensorSpec([], tf.float32)])
def _truncated_normal_values(shape, seed, stddev):
    # One graph, so the scaled values reuse the draw's buffer: eagerly, the draw, its product
    # with stddev and the sum with the mean are three live tensors of the variable's size
    # (four with the variable itself -- 170 MB for BERT's 30522 x 384 word embeddings).
    return tf.random.stateless_truncated_normal(shape, seed, mean=0.0, stddev=stddev)


@tf_keras.utils.register_keras_serializable(package="bert_tf2")
class TruncatedNormal(tf_keras.initializers.Initializer):
    """Normal(0, stddev) values cut at 2 stddev (the original's tf.truncated_normal_initializer).

    Each call draws a fresh seed from TensorFlow's global random state, so tf.random.set_seed
    (the --seed flag) makes every initial weight reproducible; tf_keras's unseeded initializers
    draw theirs from Python's `random` module instead.
    """

    def __init__(self, stddev: float = 0.02):
        self.stddev = stddev

    def __call__(self, shape, dtype=None, **kwargs) -> tf.Tensor:
        seed = tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64)
        values = _truncated_normal_values(tf.constant(list(shape), tf.int64), seed,
                                          tf.constant(self.stddev, tf.float32))
        dtype = tf.as_dtype(dtype or tf.float32)
        return values if dtype == tf.float32 else tf.cast(values, dtype)

    def get_config(self) -> Dict[str, Any]:
        return {"stddev": self.stddev}


def create_initializer(initializer_range: float = 0.02) -> tf_keras.initializers.Initializer:
    """Truncated normal (cut at 2 stddev, as tf.truncated_normal_initializer) for kernels."""
    return TruncatedNormal(stddev=initializer_range)


def get_shape_list(tensor: tf.Tensor) -> List[Union[int, tf.Tensor]]:
    """The shape as a list: Python ints where static, scalar tensors where dynamic."""
    static = tensor.shape.as_list()
    dynamic = None
    result = []
    for index, dim in enumerate(static):
        if dim is None:
            if dynamic is None:
                dynamic = tf.shape(tensor)
            dim = dynamic[index]
        result.append(dim)
    return result


# ----------------------------------------------------------------------------------------------
# Building blocks. Each works on 2-D [tokens, width] matrices unless said otherwise.


class Dense(tf_keras.layers.Layer):
    """y = activation(input_activation(x) @ kernel + bias) on a [tokens, in] matrix; kernel
    [in, out] as in Google's checkpoints. Either activation may be None.

    input_activation is the previous layer's activation moved here (the feed-forward block's
    GELU): fused_ops.activation_dense recomputes it in the backward pass instead of keeping its
    [tokens, in] output.
    """

    def __init__(self, input_size: int, units: int, initializer_range: float,
                 activation: Optional[Callable] = None,
                 input_activation: Optional[Callable] = None, **kwargs):
        super().__init__(**kwargs)
        self.input_size = input_size
        self.units = units
        self.initializer_range = initializer_range
        self.activation = activation
        self.input_activation = input_activation

    def build(self, input_shape=None):
        self.kernel = self.add_weight(
            "kernel", shape=[self.input_size, self.units],
            initializer=create_initializer(self.initializer_range), trainable=True)
        self.bias = self.add_weight(
            "bias", shape=[self.units], initializer="zeros", trainable=True)
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if self.input_activation is not None:
            y = fused_ops.activation_dense(x, self.kernel, self.bias, self.input_activation)
        else:
            # MatMul + BiasAdd is the pattern grappler fuses into one oneDNN op.
            y = tf.nn.bias_add(tf.matmul(x, self.kernel), self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y


class LayerNorm(tf_keras.layers.Layer):
    """Layer normalisation over the last axis, epsilon 1e-12, variables `gamma` and `beta`.

    Computed in float32 even under a mixed-precision policy, then cast back.
    """

    def __init__(self, hidden_size: int, epsilon: float = LAYER_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.epsilon = epsilon

    def build(self, input_shape=None):
        # Created in float32 whatever the policy: the statistics need the precision.
        self.gamma = self.add_weight("gamma", shape=[self.hidden_size], initializer="ones",
                                     dtype=tf.float32, experimental_autocast=False)
        self.beta = self.add_weight("beta", shape=[self.hidden_size], initializer="zeros",
                                    dtype=tf.float32, experimental_autocast=False)
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        # One fused kernel forward and one backward (fused_ops.py), the original's formula.
        return fused_ops.layer_norm(x, self.gamma, self.beta, self.epsilon)


class BertEmbeddings(tf_keras.layers.Layer):
    """word + token-type + position embeddings -> LayerNorm -> dropout; output [B*S, H]."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.LayerNorm = LayerNorm(config.hidden_size, name="LayerNorm")

    def build(self, input_shape=None):
        c = self.config
        self.word_embeddings = self.add_weight(
            "word_embeddings", shape=[c.vocab_size, c.hidden_size],
            initializer=create_initializer(c.initializer_range))
        self.token_type_embeddings = self.add_weight(
            "token_type_embeddings", shape=[c.type_vocab_size, c.hidden_size],
            initializer=create_initializer(c.initializer_range))
        self.position_embeddings = self.add_weight(
            "position_embeddings", shape=[c.max_position_embeddings, c.hidden_size],
            initializer=create_initializer(c.initializer_range))
        _build_child(self.LayerNorm)
        super().build(input_shape)

    def call(self, input_ids: tf.Tensor, token_type_ids: tf.Tensor, seq_length,
             training: bool = False) -> tf.Tensor:
        # The original gathers words, multiplies one-hot token types with the table and slices
        # positions; a gather gives bit-identical values for all three.
        flat_ids = tf.reshape(input_ids, [-1])
        flat_types = tf.reshape(token_type_ids, [-1])
        words = tf.gather(self.word_embeddings, flat_ids)
        types = tf.gather(self.token_type_embeddings, flat_types)
        positions = self.position_embeddings[:seq_length]  # [S, H]
        batch_words = tf.reshape(words + types, [-1, seq_length, self.config.hidden_size])
        x = batch_words + tf.cast(positions, batch_words.dtype)[tf.newaxis]
        x = tf.reshape(x, [-1, self.config.hidden_size])
        x = self.LayerNorm(x)
        return fused_ops.dropout(x, self.config.hidden_dropout_prob, training=training)


class BertSelfAttention(tf_keras.layers.Layer):
    """query/key/value projections, scaled dot product, mask adder, softmax, dropout.

    Input [B*S, H]; output the context layer [B*S, H] (heads concatenated).
    """

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        h, r = config.hidden_size, config.initializer_range
        self.query = Dense(h, h, r, name="query")
        self.key = Dense(h, h, r, name="key")
        self.value = Dense(h, h, r, name="value")

    def build(self, input_shape=None):
        for layer in (self.query, self.key, self.value):
            _build_child(layer)
        super().build(input_shape)

    def call(self, x: tf.Tensor, attention_adder: tf.Tensor, batch_size, seq_length,
             training: bool = False) -> tf.Tensor:
        def heads(t):  # [B*S, H] -> [B, N, S, D]
            t = tf.reshape(t, [batch_size, seq_length, self.num_heads, self.head_size])
            return tf.transpose(t, [0, 2, 1, 3])

        q = heads(self.query(x))
        k = heads(self.key(x))
        v = heads(self.value(x))
        scores = tf.matmul(q, k, transpose_b=True)  # [B, N, S, S]
        # dropout(softmax(scores / sqrt(D) + adder)) @ v: softmax and dropout in one fused pass.
        context = fused_ops.attention_context(
            scores, attention_adder, v, 1.0 / math.sqrt(self.head_size),
            self.config.attention_probs_dropout_prob, training=training)  # [B, N, S, D]
        context = tf.transpose(context, [0, 2, 1, 3])
        return tf.reshape(context, [-1, self.config.hidden_size])


class BertSelfOutput(tf_keras.layers.Layer):
    """dense -> dropout -> LayerNorm(x + residual): the original's attention/output block and,
    with input_activation = the hidden activation, its layer/output block (whose input is then
    BertIntermediate's pre-activation)."""

    def __init__(self, config: BertConfig, input_size: int,
                 input_activation: Optional[Callable] = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.dense = Dense(input_size, config.hidden_size, config.initializer_range,
                           input_activation=input_activation, name="dense")
        self.LayerNorm = LayerNorm(config.hidden_size, name="LayerNorm")

    def build(self, input_shape=None):
        _build_child(self.dense)
        _build_child(self.LayerNorm)
        super().build(input_shape)

    def call(self, x: tf.Tensor, residual: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = fused_ops.dropout(self.dense(x), self.config.hidden_dropout_prob, training=training)
        return self.LayerNorm(x + residual)


class BertAttention(tf_keras.layers.Layer):
    """Self-attention (`self`) followed by its output block (`output`)."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        # Attribute named self_attention (`self` is taken); its layer name is the original's.
        self.self_attention = BertSelfAttention(config, name="self")
        self.attention_output = BertSelfOutput(config, config.hidden_size, name="output")

    def build(self, input_shape=None):
        _build_child(self.self_attention)
        _build_child(self.attention_output)
        super().build(input_shape)

    def call(self, x, attention_adder, batch_size, seq_length, training=False):
        context = self.self_attention(x, attention_adder, batch_size, seq_length,
                                      training=training)
        return self.attention_output(context, x, training=training)


class BertIntermediate(tf_keras.layers.Layer):
    """The feed-forward expansion: dense to intermediate_size, [B*S, H] -> [B*S, I].

    Returns the pre-activation: the hidden activation is applied by the layer's output block,
    fused with its matrix product (Dense.input_activation), so that the backward pass does not
    keep a second [B*S, I] tensor.
    """

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = Dense(config.hidden_size, config.intermediate_size, config.initializer_range,
                           name="dense")

    def build(self, input_shape=None):
        _build_child(self.dense)
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.dense(x)


class BertLayer(tf_keras.layers.Layer):
    """One post-LN Transformer layer: attention, intermediate, output."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.attention = BertAttention(config, name="attention")
        self.intermediate = BertIntermediate(config, name="intermediate")
        self.output_block = BertSelfOutput(
            config, config.intermediate_size, input_activation=get_activation(config.hidden_act),
            name="output")

    def build(self, input_shape=None):
        _build_child(self.attention)
        _build_child(self.intermediate)
        _build_child(self.output_block)
        super().build(input_shape)

    def call(self, x, attention_adder, batch_size, seq_length, training=False):
        attention_output = self.attention(x, attention_adder, batch_size, seq_length,
                                          training=training)
        pre_activation = self.intermediate(attention_output)
        return self.output_block(pre_activation, attention_output, training=training)


class BertEncoder(tf_keras.layers.Layer):
    """num_hidden_layers BertLayers; returns every layer's output ([B*S, H] each)."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.layers = [BertLayer(config, name="layer_%d" % i)
                       for i in range(config.num_hidden_layers)]

    def build(self, input_shape=None):
        for layer in self.layers:
            _build_child(layer)
        super().build(input_shape)

    def call(self, x, attention_adder, batch_size, seq_length, training=False):
        outputs = []
        for layer in self.layers:
            x = layer(x, attention_adder, batch_size, seq_length, training=training)
            outputs.append(x)
        return outputs


class BertPooler(tf_keras.layers.Layer):
    """tanh(dense(first token)): [B, S, H] -> [B, H]."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = Dense(config.hidden_size, config.hidden_size, config.initializer_range,
                           activation=tf.tanh, name="dense")

    def build(self, input_shape=None):
        _build_child(self.dense)
        super().build(input_shape)

    def call(self, sequence_output: tf.Tensor) -> tf.Tensor:
        return self.dense(sequence_output[:, 0, :])


def _check_config(config: BertConfig) -> None:
    """Raises the errors the original raises for impossible configurations."""
    if config.vocab_size is None:
        raise ValueError("BertConfig.vocab_size must be set (bert_config.json needs vocab_size)")
    if config.hidden_size % config.num_attention_heads != 0:
        raise ValueError(
            "The hidden size (%d) is not a multiple of the number of attention heads (%d)"
            % (config.hidden_size, config.num_attention_heads))
    get_activation(config.hidden_act)  # unknown names fail here, not at the first call


class BertModel(tf_keras.Model):
    """BERT encoder. `outputs = model(input_ids, input_mask=None, token_type_ids=None,
    training=False)` with int [B, S] inputs returns a dict:
    sequence_output [B, S, H], pooled_output [B, H], all_encoder_layers (list of [B, S, H]),
    embedding_output [B, S, H]. Dropout is applied only when training=True.
    """

    def __init__(self, config: BertConfig, name: str = "bert", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_config(config)
        self.config = copy.deepcopy(config)
        self.embeddings = BertEmbeddings(self.config, name="embeddings")
        self.encoder = BertEncoder(self.config, name="encoder")
        self.pooler = BertPooler(self.config, name="pooler")
        object.__setattr__(self, "_last_outputs", None)

    def build(self, input_shape=None):
        _build_child(self.embeddings)
        _build_child(self.encoder)
        _build_child(self.pooler)
        # tf_keras.Model.build insists on an input shape; the variables are all made above.
        tf_keras.layers.Layer.build(self, input_shape)

    def build_variables(self) -> None:
        """Creates every variable without data (call it under the strategy scope)."""
        _build_in_scope(self)

    def call(self, input_ids, input_mask=None, token_type_ids=None, training=False):
        input_ids = tf.convert_to_tensor(input_ids)
        batch_size, seq_length = get_shape_list(input_ids)
        if input_mask is None:
            input_mask = tf.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = tf.zeros_like(input_ids)
        input_mask = tf.convert_to_tensor(input_mask)
        token_type_ids = tf.convert_to_tensor(token_type_ids)
        max_positions = self.config.max_position_embeddings
        if isinstance(seq_length, int):
            if seq_length > max_positions:
                raise ValueError(
                    "The sequence length (%d) is longer than max_position_embeddings (%d) of the "
                    "BERT config" % (seq_length, max_positions))
        else:
            tf.debugging.assert_less_equal(
                seq_length, max_positions,
                message="The sequence length is longer than max_position_embeddings")

        hidden = self.config.hidden_size
        embedding_output = self.embeddings(input_ids, token_type_ids, seq_length,
                                           training=training)
        # [B, 1, 1, S]: 0 for real tokens, -10000 for padding, broadcast over heads and queries.
        mask = tf.cast(tf.reshape(input_mask, [batch_size, 1, 1, seq_length]),
                       embedding_output.dtype)
        attention_adder = (1.0 - mask) * -10000.0
        layers = self.encoder(embedding_output, attention_adder, batch_size, seq_length,
                              training=training)

        def unflatten(t):
            return tf.reshape(t, [batch_size, seq_length, hidden])

        all_encoder_layers = [unflatten(t) for t in layers]
        sequence_output = all_encoder_layers[-1]
        pooled_output = self.pooler(sequence_output)
        outputs = {
            "sequence_output": sequence_output,
            "pooled_output": pooled_output,
            "all_encoder_layers": all_encoder_layers,
            "embedding_output": unflatten(embedding_output),
        }
        # Kept for the original's get_*() accessors; bypasses Keras attribute tracking.
        object.__setattr__(self, "_last_outputs", outputs)
        return outputs

    def _last(self, key: str):
        if self._last_outputs is None:
            raise ValueError("BertModel has not been called yet: call it on input_ids first")
        return self._last_outputs[key]

    def get_pooled_output(self) -> tf.Tensor:
        """[B, H] pooled output of the last call."""
        return self._last("pooled_output")

    def get_sequence_output(self) -> tf.Tensor:
        """[B, S, H] final hidden states of the last call."""
        return self._last("sequence_output")

    def get_all_encoder_layers(self) -> List[tf.Tensor]:
        """Every layer's [B, S, H] output of the last call."""
        return self._last("all_encoder_layers")

    def get_embedding_output(self) -> tf.Tensor:
        """[B, S, H] embeddings (after LayerNorm and dropout) of the last call."""
        return self._last("embedding_output")

    def get_embedding_table(self) -> tf.Variable:
        """The [vocab_size, H] word embedding variable."""
        self.build_variables()
        return self.embeddings.word_embeddings


class BertClassifier(tf_keras.Model):
    """run_classifier's create_model: BertModel pooled output -> dropout 0.1 (training only)
    -> logits = pooled @ output_weights^T + output_bias.

    `logits = model(input_ids, input_mask, segment_ids, training=False)` -> [B, num_labels]
    (float32, computed in float32 from the pooled output under any precision policy). Variables `output_weights` [num_labels, H] (truncated normal, stddev 0.02 fixed
    as in the original) and `output_bias` [num_labels] (zeros).
    """

    def __init__(self, config: BertConfig, num_labels: int, name: str = "bert_classifier",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if num_labels < 1:
            raise ValueError("num_labels must be >= 1, got %d" % num_labels)
        self.num_labels = num_labels
        self.bert = BertModel(config, name="bert")
        self.config = self.bert.config
        # The original hard-codes 0.1; a config may set `classifier_dropout_prob` (e.g. 0 for
        # exactly reproducible multi-replica comparisons).
        self.dropout_rate = getattr(self.config, "classifier_dropout_prob",
                                    CLASSIFIER_DROPOUT_RATE)

    def build(self, input_shape=None):
        _build_child(self.bert)
        hidden = self.config.hidden_size
        # The head stays float32 under a mixed-precision policy (no autocast): a [B, H] x
        # [H, num_labels] product costs nothing, and the logits keep float32's precision.
        self.output_weights = self.add_weight(
            "output_weights", shape=[self.num_labels, hidden],
            initializer=create_initializer(CLASSIFIER_INITIALIZER_STDDEV), dtype=tf.float32,
            experimental_autocast=False)
        self.output_bias = self.add_weight("output_bias", shape=[self.num_labels],
                                           initializer="zeros", dtype=tf.float32,
                                           experimental_autocast=False)
        tf_keras.layers.Layer.build(self, input_shape)

    def build_variables(self) -> None:
        """Creates every variable without data (call it under the strategy scope)."""
        _build_in_scope(self)

    def call(self, input_ids, input_mask=None, segment_ids=None, training=False):
        outputs = self.bert(input_ids, input_mask, segment_ids, training=training)
        pooled = tf.cast(outputs["pooled_output"], tf.float32)
        pooled = fused_ops.dropout(pooled, self.dropout_rate, training=training)
        logits = tf.matmul(pooled, self.output_weights, transpose_b=True)
        logits = tf.nn.bias_add(logits, self.output_bias)
        return tf.cast(logits, tf.float32)


def classifier_loss(logits: tf.Tensor, label_ids: tf.Tensor, num_labels: int) -> tf.Tensor:
    """Per-example cross entropy, -sum(one_hot(label) * log_softmax(logits)): [B] float32."""
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    one_hot = tf.one_hot(label_ids, depth=num_labels, dtype=tf.float32)
    return -tf.reduce_sum(one_hot * log_probs, axis=-1)


def _build_child(layer: tf_keras.layers.Layer) -> None:
    """Builds a sub-layer inside its own name scope, as Keras does on a first call, so the
    variable names nest like the original's scopes (encoder/layer_0/attention/self/query/...)."""
    if not layer.built:
        with tf.name_scope(layer.name):
            layer.build(None)


def _build_in_scope(model: tf_keras.Model) -> None:
    """Builds `model`'s variables, inside the strategy it was created under when there is one."""
    if model.built:
        return
    strategy = getattr(model, "_distribution_strategy", None)
    if strategy is not None and not tf.distribute.has_strategy():
        with strategy.scope():
            _build_child(model)
    else:
        _build_child(model)
