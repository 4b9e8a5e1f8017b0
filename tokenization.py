"""WordPiece tokenization with the same output as Google BERT's original `tokenization.py`.

Pipeline (the specification, as in the original):

  BasicTokenizer
    1. `convert_to_unicode` (bytes are decoded as UTF-8, invalid bytes dropped).
    2. `_clean_text`: drop U+0000, U+FFFD and control characters (Cc/Cf except \\t \\n \\r);
       turn whitespace (space, \\t, \\n, \\r, Zs) into a space.
    3. `_tokenize_chinese_chars`: put spaces around every CJK ideograph (`_is_chinese_char`).
    4. `whitespace_tokenize` (Python `str.split()`, so U+2028/U+2029 also separate words).
    5. Per word, if `do_lower_case`: `str.lower()`, then NFD and drop Mn (`_run_strip_accents`).
    6. `_run_split_on_punc`: every punctuation character becomes its own token.
  WordpieceTokenizer
    7. Greedy longest-match-first against the vocabulary, `##` on continuation pieces; words
       longer than `max_input_chars_per_word` (200) characters, or with any unmatched rest,
       become a single `unk_token`.

The per-character methods below implement those steps literally and stay the reference
(`BasicTokenizer.tokenize_reference`). `tokenize` computes the identical result faster:

  * steps 2-3 are one `str.translate` whose table is filled lazily from the same per-character
    predicates (`_CleanTable`);
  * everything after step 4 depends on one word only (lowercasing, NFD and punctuation never
    look across the spaces that separate words), so the word -> tokens result is memoised in a
    bounded dict;
  * on a memo miss an ASCII word is split with a regex over exactly the ASCII punctuation set
    (NFD and accent stripping do nothing on ASCII);
  * WordPiece never tries a candidate longer than the longest vocabulary entry.

tests/test_tokenization.py checks the fast path against the reference methods and against
Google's original (`bert-tensorflow`) on real and adversarial text, in both case modes.

The memos assume the vocabulary and `do_lower_case` are not changed after construction.
Importing this module does not import TensorFlow; it is imported only to read non-local
(e.g. gs://) vocabulary files.
"""
import collections
import os
import re
import unicodedata
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

# Models whose casing the original checks (google-research/bert README download list).
_LOWERCASED_MODELS = (
    "uncased_L-24_H-1024_A-16",
    "uncased_L-12_H-768_A-12",
    "multilingual_L-12_H-768_A-12",
    "chinese_L-12_H-768_A-12",
)
_CASED_MODELS = (
    "cased_L-12_H-768_A-12",
    "cased_L-24_H-1024_A-16",
    "multi_cased_L-12_H-768_A-12",
)
# Same pattern as the original (the unescaped "." is part of its behaviour).
_CHECKPOINT_NAME_RE = re.compile("^.*?([A-Za-z0-9_-]+)/bert_model.ckpt")

# Upper bound on memoised words per tokenizer (the memo is dropped when it is full).
_WORD_MEMO_LIMIT = 100_000


def validate_case_matches_checkpoint(do_lower_case: bool, init_checkpoint: Optional[str]) -> None:
    """Raises ValueError if `do_lower_case` contradicts a known Google checkpoint's casing.

    Only checkpoints at `<dir>/bert_model.ckpt` whose `<dir>` is one of the original release
    names are checked; anything else (including None or "") is accepted silently.
    """
    if not init_checkpoint:
        return
    match = _CHECKPOINT_NAME_RE.match(init_checkpoint)
    if match is None:
        return
    validate_case_matches_model_name(do_lower_case, init_checkpoint, match.group(1))


def validate_case_matches_model_name(do_lower_case: bool, init_checkpoint: str,
                                     model_name: str) -> None:
    """The original's case check for a model name already taken from `init_checkpoint`: raises
    its ValueError (naming init_checkpoint) when `model_name` is one of Google's released
    models whose casing contradicts `do_lower_case`; any other name is accepted."""
    if model_name in _LOWERCASED_MODELS and not do_lower_case:
        actual_flag, case_name, opposite_flag = "False", "lowercased", "True"
    elif model_name in _CASED_MODELS and do_lower_case:
        actual_flag, case_name, opposite_flag = "True", "cased", "False"
    else:
        return
    raise ValueError(
        "You passed in `--do_lower_case=%s` with `--init_checkpoint=%s`. "
        "However, `%s` seems to be a %s model, so you "
        "should pass in `--do_lower_case=%s` so that the fine-tuning matches "
        "how the model was pre-training. If this error is wrong, please "
        "just comment out this check." % (actual_flag, init_checkpoint, model_name, case_name,
                                          opposite_flag))


