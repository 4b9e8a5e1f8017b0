"""Tests for tokenization.py: Google's original test cases, the public API, and identity with the
original tokenizer (`bert-tensorflow`, the oracle) on targeted, exhaustive and corpus inputs."""
import collections
import os
import pickle
import subprocess
import sys
import time
import unicodedata

import pytest

import tokenization
import tokenization_corpus as corpus

# ---------------------------------------------------------------- oracle and shared fixtures


@pytest.fixture(scope="module")
def original():
    """Google's original tokenization module (a declared test dependency: fail, never skip)."""
    try:
        from absl import flags
        import bert.tokenization as original_tokenization
    except ImportError as error:  # pragma: no cover - only when the test env is broken
        pytest.fail("the oracle bert-tensorflow==1.0.4 is not installed: %s" % error)
    # It defines the absl flag `preserve_unused_tokens` (default False), read at tokenize time.
    flags.FLAGS.mark_as_parsed()
    assert flags.FLAGS.preserve_unused_tokens is False
    return original_tokenization


@pytest.fixture(scope="module")
def vocab_file():
    return corpus.vocab_path()


@pytest.fixture(scope="module")
def tokenizer_pairs(original, vocab_file):
    """do_lower_case -> (ours, original) FullTokenizers on the 30,522-token MiniLM vocab."""
    return {lower: (tokenization.FullTokenizer(vocab_file, do_lower_case=lower),
                    original.FullTokenizer(vocab_file, do_lower_case=lower))
            for lower in (True, False)}


def _write_vocab(directory, tokens):
    path = os.path.join(str(directory), "vocab.txt")
    with open(path, "w", encoding="utf-8") as writer:
        writer.write("".join(token + "\n" for token in tokens))
    return path


_SMALL_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing"]

# ---------------------------------------------------------------- the original's test cases


def test_full_tokenizer(tmp_path):
    tokenizer = tokenization.FullTokenizer(_write_vocab(tmp_path, _SMALL_VOCAB + [","]))
    tokens = tokenizer.tokenize("UNwant\u00E9d,running")
    assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"]
    assert tokenizer.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9]
    assert tokenizer.convert_ids_to_tokens([7, 4, 5, 10, 8, 9]) == tokens


def test_chinese():
    tokens = tokenization.BasicTokenizer().tokenize("ah\u535A\u63A8zz")
    assert tokens == ["ah", "\u535A", "\u63A8", "zz"]


def test_basic_tokenizer_lower():
    tokenizer = tokenization.BasicTokenizer(do_lower_case=True)
    assert tokenizer.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["hello", "!", "how", "are", "you", "?"]
    assert tokenizer.tokenize("H\u00E9llo") == ["hello"]


def test_basic_tokenizer_no_lower():
    tokenizer = tokenization.BasicTokenizer(do_lower_case=False)
    assert tokenizer.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["HeLLo", "!", "how", "Are", "yoU", "?"]


def test_wordpiece_tokenizer():
    vocab = {token: index for index, token in enumerate(_SMALL_VOCAB)}
    tokenizer = tokenization.WordpieceTokenizer(vocab=vocab)
    assert tokenizer.tokenize("") == []
    assert tokenizer.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert tokenizer.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]


def test_convert_tokens_to_ids():
    vocab = {token: index for index, token in enumerate(_SMALL_VOCAB)}
    assert tokenization.convert_tokens_to_ids(
        vocab, ["un", "##want", "##ed", "runn", "##ing"]) == [7, 4, 5, 8, 9]


def test_is_whitespace():
    for char in (" ", "\t", "\r", "\n", "\u00A0"):
        assert tokenization._is_whitespace(char), repr(char)
    for char in ("A", "-"):
        assert not tokenization._is_whitespace(char), repr(char)


def test_is_control():
    assert tokenization._is_control("\u0005")
    for char in ("A", " ", "\t", "\r", "\U0001F4A9"):
        assert not tokenization._is_control(char), repr(char)


def test_is_punctuation():
    for char in ("-", "$", "`", "."):
        assert tokenization._is_punctuation(char), repr(char)
    for char in ("A", " "):
        assert not tokenization._is_punctuation(char), repr(char)

# ---------------------------------------------------------------- module-level API


