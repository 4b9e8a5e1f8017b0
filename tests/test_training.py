"""workflow/{strategies,input_pipeline,forward,outputs}.py in-process: input splitting, eval/predict
   numerics (plain and XLA), output files."""

import os

import numpy as np
import pytest
import tensorflow as tf

from bert_classifier.core import checkpoint_names
import e2e_util
from bert_classifier.workflow import features
import modeling
import optimization
import tokenization
from bert_classifier.workflow import forward
from bert_classifier.workflow import input_pipeline
from bert_classifier.workflow import outputs
from bert_classifier.workflow import strategies
from bert_classifier.workflow import train_loop
from processors import InputExample, PaddingInputExample


@pytest.fixture(scope="module")
def record_file(tmp_path_factory):
    """A .tf_record of 21 real examples plus 3 padding rows, max_seq_length 16."""
    path = str(tmp_path_factory.mktemp("records") / "eval.tf_record")
    tokenizer = tokenization.FullTokenizer(e2e_util.minilm_vocab_path(), do_lower_case=True)
    examples = [InputExample(f"dev-{i}", f"sentence number {i} is here", f"pair {i * 7}",
                             str(i % 2)) for i in range(21)]
    examples += [PaddingInputExample()] * 3
    features.file_based_convert_examples_to_features(examples, ["0", "1"], 16, tokenizer, path,
                                                     num_workers=1)
    return path


def _batches(dataset):
    return [{k: v.numpy() for k, v in b.items()} for b in dataset]


def test_input_pipelines_split_each_global_batch_contiguously(record_file):
    """Two pipelines × 2 replicas see exactly the single pipeline's global batches, in order."""
    fn = input_pipeline.input_fn(record_file, 16, global_batch_size=8, is_training=True,
                                 drop_remainder=True, seed=5)
    single = _batches(fn(tf.distribute.InputContext(1, 0, 1)).take(6))
    parts = [_batches(fn(tf.distribute.InputContext(2, i, 4)).take(12)) for i in range(2)]
    for step, global_batch in enumerate(single):
        pieces = [parts[p][2 * step + r] for p in range(2) for r in range(2)]
        for key, value in global_batch.items():
            assert all(len(piece[key]) == 2 for piece in pieces)
            np.testing.assert_array_equal(np.concatenate([q[key] for q in pieces]), value)
    # The shuffle moved examples away from file order (so the test is not trivial).
    first_ids = single[0]["input_ids"][:, 1:4]
    ordered = _batches(input_pipeline.input_fn(record_file, 16, 8, is_training=False,
                                               drop_remainder=True)(tf.distribute.InputContext()))
    assert not np.array_equal(first_ids, ordered[0]["input_ids"][:, 1:4])


def test_eval_batches_keep_file_order_and_partial_batch(record_file):
    fn = input_pipeline.input_fn(record_file, 16, global_batch_size=10, is_training=False,
                                 drop_remainder=False)
    batches = _batches(fn(tf.distribute.InputContext()))
    assert [len(b["label_ids"]) for b in batches] == [10, 10, 4]
    assert list(np.concatenate([b["is_real_example"] for b in batches])) == [1] * 21 + [0] * 3