def convert_to_unicode(text: Any) -> str:
    """Returns `text` as str; bytes are decoded as UTF-8 with invalid bytes dropped."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise ValueError("Unsupported string type: %s" % (type(text),))


def printable_text(text: Any) -> str:
    """Returns `text` as a str suitable for printing/logging (same rules as convert_to_unicode)."""
    return convert_to_unicode(text)


def _binary_lines(path: str) -> Iterator[bytes]:
    """Yields the lines of `path` as bytes, split on b"\\n" only (b"\\n" kept)."""
    not_found = ValueError("vocab_file %s: not found (expected a WordPiece vocab.txt, one token "
                           "a line)" % path)
    if "://" in path:
        # Remote file systems (gs://, hdfs://, ...) need TensorFlow; import it only here so that
        # importing this module stays cheap (worker processes tokenize without TensorFlow).
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        if not tf.io.gfile.exists(path):
            raise not_found
        with tf.io.gfile.GFile(path, "rb") as reader:
            yield from reader
        return
    if not os.path.isfile(path):
        raise not_found
    with open(path, "rb") as reader:
        yield from reader


def load_vocab(vocab_file: str) -> "collections.OrderedDict[str, int]":
    """Reads a vocab file (one token a line) into an OrderedDict token -> id.

    As in the original: each line is stripped of surrounding whitespace, a repeated token keeps
    its first id and does not use up an id, and carriage returns are dropped anywhere in a line
    (TensorFlow's GFile line reader does that). The file must be UTF-8.
    """
    vocab = collections.OrderedDict()
    for line_number, raw_line in enumerate(_binary_lines(vocab_file), start=1):
        try:
            line = raw_line.replace(b"\r", b"").decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError("vocab_file %s line %d: not valid UTF-8 (%s)"
                             % (vocab_file, line_number, error.reason)) from None
        token = line.strip()
        if token not in vocab:
            vocab[token] = len(vocab)
    return vocab


def convert_by_vocab(vocab: Dict[Any, Any], items: Iterable[Any]) -> List[Any]:
    """Maps every item through `vocab` (tokens -> ids or ids -> tokens); KeyError if missing."""
    return [vocab[item] for item in items]


def convert_tokens_to_ids(vocab: Dict[str, int], tokens: Iterable[str]) -> List[int]:
    """Tokens -> ids with a token -> id dict."""
    return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab: Dict[int, str], ids: Iterable[int]) -> List[str]:
    """Ids -> tokens with an id -> token dict."""
    return convert_by_vocab(inv_vocab, ids)


def whitespace_tokenize(text: str) -> List[str]:
    """Splits `text` on whitespace (Python's `str.split()` definition); [] for blank text."""
    return text.split()


class FullTokenizer:
    """Basic tokenization followed by WordPiece: text -> wordpiece tokens and ids."""

    def __init__(self, vocab_file: str, do_lower_case: bool = True) -> None:
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {token_id: token for token, token_id in self.vocab.items()}
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
        self._word_memo: Dict[str, Tuple[str, ...]] = {}

    def tokenize(self, text: Any) -> List[str]:
        """Returns the wordpiece tokens of `text` (str or UTF-8 bytes)."""
        return _tokenize_memoised(text, self._word_memo, self._tokenize_word)

    def tokenize_reference(self, text: Any) -> List[str]:
        """`tokenize` computed literally, step by step, without any fast path (for tests)."""
        tokens = []
        for token in self.basic_tokenizer.tokenize_reference(text):
            tokens.extend(self.wordpiece_tokenizer.tokenize_reference(token))
        return tokens

    def _tokenize_word(self, word: str) -> Tuple[str, ...]:
        """Wordpieces of one whitespace-free, already cleaned word."""
        wordpiece = self.wordpiece_tokenizer.tokenize_word
        return tuple(piece for token in self.basic_tokenizer.split_word(word)
                     for piece in wordpiece(token))

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> List[int]:
        """Tokens -> ids; KeyError for a token not in the vocabulary."""
        return convert_by_vocab(self.vocab, tokens)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> List[str]:
        """Ids -> tokens; KeyError for an unknown id."""
        return convert_by_vocab(self.inv_vocab, ids)


class BasicTokenizer:
    """Cleans text, splits CJK ideographs and punctuation, optionally lowercases/strips accents."""

    def __init__(self, do_lower_case: bool = True) -> None:
        self.do_lower_case = do_lower_case
        self._word_memo: Dict[str, Tuple[str, ...]] = {}

    def tokenize(self, text: Any) -> List[str]:
        """Returns the basic tokens of `text` (str or UTF-8 bytes)."""
        return _tokenize_memoised(text, self._word_memo, self.split_word)

    def tokenize_reference(self, text: Any) -> List[str]:
        """`tokenize` computed literally with the per-character steps (the specification)."""
        text = self._clean_text(convert_to_unicode(text))
        text = self._tokenize_chinese_chars(text)
        split_tokens = []
        for token in whitespace_tokenize(text):
            if self.do_lower_case:
                token = self._run_strip_accents(token.lower())
            split_tokens.extend(self._run_split_on_punc(token))
        return whitespace_tokenize(" ".join(split_tokens))

    def split_word(self, word: str) -> Tuple[str, ...]:
        """Steps 5-6 for one cleaned, whitespace-free word: its basic tokens."""
        if self.do_lower_case:
            word = word.lower()
        if word.isascii():
            # Optimisation: NFD/accent stripping are the identity on ASCII, and the regex splits on
            # exactly the characters `_is_punctuation` accepts in ASCII.
            return tuple(_ASCII_PUNCT_SPLIT_RE.findall(word))
        if self.do_lower_case:
            word = self._run_strip_accents(word)
        # Re-split: a piece may be empty after accent stripping (the original re-splits the
        # joined tokens on whitespace for the same effect).
        return tuple(" ".join(self._run_split_on_punc(word)).split())

    def _run_strip_accents(self, text: str) -> str:
        """NFD-decomposes `text` and drops nonspacing marks (Mn)."""
        text = unicodedata.normalize("NFD", text)
        return "".join(char for char in text if unicodedata.category(char) != "Mn")

    def _run_split_on_punc(self, text: str) -> List[str]:
        """Splits `text` so that every punctuation character is a token of its own."""
        pieces: List[List[str]] = []
        start_new_piece = True
        for char in text:
            if _is_punctuation(char):
                pieces.append([char])
                start_new_piece = True
            else:
                if start_new_piece:
                    pieces.append([])
                    start_new_piece = False
                pieces[-1].append(char)
        return ["".join(piece) for piece in pieces]

    def _tokenize_chinese_chars(self, text: str) -> str:
        """Surrounds every CJK ideograph with spaces."""
        return "".join(" %s " % char if self._is_chinese_char(ord(char)) else char
                       for char in text)

    def _is_chinese_char(self, cp: int) -> bool:
        """True if code point `cp` is a CJK ideograph (see `_is_chinese_char`)."""
        return _is_chinese_char(cp)

    def _clean_text(self, text: str) -> str:
        """Drops NUL, U+FFFD and control characters; turns whitespace into a space."""
        output = []
        for char in text:
            if char == "\x00" or char == "\ufffd" or _is_control(char):
                continue
            output.append(" " if _is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece tokenization against a vocabulary."""

    def __init__(self, vocab: Any, unk_token: str = "[UNK]",
                 max_input_chars_per_word: int = 200) -> None:
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        # No vocabulary entry is longer than this, so longer candidates need not be tried.
        self._max_piece_chars = max((len(token) for token in vocab), default=0)

    def tokenize(self, text: Any) -> List[str]:
        """Wordpieces of whitespace-separated, already basic-tokenized `text`.

        For example "unaffable" -> ["un", "##aff", "##able"].
        """
        tokens: List[str] = []
        for word in whitespace_tokenize(convert_to_unicode(text)):
            tokens += self.tokenize_word(word)
        return tokens

    def tokenize_word(self, word: str) -> Tuple[str, ...]:
        """Wordpieces of one whitespace-free word."""
        length = len(word)
        if length > self.max_input_chars_per_word:
            return (self.unk_token,)
        vocab = self.vocab
        pieces = []
        start = 0
        while start < length:
            end = min(length, start + self._max_piece_chars)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:
                return (self.unk_token,)  # some rest of the word matches nothing
            pieces.append(piece)
            start = end
        return tuple(pieces)

    def tokenize_reference(self, text: Any) -> List[str]:
        """`tokenize` without the candidate-length bound: every suffix length is tried."""
        output = []
        for word in whitespace_tokenize(convert_to_unicode(text)):
            if len(word) > self.max_input_chars_per_word:
                output.append(self.unk_token)
                continue
            pieces = []
            start = 0
            while start < len(word):
                end = len(word)
                piece = None
                while start < end:
                    candidate = ("##" if start > 0 else "") + word[start:end]
                    if candidate in self.vocab:
                        piece = candidate
                        break
                    end -= 1
                if piece is None:
                    pieces = [self.unk_token]
                    break
                pieces.append(piece)
                start = end
            output.extend(pieces)
        return output


def _is_whitespace(char: str) -> bool:
    """True for space, \\t, \\n, \\r and space separators (Zs)."""
    if char in " \t\n\r":
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    """True for control/format characters (Cc, Cf), except \\t, \\n, \\r (whitespace here)."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    """True for Unicode punctuation (P*) and for every ASCII symbol that is not a letter/digit.

    ASCII symbols such as "$", "^" and "`" are not Unicode punctuation but are split too.
    """
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    """True if code point `cp` is in one of the CJK ideograph blocks the original splits on.

    Hangul, Hiragana and Katakana are not included: those scripts separate words with spaces.
    """
    return (0x4E00 <= cp <= 0x9FFF          # CJK Unified Ideographs
            or 0x3400 <= cp <= 0x4DBF       # Extension A
            or 0x20000 <= cp <= 0x2A6DF     # Extension B
            or 0x2A700 <= cp <= 0x2B73F     # Extension C
            or 0x2B740 <= cp <= 0x2B81F     # Extension D
            or 0x2B820 <= cp <= 0x2CEAF     # Extension E
            or 0xF900 <= cp <= 0xFAFF       # Compatibility Ideographs
            or 0x2F800 <= cp <= 0x2FA1F)    # Compatibility Ideographs Supplement


# ---- fast-path helpers (optimisations of the steps above; output identical) ----

class _CleanTable(dict):
    """`str.translate` table for steps 2-3, filled on first use of each code point.

    Maps a code point to None (drop), " " (whitespace), " c " (CJK ideograph) or itself,
    decided by the same predicates `_clean_text` and `_tokenize_chinese_chars` use.
    """

    _LIMIT = 1 << 17  # beyond this many distinct characters, compute without storing

    def __missing__(self, cp: int) -> Any:
        char = chr(cp)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            value = None
        elif _is_whitespace(char):
            value = " "
        elif _is_chinese_char(cp):
            value = " %s " % char
        else:
            value = cp
        if len(self) < self._LIMIT:
            self[cp] = value
        return value


_CLEAN_TABLE = _CleanTable()

# The ASCII characters `_is_punctuation` accepts: 33-47, 58-64, 91-96, 123-126.
_ASCII_PUNCT = "[!-/:-@\\[-`{-~]"
_ASCII_PUNCT_SPLIT_RE = re.compile("%s|[^!-/:-@\\[-`{-~]+" % _ASCII_PUNCT)


def _tokenize_memoised(text: Any, memo: Dict[str, Tuple[str, ...]],
                       split_word: Callable[[str], Tuple[str, ...]]) -> List[str]:
    """Cleans and whitespace-splits `text`, then concatenates `split_word(word)` per word,
    remembering each word's result in `memo` (cleared when it reaches _WORD_MEMO_LIMIT).
    Exact because no step of the original looks across the whitespace between words."""
    tokens: List[str] = []
    for word in _clean_and_split(convert_to_unicode(text)):
        pieces = memo.get(word)
        if pieces is None:
            pieces = tuple(split_word(word))
            if len(memo) >= _WORD_MEMO_LIMIT:
                memo.clear()
            memo[word] = pieces
        tokens += pieces
    return tokens


def _clean_and_split(text: str) -> List[str]:
    """Steps 2-4: the cleaned, CJK-spaced words of `text`."""
    return text.translate(_CLEAN_TABLE).split()