def test_convert_to_unicode_and_printable_text():
    for function in (tokenization.convert_to_unicode, tokenization.printable_text):
        assert function("caf\u00e9") == "caf\u00e9"
        assert function("caf\u00e9".encode("utf-8")) == "caf\u00e9"
        assert function(b"a\xa3b\xff") == "ab"  # invalid UTF-8 bytes are dropped
        with pytest.raises(ValueError, match="Unsupported string type"):
            function(12)


def test_whitespace_tokenize():
    assert tokenization.whitespace_tokenize("") == []
    assert tokenization.whitespace_tokenize(" \t\n ") == []
    assert tokenization.whitespace_tokenize(" a\u2028b\u2029c \u3000d\t") == ["a", "b", "c", "d"]


def test_load_vocab_matches_original(original, tmp_path):
    # Duplicates keep their first id and use up no id; blank lines are the token ""; lines are
    # stripped; "\r" is dropped anywhere (TensorFlow's line reader); no final newline.
    raw = b"[PAD]\n  a  \nb\r\nc\rd\n\n\xe2\x80\xa8x\xe2\x80\xa8\na\n\ne\xcc\x81\nlast"
    path = tmp_path / "vocab.txt"
    path.write_bytes(raw)
    ours = tokenization.load_vocab(str(path))
    assert isinstance(ours, collections.OrderedDict)
    assert list(ours.items()) == [("[PAD]", 0), ("a", 1), ("b", 2), ("cd", 3), ("", 4),
                                  ("x", 5), ("e\u0301", 6), ("last", 7)]
    assert list(ours.items()) == list(original.load_vocab(str(path)).items())


def test_load_vocab_through_gfile_for_urls(tmp_path, vocab_file):
    # A path with a scheme is read through tf.io.gfile (gs:// works the same way).
    assert tokenization.load_vocab("file://" + vocab_file) == tokenization.load_vocab(vocab_file)


def test_load_vocab_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "nope.txt")
    for path in (missing, "file://" + missing):
        with pytest.raises(ValueError, match="nope.txt: not found"):
            tokenization.load_vocab(path)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"bad.txt line 2: not valid UTF-8"):
        tokenization.load_vocab(str(bad))


def test_convert_by_vocab_and_full_tokenizer_attributes(tmp_path):
    tokenizer = tokenization.FullTokenizer(_write_vocab(tmp_path, _SMALL_VOCAB))
    assert isinstance(tokenizer.vocab, collections.OrderedDict)
    assert tokenizer.vocab["runn"] == 8
    assert tokenizer.inv_vocab == {index: token for index, token in enumerate(_SMALL_VOCAB)}
    assert tokenization.convert_ids_to_tokens(tokenizer.inv_vocab, [0, 9]) == ["[UNK]", "##ing"]
    assert tokenization.convert_by_vocab(tokenizer.vocab, ["wa", "un"]) == [6, 7]
    with pytest.raises(KeyError):
        tokenizer.convert_tokens_to_ids(["nope"])
    with pytest.raises(KeyError):
        tokenizer.convert_ids_to_tokens([10])


@pytest.mark.slow
def test_import_does_not_load_tensorflow(repo_root):
    code = "import sys, tokenization; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root).returncode == 0

# ---------------------------------------------------------------- validate_case_matches_checkpoint

_LOWER_MODELS = ["uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12",
                 "multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12"]
_CASED_MODELS = ["cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16", "multi_cased_L-12_H-768_A-12"]


def _error_message(function, do_lower_case, init_checkpoint):
    try:
        function(do_lower_case, init_checkpoint)
    except ValueError as error:
        return str(error)
    return None


@pytest.mark.parametrize("model", _LOWER_MODELS + _CASED_MODELS)
def test_validate_case_listed_models(original, model):
    checkpoint = "/models/%s/bert_model.ckpt" % model
    wrong_flag = model in _CASED_MODELS  # the do_lower_case value that contradicts the model
    assert _error_message(tokenization.validate_case_matches_checkpoint, not wrong_flag,
                          checkpoint) is None
    ours = _error_message(tokenization.validate_case_matches_checkpoint, wrong_flag, checkpoint)
    assert ours is not None
    assert ours == _error_message(original.validate_case_matches_checkpoint, wrong_flag, checkpoint)
    assert "`%s` seems to be a %s model" % (model, "cased" if wrong_flag else "lowercased") in ours


