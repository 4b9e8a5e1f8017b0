"""export_saved_model.py: a SavedModel that takes raw strings (Google's tokenizer in the graph,
core ops only) loaded in a fresh process that never imports the project, its bad-input
behaviour, the encoder export, and the weights-only checkpoint read by Google's original code."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import e2e_util
from e2e_util import REPO_ROOT, read_tsv, run_script

sys.path.insert(0, REPO_ROOT)

from bert_classifier.workflow import features  # noqa: E402
from bert_classifier.api import inference  # noqa: E402
import tokenization  # noqa: E402

# Every test here starts a subprocess or trains: `pytest -m "not slow"` skips the file.
pytestmark = pytest.mark.slow

ORACLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "oracle_features.py")

# Runs in a fresh interpreter started outside the repository with nothing of the project on
# sys.path: only TensorFlow loads the export.
FRESH_CLIENT = r'''
import json, sys, time
import numpy as np
import tensorflow as tf
request = json.load(open(sys.argv[2]))
project = {"modeling", "tokenization", "bert_classifier"}
loaded = {m.split(".")[0] for m in sys.modules}
assert not project & loaded, project & loaded
model = tf.saved_model.load(sys.argv[1])
out = {"signatures": sorted(model.signatures)}
serve = model.signatures["serving_default"]
if "text" in request:
    out["vector"] = serve(text=tf.constant(request["text"]))["vector"].numpy().tolist()
else:
    result = serve(text_a=tf.constant(request["text_a"]), text_b=tf.constant(request["text_b"]))
    out["probabilities"] = result["probabilities"].numpy().tolist()
    out["label"] = [x.decode() for x in result["label"].numpy()]
    features = model.signatures["tokenize"](text_a=tf.constant(request["text_a"]),
                                            text_b=tf.constant(request["text_b"]))
    out["tokenize"] = {k: v.numpy().tolist() for k, v in features.items()}
    out["from_ids"] = model.signatures["from_ids"](**features)["probabilities"].numpy().tolist()
    bad = {}
    for name, a, b in [("empty", [""], [""]), ("not_utf8", [b"ab\xffcd\xc3"], [b"\xe2\x82"]),
                       ("one_mb", ["word " * 209715], [""]), ("batch_0", [], [])]:
        start = time.time()
        r = serve(text_a=tf.constant(a, tf.string), text_b=tf.constant(b, tf.string))
        bad[name] = {"shape": list(r["probabilities"].shape),
                     "probabilities": r["probabilities"].numpy().tolist(),
                     "seconds": time.time() - start}
    try:
        serve(text_a=tf.constant(["a", "b"]), text_b=tf.constant(["c"]))
        bad["mismatch"] = "no error"
    except tf.errors.InvalidArgumentError as err:
        bad["mismatch"] = err.message
    out["bad"] = bad
print("@@" + json.dumps(out))
'''


def _fresh_client(export_dir, request, tmp_path):
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request), encoding="utf-8")
    env = {k: v for k, v in e2e_util.subprocess_env().items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", FRESH_CLIENT, str(export_dir),
                           str(request_file)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("@@", 1)[1])


@pytest.fixture(scope="module")
def exported(trained_sim, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("export") / "classifier"
    run_script("export_saved_model.py", ["--model_dir=" + trained_sim["output_dir"],
                                         "--export_dir=%s" % export_dir])
    return export_dir


def test_classifier_export_in_a_fresh_process(trained_sim, exported, tmp_path):
    pairs = trained_sim["pairs"]
    request = {"text_a": [a for a, _ in pairs], "text_b": [b for _, b in pairs]}
    out = _fresh_client(exported, request, tmp_path)
    assert out["signatures"] == ["from_ids", "serving_default", "tokenize"]
    # The same probabilities as predict (the Python API) and as --do_predict's file.
    predicted = inference.Classifier.load(trained_sim["output_dir"]).predict(pairs)
    np.testing.assert_allclose(out["probabilities"], predicted.probabilities, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"], trained_sim["expected"], rtol=0, atol=1e-5)
    assert out["label"] == predicted.labels
    np.testing.assert_allclose(out["from_ids"], out["probabilities"], rtol=0, atol=1e-6)
    # tokenize = features.convert_single_example, position for position.
    tokenizer = tokenization.FullTokenizer(trained_sim["tiny"]["vocab"], True)
    encoded = features.encode_texts([(a, b) for a, b in pairs], 32, tokenizer)
    for name in ("input_ids", "input_mask", "segment_ids"):
        np.testing.assert_array_equal(out["tokenize"][name], getattr(encoded, name))
    # Bad input: a defined result, never a crash.
    bad = out["bad"]
    assert bad["empty"]["shape"] == [1, 2] and bad["batch_0"]["shape"] == [0, 2]
    direct = inference.Classifier.load(trained_sim["output_dir"]).predict_proba(
        [("", None), ("abcd", None), ("word " * 209715, None)])
    np.testing.assert_allclose(bad["empty"]["probabilities"][0], direct[0], atol=1e-5)
    # Invalid UTF-8 bytes are dropped, as tokenization.convert_to_unicode drops them.
    np.testing.assert_allclose(bad["not_utf8"]["probabilities"][0], direct[1], atol=1e-5)
    np.testing.assert_allclose(bad["one_mb"]["probabilities"][0], direct[2], atol=1e-5)
    assert bad["one_mb"]["seconds"] < 30
    assert "batch sizes differ" in bad["mismatch"]


def test_saved_model_cli_runs_it(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run([cli, "run", "--dir", str(exported), "--tag_set", "serve",
                           "--signature_def", "serving_default", "--input_exprs",
                           'text_a=["The dog barked."];text_b=["It was loud."]'],
                          capture_output=True, text=True, timeout=300,
                          env=e2e_util.subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Result for output key label" in proc.stdout
    assert "Result for output key probabilities" in proc.stdout


def test_export_uses_core_ops_only(exported):
    """Every op of every graph in the SavedModel is registered by TensorFlow itself (no
    tensorflow-text, no py_func), so stock TensorFlow Serving can load it."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((exported / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    functions = {f.signature.name for f in graph.library.function}
    unknown = {op for op in ops - functions if op_def_registry.get(op) is None}
    assert not unknown, unknown
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    # Nothing needs XLA (stock servers may lack it): no function must be compiled, none carries
    # the fused kernels' custom gradients.
    must_compile = [f.signature.name for f in graph.library.function
                    if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]
    assert not must_compile, must_compile
    assert "IdentityN" not in ops
    assert "StringSplitV2" in ops or "UnicodeDecode" in ops or "UnicodeDecodeWithOffsets" in ops