@pytest.fixture(scope="module")
def tiny_model():
    tf.random.set_seed(3)
    config = modeling.BertConfig.from_dict(dict(e2e_util.TINY_CONFIG))
    return forward.build_classifier(config, 2, tf.distribute.get_strategy())


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
def test_evaluate_metrics_and_xla_path(record_file, tiny_model):
    strategy = tf.distribute.get_strategy()
    plain = forward.evaluate(tiny_model, 2, record_file, 16, 8, strategy, drop_remainder=False,
                             global_step=7)
    xla = forward.evaluate(tiny_model, 2, record_file, 16, 8, strategy, drop_remainder=False,
                           global_step=7, jit_compile=True)
    # Independent recomputation over the same records.
    spec = features.name_to_features(16)
    data = next(iter(tf.data.TFRecordDataset(record_file).map(
        lambda r: features.decode_record(r, spec)).batch(100)))
    logits = tiny_model(data["input_ids"], data["input_mask"], data["segment_ids"]).numpy()
    labels, weights = data["label_ids"].numpy(), data["is_real_example"].numpy()
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_example = -log_probs[np.arange(len(labels)), labels]
    assert plain["global_step"] == 7 and isinstance(plain["global_step"], np.int64)
    assert plain["eval_accuracy"] == pytest.approx(
        np.sum((logits.argmax(-1) == labels) * weights) / weights.sum(), abs=1e-6)
    assert plain["eval_loss"] == pytest.approx(np.sum(per_example * weights) / weights.sum(),
                                               abs=1e-5)
    batch_means = [per_example[i:i + 8].mean() for i in range(0, 24, 8)]
    assert plain["loss"] == pytest.approx(np.mean(batch_means), abs=1e-5)
    for key in ("eval_accuracy", "eval_loss", "loss"):
        assert isinstance(plain[key], np.float32)
        assert xla[key] == pytest.approx(plain[key], abs=1e-5)


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
def test_evaluate_with_outputs_gives_every_row(record_file, tiny_model):
    """The per-example outputs behind eval_metrics.json: every record in file order, padding
    rows marked, predictions the argmax of the logits, probabilities their softmax."""
    strategy = tf.distribute.get_strategy()
    eval_outputs = forward.evaluate_with_outputs(tiny_model, 2, record_file, 16, 8, strategy,
                                                 drop_remainder=False, global_step=7,
                                                 jit_compile=True)
    assert eval_outputs.results == forward.evaluate(tiny_model, 2, record_file, 16, 8,
                                                    strategy, drop_remainder=False,
                                                    global_step=7, jit_compile=True)
    data = next(iter(tf.data.TFRecordDataset(record_file).map(
        lambda r: features.decode_record(r, features.name_to_features(16))).batch(100)))
    logits = tiny_model(data["input_ids"], data["input_mask"], data["segment_ids"]).numpy()
    np.testing.assert_array_equal(eval_outputs.label_ids, data["label_ids"].numpy())
    np.testing.assert_array_equal(eval_outputs.is_real_example, [1] * 21 + [0] * 3)
    np.testing.assert_array_equal(eval_outputs.predictions, logits.argmax(-1))
    np.testing.assert_allclose(eval_outputs.probabilities, tf.nn.softmax(logits).numpy(),
                               atol=1e-5)
    report = outputs.eval_metrics_report(eval_outputs, ["0", "1"])
    assert report["num_examples"] == 21 and report["global_step"] == 7
    assert report["eval_accuracy"] == float(str(eval_outputs.results["eval_accuracy"]))
    assert np.trace(report["confusion_matrix"]) == round(report["eval_accuracy"] * 21)