def test_validate_case_message_text():
    with pytest.raises(ValueError) as error:
        tokenization.validate_case_matches_checkpoint(False, "gs://b/uncased_L-12_H-768_A-12/bert_model.ckpt")
    assert str(error.value) == (
        "You passed in `--do_lower_case=False` with "
        "`--init_checkpoint=gs://b/uncased_L-12_H-768_A-12/bert_model.ckpt`. However, "
        "`uncased_L-12_H-768_A-12` seems to be a lowercased model, so you should pass in "
        "`--do_lower_case=True` so that the fine-tuning matches how the model was pre-training. "
        "If this error is wrong, please just comment out this check.")


@pytest.mark.parametrize("checkpoint", [
    None, "", "bert_model.ckpt", "/m/wwm_uncased_L-24_H-1024_A-16/bert_model.ckpt",
    "/m/uncased_L-4_H-256_A-4/bert_model.ckpt", "/m/cased_L-12_H-768_A-12/model.ckpt-100",
    "/m/uncased_L-12_H-768_A-12", "/m/x/uncased_L-12_H-768_A-12/other/bert_model.ckpt",
    "uncased_L-12_H-768_A-12/bert_model.ckpt.index", "/m/cased_L-12_H-768_A-12/bert_modelXckpt",
    "/m/multi_cased_L-12_H-768_A-12/bert_model.ckpt-5"])
def test_validate_case_other_paths_same_as_original(original, checkpoint):
    for do_lower_case in (True, False):
        ours = _error_message(tokenization.validate_case_matches_checkpoint, do_lower_case, checkpoint)
        assert ours == _error_message(original.validate_case_matches_checkpoint, do_lower_case,
                                      checkpoint)

# ---------------------------------------------------------------- targeted edge cases vs oracle

_EDGE_CASES = corpus.special_lines() + [
    "plain ascii, with punctuation: !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ and digits 0123456789",
    "tab\there\nnewline\rcr\x0bvt\x0cff\x1cfs\x1fus\x7fdel\x85nel\x00nul",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060wj\u00adsoft",
    "u+fffd\ufffdinside \ufffd alone", "nbsp\u00a0ideo\u3000thin\u2009ogham\u1680narrow\u202f",
    "line\u2028sep\u2029para", "\u00bfQu\u00e9? \u00a1S\u00ed! \u00ab\u00bb \u2018q\u2019 \u201cQ\u201d",
    "\u3010\u6807\u9898\u3011\u201c\u5f15\u53f7\u201d\uff08\u62ec\u53f7\uff09\u2014\u2014\u2026",
    "\u4e00\u9fff\u3400\u4dbf\U00020000\U0002a6df\U0002a700\U0002b73f\U0002b740\U0002b81f"
    "\U0002b820\U0002ceaf\uf900\ufaff\U0002f800\U0002fa1f",
    "\u33ff\u4dc0\u4dff\ua000\U0001ffff\U0002a6e0\U0002ceb0\U0002f7ff\U0002fa20\U00030000",
    "\ud55c\uad6d\uc5b4 \ud14c\uc2a4\ud2b8 \u3072\u3089\u304c\u306a \u30ab\u30bf\u30ab\u30ca",
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \U0001F600\U0001F44D\U0001F3FD "
    "\U0001F468\u200d\U0001F469\u200d\U0001F467",
    "\u00c0\u00c9\u00ce\u00d5\u00dc \u00e0\u00e9\u00ee\u00f5\u00fc \u00c5ngstr\u00f6m \u212bngstr\u00f6m",
    "\u0391\u0398\u0397\u039d\u0391 \u041c\u041e\u0421\u041a\u0412\u0410 \u05e2\u05d1\u05e8\u05d9\u05ea "
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\ufb01\ufb02\ufb03 \u2460\u2461 \u00bd\u00bc \u2122\u00a9\u00ae \u00b2\u00b3 \u2167",
    "a\u0301\u0302\u0303\u0304 \u1e09 \u0958 \u2126hm \u037e\u0387",
    b"bytes in\xc3\xa9 with \xff invalid \xa3 bytes",
    "a" * 199, "a" * 200, "a" * 201, "A" * 200, "\u00e9" * 200, "\u00e9" * 201,
    "\u0130" * 150, "\u0130" * 201, "\ud55c" * 67, "\ud55c" * 200, "x" + "\u200b" * 300 + "y",
    "[CLS]", "[SEP]", "[unused0]", "[UNK]", "[MASK]", "[PAD]", "\u00a0[CLS]\u00a0",
]


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_edge_cases_match_original(tokenizer_pairs, do_lower_case):
    ours, oracle = tokenizer_pairs[do_lower_case]
    for text in _EDGE_CASES:
        expected = oracle.tokenize(text)
        assert ours.tokenize(text) == expected, repr(text)
        assert ours.tokenize_reference(text) == expected, repr(text)
        assert ours.convert_tokens_to_ids(ours.tokenize(text)) == oracle.convert_tokens_to_ids(expected)
        assert ours.basic_tokenizer.tokenize(text) == oracle.basic_tokenizer.tokenize(text), repr(text)


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_word_length_limit_is_200_characters(tmp_path, tokenizer_pairs, do_lower_case):
    letters = tokenization.FullTokenizer(_write_vocab(tmp_path, ["[UNK]", "a", "##a"]),
                                         do_lower_case=do_lower_case)
    assert letters.tokenize("a" * 199) == ["a"] + ["##a"] * 198
    assert letters.tokenize("a" * 200) == ["a"] + ["##a"] * 199
    assert letters.tokenize("a" * 201) == ["[UNK]"]
    assert letters.tokenize("a" * 201 + "!") == ["[UNK]", "[UNK]"]  # "!" is not in this vocab
    ours, oracle = tokenizer_pairs[do_lower_case]
    assert "[UNK]" not in ours.tokenize("a" * 200)
    assert ours.tokenize("a" * 200) == oracle.tokenize("a" * 200)
    assert ours.tokenize("a" * 201) == ["[UNK]"]
    assert ours.tokenize("b " + "a" * 201 + " c") == ["b", "[UNK]", "c"]
    # Characters are counted after cleaning, CJK/punctuation splitting and (lower case) NFD:
    # 67 Hangul syllables of 3 jamo each exceed the limit only in lowercase mode.
    expected_hangul = ["[UNK]"] if do_lower_case else oracle.tokenize("\ud55c" * 67)
    assert ours.tokenize("\ud55c" * 67) == expected_hangul
    assert ours.tokenize("a" * 200 + "," + "a" * 200) == oracle.tokenize("a" * 200 + "," + "a" * 200)