def test_encoder_export_equals_sentence_vectors(minilm_dir, tmp_path):
    export_dir = tmp_path / "encoder"
    run_script("export_saved_model.py", ["--model_dir=" + minilm_dir,
                                         "--export_dir=%s" % export_dir, "--encoder",
                                         "--pooling=mean", "--normalize"])
    texts = ["Ad sales boost Time Warner profit", "", "Dollar gains on Greenspan speech",
             "The quick brown fox jumps over the lazy dog. " * 20]
    out = _fresh_client(export_dir, {"text": texts}, tmp_path)
    assert out["signatures"] == ["from_ids", "serving_default", "tokenize"]
    ours = inference.Encoder.load(minilm_dir).encode(texts, pooling="mean", normalize=True)
    np.testing.assert_allclose(out["vector"], ours, rtol=0, atol=1e-5)


def test_weights_only_checkpoint(trained_sim, tmp_path):
    out_dir = trained_sim["output_dir"]
    export_dir = tmp_path / "weights"
    run_script("export_saved_model.py", ["--model_dir=" + out_dir,
                                         "--export_dir=%s" % export_dir, "--weights_only"])
    prefix = str(export_dir / "bert_model.ckpt")
    names = {n for n, _ in tf.train.list_variables(prefix)}
    fine_tuned = dict(tf.train.list_variables(os.path.join(out_dir, "model.ckpt-3")))
    expected = {n for n in fine_tuned if not n.endswith(("/adam_m", "/adam_v"))
                and n != "global_step"}
    assert names == expected and "output_weights" in names
    assert all(n.startswith("bert/") for n in names - {"output_weights", "output_bias"})
    size = (export_dir / "bert_model.ckpt.data-00000-of-00001").stat().st_size
    full = os.path.getsize(os.path.join(out_dir, "model.ckpt-3.data-00000-of-00001"))
    assert 0.3 < size / full < 0.36, size / full  # weights, no Adam m and v
    assert sorted(os.listdir(export_dir)) == sorted([
        "bert_config.json", "bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.index",
        "model_info.json", "vocab.txt"])

    # Google's original run_classifier.create_model + init_from_checkpoint (bert-tensorflow, in
    # a TF1 graph) reads every variable from it and computes the same probabilities.
    pairs = trained_sim["pairs"][:4]
    tokenizer = tokenization.FullTokenizer(trained_sim["tiny"]["vocab"], True)
    encoded = features.encode_texts(pairs, 32, tokenizer)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({
        "bert_config_file": str(export_dir / "bert_config.json"), "init_checkpoint": prefix,
        "num_labels": 2, "input_ids": encoded.input_ids.tolist(),
        "input_mask": encoded.input_mask.tolist(), "segment_ids": encoded.segment_ids.tolist()}))
    result = tmp_path / "original.json"
    subprocess.run([sys.executable, ORACLE, "classify", str(job), str(result)], check=True,
                   env=e2e_util.subprocess_env(), timeout=300, capture_output=True)
    original = json.loads(result.read_text())
    assert original["initialized"] == original["trainable"] == sorted(names)
    np.testing.assert_allclose(original["probabilities"], trained_sim["expected"][:4],
                               rtol=0, atol=1e-5)

    # Usable as --init_checkpoint: a fresh output_dir predicts what the trained one did.
    predict_dir = str(tmp_path / "from_weights")
    e2e_util.run_classifier(e2e_util.classifier_args(
        trained_sim["tiny"], trained_sim["data_dir"], predict_dir, "sim", do_predict="true",
        init_checkpoint=prefix, predict_batch_size=4))
    with open(os.path.join(predict_dir, "test_results.tsv")) as f:
        again = np.array([[float(x) for x in row] for row in read_tsv(f.read())])
    np.testing.assert_allclose(again, trained_sim["expected"], rtol=0, atol=1e-6)


def test_export_refuses_what_cannot_work(trained_sim, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    proc = run_script("export_saved_model.py", ["--model_dir=" + trained_sim["output_dir"],
                                                "--export_dir=%s" % taken], check=False)
    assert proc.returncode == 1 and "is not an empty folder" in proc.stderr.splitlines()[-1]
    assert (taken / "file").read_text() == "x"
    proc = run_script("export_saved_model.py", ["--model_dir=%s" % tmp_path,
                                                "--export_dir=%s" % (tmp_path / "new")],
                      check=False)
    assert proc.returncode == 1 and "has no bert_config.json" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "new").exists()
