"""graph_tokenizer.py: the in-graph tokenizer gives exactly `tokenization.FullTokenizer`'s ids and
`features.convert_single_example`'s features (corpus, every code point, final sigma, canonical
reordering, WordPiece edge cases, truncation), and a SavedModel holding it loads and runs in a
fresh process that has only TensorFlow, with core ops only."""
import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
import unicodedata

import pytest
import tensorflow as tf

from bert_classifier.workflow import features
from bert_classifier.core import char_tables
from bert_classifier.core import graph_tokenizer
import tokenization
import tokenization_corpus as corpus
from processors import InputExample

_BATCH = 256


def _as_bytes(texts):
    return [text if isinstance(text, bytes) else text.encode("utf-8") for text in texts]


def _graph_ids(graph, texts, batch=_BATCH):
    ids = []
    for start in range(0, len(texts), batch):
        ids += graph.tokenize(tf.constant(_as_bytes(texts[start:start + batch]),
                                          tf.string)).to_list()
    return ids


def _python_ids(python, texts):
    return [python.convert_tokens_to_ids(python.tokenize(text)) for text in texts]


def _assert_same_ids(graph, python, texts, what):
    actual = _graph_ids(graph, texts)
    expected = _python_ids(python, texts)
    differences = [(text, a, e) for text, a, e in zip(texts, actual, expected) if a != e]
    assert not differences, "%s: %d of %d texts differ, first: %s" % (
        what, len(differences), len(texts),
        "; ".join("%r: graph %s python %s" % (t[:60], a[:12], e[:12])
                  for t, a, e in differences[:3]))
    return sum(map(len, expected))


def _write_vocab(directory, tokens):
    path = os.path.join(str(directory), "vocab.txt")
    with open(path, "w", encoding="utf-8") as writer:
        writer.write("".join(token + "\n" for token in tokens))
    return path


@pytest.fixture(scope="module")
def vocab_file():
    return corpus.vocab_path()


@pytest.fixture(scope="module")
def tokenizers(vocab_file):
    """do_lower_case -> (GraphTokenizer, FullTokenizer) on the 30,522-token MiniLM vocab."""
    return {lower: (graph_tokenizer.GraphTokenizer(vocab_file, do_lower_case=lower),
                    tokenization.FullTokenizer(vocab_file, do_lower_case=lower))
            for lower in (True, False)}


@pytest.fixture(scope="module")
def char_tokenizers(tmp_path_factory):
    """do_lower_case -> (GraphTokenizer, FullTokenizer) on a vocab of single characters (and
    their ## forms) from the final-sigma and reordering alphabets: every character its own id."""
    chars = ("aA1.':\u03a3\u03c3\u03c2\u0391\u03b1\u0345\u02b0\u4e2d\u302e\u302f"
             "\U0001d165\U0001d16d\U00016ff0\u1b44\u0301\u034f\u0f71")
    vocab = _write_vocab(tmp_path_factory.mktemp("char_vocab"),
                         ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + list(chars) +
                         ["##" + char for char in chars])
    return {lower: (graph_tokenizer.GraphTokenizer(vocab, do_lower_case=lower),
                    tokenization.FullTokenizer(vocab, do_lower_case=lower))
            for lower in (True, False)}


# ---------------------------------------------------------------- step 1: UTF-8 decoding


