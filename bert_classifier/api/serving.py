"""SavedModel modules: a fine-tuned classifier or a sentence encoder behind raw-string signatures,
with Google's tokenizer inside the graph (graph_tokenizer.GraphTokenizer, core TensorFlow ops).

ClassifierModule signatures:
  serving_default(text_a, text_b: string [batch]) -> probabilities float32 [batch, num_labels],
                                                     label string [batch]
  from_ids(input_ids, input_mask, segment_ids: int32 [batch, seq]) -> probabilities
  tokenize(text_a, text_b) -> input_ids, input_mask, segment_ids int32 [batch, max_seq_length]
EncoderModule signatures:
  serving_default(text: string [batch]) -> vector float32 [batch, hidden]
  from_ids(input_ids, input_mask, segment_ids) -> vector
  tokenize(text_a, text_b) -> as above

An empty text_b is a single sentence. The string signatures run the model on each batch at the
length of its longest text rounded up to the model's length_multiple (input_pipeline.batch_length,
the rule of training and the Python API); padding positions are masked, so results equal
full-length ones up to float noise. The graphs use TensorFlow's plain
ops (fused_ops.plain_ops while tracing), so a server without XLA runs them.
"""
import os
from typing import Dict, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from bert_classifier.core import fused_ops  # noqa: E402
from bert_classifier.core import graph_tokenizer  # noqa: E402
import modeling  # noqa: E402
from bert_classifier.workflow import forward  # noqa: E402
from bert_classifier.workflow import input_pipeline  # noqa: E402

_TEXT_PAIR = [tf.TensorSpec([None], tf.string, name="text_a"),
              tf.TensorSpec([None], tf.string, name="text_b")]
_IDS = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
        tf.TensorSpec([None, None], tf.int32, name="input_mask"),
        tf.TensorSpec([None, None], tf.int32, name="segment_ids")]


def _encode_trimmed(tokenizer: graph_tokenizer.GraphTokenizer, text_a: tf.Tensor,
                    text_b: tf.Tensor, length_multiple: int) -> Dict[str, tf.Tensor]:
    """The pairs' int32 features, cut to the batch-length rule's length (cut_to_longest)."""
    return input_pipeline.cut_to_longest(tokenizer.encode_batch(text_a, text_b),
                                         length_multiple, tokenizer.max_seq_length)


def _hold_weights(module: tf.Module, model: tf.Module) -> None:
    """module._model = model without tracking the Keras model (tf.saved_model.save would also
    export Keras' own traces of it, with the fused ops); its variables are tracked instead."""
    object.__setattr__(module, "_model", model)
    module.model_variables = list(model.variables)


class ClassifierModule(tf.Module):
    """A BertClassifier with its labels and tokenizer, for tf.saved_model.save."""

    def __init__(self, model: modeling.BertClassifier, tokenizer: graph_tokenizer.GraphTokenizer,
                 labels: Sequence[str],
                 length_multiple: int = input_pipeline.DEFAULT_LENGTH_MULTIPLE):
        super().__init__(name="bert_classifier_serving")
        self.length_multiple = length_multiple
        if len(labels) != model.num_labels:
            raise ValueError("%d labels for a head of %d" % (len(labels), model.num_labels))
        _hold_weights(self, model)
        self.tokenizer = tokenizer
        self.labels = tf.Variable(list(labels), trainable=False, name="labels")

    def _probabilities(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        logits = self._model(features["input_ids"], features["input_mask"],
                             features["segment_ids"], training=False)
        return tf.nn.softmax(logits, axis=-1)

    @tf.function(input_signature=_TEXT_PAIR)
    def classify(self, text_a, text_b):
        """Raw text pairs -> probabilities [batch, num_labels] and the most probable label."""
        probabilities = self._probabilities(
            _encode_trimmed(self.tokenizer, text_a, text_b, self.length_multiple))
        label = tf.gather(self.labels, tf.argmax(probabilities, axis=-1, output_type=tf.int32))
        return {"probabilities": probabilities, "label": label}

    @tf.function(input_signature=_IDS)
    def from_ids(self, input_ids, input_mask, segment_ids):
        """Features as run_classifier builds them -> probabilities [batch, num_labels]."""
        return {"probabilities": self._probabilities(
            {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids})}

    @tf.function(input_signature=_TEXT_PAIR)
    def tokenize(self, text_a, text_b):
        """Raw text pairs -> the int32 [batch, max_seq_length] features of the pair."""
        return self.tokenizer.encode_batch(text_a, text_b)

    def signatures(self) -> Dict[str, object]:
        """The concrete functions to export, traced with plain TensorFlow ops."""
        with fused_ops.plain_ops():
            return {"serving_default": self.classify.get_concrete_function(),
                    "from_ids": self.from_ids.get_concrete_function(),
                    "tokenize": self.tokenize.get_concrete_function()}


class EncoderModule(tf.Module):
    """A BertModel with its pooling and tokenizer, for tf.saved_model.save."""

    def __init__(self, bert: modeling.BertModel, tokenizer: graph_tokenizer.GraphTokenizer,
                 pooling: str = "mean", normalize: bool = False,
                 length_multiple: int = input_pipeline.DEFAULT_LENGTH_MULTIPLE):
        super().__init__(name="bert_encoder_serving")
        self.length_multiple = length_multiple
        forward.check_pooling(pooling)
        _hold_weights(self, bert)
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize

    def _vectors(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        outputs = self._model(features["input_ids"], features["input_mask"],
                              features["segment_ids"], training=False)
        return forward.pool_sequence(outputs, features["input_mask"], self.pooling,
                                     self.normalize)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def embed(self, text):
        """Raw texts -> vector float32 [batch, hidden]."""
        features = _encode_trimmed(self.tokenizer, text, tf.fill(tf.shape(text), ""),
                                   self.length_multiple)
        return {"vector": self._vectors(features)}

    @tf.function(input_signature=_IDS)
    def from_ids(self, input_ids, input_mask, segment_ids):
        """Features -> vector float32 [batch, hidden]."""
        return {"vector": self._vectors({"input_ids": input_ids, "input_mask": input_mask,
                                         "segment_ids": segment_ids})}

    @tf.function(input_signature=_TEXT_PAIR)
    def tokenize(self, text_a, text_b):
        """Raw texts (text_b "" for single sentences) -> int32 [batch, max_seq_length] features."""
        return self.tokenizer.encode_batch(text_a, text_b)

    def signatures(self) -> Dict[str, object]:
        with fused_ops.plain_ops():
            return {"serving_default": self.embed.get_concrete_function(),
                    "from_ids": self.from_ids.get_concrete_function(),
                    "tokenize": self.tokenize.get_concrete_function()}