def test_predict_plain_and_xla_agree(record_file, tiny_model):
    strategy = tf.distribute.get_strategy()
    plain = forward.predict(tiny_model, record_file, 16, 8, strategy, drop_remainder=False,
                            num_examples=21)
    xla = forward.predict(tiny_model, record_file, 16, 8, strategy, drop_remainder=False,
                          num_examples=21, jit_compile=True)
    assert plain.shape == (21, 2) and plain.dtype == np.float32
    np.testing.assert_allclose(plain.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(xla, plain, atol=1e-5)


@pytest.mark.slow
def test_train_loop_xla_and_op_by_op_take_the_same_steps(record_file):
    # make_train_loop(jit_compile=True) (the benchmark's ours_xla) runs the same step as the
    # default loop. Dropout off: XLA draws other random numbers.
    strategy = tf.distribute.get_strategy()
    config = modeling.BertConfig.from_dict(dict(
        e2e_util.TINY_CONFIG, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0))

    def run(jit_compile):
        tf.random.set_seed(11)  # the same initial weights for both
        model = forward.build_classifier(config, 2, strategy)
        names = checkpoint_names.variables_by_checkpoint_name(model)
        optimizer = optimization.create_optimizer(1e-3, 10, 2, name_to_variable=names)
        dataset = input_pipeline.input_fn(record_file, 16, 8, is_training=True, drop_remainder=True,
                                          seed=5)(tf.distribute.InputContext())
        loop = train_loop.make_train_loop(model, optimizer, strategy, 2, 8,
                                          jit_compile=jit_compile)
        initial = names["output_weights"].numpy()
        iterator = iter(dataset)
        losses = [float(loop(iterator, tf.constant(2))[1]) for _ in range(2)]
        return initial, losses, {n: v.numpy() for n, v in names.items()}

    (initial, plain_losses, plain), (_, xla_losses, xla) = run(False), run(True)
    assert np.abs(plain["output_weights"] - initial).max() > 1e-4  # the steps changed weights
    np.testing.assert_allclose(xla_losses, plain_losses, rtol=1e-4)
    for name, value in plain.items():
        np.testing.assert_allclose(xla[name], value, atol=2e-5, err_msg=name)


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_micro_batches_give_the_whole_batch_logits(record_file, tiny_model, jit_compile):
    spec = features.name_to_features(16)
    batch = next(iter(tf.data.TFRecordDataset(record_file).map(
        lambda r: features.decode_record(r, spec)).batch(11)))
    whole = tiny_model(batch["input_ids"], batch["input_mask"], batch["segment_ids"]).numpy()
    step = tf.function(forward.inference_logits, jit_compile=jit_compile)
    for micro in (1, 4, 11, 32):  # 4: three micro-batches, the last padded with one row
        logits = step(tiny_model, batch, micro).numpy()
        assert logits.shape == (11, 2)
        np.testing.assert_allclose(logits, whole, atol=1e-5)
    # A batch dimension unknown when traced (eval's partial last batch) works too.
    dynamic = tf.function(lambda b: forward.inference_logits(tiny_model, b, 4),
                          input_signature=[{k: tf.TensorSpec([None, *v.shape[1:]], v.dtype)
                                            for k, v in batch.items()}])
    np.testing.assert_allclose(dynamic(batch).numpy(), whole, atol=1e-5)


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
def test_evaluate_and_predict_with_micro_batches(record_file, tiny_model):
    strategy = tf.distribute.get_strategy()
    args = (tiny_model, 2, record_file, 16, 8, strategy)
    whole = forward.evaluate(*args, drop_remainder=False, global_step=1)
    micro = forward.evaluate(*args, drop_remainder=False, global_step=1, jit_compile=True,
                             micro_batch_size=3)
    for key in ("eval_accuracy", "eval_loss", "loss"):
        assert micro[key] == pytest.approx(whole[key], abs=1e-5)
    plain = forward.predict(tiny_model, record_file, 16, 8, strategy, drop_remainder=False,
                            num_examples=21)
    chunked = forward.predict(tiny_model, record_file, 16, 8, strategy, drop_remainder=False,
                              num_examples=21, jit_compile=True, micro_batch_size=3)
    np.testing.assert_allclose(chunked, plain, atol=1e-5)


def test_output_file_formats(tmp_path):
    path = str(tmp_path / "eval_results.txt")
    outputs.write_eval_results(path, {"loss": np.float32(0.50524807),
                                      "eval_accuracy": np.float32(0.84558821),
                                      "global_step": np.int64(343),
                                      "eval_loss": np.float32(0.50524807)})
    with open(path) as f:
        assert f.read() == ("eval_accuracy = 0.8455882\neval_loss = 0.50524807\n"
                            "global_step = 343\nloss = 0.50524807\n")
    path = str(tmp_path / "test_results.tsv")
    n = outputs.write_test_results(path, np.array([[0.6534671, 0.3465329], [0.1, 0.9]],
                                                  np.float32))
    with open(path) as f:
        assert f.read() == "0.6534671\t0.3465329\n0.1\t0.9\n"
    assert n == 2
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]


def test_steps_per_host_call():
    cfg = train_loop.TrainConfig(output_dir="", train_file="",
                                 max_seq_length=8, train_batch_size=8, learning_rate=1.0,
                                 num_train_steps=10, num_warmup_steps=0, iterations_per_loop=1000,
                                 log_step_count_steps=100)
    strategy = tf.distribute.get_strategy()
    assert train_loop._steps_per_host_call(cfg, strategy, progress_shown=False) == 100
    assert train_loop._steps_per_host_call(cfg, strategy, progress_shown=True) == 1
    cfg.iterations_per_loop = 20
    assert train_loop._steps_per_host_call(cfg, strategy, progress_shown=False) == 20


def test_strategy_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        strategies.create_strategy("multi_worker_mirrored")
    with pytest.raises(ValueError, match="expected one_device, mirrored or multi_worker"):
        strategies.create_strategy("bogus")
    assert strategies.strategy_name(strategies.create_strategy("one_device")) == "OneDeviceStrategy"
    with pytest.raises(ValueError, match="positive multiple of the 1 replicas"):
        input_pipeline.check_batch_size("train_batch_size", 0, tf.distribute.get_strategy())


