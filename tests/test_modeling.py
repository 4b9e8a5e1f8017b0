"""modeling.py: the original modeling_test cases, numerics against Hugging Face's PyTorch BERT
(real MiniLM weights and random tiny models), the classifier head against numpy, dropout,
tf.function/XLA and MirroredStrategy."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from bert_classifier.core import checkpoint_names

from bert_classifier.core import checkpoints
import e2e_util
import modeling
from pretrained import build_default, convert_hf

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=5, num_attention_heads=4,
            intermediate_size=37, type_vocab_size=16)


def _random_inputs(batch=13, seq=7, vocab=99, types=16, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch, seq)).astype(np.int32)
    mask = rng.integers(0, 2, (batch, seq)).astype(np.int32)
    mask[:, 0] = 1
    type_ids = rng.integers(0, types, (batch, seq)).astype(np.int32)
    return ids, mask, type_ids


# --- the original modeling_test.py cases ------------------------------------------------------

def test_default_shapes_and_accessors():
    config = modeling.BertConfig(**TINY)
    model = modeling.BertModel(config)
    ids, mask, type_ids = _random_inputs()
    outputs = model(ids, mask, type_ids, training=True)
    assert outputs["embedding_output"].shape == (13, 7, 32)
    assert outputs["sequence_output"].shape == (13, 7, 32)
    assert outputs["pooled_output"].shape == (13, 32)
    assert len(outputs["all_encoder_layers"]) == 5
    assert all(t.shape == (13, 7, 32) for t in outputs["all_encoder_layers"])
    assert model.get_sequence_output() is outputs["sequence_output"]
    assert model.get_pooled_output() is outputs["pooled_output"]
    assert model.get_embedding_output() is outputs["embedding_output"]
    assert model.get_all_encoder_layers() is outputs["all_encoder_layers"]
    assert model.get_embedding_table().shape == (99, 32)
    # The last layer is the sequence output; the pooler is tanh(dense(first token)).
    np.testing.assert_array_equal(outputs["all_encoder_layers"][-1], outputs["sequence_output"])
    pooled = np.tanh(outputs["sequence_output"].numpy()[:, 0] @ model.pooler.dense.kernel.numpy()
                     + model.pooler.dense.bias.numpy())
    np.testing.assert_allclose(model.get_pooled_output(), pooled, atol=1e-5)


def test_config_to_json_string_round_trip(tmp_path):
    config = modeling.BertConfig(vocab_size=99, hidden_size=37)
    obj = json.loads(config.to_json_string())
    assert obj["vocab_size"] == 99 and obj["hidden_size"] == 37
    text = config.to_json_string()
    assert text.endswith("}\n") and text.startswith("{\n  \"attention_probs_dropout_prob\": 0.1,")
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(dict(obj, extra_key="kept")))
    again = modeling.BertConfig.from_json_file(str(path))
    assert again.hidden_size == 37 and again.extra_key == "kept"
    assert again.to_dict() == dict(obj, extra_key="kept")
    defaults = modeling.BertConfig(vocab_size=5)
    assert (defaults.hidden_size, defaults.num_hidden_layers, defaults.num_attention_heads,
            defaults.intermediate_size, defaults.hidden_act, defaults.hidden_dropout_prob,
            defaults.attention_probs_dropout_prob, defaults.max_position_embeddings,
            defaults.type_vocab_size, defaults.initializer_range) == (
        768, 12, 12, 3072, "gelu", 0.1, 0.1, 512, 16, 0.02)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        modeling.BertConfig.from_json_file(str(bad))


def test_get_activation():
    x = np.linspace(-5, 5, 101).astype(np.float32)
    tanh_gelu = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    erf_gelu = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(modeling.get_activation("gelu")(x), tanh_gelu, atol=1e-6)
    np.testing.assert_allclose(modeling.get_activation("GeLU")(x), tanh_gelu, atol=1e-6)
    np.testing.assert_allclose(modeling.get_activation("gelu_exact")(x), erf_gelu, atol=1e-6)
    assert np.abs(tanh_gelu - erf_gelu).max() > 1e-4  # the two are really different
    np.testing.assert_allclose(modeling.get_activation("RELU")(x), np.maximum(x, 0))
    np.testing.assert_allclose(modeling.get_activation("tanh")(x), np.tanh(x), atol=1e-6)
    assert modeling.get_activation("linear") is None
    assert modeling.get_activation(None) is None
    assert modeling.get_activation("") is None
    assert modeling.get_activation(tf.sigmoid) is tf.sigmoid
    with pytest.raises(ValueError, match="Unsupported activation: swish"):
        modeling.get_activation("swish")
    with pytest.raises(ValueError, match="Unsupported activation"):
        modeling.BertModel(modeling.BertConfig(**dict(TINY, hidden_act="mish")))


def test_config_errors():
    with pytest.raises(ValueError, match=r"The hidden size \(30\) is not a multiple of the number "
                                         r"of attention heads \(4\)"):
        modeling.BertModel(modeling.BertConfig(**dict(TINY, hidden_size=30)))
    model = modeling.BertModel(modeling.BertConfig(**dict(TINY, max_position_embeddings=6)))
    ids, mask, type_ids = _random_inputs(seq=7)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(ids, mask, type_ids)
    # With a dynamic sequence length the check runs in the graph.
    fn = tf.function(lambda i: model(i)["sequence_output"],
                     input_signature=[tf.TensorSpec([None, None], tf.int32)])
    assert fn(ids[:, :6]).shape == (13, 6, 32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_position_embeddings"):
        fn(ids)


def test_defaults_for_mask_and_token_types():
    model = modeling.BertModel(modeling.BertConfig(**TINY))
    ids, _, _ = _random_inputs()
    default = model(ids)["sequence_output"]
    explicit = model(ids, np.ones_like(ids), np.zeros_like(ids))["sequence_output"]
    np.testing.assert_array_equal(default, explicit)


def test_padding_does_not_change_real_tokens():
    model = modeling.BertModel(modeling.BertConfig(**TINY))
    ids, _, type_ids = _random_inputs(batch=2, seq=5)
    short = model(ids, np.ones_like(ids), type_ids)["sequence_output"].numpy()
    padded_ids = np.concatenate([ids, np.full((2, 3), 7, np.int32)], axis=1)
    padded_mask = np.concatenate([np.ones_like(ids), np.zeros((2, 3), np.int32)], axis=1)
    padded_types = np.concatenate([type_ids, np.zeros((2, 3), np.int32)], axis=1)
    padded = model(padded_ids, padded_mask, padded_types)["sequence_output"].numpy()
    np.testing.assert_allclose(padded[:, :5], short, atol=1e-5)


def test_dropout_only_in_training():
    config = modeling.BertConfig(**dict(TINY, hidden_dropout_prob=0.3,
                                        attention_probs_dropout_prob=0.3))
    model = modeling.BertClassifier(config, num_labels=3)
    ids, mask, type_ids = _random_inputs()
    a = model(ids, mask, type_ids, training=False).numpy()
    b = model(ids, mask, type_ids).numpy()  # training defaults to False
    np.testing.assert_array_equal(a, b)
    c = model(ids, mask, type_ids, training=True).numpy()
    d = model(ids, mask, type_ids, training=True).numpy()
    assert np.abs(a - c).max() > 1e-4 and np.abs(c - d).max() > 1e-4


def test_classifier_dropout_prob_config():
    """The head's dropout is the original's 0.1 unless the config sets classifier_dropout_prob."""
    no_dropout = dict(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids, mask, type_ids = _random_inputs()
    default = modeling.BertClassifier(modeling.BertConfig(**no_dropout), num_labels=3)
    assert default.dropout_rate == 0.1
    off = modeling.BertClassifier(
        modeling.BertConfig.from_dict(dict(no_dropout, classifier_dropout_prob=0.0)), 3)
    np.testing.assert_array_equal(off(ids, mask, type_ids, training=True).numpy(),
                                  off(ids, mask, type_ids, training=False).numpy())
    c = default(ids, mask, type_ids, training=True).numpy()
    assert np.abs(c - default(ids, mask, type_ids, training=False).numpy()).max() > 1e-6


def test_initialization():
    config = modeling.BertConfig(**dict(TINY, hidden_size=64, initializer_range=0.05))
    model = modeling.BertClassifier(config, num_labels=4)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    for name, var in names.items():
        value = var.numpy()
        if name.endswith("/bias") or name.endswith("/beta") or name == "output_bias":
            assert not value.any(), name
        elif name.endswith("/gamma"):
            assert (value == 1).all(), name
        else:
            stddev = 0.02 if name == "output_weights" else 0.05
            assert np.abs(value).max() <= 2 * stddev + 1e-7, name  # truncated at 2 stddev
            assert 0.5 * stddev < value.std() < stddev, name
    query = names["bert/encoder/layer_0/attention/self/query/kernel"].numpy()
    key = names["bert/encoder/layer_0/attention/self/key/kernel"].numpy()
    assert not np.array_equal(query, key)  # every variable drawn separately


def test_initial_weights_follow_tf_random_set_seed():
    # The --seed flag (tf.random.set_seed) must fix every initial weight, the classifier's
    # output_weights included: those are random even when init_checkpoint is given.
    config = modeling.BertConfig(**TINY)

    def initial_weights(seed):
        tf.random.set_seed(seed)
        model = modeling.BertClassifier(config, num_labels=2)
        model.build_variables()
        return {n: v.numpy() for n, v in checkpoint_names.variables_by_checkpoint_name(model).items()}

    first, again, other = initial_weights(7), initial_weights(7), initial_weights(8)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    assert not np.array_equal(first["output_weights"], other["output_weights"])
    assert not np.array_equal(first["bert/embeddings/word_embeddings"],
                              other["bert/embeddings/word_embeddings"])


_INIT_PEAK_SCRIPT = """
import json
import tensorflow as tf
import tf_keras
import modeling
layer = tf_keras.layers.Layer()
layer.add_weight("warm_up", shape=[4, 4], initializer=modeling.create_initializer())
tf.config.experimental.reset_memory_stats("CPU:0")
before = tf.config.experimental.get_memory_info("CPU:0")["current"]
for i in range(3):
    layer.add_weight("table_%d" % i, shape=[16384, 512], initializer=modeling.create_initializer())