def test_wordpiece_matches_original_and_reference(original, tokenizer_pairs):
    vocab = tokenizer_pairs[True][0].vocab
    ours = tokenization.WordpieceTokenizer(vocab)
    oracle = original.WordpieceTokenizer(vocab)
    small = tokenization.WordpieceTokenizer(vocab, unk_token="<unk>", max_input_chars_per_word=5)
    small_oracle = original.WordpieceTokenizer(vocab, unk_token="<unk>", max_input_chars_per_word=5)
    for text in ["", "unaffable", "##ing", "##", "want wanted\twanting", "a" * 200, "a" * 201,
                 "runningx", "\u00e9t\u00e9", "[CLS] [unused0]", "abcde abcdef", "x\u2028y"]:
        assert ours.tokenize(text) == oracle.tokenize(text), repr(text)
        assert ours.tokenize_reference(text) == oracle.tokenize(text), repr(text)
        assert small.tokenize(text) == small_oracle.tokenize(text), repr(text)


def test_results_are_not_shared_with_the_memo(tokenizer_pairs):
    ours = tokenizer_pairs[True][0]
    first = ours.tokenize("hello world")
    first.append("mutated")
    assert ours.tokenize("hello world") == ["hello", "world"]
    basic = ours.basic_tokenizer.tokenize("hello world")
    basic.clear()
    assert ours.basic_tokenizer.tokenize("hello world") == ["hello", "world"]


def test_tokenizer_pickles_for_worker_processes(tokenizer_pairs):
    ours = tokenizer_pairs[False][0]
    text = "Pickled Été tokenizers, 中文 too."
    expected = ours.tokenize(text)
    copy = pickle.loads(pickle.dumps(ours))
    assert copy.tokenize(text) == expected
    assert copy.vocab == ours.vocab and copy.basic_tokenizer.do_lower_case is False