@pytest.mark.slow
def test_one_step_clips_the_summed_gradient_at_global_norm_one(record_file):
    """A step whose gradient norm is above 1: Adam's first moment after it is exactly
    (1 - beta_1) * g / ||g|| (AdamWeightDecay keeps m without bias correction)."""
    strategy = tf.distribute.get_strategy()
    config = modeling.BertConfig.from_dict(dict(
        e2e_util.TINY_CONFIG, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0))
    tf.random.set_seed(2)
    model = forward.build_classifier(config, 2, strategy)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    # Confident logits make the loss, and so the gradient, large.
    names["output_weights"].assign(names["output_weights"] * 300.0)
    optimizer = optimization.create_optimizer(1e-3, 10, 0, name_to_variable=names)
    optimizer.create_slots(list(names.values()))
    batch = next(iter(input_pipeline.input_fn(record_file, 16, 8, is_training=False,
                                              drop_remainder=True)(tf.distribute.InputContext())))
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        logits = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                       training=True)
        loss = tf.reduce_mean(modeling.classifier_loss(logits, batch["label_ids"], 2))
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]  # dense embeddings
    norm = float(tf.linalg.global_norm(grads))
    assert norm > 6.0  # above 1 and above 5, so a wrong clip norm cannot pass

    loop = train_loop.make_train_loop(model, optimizer, strategy, 2, 8)
    iterator = iter(tf.data.Dataset.from_tensors(batch))
    loop(iterator, tf.constant(1))
    slots = optimizer.slot_variables_by_checkpoint_name(names)
    by_variable = {id(v): n for n, v in names.items()}
    for variable, grad in zip(variables, grads):
        name = by_variable[id(variable)]
        np.testing.assert_allclose(slots[name + "/adam_m"].numpy(),
                                   0.1 * grad.numpy() / norm, rtol=1e-4, atol=1e-9,
                                   err_msg=name)


@pytest.mark.parametrize("task_type,task_id,cluster,chief", [
    (None, None, {}, True),                                   # no TF_CONFIG task: one process
    ("worker", 0, {"worker": ["a:1", "b:1"]}, True),          # worker 0 when there is no chief
    ("worker", 1, {"worker": ["a:1", "b:1"]}, False),
    ("chief", 0, {"chief": ["c:1"], "worker": ["a:1"]}, True),
    ("worker", 0, {"chief": ["c:1"], "worker": ["a:1"]}, False),  # the chief task writes
    ("evaluator", 0, {"worker": ["a:1"], "evaluator": ["e:1"]}, False),
])
def test_is_chief_task(task_type, task_id, cluster, chief):
    assert strategies.is_chief_task(task_type, task_id, cluster) is chief


def test_eval_loss_is_the_mean_of_batch_means_with_a_partial_last_batch(record_file, tiny_model):
    """Batches of 10, 10 and 4 records: the Estimator's `loss` (mean of each batch's mean)
    differs from the example-weighted mean, and only the former is right."""
    strategy = tf.distribute.get_strategy()
    result = forward.evaluate(tiny_model, 2, record_file, 16, 10, strategy,
                              drop_remainder=False, global_step=1, num_batches=3)
    spec = features.name_to_features(16)
    data = next(iter(tf.data.TFRecordDataset(record_file).map(
        lambda r: features.decode_record(r, spec)).batch(100)))
    logits = tiny_model(data["input_ids"], data["input_mask"], data["segment_ids"]).numpy()
    labels = data["label_ids"].numpy()
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_example = -log_probs[np.arange(len(labels)), labels]
    batch_means = [per_example[0:10].mean(), per_example[10:20].mean(), per_example[20:24].mean()]
    assert abs(np.mean(batch_means) - per_example.mean()) > 1e-4  # the two can be told apart
    assert result["loss"] == pytest.approx(np.mean(batch_means), abs=1e-6)