info = tf.config.experimental.get_memory_info("CPU:0")
print(json.dumps([info["current"] - before, info["peak"] - before]))
"""


@pytest.mark.slow
def test_initializing_a_variable_keeps_no_temporary_copies():
    # Random initialization is the peak of an eval/predict process's tensor memory unless the
    # initializer's temporaries are reused (BFC statistics: the allocator keeps what it once
    # held). Eagerly, tf_keras's TruncatedNormal holds the draw, draw * stddev and + mean: two
    # extra tables at the peak (measured: peak - final = 2 tables).
    out = e2e_util.run_python(_INIT_PEAK_SCRIPT, extra_env={"TF_CPU_ALLOCATOR_USE_BFC": "true"})
    current, peak = json.loads(out.stdout.strip().splitlines()[-1])
    table = 16384 * 512 * 4
    assert current >= 3 * table
    assert peak - current < 0.5 * table, (peak - current) / table


# --- classifier head and loss -----------------------------------------------------------------

def test_classifier_head_and_loss_match_numpy():
    config = modeling.BertConfig(**TINY)
    model = modeling.BertClassifier(config, num_labels=3)
    ids, mask, type_ids = _random_inputs()
    logits = model(ids, mask, type_ids, training=False)
    assert logits.shape == (13, 3) and logits.dtype == tf.float32
    pooled = model.bert.get_pooled_output().numpy()
    weights, bias = model.output_weights.numpy(), model.output_bias.numpy()
    assert weights.shape == (3, 32) and bias.shape == (3,)
    np.testing.assert_allclose(logits, pooled @ weights.T + bias, atol=1e-6)

    labels = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 0, 1, 2, 0], np.int32)
    loss = modeling.classifier_loss(logits, labels, 3).numpy()
    z = logits.numpy().astype(np.float64)
    log_softmax = z - z.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    expected = -(np.eye(3)[labels] * log_softmax).sum(-1)
    assert loss.shape == (13,)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    big = modeling.classifier_loss(tf.constant([[1000.0, -1000.0]]), tf.constant([1]), 2)
    np.testing.assert_allclose(big, [2000.0])  # stable for large logits


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
def test_tf_function_xla_and_gradients():
    model = modeling.BertClassifier(modeling.BertConfig(**dict(TINY, num_hidden_layers=2)),
                                    num_labels=2)
    model.build_variables()
    assert model.built and len(model.variables) == 5 + 16 * 2 + 2 + 2  # before any call
    ids, mask, type_ids = _random_inputs()
    eager = model(ids, mask, type_ids).numpy()
    graph = tf.function(lambda a, b, c: model(a, b, c))(ids, mask, type_ids).numpy()
    xla = tf.function(lambda a, b, c: model(a, b, c), jit_compile=True)(ids, mask, type_ids)
    np.testing.assert_allclose(graph, eager, atol=1e-5)
    np.testing.assert_allclose(xla.numpy(), eager, atol=1e-5)

    labels = np.arange(13, dtype=np.int32) % 2

    @tf.function(jit_compile=True)
    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(modeling.classifier_loss(
                model(ids, mask, type_ids, training=True), labels, 2))
        return tape.gradient(loss, model.trainable_variables)

    result = grads()
    assert len(result) == len(model.trainable_variables) == 5 + 16 * 2 + 2 + 2
    assert all(g is not None for g in result)


def test_mixed_precision_policy():
    import tf_keras
    tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = modeling.BertClassifier(modeling.BertConfig(**TINY), num_labels=2)
        ids, mask, type_ids = _random_inputs()
        logits = model(ids, mask, type_ids)
        seq = model.bert.get_sequence_output()
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    assert logits.dtype == tf.float32 and seq.dtype == tf.bfloat16
    assert model.output_weights.dtype == tf.float32  # variables stay float32
    assert np.isfinite(logits.numpy()).all()


# --- numerics against Hugging Face's PyTorch BertModel ----------------------------------------

@pytest.fixture(scope="module")
def converted_minilm(tmp_path_factory):
    """The real MiniLM weights converted by pretrained/convert_hf.py into a temporary folder."""
    hf_dir = build_default.source_dir()
    out = str(tmp_path_factory.mktemp("minilm"))
    convert_hf.convert(hf_dir, out)
    return hf_dir, out


def _load_model(google_dir):
    config = modeling.BertConfig.from_json_file(os.path.join(google_dir, "bert_config.json"))
    model = modeling.BertModel(config)
    checkpoints.init_from_checkpoint(checkpoint_names.variables_by_checkpoint_name(model),
                                     os.path.join(google_dir, "bert_model.ckpt"))
    return model


def _hf_outputs(hf_model, ids, mask, type_ids):
    import torch
    with torch.no_grad():
        out = hf_model(torch.tensor(ids, dtype=torch.long),
                       attention_mask=torch.tensor(mask, dtype=torch.long),
                       token_type_ids=torch.tensor(type_ids, dtype=torch.long),
                       output_hidden_states=True)
    return out


def _max_errors(ours, theirs, mask):
    real = mask.astype(bool)  # padding positions are not compared
    errors = {"sequence": np.abs(ours["sequence_output"].numpy()[real]
                                 - theirs.last_hidden_state.numpy()[real]).max(),
              "pooled": np.abs(ours["pooled_output"].numpy() - theirs.pooler_output.numpy()).max(),
              "embedding": np.abs(ours["embedding_output"].numpy()[real]
                                  - theirs.hidden_states[0].numpy()[real]).max()}
    for i, layer in enumerate(ours["all_encoder_layers"]):
        errors["layer_%d" % i] = np.abs(layer.numpy()[real]
                                        - theirs.hidden_states[i + 1].numpy()[real]).max()
    return errors


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
def test_parity_with_hugging_face_minilm(converted_minilm):
    import transformers
    hf_dir, google_dir = converted_minilm
    with open(os.path.join(google_dir, "bert_config.json")) as f:
        assert json.load(f)["hidden_act"] == "gelu_exact"
    tokenizer = transformers.BertTokenizerFast.from_pretrained(hf_dir)
    texts_a = ["The quick brown fox jumps over the lazy dog.",
               "Hello world",
               "BERT fine-tuning on a CPU: slow, but it works; ünïcödé and numbers like 1,234.56.",
               "short",
               "A considerably longer first sentence, which keeps going for a while so that the "
               "pair has to fill most of the sequence before any padding is added at the end."]
    texts_b = ["It was sunny all day.", "", "Indeed.", "the second segment of a pair",
               "And a second sentence too."]
    enc = tokenizer(texts_a, texts_b, padding="max_length", max_length=64, truncation=True,
                    return_tensors="np")
    ids, mask, type_ids = (enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32),
                           enc["token_type_ids"].astype(np.int32))
    assert len(set(mask.sum(1))) == 5 and mask.min() == 0  # different lengths, with padding
    assert type_ids.max() == 1
    hf_model = transformers.BertModel.from_pretrained(hf_dir, attn_implementation="eager").eval()
    theirs = _hf_outputs(hf_model, ids, mask, type_ids)
    model = _load_model(google_dir)
    errors = _max_errors(model(ids, mask, type_ids), theirs, mask)
    print("MiniLM parity max abs errors:", {k: float(v) for k, v in errors.items()})
    assert max(errors.values()) <= 1e-5, errors
    # The same through tf.function (what training and prediction run).
    graph = tf.function(lambda a, b, c: model(a, b, c))(ids, mask, type_ids)
    assert max(_max_errors(graph, theirs, mask).values()) <= 1e-5


def _tiny_hf_model(tmp_path, hidden_act, add_pooling_layer=True):
    import torch
    import transformers
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=37, hidden_act=hidden_act, max_position_embeddings=64,
        type_vocab_size=2, initializer_range=0.2)
    hf_model = transformers.BertModel(hf_config, add_pooling_layer=add_pooling_layer).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters and biases
        for name, param in hf_model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
    hf_dir = tmp_path / ("hf_" + hidden_act)
    hf_model.save_pretrained(str(hf_dir))
    (hf_dir / "vocab.txt").write_text("".join("tok%d\n" % i for i in range(99)))
    return hf_model, str(hf_dir)


@pytest.mark.parametrize("hidden_act,google_act", [("gelu_new", "gelu"), ("gelu", "gelu_exact"),
                                                   ("relu", "relu")])
def test_parity_with_hugging_face_tiny(tmp_path, hidden_act, google_act):
    hf_model, hf_dir = _tiny_hf_model(tmp_path, hidden_act)
    out = str(tmp_path / "google")
    convert_hf.convert(hf_dir, out)
    config = modeling.BertConfig.from_json_file(os.path.join(out, "bert_config.json"))
    assert config.hidden_act == google_act
    ids, mask, type_ids = _random_inputs(batch=4, seq=11, types=2, seed=1)
    theirs = _hf_outputs(hf_model, ids, mask, type_ids)
    errors = _max_errors(_load_model(out)(ids, mask, type_ids), theirs, mask)
    assert max(errors.values()) <= 1e-5, errors


# --- Google's original modeling.py (bert-tensorflow) as the oracle ----------------------------

_ORIGINAL_SCRIPT = textwrap.dedent("""
    # Runs Google's original BertModel (TF1 graph) on a tiny config, saves its variables with a
    # TF1 Saver and its outputs as .npy. tf.contrib no longer exists, so the one function the
    # original takes from it (layers.layer_norm, epsilon 1e-12, variables LayerNorm/beta and
    # LayerNorm/gamma) is provided here with the same definition.
    import sys, types
    import numpy as np
    import tensorflow.compat.v1 as tf
    tf.disable_eager_execution()

    def layer_norm(inputs, begin_norm_axis=-1, begin_params_axis=-1, scope=None):
        with tf.variable_scope(scope, default_name="LayerNorm"):
            size = inputs.shape[-1]
            beta = tf.get_variable("beta", [size], initializer=tf.zeros_initializer())
            gamma = tf.get_variable("gamma", [size], initializer=tf.ones_initializer())
            mean, variance = tf.nn.moments(inputs, [begin_norm_axis], keep_dims=True)
            return tf.nn.batch_normalization(inputs, mean, variance, beta, gamma, 1e-12)

    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers = types.SimpleNamespace(layer_norm=layer_norm)
    sys.modules["tensorflow.contrib"] = contrib
    from bert import modeling

    out_dir = sys.argv[1]
    ids, mask, types_ = (np.load(out_dir + "/%s.npy" % n) for n in ("ids", "mask", "types"))
    config = modeling.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3,
                                 num_attention_heads=4, intermediate_size=37, type_vocab_size=16,
                                 initializer_range=0.3)
    model = modeling.BertModel(config, is_training=False, input_ids=tf.constant(ids),
                               input_mask=tf.constant(mask), token_type_ids=tf.constant(types_))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        # Non-trivial LayerNorm parameters and biases, so a mix-up cannot hide.
        rng = np.random.default_rng(3)
        for v in tf.global_variables():
            if "LayerNorm" in v.name or v.name.endswith("bias:0"):
                v.load(sess.run(v) + rng.normal(0, 0.1, v.shape.as_list()).astype(np.float32), sess)
        seq, pooled = sess.run([model.get_sequence_output(), model.get_pooled_output()])
        tf.train.Saver().save(sess, out_dir + "/original.ckpt")
    np.save(out_dir + "/seq.npy", seq)
    np.save(out_dir + "/pooled.npy", pooled)