def test_memo_overflow_keeps_results(monkeypatch, tokenizer_pairs, vocab_file):
    monkeypatch.setattr(tokenization, "_WORD_MEMO_LIMIT", 7)
    small_memo = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
    lines = corpus.bbc_lines(50) + corpus.chinese_lines(10)
    _, oracle = tokenizer_pairs[True]
    for line in lines:
        assert small_memo.tokenize(line) == oracle.tokenize(line)
        assert len(small_memo._word_memo) <= 7

# ---------------------------------------------------------------- exhaustive over code points


def _assigned_code_points():
    """All assigned code points (categories other than Cn/Co) plus a sample of Cn, Co and Cs."""
    chars, others = [], []
    for cp in range(0x110000):
        char = chr(cp)
        (others if unicodedata.category(char) in ("Cn", "Co") else chars).append(char)
    return chars + others[::97]


def test_clean_table_matches_original_on_every_code_point(original):
    everything = "".join(map(chr, range(0x110000)))  # surrogates included: they are str too
    basic = original.BasicTokenizer(do_lower_case=True)
    expected = basic._tokenize_chinese_chars(basic._clean_text(everything))
    assert everything.translate(tokenization._CLEAN_TABLE) == expected
    ours = tokenization.BasicTokenizer()
    assert ours._tokenize_chinese_chars(ours._clean_text(everything)) == expected


def test_character_predicates_match_original(original):
    basic = original.BasicTokenizer()
    mismatches = [char for char in _assigned_code_points()
                  if tokenization._is_whitespace(char) != original._is_whitespace(char)
                  or tokenization._is_control(char) != original._is_control(char)
                  or tokenization._is_punctuation(char) != original._is_punctuation(char)
                  or tokenization._is_chinese_char(ord(char)) != basic._is_chinese_char(ord(char))]
    assert mismatches == []


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_every_assigned_character_matches_original(tokenizer_pairs, do_lower_case):
    # Words of 8 consecutive code points: every character, inside words with its neighbours.
    chars = _assigned_code_points()
    text = " ".join("".join(chars[i:i + 8]) for i in range(0, len(chars), 8))
    ours, oracle = tokenizer_pairs[do_lower_case]
    expected = oracle.tokenize(text)
    assert ours.tokenize(text) == expected
    assert ours.convert_tokens_to_ids(expected) == oracle.convert_tokens_to_ids(expected)

# ---------------------------------------------------------------- corpus


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_corpus_matches_original(tokenizer_pairs, do_lower_case):
    ours, oracle = tokenizer_pairs[do_lower_case]
    sources = {"bbc": corpus.bbc_lines(1000), "chinese": corpus.chinese_lines(300),
               "adversarial": corpus.adversarial_lines(2000), "long": corpus.long_word_lines(),
               "special": corpus.special_lines()}
    report = []
    for name, lines in sources.items():
        start = time.perf_counter()
        expected = [oracle.tokenize(line) for line in lines]
        oracle_seconds = time.perf_counter() - start
        start = time.perf_counter()
        actual = [ours.tokenize(line) for line in lines]
        our_seconds = time.perf_counter() - start
        token_mismatches = sum(a != e for a, e in zip(actual, expected))
        id_mismatches = sum(ours.convert_tokens_to_ids(a) != oracle.convert_tokens_to_ids(e)
                            for a, e in zip(actual, expected))
        # The literal reference path too (the costly one, so not on the real-text sources).
        reference_mismatches = 0
        if name in ("adversarial", "long", "special"):
            reference_mismatches = sum(ours.tokenize_reference(line) != e
                                       for line, e in zip(lines, expected))
        num_tokens = sum(map(len, expected))
        report.append("%s: %d lines, %d tokens (%d [UNK]), mismatches tokens=%d ids=%d "
                      "reference=%d, original %.2fs, ours %.2fs"
                      % (name, len(lines), num_tokens, sum(e.count("[UNK]") for e in expected),
                         token_mismatches, id_mismatches, reference_mismatches, oracle_seconds,
                         our_seconds))
        assert num_tokens > len(lines) // 2, name  # the corpus is not trivially empty
    print("\ndo_lower_case=%s\n  %s" % (do_lower_case, "\n  ".join(report)))
    assert all("tokens=0 ids=0 reference=0" in line for line in report), "\n".join(report)
