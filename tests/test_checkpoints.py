"""checkpoints.py: Google's names, TF1-format checkpoints in both directions, save/restore."""
import logging
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from bert_classifier.core import checkpoint_names

from bert_classifier.core import checkpoints
import modeling

CONFIG = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=24, max_position_embeddings=32, type_vocab_size=2)


def _config(**overrides):
    return modeling.BertConfig(**dict(CONFIG, **overrides))


def _inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (3, 6)).astype(np.int32)
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], np.int32)
    types = (np.arange(6)[None] >= 3).astype(np.int32).repeat(3, 0)
    return ids, mask, types


def _google_names(num_layers):
    names = ["bert/embeddings/word_embeddings", "bert/embeddings/token_type_embeddings",
             "bert/embeddings/position_embeddings", "bert/embeddings/LayerNorm/beta",
             "bert/embeddings/LayerNorm/gamma"]
    for n in range(num_layers):
        p = "bert/encoder/layer_%d/" % n
        for d in ("attention/self/query", "attention/self/key", "attention/self/value",
                  "attention/output/dense"):
            names += [p + d + "/kernel", p + d + "/bias"]
        names += [p + "attention/output/LayerNorm/beta", p + "attention/output/LayerNorm/gamma",
                  p + "intermediate/dense/kernel", p + "intermediate/dense/bias",
                  p + "output/dense/kernel", p + "output/dense/bias",
                  p + "output/LayerNorm/beta", p + "output/LayerNorm/gamma"]
    return names + ["bert/pooler/dense/kernel", "bert/pooler/dense/bias"]


def test_names_and_shapes():
    model = modeling.BertClassifier(_config(), num_labels=3)
    names = checkpoint_names.variables_by_checkpoint_name(model)  # builds the variables
    assert list(names) == _google_names(2) + ["output_weights", "output_bias"]
    assert len(set(map(id, names.values()))) == len(names) == len(model.trainable_variables)
    shapes = {n: list(v.shape) for n, v in names.items()}
    assert shapes["bert/embeddings/word_embeddings"] == [50, 16]
    assert shapes["bert/embeddings/token_type_embeddings"] == [2, 16]
    assert shapes["bert/embeddings/position_embeddings"] == [32, 16]
    assert shapes["bert/encoder/layer_1/attention/self/query/kernel"] == [16, 16]
    assert shapes["bert/encoder/layer_0/intermediate/dense/kernel"] == [16, 24]
    assert shapes["bert/encoder/layer_0/intermediate/dense/bias"] == [24]
    assert shapes["bert/encoder/layer_0/output/dense/kernel"] == [24, 16]
    assert shapes["bert/pooler/dense/kernel"] == [16, 16]
    assert shapes["output_weights"] == [3, 16] and shapes["output_bias"] == [3]
    # The bare encoder has the bert/ names only; Keras names end like Google's.
    bert_names = checkpoint_names.variables_by_checkpoint_name(modeling.BertModel(_config()))
    assert list(bert_names) == _google_names(2)
    for name, var in names.items():
        assert var.name.endswith(name + ":0"), (name, var.name)
    with pytest.raises(TypeError):
        checkpoint_names.variables_by_checkpoint_name(object())


def test_round_trip_into_fresh_model(tmp_path):
    ids, mask, types = _inputs()
    model = modeling.BertClassifier(_config(), num_labels=3)
    expected = model(ids, mask, types).numpy()
    names = checkpoint_names.variables_by_checkpoint_name(model)
    prefix = checkpoints.save_checkpoint(str(tmp_path), names, global_step=7)
    assert prefix == os.path.join(str(tmp_path), "model.ckpt-7")
    assert os.path.exists(prefix + ".index") and os.path.exists(prefix + ".data-00000-of-00001")
    fresh = modeling.BertClassifier(_config(), num_labels=3)
    assert np.abs(fresh(ids, mask, types).numpy() - expected).max() > 1e-3
    loaded = checkpoints.init_from_checkpoint(checkpoint_names.variables_by_checkpoint_name(fresh),
                                              str(tmp_path))  # a directory: its latest
    assert loaded == set(names)
    np.testing.assert_array_equal(fresh(ids, mask, types).numpy(), expected)
    assert checkpoints.checkpoint_global_step(prefix) == 7
    listed = dict(tf.train.list_variables(prefix))
    assert set(listed) == set(names) | {"global_step"}
    assert tf.train.load_checkpoint(prefix).get_tensor("global_step").dtype == np.int64