""")


@pytest.mark.slow
def test_parity_with_googles_original_modeling(tmp_path):
    import importlib.util
    if importlib.util.find_spec("bert") is None:  # a declared test dependency: fail, never skip
        pytest.fail("the oracle bert-tensorflow (Google's original code) is not installed: run "
                    "./setup.sh --test")
    ids, mask, type_ids = _random_inputs(batch=3, seq=9, seed=2)
    for name, value in (("ids", ids), ("mask", mask), ("types", type_ids)):
        np.save(tmp_path / ("%s.npy" % name), value)
    script = tmp_path / "original.py"
    script.write_text(_ORIGINAL_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = modeling.BertConfig(**dict(TINY, num_hidden_layers=3))
    model = modeling.BertModel(config)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    loaded = checkpoints.init_from_checkpoint(names, str(tmp_path / "original.ckpt"))
    assert loaded == set(names)  # the original's variable names are exactly ours
    assert set(n for n, _ in tf.train.list_variables(str(tmp_path / "original.ckpt"))) == set(names)
    outputs = model(ids, mask, type_ids)
    real = mask.astype(bool)
    np.testing.assert_allclose(outputs["sequence_output"].numpy()[real],
                               np.load(tmp_path / "seq.npy")[real], atol=1e-5)
    np.testing.assert_allclose(outputs["pooled_output"], np.load(tmp_path / "pooled.npy"),
                               atol=1e-5)


# --- MirroredStrategy over two logical CPUs (needs a fresh process) ---------------------------

_MIRRORED_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import modeling
    from bert_classifier.core import checkpoint_names
    from bert_classifier.core import checkpoints

    config = modeling.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=37)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 99, (8, 7)).astype(np.int32)
    mask = np.ones_like(ids); types_ = np.zeros_like(ids)
    reference = modeling.BertClassifier(config, 3)
    ref_names = checkpoint_names.variables_by_checkpoint_name(reference)
    prefix = checkpoints.write_checkpoint(sys.argv[2] + "/ref.ckpt", ref_names)
    expected = reference(ids, mask, types_).numpy()

    strategy = tf.distribute.MirroredStrategy(devices=["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = modeling.BertClassifier(config, 3)
        model.build_variables()
    names = checkpoint_names.variables_by_checkpoint_name(model)
    assert "Mirrored" in type(names["output_weights"]).__name__, type(names["output_weights"])
    loaded = checkpoints.init_from_checkpoint(names, prefix)  # outside the scope
    assert loaded == set(names)
    for v in names["output_bias"].values:
        np.testing.assert_array_equal(v.numpy(), ref_names["output_bias"].numpy())
    dataset = tf.data.Dataset.from_tensor_slices((ids, mask, types_)).batch(8)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def step(b):
        return strategy.run(lambda i, m, t: model(i, m, t, training=False), args=b)

    per_replica = strategy.experimental_local_results(step(batch))
    assert len(per_replica) == 2 and per_replica[0].shape == (4, 3)
    got = np.concatenate([p.numpy() for p in per_replica])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    saved = checkpoints.save_checkpoint(sys.argv[2] + "/out", names, 3)
    restored = modeling.BertClassifier(config, 3)
    checkpoints.restore_checkpoint(
        saved, dict(checkpoint_names.variables_by_checkpoint_name(restored)))
    np.testing.assert_allclose(restored(ids, mask, types_).numpy(), expected, atol=1e-5)
    print("OK")
""")


@pytest.mark.slow
def test_mirrored_strategy_two_cpus(tmp_path, repo_root):
    script = tmp_path / "mirrored.py"
    script.write_text(_MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    proc = subprocess.run([sys.executable, str(script), repo_root, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