def test_resumed_input_continues_the_uninterrupted_stream(record_file):
    """After k global steps a resumed run reads the batches k, k+1, ... of an uninterrupted
    run, for one pipeline and for two pipelines of two replicas each."""
    fn = input_pipeline.input_fn(record_file, 16, global_batch_size=8, is_training=True,
                                 drop_remainder=True, seed=5)
    single = _batches(fn(tf.distribute.InputContext(1, 0, 1)).take(7))
    resumed = _batches(
        train_loop._skipping_steps(fn, 3)(tf.distribute.InputContext(1, 0, 1)).take(4))
    for a, b in zip(single[3:], resumed):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(2, pipeline, 4)
        whole = _batches(fn(ctx).take(14))
        skipped = _batches(train_loop._skipping_steps(fn, 3)(ctx).take(8))
        for a, b in zip(whole[6:], skipped):
            np.testing.assert_array_equal(a["input_ids"], b["input_ids"])


def _feature_batch(batch_size: int, length: int, seed: int, with_labels: bool = False):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(2, length + 1, size=batch_size)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    batch = {"input_ids": tf.constant(rng.randint(1000, 2000, size=(batch_size, length)) * mask),
             "input_mask": tf.constant(mask),
             "segment_ids": tf.constant((np.arange(length)[None, :] >= lengths[:, None] // 2)
                                        .astype(np.int32) * mask)}
    if with_labels:
        batch["label_ids"] = tf.constant(rng.randint(0, 2, size=batch_size).astype(np.int32))
        batch["is_real_example"] = tf.ones([batch_size], tf.int32)
    return batch


@pytest.mark.parametrize("kind", ["predict", "encode", "eval"])
def test_forward_steps_trace_once_for_every_batch_size_and_length(tiny_model, kind):
    # Length-cut batches (and a smaller last batch) reuse the first call's graph: one trace,
    # where reduce_retracing alone traced three times (first shape, length relaxed, batch
    # relaxed), about a second each for BERT. The outputs are the eager model's.
    strategy = tf.distribute.get_strategy()
    if kind == "predict":
        step = forward.make_predict_step(tiny_model, strategy)
    elif kind == "encode":
        step = forward.make_encode_step(tiny_model.bert, strategy, pooling="cls")
    else:
        step = forward.make_eval_step(tiny_model, 2, strategy)
    for seed, (batch_size, length) in enumerate(((8, 16), (8, 8), (3, 8), (5, 12))):
        batch = _feature_batch(batch_size, length, seed, with_labels=kind == "eval")
        outputs = step(batch)
        args = (batch["input_ids"], batch["input_mask"], batch["segment_ids"])
        if kind == "predict":
            expected = tf.nn.softmax(tiny_model(*args, training=False), axis=-1)
            np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-6)
        elif kind == "encode":
            expected = tiny_model.bert(*args, training=False)["sequence_output"][:, 0]
            np.testing.assert_allclose(outputs["vector"].numpy(), expected.numpy(), atol=1e-5)
        else:
            sums, (labels, predictions, _, _) = outputs
            expected = np.argmax(tiny_model(*args, training=False).numpy(), axis=-1)
            np.testing.assert_array_equal(predictions.numpy(), expected)
            assert sums.numpy()[2] == batch_size
    assert step.traced_function.experimental_get_tracing_count() == 1


def _xla_functions(step, batch) -> int:
    """How many functions in the traced step's graph are marked for XLA compilation."""
    graph_def = step.traced_function.get_concrete_function(batch).graph.as_graph_def()
    return sum(1 for f in graph_def.library.function if f.attr["_XlaMustCompile"].b)


@pytest.mark.parametrize("onednn", [True, False])
def test_forward_steps_use_plain_ops_where_onednn_fuses_them(tiny_model, monkeypatch, onednn):
    # Where TensorFlow runs oneDNN its graph rewrites fuse GELU and LayerNorm, so the forward
    # steps leave out fused_ops' XLA kernels there (no compilation per new length); elsewhere
    # they keep them. Training keeps them in both cases.
    from bert_classifier.core import precision
    monkeypatch.setattr(precision, "onednn_enabled", lambda: onednn)
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("on a GPU the forward steps keep the fused kernels either way")
    strategy = tf.distribute.get_strategy()
    step = forward.make_predict_step(tiny_model, strategy)
    batch = _feature_batch(4, 8, 0)
    probabilities = step(batch).numpy()
    assert (_xla_functions(step, batch) == 0) == onednn
    expected = tf.nn.softmax(tiny_model(batch["input_ids"], batch["input_mask"],
                                        batch["segment_ids"], training=False), axis=-1)
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=1e-6)