def _write_tf1_checkpoint(prefix, model_names, num_labels=3, extra=True, drop=()):
    """What the original run_classifier writes: a graph-mode tf.compat.v1 Saver over bert/*,
    output_weights/output_bias, <var>/adam_m, <var>/adam_v, global_step and cls/*."""
    rng = np.random.default_rng(1)
    values = {}
    graph = tf.Graph()
    with graph.as_default():
        variables = []
        for name, var in model_names.items():
            if name in drop:
                continue
            shape = list(var.shape)
            if name == "output_weights":
                shape = [num_labels, shape[1]]
            elif name == "output_bias":
                shape = [num_labels]
            values[name] = rng.normal(size=shape).astype(np.float32)
            variables.append(tf.compat.v1.get_variable(
                name, initializer=tf.constant(values[name])))
            if extra:
                for slot in ("adam_m", "adam_v"):
                    variables.append(tf.compat.v1.get_variable(
                        name + "/" + slot, initializer=tf.zeros(shape)))
        if extra:
            variables.append(tf.compat.v1.get_variable(
                "cls/predictions/output_bias", initializer=tf.zeros([50])))
            variables.append(tf.compat.v1.get_variable(
                "cls/seq_relationship/output_weights", initializer=tf.zeros([2, 16])))
            variables.append(tf.compat.v1.train.get_or_create_global_step())
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            if extra:
                tf.compat.v1.train.get_global_step().load(343, sess)
            saved = saver.save(sess, prefix, global_step=343 if extra else None)
    return saved, values


def test_reads_original_tf1_checkpoint(tmp_path, caplog):
    model = modeling.BertClassifier(_config(), num_labels=3)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    path, values = _write_tf1_checkpoint(str(tmp_path / "model.ckpt"), names)
    assert path.endswith("model.ckpt-343")
    listed = {n for n, _ in tf.train.list_variables(path)}
    assert "bert/encoder/layer_0/attention/self/query/kernel/adam_m" in listed
    assert "global_step" in listed and "cls/predictions/output_bias" in listed
    with caplog.at_level(logging.INFO):
        loaded = checkpoints.init_from_checkpoint(names, path)
    assert loaded == set(names)  # adam_*, cls/*, global_step ignored
    for name, var in names.items():
        np.testing.assert_array_equal(var.numpy(), values[name])
    assert checkpoints.checkpoint_global_step(path) == 343
    assert checkpoints.latest_checkpoint(str(tmp_path)) == path
    lines = [r.getMessage() for r in caplog.records]
    start = lines.index("**** Trainable Variables ****")
    block = lines[start + 1:start + 1 + len(names)]
    assert block[0] == "  name = bert/embeddings/word_embeddings:0, shape = (50, 16), *INIT_FROM_CKPT*"
    assert block[-1] == "  name = output_bias:0, shape = (3,), *INIT_FROM_CKPT*"
    assert len(block) == len(names) and all(b.endswith("*INIT_FROM_CKPT*") for b in block)


def test_pretrained_checkpoint_leaves_head_random(tmp_path, caplog):
    """A pre-trained checkpoint has no output_weights: they keep their initial values and
    the log shows them without *INIT_FROM_CKPT*."""
    model = modeling.BertClassifier(_config(), num_labels=2)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    before = names["output_weights"].numpy()
    path, _ = _write_tf1_checkpoint(str(tmp_path / "bert_model.ckpt"), names, extra=False,
                                    drop=("output_weights", "output_bias"))
    with caplog.at_level(logging.INFO):
        loaded = checkpoints.init_from_checkpoint(names, str(tmp_path))  # no state file
    assert loaded == set(names) - {"output_weights", "output_bias"}
    np.testing.assert_array_equal(names["output_weights"].numpy(), before)
    messages = [r.getMessage() for r in caplog.records]
    assert "  name = output_weights:0, shape = (2, 16)" in messages


