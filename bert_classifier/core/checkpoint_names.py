"""Google's checkpoint names <-> model variables: the one place that knows them.

`bert/embeddings/word_embeddings`, `bert/encoder/layer_N/attention/self/query/kernel`, ...,
`bert/pooler/dense/kernel`, the classifier's top-level `output_weights`/`output_bias` and
`global_step`, as the original's checkpoints name them (its TF1 variable scopes), so that its
released checkpoints load here and what this port writes loads there.
"""
import os
from typing import Dict, List, Union

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

import modeling  # noqa: E402

GLOBAL_STEP_NAME = "global_step"


def _layer_norm_names(prefix: str, layer_norm: modeling.LayerNorm) -> Dict[str, tf.Variable]:
    return {prefix + "/LayerNorm/beta": layer_norm.beta,
            prefix + "/LayerNorm/gamma": layer_norm.gamma}


def _dense_names(prefix: str, dense: modeling.Dense) -> Dict[str, tf.Variable]:
    return {prefix + "/kernel": dense.kernel, prefix + "/bias": dense.bias}


def variables_by_checkpoint_name(
        model: Union[modeling.BertModel, modeling.BertClassifier]) -> Dict[str, tf.Variable]:
    """Maps Google's checkpoint names to the model's variables, in model order.

    Builds the variables first if needed (inside the strategy the model was created under).
    For a BertClassifier the dict ends with `output_weights` [num_labels, H] and `output_bias`.
    """
    if isinstance(model, modeling.BertClassifier):
        model.build_variables()
        bert = model.bert
    elif isinstance(model, modeling.BertModel):
        model.build_variables()
        bert = model
    else:
        raise TypeError("expected a modeling.BertModel or BertClassifier, got %r" % type(model))

    names: Dict[str, tf.Variable] = {}
    emb = bert.embeddings
    names["bert/embeddings/word_embeddings"] = emb.word_embeddings
    names["bert/embeddings/token_type_embeddings"] = emb.token_type_embeddings
    names["bert/embeddings/position_embeddings"] = emb.position_embeddings
    names.update(_layer_norm_names("bert/embeddings", emb.LayerNorm))
    for index, layer in enumerate(bert.encoder.layers):
        prefix = "bert/encoder/layer_%d" % index
        attention = layer.attention
        self_attention = attention.self_attention
        names.update(_dense_names(prefix + "/attention/self/query", self_attention.query))
        names.update(_dense_names(prefix + "/attention/self/key", self_attention.key))
        names.update(_dense_names(prefix + "/attention/self/value", self_attention.value))
        names.update(_dense_names(prefix + "/attention/output/dense",
                                  attention.attention_output.dense))
        names.update(_layer_norm_names(prefix + "/attention/output",
                                       attention.attention_output.LayerNorm))
        names.update(_dense_names(prefix + "/intermediate/dense", layer.intermediate.dense))
        names.update(_dense_names(prefix + "/output/dense", layer.output_block.dense))
        names.update(_layer_norm_names(prefix + "/output", layer.output_block.LayerNorm))
    names.update(_dense_names("bert/pooler/dense", bert.pooler.dense))
    if isinstance(model, modeling.BertClassifier):
        names["output_weights"] = model.output_weights
        names["output_bias"] = model.output_bias
    return names


def expected_variable_shapes(bert_config: modeling.BertConfig,
                             num_labels: int = 0) -> Dict[str, List[int]]:
    """Google's names and shapes of the variables a model of `bert_config` has, in model order,
    without building it (the `bert/` names, then output_weights [num_labels, H] and output_bias
    [num_labels] when num_labels > 0). Equal to the names and shapes that
    `variables_by_checkpoint_name` gives for the built model (tests/test_checkpoints.py)."""
    h, i = bert_config.hidden_size, bert_config.intermediate_size
    shapes: Dict[str, List[int]] = {
        "bert/embeddings/word_embeddings": [bert_config.vocab_size, h],
        "bert/embeddings/token_type_embeddings": [bert_config.type_vocab_size, h],
        "bert/embeddings/position_embeddings": [bert_config.max_position_embeddings, h],
        "bert/embeddings/LayerNorm/beta": [h], "bert/embeddings/LayerNorm/gamma": [h]}
    for index in range(bert_config.num_hidden_layers):
        prefix = "bert/encoder/layer_%d/" % index
        for dense in ("attention/self/query", "attention/self/key", "attention/self/value",
                      "attention/output/dense"):
            shapes[prefix + dense + "/kernel"] = [h, h]
            shapes[prefix + dense + "/bias"] = [h]
        shapes[prefix + "attention/output/LayerNorm/beta"] = [h]
        shapes[prefix + "attention/output/LayerNorm/gamma"] = [h]
        shapes[prefix + "intermediate/dense/kernel"] = [h, i]
        shapes[prefix + "intermediate/dense/bias"] = [i]
        shapes[prefix + "output/dense/kernel"] = [i, h]
        shapes[prefix + "output/dense/bias"] = [h]
        shapes[prefix + "output/LayerNorm/beta"] = [h]
        shapes[prefix + "output/LayerNorm/gamma"] = [h]
    shapes["bert/pooler/dense/kernel"] = [h, h]
    shapes["bert/pooler/dense/bias"] = [h]
    if num_labels:
        shapes["output_weights"] = [num_labels, h]
        shapes["output_bias"] = [num_labels]
    return shapes