def test_unicode_decode_drops_invalid_bytes_as_python():
    rng = random.Random(5)
    edges = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
             0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xF8, 0xFC, 0xFE, 0xFF]
    texts = []
    for _ in range(20000):
        length = rng.randint(0, 8)
        pool = edges if rng.random() < 0.5 else range(256)
        texts.append(bytes(rng.choice(pool) for _ in range(length)))
    for _ in range(5000):  # valid text with bytes inserted and deleted
        valid = bytearray("".join(chr(rng.choice([rng.randrange(0x80), rng.randrange(0x80, 0x800),
                                                 rng.randrange(0x800, 0xD800),
                                                 rng.randrange(0x10000, 0x110000)]))
                                  for _ in range(3)).encode("utf-8"))
        for _ in range(rng.randint(1, 3)):
            valid.insert(rng.randrange(len(valid) + 1), rng.randrange(256))
        if rng.random() < 0.5:
            del valid[rng.randrange(len(valid))]
        texts.append(bytes(valid))
    texts += [b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82A", b"a\xa3b\xff"]
    # The op and arguments GraphTokenizer uses.
    splits, values = tf.raw_ops.UnicodeDecode(input=tf.constant(texts), input_encoding="UTF-8",
                                              errors="ignore", Tsplits=tf.int32)
    decoded = tf.RaggedTensor.from_row_splits(values, splits).to_list()
    expected = [[ord(c) for c in tokenization.convert_to_unicode(text)] for text in texts]
    assert decoded == expected
    assert any(text.decode("utf-8", "ignore") != text.decode("utf-8", "replace")
               for text in texts)  # invalid input is really there


# ---------------------------------------------------------------- tokenize vs FullTokenizer


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
@pytest.mark.parametrize("do_lower_case", [True, False])
def test_corpus_matches_full_tokenizer(tokenizers, do_lower_case):
    graph, python = tokenizers[do_lower_case]
    undecodable = [line for line in corpus.bbc_lines() if isinstance(line, bytes)]
    assert undecodable  # the Latin-1 pound sign line
    sources = {"bbc": corpus.bbc_lines(1500) + undecodable, "chinese": corpus.chinese_lines(300),
               "adversarial": corpus.adversarial_lines(2000), "long": corpus.long_word_lines(),
               "special": corpus.special_lines()}
    for name, lines in sources.items():
        num_tokens = _assert_same_ids(graph, python, lines, name)
        assert num_tokens > len(lines) // 2, name


def _all_characters():
    return [chr(cp) for cp in range(char_tables.NUM_CODE_POINTS)
            if not 0xD800 <= cp <= 0xDFFF]  # surrogates: not in decoded UTF-8


def _in_texts(words, per_text=4096):
    return [" ".join(words[i:i + per_text]) for i in range(0, len(words), per_text)]


@pytest.mark.slow  # heavy in-process (a reference model or XLA compiles)
@pytest.mark.parametrize("do_lower_case", [True, False])
def test_every_code_point_alone(tokenizers, do_lower_case):
    graph, python = tokenizers[do_lower_case]
    _assert_same_ids(graph, python, _in_texts(_all_characters()), "alone")


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_every_assigned_code_point_inside_a_word(tokenizers, do_lower_case):
    # "a" + c + "b" for every assigned character (unassigned and private-use ones, all alike
    # but for the CJK ranges, are each alone above and among neighbours in the corpus).
    graph, python = tokenizers[do_lower_case]
    words = ["a%sb" % char for char in _all_characters()
             if unicodedata.category(char) not in ("Cn", "Co")]
    assert len(words) > 140_000
    _assert_same_ids(graph, python, _in_texts(words), "inside a word")


def _all_strings(alphabet, max_length):
    return ["".join(chars) for length in range(max_length + 1)
            for chars in itertools.product(alphabet, repeat=length)]


@pytest.mark.parametrize("do_lower_case", [True])  # cased mode never lowercases
def test_final_sigma_contexts(tokenizers, char_tokenizers, do_lower_case):
    # Every string of up to 4 characters over: capital sigma, cased letters (Latin, Greek),
    # case-ignorable ones (apostrophe, full stop, colon, U+0345 cased and ignorable, U+02B0
    # modifier letter), uncased ones (digit), word boundaries (space, CJK, U+2028) and
    # characters that are dropped (ZWSP, soft hyphen: case-ignorable in Unicode, removed first).
    graph, python = tokenizers[do_lower_case]
    alphabet = ["\u03a3", "A", "\u0391", "'", ".", ":", "\u0345", "\u02b0", "1", " ", "\u4e2d",
                "\u2028", "\u200b", "\u00ad"]
    texts = _all_strings(alphabet, 4)
    assert "\u03c2" in "".join(t.lower() for t in texts)  # final sigmas are produced
    _assert_same_ids(graph, python, texts, "final sigma")
    # With single-character tokens the two sigmas always get different ids.
    char_graph, char_python = char_tokenizers[do_lower_case]
    _assert_same_ids(char_graph, char_python, texts, "final sigma, per-character vocab")


@pytest.mark.parametrize("do_lower_case", [True, False])  # cased mode: no NFD, no reordering
def test_canonical_reordering_of_marks(tokenizers, char_tokenizers, do_lower_case):
    # Marks that survive accent stripping (Mc with a nonzero combining class: U+302E 224,
    # U+1D165 216, U+1D16D 226, U+16FF0 6, U+1B44 9) are reordered by NFD; Mn marks (U+0301
    # class 230, U+0F71 class 129, U+034F class 0, which ends a run) are dropped after it.
    assert unicodedata.normalize("NFD", "\u302e\U0001d165") == "\U0001d165\u302e"
    graph, python = tokenizers[do_lower_case]
    alphabet = ["a", "\u302e", "\U0001d165", "\U0001d16d", "\U00016ff0", "\u1b44", "\u0301",
                "\u0f71", "\u034f", " ", "\u4e2d", ".", "\u200b"]
    texts = _all_strings(alphabet, 4)
    _assert_same_ids(graph, python, texts, "reordering")
    char_graph, char_python = char_tokenizers[do_lower_case]
    _assert_same_ids(char_graph, char_python, texts, "reordering, per-character vocab")
    if do_lower_case:
        ids = _graph_ids(char_graph, ["a\u302e\U0001d165"])[0]
        assert char_python.convert_ids_to_tokens(ids) == ["a", "##\U0001d165", "##\u302e"]


def test_text_boundaries_in_one_batch(tokenizers):
    # Marks at the start of a text must not join the previous text's run, nor sigma contexts.
    graph, python = tokenizers[True]
    texts = ["A\u03a3", "\u03a3a", "\u302ea", "x\U0001d165", "\u302e", "\U0001d165x", "", " ",
             "\u0301\u03a3", "A", "\u03a3"]
    _assert_same_ids(graph, python, texts, "boundaries")


# ---------------------------------------------------------------- WordPiece edge cases


def test_wordpiece_edge_cases(tmp_path):
    vocab = _write_vocab(tmp_path, ["[UNK]", "[CLS]", "[SEP]", "a", "##a", "b", "##bc", "abc",
                                    "##", "#", "x" * 30, "##" + "y" * 40, "\u00e9", "##\u00e9"])
    graph = graph_tokenizer.GraphTokenizer(vocab)
    python = tokenization.FullTokenizer(vocab)
    texts = ["a" * n for n in (1, 2, 199, 200, 201, 400)] + [
        "abc", "abcbc", "ab", "abca", "b", "bbc", "abd", "d", "##", "#a", "a##a", "x" * 30,
        "x" * 31, "x" * 30 + "y" * 40, "x" * 30 + "y" * 80, "x" * 30 + "y" * 41,
        "\u00e9" * 200, "\u00e9" * 201, "E\u0301" * 150, "a" * 200 + "," + "a" * 200,
        "a " * 300, ""]
    _assert_same_ids(graph, python, texts, "small vocab")
    # The greedy chain of the longest allowed word: 200 pieces.
    assert _graph_ids(graph, ["a" * 200])[0] == [3] + [4] * 199


def test_vocab_without_continuations(tmp_path):
    vocab = _write_vocab(tmp_path, ["[UNK]", "[CLS]", "[SEP]", "a", "ab", "b"])
    graph = graph_tokenizer.GraphTokenizer(vocab, do_lower_case=False)
    python = tokenization.FullTokenizer(vocab, do_lower_case=False)
    _assert_same_ids(graph, python, ["a", "ab", "abb", "b a", "c", "A"], "no ## entries")


def test_constructor_errors(tmp_path, vocab_file):
    with pytest.raises(ValueError, match="max_seq_length 2"):
        graph_tokenizer.GraphTokenizer(vocab_file, max_seq_length=2)
    with pytest.raises(ValueError, match=r"has no \[UNK\] token"):
        graph_tokenizer.GraphTokenizer(_write_vocab(tmp_path, ["[CLS]", "[SEP]", "a"]))


def test_vocab_size_and_special_ids(tokenizers):
    graph, python = tokenizers[True]
    assert graph.vocab_size == len(python.vocab) == 30522
    assert (graph.unk_id, graph.cls_id, graph.sep_id) == tuple(
        python.convert_tokens_to_ids(["[UNK]", "[CLS]", "[SEP]"]))


# ---------------------------------------------------------------- encode vs features


def test_truncated_lengths_equal_truncate_seq_pair():
    cases = [(a, b, m) for m in range(0, 24) for a in range(0, 30) for b in range(0, 30)]
    len_a, len_b = tf.constant([c[0] for c in cases]), tf.constant([c[1] for c in cases])
    for max_length in range(0, 24):
        got_a, got_b = graph_tokenizer.truncated_lengths(len_a, len_b, max_length)
        for (a, b, m), ga, gb in zip(cases, got_a.numpy(), got_b.numpy()):
            if m != max_length:
                continue
            tokens_a, tokens_b = list(range(a)), list(range(b))
            features._truncate_seq_pair(tokens_a, tokens_b, m)
            assert (ga, gb) == (len(tokens_a), len(tokens_b)), (a, b, m)


def test_clamping_lengths_to_max_seq_length_keeps_truncation():
    # encode keeps the wordpieces of each text's first max_seq_length basic tokens: a prefix of
    # its pieces at least max_seq_length long (or all of them).
    for seq_length in range(3, 12):
        for kept in (seq_length, seq_length + 1, 2 * seq_length):
            for a in range(0, 3 * seq_length):
                for b in range(1, 3 * seq_length):
                    full_a, full_b = list(range(a)), list(range(b))
                    cut_a, cut_b = full_a[:kept], full_b[:kept]
                    features._truncate_seq_pair(full_a, full_b, seq_length - 3)
                    features._truncate_seq_pair(cut_a, cut_b, seq_length - 3)
                    assert (full_a, full_b) == (cut_a, cut_b), (a, b, seq_length, kept)


_LONG = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"


def _encode_pairs():
    bbc = [line if isinstance(line, str) else line.decode("utf-8", "ignore")
           for line in corpus.bbc_lines(240)]
    chinese = corpus.chinese_lines(20)
    adversarial = corpus.adversarial_lines(40, seed=3)
    pairs = list(zip(bbc[::2], bbc[1::2])) + list(zip(chinese, adversarial[:20]))
    pairs += list(zip(adversarial[20:], chinese[::-1]))
    pairs += [(_LONG, _LONG), (_LONG + " extra", _LONG), ("short", _LONG + " " + _LONG),
              (_LONG * 3, ""), ("hello world", ""), ("hello world", "\u200b"),
              ("hello", "\u0301\u0301"), ("", "only b"), ("", ""), ("a", " \t"),
              ("x" * 300 + " tail", "unaffable" * 3), ("\u4e2d" * 400, "\u4e2d" * 399),
              # Words without tokens (lowercase mode: marks only; dropped characters) before
              # the text's words: encode's cut must not count them.
              ("\u0301 " * 20 + _LONG, "\u200b\u00ad " * 20 + "tail words here"),
              ("\u0391\u03a3 " * 10 + "\u0391\u03a3", "\u302e\U0001d165 " * 12 + "end")]
    return pairs


def _python_features(python, pairs, seq_length):
    rows = []
    for i, (text_a, text_b) in enumerate(pairs):
        example = InputExample(guid="g-%d" % i, text_a=text_a, text_b=text_b or None, label="0")
        feature = features.convert_single_example(10 + i, example, ["0"], seq_length, python)
        rows.append((feature.input_ids, feature.input_mask, feature.segment_ids))
    return rows


@pytest.mark.parametrize("do_lower_case,seq_length", [(True, 3), (True, 8), (True, 512),
                                                      (False, 128)])
def test_encode_matches_convert_single_example(vocab_file, tokenizers, do_lower_case,
                                               seq_length):
    python = tokenizers[do_lower_case][1]
    graph = graph_tokenizer.GraphTokenizer(vocab_file, do_lower_case, seq_length)
    pairs = _encode_pairs()
    expected = _python_features(python, pairs, seq_length)
    actual = []
    for start in range(0, len(pairs), 64):
        chunk = pairs[start:start + 64]
        out = graph.encode(tf.constant([a for a, _ in chunk]), tf.constant([b for _, b in chunk]))
        assert all(out[k].shape == (len(chunk), seq_length) and out[k].dtype == tf.int32
                   for k in out)
        actual += list(zip(out["input_ids"].numpy().tolist(), out["input_mask"].numpy().tolist(),
                           out["segment_ids"].numpy().tolist()))
    differences = [(pair, a, e) for pair, a, e in zip(pairs, actual, expected) if a != e]
    assert not differences, "%d of %d pairs differ, first %r" % (
        len(differences), len(pairs), differences[:1])
    assert any(sum(e[1]) == seq_length for e in expected)  # truncation happened


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_batches_without_tokens(vocab_file, tokenizers, do_lower_case):
    # Whole batches whose texts have no words, or words without tokens (marks, dropped
    # characters), and a batch of 0: index arithmetic on empty arrays.
    graph, python = tokenizers[do_lower_case]
    small = graph_tokenizer.GraphTokenizer(vocab_file, do_lower_case, max_seq_length=4)
    for texts in ([""], ["", ""], [" ", "\u200b"], ["\u0301", "\u0301 \u0301"], []):
        assert _graph_ids(graph, texts) == _python_ids(python, texts), texts
        for tokenizer in (graph, small):
            seq_length = tokenizer.max_seq_length
            out = tokenizer.encode(tf.constant(texts, tf.string), tf.constant(texts, tf.string))
            expected = _python_features(python, list(zip(texts, texts)), seq_length)
            assert out["input_ids"].shape == (len(texts), seq_length)
            assert [list(row) for row in zip(out["input_ids"].numpy().tolist(),
                                             out["input_mask"].numpy().tolist(),
                                             out["segment_ids"].numpy().tolist())] == [
                                                 list(e) for e in expected], texts


def test_encode_to_the_longest_sequence(tokenizers):
    graph = tokenizers[True][0]
    encode_short = tf.function(
        lambda a, b: graph.encode_batch(a, b, pad_to_max_seq_length=False),
        input_signature=[tf.TensorSpec([None], tf.string)] * 2)
    for pairs in (_encode_pairs()[:50], [("a", ""), ("b c", "d")], []):
        text_a = tf.constant([a for a, _ in pairs], tf.string)
        text_b = tf.constant([b for _, b in pairs], tf.string)
        padded = graph.encode(text_a, text_b)
        short = encode_short(text_a, text_b)
        # At least [CLS] [SEP]'s 2 columns, also for an empty batch (a model reads column 0).
        width = int(tf.reduce_max(tf.reduce_sum(padded["input_mask"], 1))) if pairs else 2
        for key in padded:
            assert short[key].shape == (len(pairs), width), key
            assert short[key].numpy().tolist() == padded[key][:, :width].numpy().tolist(), key


# ---------------------------------------------------------------- SavedModel, fresh process

_LOADER = textwrap.dedent("""
    import json, os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    export_dir, inputs_file, output_file = sys.argv[1:4]
    with open(inputs_file) as f:
        inputs = json.load(f)
    as_bytes = lambda texts: tf.constant([t.encode("latin-1") for t in texts], tf.string)
    loaded = tf.saved_model.load(export_dir)
    encode = loaded.signatures["encode"]
    tokenize = loaded.signatures["tokenize"]
    result = {"encode": [], "tokenize": [], "seconds": {}}
    for name, (text_a, text_b) in inputs["encode"].items():
        start = time.perf_counter()
        out = encode(text_a=as_bytes(text_a), text_b=as_bytes(text_b))
        result["seconds"][name] = time.perf_counter() - start
        result["encode"].append({k: [list(map(int, row)) for row in v.numpy()]
                                 for k, v in out.items()})
        result["encode"][-1]["shape"] = out["input_ids"].shape.as_list()
    for texts in inputs["tokenize"]:
        out = tokenize(texts=as_bytes(texts))
        ids, lengths = out["token_ids"].numpy().tolist(), out["row_lengths"].numpy().tolist()
        rows, start = [], 0
        for n in lengths:
            rows.append(ids[start:start + n])
            start += n
        result["tokenize"].append(rows)
    try:
        encode(text_a=as_bytes(["a", "b"]), text_b=as_bytes(["a"]))
        result["mismatched_batch"] = "no error"
    except tf.errors.InvalidArgumentError as error:
        result["mismatched_batch"] = error.message
    # Every op of the graph and its functions must be registered in plain TensorFlow.
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    functions, ops = set(), set()
    for meta_graph in saved_model.meta_graphs:
        library = meta_graph.graph_def.library
        functions |= {function.signature.name for function in library.function}
        ops |= {node.op for node in meta_graph.graph_def.node}
        for function in library.function:
            ops |= {node.op for node in function.node_def}
    ops -= functions
    result["ops"] = sorted(ops)
    result["unregistered_ops"] = sorted(op for op in ops if op_def_registry.get(op) is None)
    result["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in (
        "tokenization", "bert_classifier", "tensorflow_text"))
    with open(output_file, "w") as f:
        json.dump(result, f)
""")


class _Export(tf.Module):
    """What an export holds: the tokenizer, with string-in signatures."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def tokenize(self, texts):
        ragged = self.tokenizer.tokenize_batch(texts)
        return {"token_ids": ragged.flat_values, "row_lengths": ragged.row_lengths()}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text_a"),
                                  tf.TensorSpec([None], tf.string, name="text_b")])
    def encode(self, text_a, text_b):
        return self.tokenizer.encode_batch(text_a, text_b)


def _directory_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def _latin1(texts):
    """Texts (str or UTF-8 bytes) as JSON-safe strings: their bytes, one character each."""
    return [(text if isinstance(text, bytes) else text.encode("utf-8")).decode("latin-1")
            for text in texts]


@pytest.mark.slow
def test_saved_model_in_fresh_process(tmp_path, vocab_file, tokenizers):
    python = tokenizers[True][1]
    seq_length = 32
    graph = graph_tokenizer.GraphTokenizer(vocab_file, True, seq_length)
    export_dir = str(tmp_path / "export")
    module = _Export(graph)
    tf.saved_model.save(module, export_dir,
                        signatures={"encode": module.encode, "tokenize": module.tokenize})
    # saved_model_cli (TensorFlow's own runner) in parallel with the loader below.
    cli = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "run", "--dir",
         export_dir, "--tag_set", "serve", "--signature_def", "encode", "--input_exprs",
         "text_a=[b'Hello, world!'];text_b=[b'']"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    megabyte = (" ".join(corpus.bbc_lines(50)[1:]) + " \x00\u200b\u03a3\u302e\U0001d165 ") * 200
    megabyte = (megabyte + "x" * 300_000)[:1_000_000]
    pairs = _encode_pairs()[:40]
    encode_inputs = {
        "pairs": ([a for a, _ in pairs], [b for _, b in pairs]),
        "empty": (["", ""], ["", "\u200b"]),
        "invalid utf-8": ([b"\xff\xfeabc\xc3", "caf\xe9 ok"], [b"\x80", b"\xe2\x82"]),
        "1 MB": ([megabyte], ["tail words"]),
        "1 MB pair": (["head"], [megabyte]),
        "batch of 0": ([], [])}
    tokenize_inputs = [corpus.bbc_lines(100) + corpus.special_lines(), [],
                       ["", b"\xff", megabyte]]
    inputs_file, output_file = tmp_path / "inputs.json", tmp_path / "outputs.json"
    inputs_file.write_text(json.dumps({
        "encode": {name: (_latin1(a), _latin1(b)) for name, (a, b) in encode_inputs.items()},
        "tokenize": [_latin1(texts) for texts in tokenize_inputs]}))
    # -I: no project directory, no PYTHONPATH, no user site; cwd outside the project.
    loader = subprocess.run([sys.executable, "-I", "-c", _LOADER, export_dir, str(inputs_file),
                             str(output_file)], capture_output=True, text=True,
                            cwd=str(tmp_path), timeout=300)
    assert loader.returncode == 0, loader.stderr[-3000:]
    result = json.loads(output_file.read_text())

    assert result["modules"] == []
    assert result["unregistered_ops"] == [], result["unregistered_ops"]
    assert not [op for op in result["ops"] if "PyFunc" in op], result["ops"]
    print("\nSavedModel ops (%d): %s" % (len(result["ops"]), " ".join(result["ops"])))
    print("seconds per encode call in the fresh process: %s" % {
        name: round(seconds, 3) for name, seconds in result["seconds"].items()})
    assert "batch sizes differ" in result["mismatched_batch"]

    for (name, (text_a, text_b)), got in zip(encode_inputs.items(), result["encode"]):
        expected = _python_features(python, list(zip(text_a, text_b)), seq_length)
        assert got["shape"] == [len(text_a), seq_length], name
        assert [list(row) for row in zip(got["input_ids"], got["input_mask"],
                                         got["segment_ids"])] == [list(e) for e in expected], name
    for texts, got in zip(tokenize_inputs, result["tokenize"]):
        assert got == _python_ids(python, texts)
    # Empty and undecodable texts give [CLS] [SEP] (the last text_b is an incomplete sequence).
    cls_sep = [python.vocab["[CLS]"], python.vocab["[SEP]"]] + [0] * (seq_length - 2)
    assert result["encode"][1]["input_ids"] == [cls_sep, cls_sep]
    assert result["encode"][2]["input_ids"][1][:5] == [python.vocab["[CLS]"]] + \
        python.convert_tokens_to_ids(["cafe", "ok", "[SEP]"]) + [0]

    tables = char_tables.build_char_tables(True)
    print("SavedModel holding only the tokenizer (2 signatures): %.0f kB, of which character "
          "tables %.0f kB and the %d-entry vocabulary's hash tables"
          % (_directory_bytes(export_dir) / 1024, tables.nbytes() / 1024, len(python.vocab)))

    stdout, stderr = cli.communicate(timeout=300)
    assert cli.returncode == 0, stderr[-2000:]
    expected_ids = _python_features(python, [("Hello, world!", "")], seq_length)[0][0]
    assert " ".join(map(str, expected_ids[:6])) in " ".join(stdout.split()), stdout[-2000:]