def test_shape_mismatch_names_variable_and_shapes(tmp_path):
    model = modeling.BertClassifier(_config(), num_labels=3)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    path, _ = _write_tf1_checkpoint(str(tmp_path / "model.ckpt"), names, num_labels=5)
    with pytest.raises(ValueError, match=r"output_weights.*\[5, 16\].*\[3, 16\]"):
        checkpoints.init_from_checkpoint(names, path)
    small = modeling.BertModel(_config(hidden_size=8))
    with pytest.raises(ValueError, match=r"bert/embeddings/word_embeddings.*\[50, 16\].*\[50, 8\]"):
        checkpoints.init_from_checkpoint(checkpoint_names.variables_by_checkpoint_name(small), path)


def test_missing_bert_variables_are_listed(tmp_path):
    model = modeling.BertModel(_config())
    names = checkpoint_names.variables_by_checkpoint_name(model)
    path, _ = _write_tf1_checkpoint(str(tmp_path / "model.ckpt"), names, extra=False)
    deeper = modeling.BertModel(_config(num_hidden_layers=3))
    with pytest.raises(ValueError) as error:
        checkpoints.init_from_checkpoint(checkpoint_names.variables_by_checkpoint_name(deeper), path)
    message = str(error.value)
    assert "lacks 16 BERT variable(s)" in message
    assert "bert/encoder/layer_2/* (16 variables)" in message  # a whole layer is one entry
    assert "layer_1" not in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="not found"):
        checkpoints.init_from_checkpoint(names, str(tmp_path / "nope.ckpt"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no checkpoint found"):
        checkpoints.init_from_checkpoint(names, str(tmp_path / "empty"))


def test_unused_bert_variables_are_an_error_unless_partial_load_is_asked(tmp_path, caplog):
    """A 3-layer checkpoint into a 2-layer model: the original dropped layer_2 silently."""
    deeper = modeling.BertModel(_config(num_hidden_layers=3))
    deeper_names = checkpoint_names.variables_by_checkpoint_name(deeper)
    path, values = _write_tf1_checkpoint(str(tmp_path / "model.ckpt"), deeper_names)
    names = checkpoint_names.variables_by_checkpoint_name(modeling.BertModel(_config()))
    with pytest.raises(ValueError) as error:
        checkpoints.init_from_checkpoint(names, path)
    message = str(error.value)
    assert "would leave 16 BERT variable(s) of checkpoint %s unused" % path in message
    assert "bert/encoder/layer_2/* (16 variables)" in message
    assert "--allow_partial_checkpoint" in message and "adam" not in message
    with caplog.at_level(logging.WARNING):
        loaded = checkpoints.init_from_checkpoint(names, path, allow_partial=True)
    assert loaded == set(names)
    np.testing.assert_array_equal(names["bert/encoder/layer_1/output/dense/kernel"].numpy(),
                                  values["bert/encoder/layer_1/output/dense/kernel"])
    assert any("Partial checkpoint load (allowed)" in r.getMessage() for r in caplog.records)
    # Resuming needs an exact fit: the same unused layer is an error there too.
    with pytest.raises(ValueError, match="unused"):
        checkpoints.restore_checkpoint(path, names)


def test_expected_variable_shapes_match_the_built_model():
    for overrides, num_labels in (({}, 3), ({"num_hidden_layers": 1, "intermediate_size": 7}, 0)):
        config = _config(**overrides)
        model = (modeling.BertClassifier(config, num_labels) if num_labels
                 else modeling.BertModel(config))
        built = {n: list(v.shape) for n, v in
                 checkpoint_names.variables_by_checkpoint_name(model).items()}
        expected = checkpoint_names.expected_variable_shapes(config, num_labels)
        assert list(expected.items()) == list(built.items())


def _saved(tmp_path, steps=(1, 2, 3)):
    out = str(tmp_path / "out")
    names = checkpoint_names.variables_by_checkpoint_name(modeling.BertModel(_config()))
    for step in steps:
        checkpoints.save_checkpoint(out, names, step)
    return out, names


def test_checkpoint_problem_finds_cut_and_missing_files(tmp_path):
    out, _ = _saved(tmp_path, steps=(1,))
    prefix = os.path.join(out, "model.ckpt-1")
    data = prefix + ".data-00000-of-00001"
    assert checkpoints.checkpoint_problem(prefix) is None
    size = os.path.getsize(data)
    with open(data, "r+b") as f:
        f.truncate(size - 1)  # one byte short is enough
    assert re.search(r"holds %d bytes but its index lists %d" % (size - 1, size),
                     checkpoints.checkpoint_problem(prefix))
    os.remove(data)
    assert checkpoints.checkpoint_problem(prefix) == "its data file %s is missing" % data
    with open(prefix + ".index", "wb") as f:
        f.write(b"garbage")
    assert "cannot be read" in checkpoints.checkpoint_problem(prefix)
    os.remove(prefix + ".index")
    assert checkpoints.checkpoint_problem(prefix) == "its index file %s.index is missing" % prefix
    with pytest.raises(ValueError, match="checkpoint .*model.ckpt-1 not found"):
        checkpoints.check_checkpoint_readable(prefix)


def test_truncated_checkpoint_is_a_one_line_error_naming_it(tmp_path):
    out, names = _saved(tmp_path, steps=(1,))
    prefix = os.path.join(out, "model.ckpt-1")
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(1000)
    for load in (checkpoints.init_from_checkpoint, checkpoints.restore_checkpoint):
        with pytest.raises(ValueError) as error:
            load(names, prefix) if load is checkpoints.init_from_checkpoint else load(prefix, names)
        assert str(error.value).startswith("checkpoint %s cannot be read: its data file" % prefix)
    # A complete file with flipped bytes: found by the CRC when the tensor is read.
    out2, names2 = _saved(tmp_path / "b", steps=(1,))
    data2 = os.path.join(out2, "model.ckpt-1.data-00000-of-00001")
    with open(data2, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"model.ckpt-1 cannot be read: variable bert/"):
        checkpoints.restore_checkpoint(out2, names2)


def test_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, caplog):
    out, _ = _saved(tmp_path)
    os.remove(os.path.join(out, "model.ckpt-3.index"))
    with caplog.at_level(logging.WARNING):
        assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-2")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "model.ckpt-3 cannot be restored (its index file" in warnings[0]
    assert "using %s, the newest intact" % os.path.join(out, "model.ckpt-2") in warnings[0]
    with open(os.path.join(out, "model.ckpt-2.data-00000-of-00001"), "r+b") as f:
        f.truncate(10)
    assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-1")
    os.remove(os.path.join(out, "model.ckpt-1.data-00000-of-00001"))
    with pytest.raises(ValueError) as error:
        checkpoints.latest_checkpoint(out)
    message = str(error.value)
    assert message.startswith("%s holds checkpoints but none can be restored" % out)
    for step in (1, 2, 3):
        assert "model.ckpt-%d: its" % step in message
    assert "to train from the start again" in message and "\n" not in message


def test_latest_checkpoint_sees_an_intact_checkpoint_the_state_file_missed(tmp_path):
    """Killed between writing model.ckpt-4 and the state file: ckpt-4 is complete, use it."""
    out, names = _saved(tmp_path)
    state = open(os.path.join(out, "checkpoint")).read()
    checkpoints.save_checkpoint(out, names, 4)
    with open(os.path.join(out, "checkpoint"), "w") as f:
        f.write(state)
    assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-4")
    # Files that are not this port's model.ckpt-N (a copied pre-trained model) are not runs.
    other = str(tmp_path / "other")
    checkpoints.write_checkpoint(os.path.join(other, "bert_model.ckpt"), names)
    assert checkpoints.latest_checkpoint(other) is None


def test_tf1_readers_see_google_names(tmp_path):
    """Our file read by TF1 code: NewCheckpointReader, list_variables and the original's
    init_from_checkpoint name lookup (assignment map name -> name) in a graph."""
    model = modeling.BertClassifier(_config(), num_labels=2)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    extra = {"bert/embeddings/word_embeddings/adam_m": np.ones([50, 16], np.float32)}
    prefix = checkpoints.write_checkpoint(str(tmp_path / "sub" / "x.ckpt"), dict(names, **extra))
    expected = {n: v.numpy() for n, v in names.items()}
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    assert set(reader.get_variable_to_shape_map()) == set(names) | set(extra)
    assert {n for n, _ in tf.train.list_variables(prefix)} == set(names) | set(extra)
    graph = tf.Graph()
    with graph.as_default():
        tf1_vars = {n: tf.compat.v1.get_variable(n, shape=v.shape, dtype=tf.float32)
                    for n, v in names.items()}
        tf.compat.v1.train.init_from_checkpoint(prefix, {n: n for n in tf1_vars})
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for n, v in tf1_vars.items():
                np.testing.assert_array_equal(sess.run(v), expected[n])
        # And the TF1 Saver restores it.
        with tf.compat.v1.Session(graph=graph) as sess:
            tf.compat.v1.train.Saver(var_list=tf1_vars).restore(sess, prefix)
            np.testing.assert_array_equal(sess.run(tf1_vars["output_weights"]),
                                          expected["output_weights"])


def test_state_file_relative_and_max_to_keep(tmp_path):
    out = str(tmp_path / "out")
    model = modeling.BertModel(_config())
    names = checkpoint_names.variables_by_checkpoint_name(model)
    for step in (1, 2, 3, 34, 343):
        checkpoints.save_checkpoint(out, names, step, max_to_keep=3)
    state = open(os.path.join(out, "checkpoint")).read()
    assert state.splitlines() == ['model_checkpoint_path: "model.ckpt-343"',
                                  'all_model_checkpoint_paths: "model.ckpt-3"',
                                  'all_model_checkpoint_paths: "model.ckpt-34"',
                                  'all_model_checkpoint_paths: "model.ckpt-343"']
    files = sorted(os.listdir(out))
    assert files == ["checkpoint"] + ["model.ckpt-%d.%s" % (s, ext) for s in (3, 34, 343)
                                      for ext in ("data-00000-of-00001", "index")]
    assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-343")
    assert checkpoints.checkpoint_global_step(out) == 343
    # The folder can move: paths are relative.
    moved = str(tmp_path / "moved")
    os.rename(out, moved)
    assert checkpoints.latest_checkpoint(moved) == os.path.join(moved, "model.ckpt-343")
    assert checkpoints.latest_checkpoint(str(tmp_path / "missing")) is None
    # Saving the same step again keeps one entry; max_to_keep=None keeps everything.
    checkpoints.save_checkpoint(moved, names, 343, max_to_keep=None)
    checkpoints.save_checkpoint(moved, names, 400, max_to_keep=None)
    state = tf.train.get_checkpoint_state(moved)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        "model.ckpt-3", "model.ckpt-34", "model.ckpt-343", "model.ckpt-400"]


def test_failed_save_keeps_previous_state(tmp_path):
    out = str(tmp_path)
    names = checkpoint_names.variables_by_checkpoint_name(modeling.BertModel(_config()))
    checkpoints.save_checkpoint(out, names, 1)
    state_before = open(os.path.join(out, "checkpoint")).read()
    broken = dict(names, bad=object())  # cannot be converted to a tensor
    with pytest.raises(Exception):
        checkpoints.save_checkpoint(out, broken, 2)
    assert open(os.path.join(out, "checkpoint")).read() == state_before
    assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-1")


def test_restore_needs_every_name(tmp_path):
    model = modeling.BertModel(_config())
    names = dict(checkpoint_names.variables_by_checkpoint_name(model))
    slot = tf.Variable(np.full([16], 2.5, np.float32))
    step = tf.Variable(5, dtype=tf.int64)
    names_with_slots = dict(names, **{"bert/pooler/dense/bias/adam_m": slot, "global_step": step})
    prefix = checkpoints.save_checkpoint(str(tmp_path), names_with_slots, 5)
    ids, mask, types = _inputs()
    expected = model(ids, mask, types)["pooled_output"].numpy()
    fresh = modeling.BertModel(_config())
    fresh_names = dict(checkpoint_names.variables_by_checkpoint_name(fresh))
    fresh_slot = tf.Variable(np.zeros([16], np.float32))
    fresh_step = tf.Variable(0, dtype=tf.int64)
    assert checkpoints.restore_checkpoint(str(tmp_path), dict(
        fresh_names, **{"bert/pooler/dense/bias/adam_m": fresh_slot,
                        "global_step": fresh_step})) == prefix
    np.testing.assert_array_equal(fresh(ids, mask, types)["pooled_output"].numpy(), expected)
    assert fresh_slot.numpy()[0] == 2.5 and fresh_step.numpy() == 5
    with pytest.raises(ValueError, match="lacks 1 variable.*output_bias/adam_v"):
        checkpoints.restore_checkpoint(prefix, dict(
            fresh_names, **{"output_bias/adam_v": tf.Variable([0.0])}))


def test_write_checkpoint_accepts_numpy(tmp_path):
    values = {"a/b": np.arange(6, dtype=np.float32).reshape(2, 3),
              "global_step": np.array(9, np.int64), "c": tf.constant([1.5])}
    prefix = checkpoints.write_checkpoint(str(tmp_path / "n.ckpt"), values)
    reader = tf.train.load_checkpoint(prefix)
    np.testing.assert_array_equal(reader.get_tensor("a/b"), values["a/b"])
    assert reader.get_tensor("global_step") == 9 and reader.get_tensor("c")[0] == 1.5
    assert checkpoints.checkpoint_global_step(prefix) == 9
    with pytest.raises(ValueError):
        checkpoints.write_checkpoint(str(tmp_path / "empty.ckpt"), {})


def _anon_rss_mib():
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # return freed heap to the OS before measuring
    except OSError:
        pytest.skip("needs glibc")
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    pytest.skip("needs /proc/self/status")


def test_loading_keeps_no_second_copy(tmp_path):
    config = _config(vocab_size=2000, hidden_size=512, num_hidden_layers=4,
                     num_attention_heads=8, intermediate_size=2048)
    names = checkpoint_names.variables_by_checkpoint_name(modeling.BertModel(config))
    size_mib = sum(int(np.prod(v.shape)) for v in names.values()) * 4 / 2 ** 20
    prefix = checkpoints.write_checkpoint(str(tmp_path / "big.ckpt"), names)
    checkpoints.init_from_checkpoint(names, prefix)  # warm-up: op kernels, caches
    before = _anon_rss_mib()
    checkpoints.init_from_checkpoint(names, prefix)
    checkpoints.restore_checkpoint(prefix, names)
    checkpoints.write_checkpoint(str(tmp_path / "again.ckpt"), names)
    grown = _anon_rss_mib() - before
    assert size_mib > 50
    assert grown < 0.4 * size_mib, (grown, size_mib)


def test_relative_output_dir_is_joined_once(tmp_path, monkeypatch, caplog):
    # tf.train.get_checkpoint_state already joins the state file's relative entries onto the
    # folder: joining them again named output/x/output/x/model.ckpt-N for a relative folder.
    monkeypatch.chdir(tmp_path)
    out = os.path.join("output", "x")
    names = checkpoint_names.variables_by_checkpoint_name(modeling.BertModel(_config()))
    with caplog.at_level(logging.WARNING):
        for step in (1, 2, 3):
            checkpoints.save_checkpoint(out, names, step, max_to_keep=2)
        assert checkpoints.checkpoint_candidates(out) == [
            os.path.join(out, "model.ckpt-3"), os.path.join(out, "model.ckpt-2")]
        assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-3")
        assert checkpoints.latest_checkpoint("./" + out + "/") == "./" + out + "/model.ckpt-3"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    # The state file records basenames, and max_to_keep deleted the oldest checkpoint's files.
    assert open(os.path.join(out, "checkpoint")).read().splitlines() == [
        'model_checkpoint_path: "model.ckpt-3"', 'all_model_checkpoint_paths: "model.ckpt-2"',
        'all_model_checkpoint_paths: "model.ckpt-3"']
    assert not [f for f in os.listdir(out) if f.startswith("model.ckpt-1.")]
