"""Google BERT's `FullTokenizer` and the run_classifier feature layout as a TensorFlow graph.

`GraphTokenizer` computes, with core TensorFlow ops only (no tensorflow-text, no py_function),
exactly what `tokenization.FullTokenizer` + `features.convert_single_example` compute in Python,
so a SavedModel that contains it takes raw strings and loads with stock `tensorflow` and
TensorFlow Serving.

Everything that depends on Unicode properties comes from Python (`unicodedata`, `str.lower`,
`str.isspace` and the predicates of `tokenization.py`), evaluated for all 0x110000 code points
when the tokenizer is built (char_tables.py) and stored in the graph as a two-stage page table:
`record = records_of_page[page_start[cp >> 8] + (cp & 255)]`, where a record says what the
basic tokenizer does with one character (drop it, treat it as a separator, isolate it as a CJK
ideograph, and in lower-case mode its lower-cased, NFD-decomposed characters without Mn marks,
each with its punctuation flag). TensorFlow's own Unicode tables (ICU, RE2) may be of another
Unicode version, so none of its property-dependent ops (regex classes, `tf.strings.lower`,
normalization) is used.

The graph, per batch (every step vectorized over the flat characters of the whole batch):
  1. UTF-8 decoding, invalid bytes dropped (TensorFlow's `UnicodeDecode` with errors="ignore"
     equals Python's `bytes.decode("utf-8", "ignore")`, tested on random bytes).
  2. Page-table lookup. Dropped characters (NUL, U+FFFD, Cc/Cf) and separators get no output
     characters; separators and CJK ideographs delimit words.
  3. Lower-case mode: Python's Final_Sigma rule for U+03A3 (the only context-dependent
     lowercasing in CPython), from cased / case-ignorable classes measured with `str.lower()`.
  4. Each character expands to its 0..3 output characters (the record's characters).
  5. Lower-case mode: NFD's canonical reordering. Marks that survive the Mn stripping but have
     a nonzero combining class (e.g. U+302E, U+1D165, viramas) are stably sorted by combining
     class within their run, as `unicodedata.normalize("NFD", word)` does; only done when a
     batch holds such a character.
  6. Basic tokens: maximal runs of output characters within one word, a punctuation character
     being a token of its own.
  7. WordPiece: tokens longer than 200 characters become [UNK]; for the others every substring
     a vocabulary entry could match is looked up at once (at a token's start in the vocabulary,
     after it in a table of the "##" entries without their "##"), each start keeps its longest
     match, and the greedy chain from each token's start is followed by pointer doubling (8
     rounds cover the at most 200 pieces of a token); a token whose chain reaches a start with
     no match becomes one [UNK].
`encode` adds the run_classifier layout. Only the first max_seq_length basic tokens of a text
can reach its output (every basic token gives at least one wordpiece), so `encode` processes a
text only up to the word that holds them (after decoding and the table lookup); and WordPiece
never sees more than 201 characters of a token. A 1 MB text costs about 0.1 s to `encode`.
All ops are pinned to the CPU (string work; on a GPU machine the model after it still runs on
the GPU).
"""
import os
from typing import Dict, List, Optional, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import logging  # noqa: E402
import tensorflow as tf  # noqa: E402

import tokenization  # noqa: E402
from bert_classifier.core import char_tables  # noqa: E402

MAX_CHARS_PER_WORD = 200  # WordpieceTokenizer.max_input_chars_per_word
# Rounds of pointer doubling: after round r every piece start within 2**(r+1) - 1 pieces of a
# token's start is reached, and a token of <= 200 characters has at most 200 pieces.
_DOUBLING_ROUNDS = 8


def _shift_right(values: tf.Tensor, fill) -> tf.Tensor:
    """[fill, values[0], ..., values[-2]]: each entry's predecessor (empty stays empty)."""
    return tf.concat([tf.fill([1], tf.cast(fill, values.dtype)), values], 0)[:-1]


def _exclusive_cumsum(values: tf.Tensor) -> tf.Tensor:
    return tf.math.cumsum(values, exclusive=True)


def _positions(mask: tf.Tensor) -> tf.Tensor:
    """int32 [k]: the indices where the 1-D bool `mask` is True."""
    return tf.cast(tf.reshape(tf.where(mask), [-1]), tf.int32)


def _rows_of(positions: tf.Tensor, row_splits: tf.Tensor) -> tf.Tensor:
    """int32: the row (text) of each flat character position."""
    return tf.searchsorted(row_splits[1:], positions, side="right")


def _segment_count(segment_ids: tf.Tensor, num_segments) -> tf.Tensor:
    """int32 [num_segments]: how many entries of `segment_ids` equal each segment."""
    return tf.math.unsorted_segment_sum(tf.ones_like(segment_ids), segment_ids, num_segments)


def _first_words(max_words: int, row_splits: tf.Tensor, word_starts: tf.Tensor,
                 words: tf.Tensor, counts: tf.Tensor, arrays: List[tf.Tensor]
                 ) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Each text's characters before its (max_words + 1)-th word with output characters.

    Such a word gives at least one basic token, so the first max_words of them hold the text's
    first max_words tokens; and nothing before a word start depends on what follows it (no
    Final_Sigma context or run of combining marks crosses a word start). Returns the new
    row_splits and `arrays` (per-character tensors) cut the same way.
    """
    num_chars = tf.size(words)
    has_output = tf.math.unsorted_segment_max(tf.cast(counts > 0, tf.int32), words,
                                              num_chars + 1) > 0
    counted_starts = _positions(word_starts & tf.gather(has_output, words))
    # Per text: where its (max_words + 1)-th counted word starts, or its end.
    cut = tf.searchsorted(counted_starts, row_splits[:-1], side="left") + max_words
    cut = tf.gather(tf.concat([counted_starts, [num_chars]], 0),
                    tf.minimum(cut, tf.size(counted_starts)))
    new_splits, positions = tf.raw_ops.RaggedRange(
        starts=row_splits[:-1], limits=tf.minimum(cut, row_splits[1:]), deltas=1,
        Tsplits=tf.int32)
    return new_splits, [tf.gather(array, positions) for array in arrays]


def truncated_lengths(len_a: tf.Tensor, len_b: tf.Tensor, max_length
                      ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Lengths left by `features._truncate_seq_pair(a, b, max_length)`, elementwise.

    The original pops from the longer list (from b on a tie) until len_a + len_b <= max_length,
    which ends at (a, b) if that fits, else at a' = min(a, max(M - b, ceil(M / 2))),
    b' = min(b, max(M - a, floor(M / 2))) with M = max_length (tested against the loop).
    """
    a = tf.minimum(len_a, tf.maximum(max_length - len_b, (max_length + 1) // 2))
    b = tf.minimum(len_b, tf.maximum(max_length - len_a, max_length // 2))
    return a, b


class GraphTokenizer(tf.Module):
    """`FullTokenizer` (ids) and `convert_single_example`'s layout as core-op TensorFlow graphs.

    tokenize(texts: string [batch]) -> int32 RaggedTensor [batch, (tokens)]
    encode(text_a, text_b: string [batch]) -> {"input_ids", "input_mask", "segment_ids"}:
        int32 [batch, max_seq_length]; an empty text_b (or one with no tokens) is a single
        sentence.
    `tokenize_batch` / `encode_batch` are the same computations without tf.function, for use
    inside another traced function (e.g. a serving signature) on already-batched strings.
    Python attributes: vocab_size, unk_id, cls_id, sep_id, do_lower_case, max_seq_length.
    """

    def __init__(self, vocab_file: str, do_lower_case: bool = True, max_seq_length: int = 128,
                 name: Optional[str] = None) -> None:
        super().__init__(name=name)
        if max_seq_length < 3:
            raise ValueError("max_seq_length %d: must be at least 3 ([CLS] a [SEP] b [SEP] needs "
                             "3 special tokens)" % max_seq_length)
        vocab = tokenization.load_vocab(vocab_file)
        for token in ("[UNK]", "[CLS]", "[SEP]"):
            if token not in vocab:
                raise ValueError("vocab_file %s: has no %s token" % (vocab_file, token))
        self.do_lower_case = bool(do_lower_case)
        self.max_seq_length = int(max_seq_length)
        self.vocab_size = len(vocab)
        self.unk_id = vocab["[UNK]"]
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        # WordPiece looks up word[start:end] at a word's start and "##" + word[start:end] after
        # it: two tables, the second keyed without the "##", so no string is built per lookup.
        continuations = {token[2:]: index for token, index in vocab.items()
                         if token.startswith("##") and len(token) > 2}
        self._first_table = _string_table(vocab)
        # (A hash table cannot be empty; "" is never looked up: candidates have >= 1 character.)
        self._next_table = _string_table(continuations or {"": -1})
        # The longest candidates worth looking up, in characters.
        self._max_first_piece = min(MAX_CHARS_PER_WORD, max(map(len, vocab)))
        self._max_next_piece = min(MAX_CHARS_PER_WORD, max(map(len, continuations), default=0))
        tables = char_tables.build_char_tables(self.do_lower_case)
        self._max_out = tables.out.shape[1]
        # Constants, not variables: a SavedModel stores a constant that functions capture once
        # however many functions use it, and a constant has no device of its own (a variable
        # restored onto a GPU would pull the gathers that read it there).
        with tf.device("/device:CPU:0"):
            # [R, max_out] columns flattened: output j of record r is at r * max_out + j.
            self._chars = {field: tf.constant(value.reshape(-1), name=field)
                           for field, value in tables._asdict().items()}
        logging.info("GraphTokenizer: %d vocabulary entries, do_lower_case=%s, %d character "
                     "records in %d pages, tables %.0f kB", self.vocab_size, self.do_lower_case,
                     len(tables.kind), len(tables.records_of_page) // char_tables.PAGE_SIZE,
                     tables.nbytes() / 1024)

    # ------------------------------------------------------------------ public graph functions

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """int32 [batch, (tokens)]: FullTokenizer.convert_tokens_to_ids(tokenize(text)) each."""
        return self.tokenize_batch(texts)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2)
    def encode(self, text_a: tf.Tensor, text_b: tf.Tensor) -> Dict[str, tf.Tensor]:
        """int32 [batch, max_seq_length] input_ids, input_mask, segment_ids, as
        features.convert_single_example(InputExample(text_a, text_b or None))."""
        return self.encode_batch(text_a, text_b)

    def tokenize_batch(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """`tokenize` without tf.function: texts string [batch] -> int32 [batch, (tokens)]."""
        with tf.device("/device:CPU:0"):  # string work: keep every step on the host
            texts = tf.convert_to_tensor(texts, tf.string)
            ids, lengths = self._wordpiece_ids(texts, max_tokens_per_text=None)
            # int64 row splits, TensorFlow's default, so the result combines with other ragged
            # tensors.
            return tf.RaggedTensor.from_row_lengths(ids, tf.cast(lengths, tf.int64),
                                                    validate=False)

    def encode_batch(self, text_a: tf.Tensor, text_b: tf.Tensor,
                     pad_to_max_seq_length: bool = True) -> Dict[str, tf.Tensor]:
        """`encode` without tf.function: string [batch] twice -> int32 [batch, max_seq_length].

        With pad_to_max_seq_length=False the width is the batch's longest sequence instead
        (the same rows without their all-padding tail columns; at least 2, also for a batch of
        0): a BERT model gives the same outputs for the real tokens on it, in less time when
        texts are short.
        """
        # String work: every step stays on the host (on a GPU machine the placer would otherwise
        # scatter the integer steps onto the GPU, with a copy between each).
        with tf.device("/device:CPU:0"):
            return self._encode(text_a, text_b, pad_to_max_seq_length)

    def _encode(self, text_a: tf.Tensor, text_b: tf.Tensor,
                pad_to_max_seq_length: bool) -> Dict[str, tf.Tensor]:
        text_a = tf.convert_to_tensor(text_a, tf.string)
        text_b = tf.convert_to_tensor(text_b, tf.string)
        batch = tf.shape(text_a)[0]
        with tf.control_dependencies([tf.debugging.assert_equal(
                batch, tf.shape(text_b)[0], message="text_a and text_b batch sizes differ")]):
            texts = tf.concat([text_a, text_b], 0)
        seq_length = self.max_seq_length
        # Only the first seq_length basic tokens of a text can reach the output: each gives at
        # least one wordpiece, and a text keeps at most seq_length - 2 of them. Cutting there
        # bounds the WordPiece work (and the pieces kept are a prefix of the text's pieces, so
        # the truncation below is unchanged: tests check _truncate_seq_pair on clamped lists).
        ids, lengths = self._wordpiece_ids(texts, max_tokens_per_text=seq_length)
        starts = _exclusive_cumsum(lengths)
        len_a, len_b = lengths[:batch], lengths[batch:]
        is_pair = len_b > 0  # an empty text_b, or one without tokens: single sentence
        pair_a, pair_b = truncated_lengths(len_a, len_b, seq_length - 3)
        len_a = tf.where(is_pair, pair_a, tf.minimum(len_a, seq_length - 2))[:, None]
        len_b = tf.where(is_pair, pair_b, 0)[:, None]
        is_pair = is_pair[:, None]

        b_start = len_a + 2
        total = tf.where(is_pair, b_start + len_b + 1, len_a + 2)
        # At least [CLS] [SEP]'s 2 columns, also for a batch of 0 (a model needs a [CLS] column).
        width = seq_length if pad_to_max_seq_length else tf.maximum(tf.reduce_max(total), 2)
        position = tf.range(width)[None, :]
        in_a = (position >= 1) & (position <= len_a)
        in_b = is_pair & (position >= b_start) & (position < b_start + len_b)
        is_sep = tf.equal(position, len_a + 1) | (is_pair & tf.equal(position, b_start + len_b))
        # Index into `ids`; one past its end (a 0) for positions that take no token.
        index = tf.where(in_a, starts[:batch, None] + position - 1,
                         tf.where(in_b, starts[batch:, None] + position - b_start,
                                  tf.size(ids)))
        token_ids = tf.gather(tf.concat([ids, [0]], 0), index)
        input_ids = tf.where(tf.equal(position, 0), self.cls_id,
                             tf.where(is_sep, self.sep_id, token_ids))
        input_mask = tf.cast(position < total, tf.int32)
        segment_ids = tf.cast(is_pair & (position >= b_start) & (position < total), tf.int32)
        return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}

    # ------------------------------------------------------------------ the steps

    def _records(self, code_points: tf.Tensor) -> tf.Tensor:
        """int32 record id of each code point (UTF-8 decoding yields only 0..0x10FFFF)."""
        page_start = tf.gather(self._chars["page_start"],
                               tf.bitwise.right_shift(code_points, char_tables.PAGE_BITS))
        offset = tf.bitwise.bitwise_and(code_points, char_tables.PAGE_SIZE - 1)
        records = tf.gather(self._chars["records_of_page"], page_start + offset)
        return tf.cast(records, tf.int32)

    def _final_sigmas(self, records: tf.Tensor, code_points: tf.Tensor,
                      row_splits: tf.Tensor) -> tf.Tensor:
        """bool [n]: which characters are a U+03A3 that Python lowercases to final sigma.

        Python looks from the sigma to the nearest characters of its word that are not
        case-ignorable. Dropped characters count as case-ignorable here (Python never sees
        them); separators and CJK ideographs are CONTEXT_OTHER, so the search stops there with
        "not cased", as at the ends of the word; it also stops at the ends of the text.
        """
        context = tf.gather(self._chars["context"], records)
        anchored = tf.not_equal(context, char_tables.CONTEXT_IGNORABLE)
        anchors = _positions(anchored)  # a sigma is one of them (it is cased)
        last_anchor = tf.size(anchors) - 1
        rank = tf.gather(tf.math.cumsum(tf.cast(anchored, tf.int32)) - 1,
                         _positions(tf.equal(code_points, char_tables.CAPITAL_SIGMA)))
        sigma_rows = _rows_of(tf.gather(anchors, rank), row_splits)
        before = tf.gather(anchors, tf.maximum(rank - 1, 0))
        after = tf.gather(anchors, tf.minimum(rank + 1, last_anchor))
        cased_before = ((rank >= 1) & (before >= tf.gather(row_splits, sigma_rows)) &
                        tf.equal(tf.gather(context, before), char_tables.CONTEXT_CASED))
        cased_after = ((rank < last_anchor) & (after < tf.gather(row_splits, sigma_rows + 1)) &
                       tf.equal(tf.gather(context, after), char_tables.CONTEXT_CASED))
        is_final = cased_before & ~cased_after
        final_positions = tf.gather(anchors, tf.gather(rank, _positions(is_final)))
        return tf.scatter_nd(final_positions[:, None], tf.ones_like(final_positions, tf.bool),
                             tf.shape(code_points))

    def _canonical_order(self, records, first_in_row, sources, out_index) -> tf.Tensor:
        """int32 [m]: the permutation of the output characters that NFD's reordering makes.

        A run is a starter (combining class 0; Mn marks count before they are stripped) and
        the characters after it up to the next starter; NFD stably sorts each run by combining
        class. Key = (run number, class); a text start also opens a run.
        """
        starters = tf.cast(tf.gather(self._chars["starters"], records), tf.int32)
        runs_before = (_exclusive_cumsum(starters) +
                       tf.math.cumsum(tf.cast(first_in_row, tf.int32)))
        run = (tf.gather(runs_before, sources) +
               tf.cast(tf.gather(self._chars["out_run"], out_index), tf.int32))
        ccc = tf.cast(tf.gather(self._chars["out_ccc"], out_index), tf.int64)
        return tf.argsort(tf.cast(run, tf.int64) * 256 + ccc, stable=True)

    def _basic_tokens(self, texts: tf.Tensor, max_tokens_per_text: Optional[int]):
        """The basic tokens of each text, as flat characters.

        Returns (chars int32 [m]: code points of all tokens in order; token_of_char int32 [m]:
        0..num_tokens-1, nondecreasing; token_rows int32 [num_tokens]: the text of each token).
        A token longer than 200 characters keeps only its first 201 (enough to be [UNK]). With
        max_tokens_per_text, only each text's first tokens are returned (and only the words
        that hold them are processed).
        """
        batch = tf.shape(texts)[0]
        row_splits, code_points = tf.raw_ops.UnicodeDecode(
            input=texts, input_encoding="UTF-8", errors="ignore", Tsplits=tf.int32)
        records = self._records(code_points)
        kind = tf.gather(self._chars["kind"], records)
        row_starts = tf.gather(row_splits[:-1], _positions(row_splits[1:] > row_splits[:-1]))
        first_in_row = tf.scatter_nd(row_starts[:, None], tf.ones_like(row_starts, tf.bool),
                                     tf.shape(code_points))

        # Dropped characters stay in the arrays but have no outputs and do not split words.
        isolated = tf.equal(kind, char_tables.KIND_ISOLATED)
        # Whitespace-separated words, a CJK ideograph being a word of its own. A separator
        # starts a "word" of its own too, which ends at the next character (it has no outputs).
        word_starts = (first_in_row | tf.equal(kind, char_tables.KIND_SEPARATOR) | isolated |
                       _shift_right(isolated, False))
        words = tf.math.cumsum(tf.cast(word_starts, tf.int32))

        counts = tf.gather(self._chars["count"], records)
        if max_tokens_per_text is not None:
            # A text's first words are enough (a 1 MB text costs little more than its decoding).
            row_splits, (code_points, records, kind, words, first_in_row, counts) = (
                _first_words(max_tokens_per_text, row_splits, word_starts, words, counts,
                             [code_points, records, kind, words, first_in_row, counts]))

        # Each character -> its 0..max_out output characters: (source, slot) pairs.
        source_slots = tf.cast(tf.where(tf.sequence_mask(counts, self._max_out)), tf.int32)
        sources = source_slots[:, 0]
        out_index = tf.gather(records, sources) * self._max_out + source_slots[:, 1]
        chars = tf.gather(self._chars["out"], out_index)
        chars = tf.where(tf.equal(chars, char_tables.SELF), tf.gather(code_points, sources), chars)
        punct = tf.gather(self._chars["punct"], out_index)
        if self.do_lower_case:
            # Both steps only run for a batch that needs them (tf.cond runs one branch).
            def final_sigmas():
                final = self._final_sigmas(records, code_points, row_splits)
                return tf.where(tf.gather(final, sources), char_tables.FINAL_SIGMA, chars)

            chars = tf.cond(tf.reduce_any(tf.equal(code_points, char_tables.CAPITAL_SIGMA)),
                            final_sigmas, lambda: chars)

            def reorder():
                order = self._canonical_order(records, first_in_row, sources, out_index)
                # A run never leaves its word, so `sources` keeps giving each one's word.
                return tf.gather(chars, order), tf.gather(punct, order), tf.gather(sources, order)

            chars, punct, sources = tf.cond(
                tf.reduce_any(tf.gather(self._chars["reorders"], records)),
                reorder, lambda: (chars, punct, sources))
        char_words = tf.gather(words, sources)
        token_starts = (tf.not_equal(char_words, _shift_right(char_words, -1)) | punct |
                        _shift_right(punct, False))
        token_of_char = tf.math.cumsum(tf.cast(token_starts, tf.int32)) - 1
        token_first_char = _positions(token_starts)
        token_rows = _rows_of(tf.gather(sources, token_first_char), row_splits)

        # Of a token, only its first 201 characters matter (a longer one is [UNK] whatever
        # follows); with max_tokens_per_text, only each text's first tokens.
        kept_chars = (tf.range(tf.size(chars)) - tf.gather(token_first_char, token_of_char) <=
                      MAX_CHARS_PER_WORD)
        if max_tokens_per_text is not None:
            tokens_per_row = _segment_count(token_rows, batch)
            index_in_row = (tf.range(tf.size(token_rows)) -
                            tf.gather(_exclusive_cumsum(tokens_per_row), token_rows))
            kept_tokens = index_in_row < max_tokens_per_text
            kept_chars &= tf.gather(kept_tokens, token_of_char)
            kept_tokens = _positions(kept_tokens)  # a prefix of each text's tokens
            renumbered = tf.scatter_nd(kept_tokens[:, None], tf.range(tf.size(kept_tokens)),
                                       tf.shape(token_rows))
            token_rows = tf.gather(token_rows, kept_tokens)
        kept_chars = _positions(kept_chars)
        chars = tf.gather(chars, kept_chars)
        token_of_char = tf.gather(token_of_char, kept_chars)
        if max_tokens_per_text is not None:
            token_of_char = tf.gather(renumbered, token_of_char)
        return chars, token_of_char, token_rows

    def _wordpiece_ids(self, texts: tf.Tensor, max_tokens_per_text: Optional[int]
                       ) -> Tuple[tf.Tensor, tf.Tensor]:
        """(ids int32 [total]: the wordpiece ids of all texts in order, lengths int32 [batch])."""
        batch = tf.shape(texts)[0]
        chars, token_of_char, token_rows = self._basic_tokens(texts, max_tokens_per_text)
        num_chars = tf.size(chars)
        num_tokens = tf.size(token_rows)
        token_lengths = _segment_count(token_of_char, num_tokens)
        token_splits = tf.concat([[0], tf.math.cumsum(token_lengths)], 0)
        short = token_lengths <= MAX_CHARS_PER_WORD  # longer ones are [UNK]
        position = tf.range(num_chars) - tf.gather(token_splits, token_of_char)
        remaining = tf.gather(token_lengths, token_of_char) - position

        # Every token as a UTF-8 string, and each character's byte offsets within it.
        token_strings = tf.raw_ops.UnicodeEncode(input_values=chars, input_splits=token_splits,
                                                 output_encoding="UTF-8")
        utf8_bytes = (1 + tf.cast(chars >= 0x80, tf.int32) + tf.cast(chars >= 0x800, tf.int32) +
                      tf.cast(chars >= 0x10000, tf.int32))
        byte_ends = tf.math.cumsum(utf8_bytes)
        byte_starts = byte_ends - utf8_bytes
        token_byte0 = tf.gather(tf.gather(byte_starts, token_splits[:-1]), token_of_char)
        byte_ends -= token_byte0
        byte_starts -= token_byte0

        def longest_matches(starts, max_width, widest, table):
            """(start, score) of every candidate: width << 32 | id if it matches, else -1."""
            grid = tf.cast(tf.where(tf.range(1, widest + 1)[None, :] <= max_width[:, None]),
                           tf.int32)
            start = tf.gather(starts, grid[:, 0])
            width = grid[:, 1] + 1
            pieces = tf.strings.substr(
                tf.gather(token_strings, tf.gather(token_of_char, start)),
                tf.gather(byte_starts, start),
                tf.gather(byte_ends, start + width - 1) - tf.gather(byte_starts, start))
            piece_ids = table.lookup(pieces)
            score = tf.bitwise.left_shift(tf.cast(width, tf.int64), 32) + tf.cast(piece_ids,
                                                                                  tf.int64)
            return start, tf.where(piece_ids >= 0, score, -1)

        # First pieces. Most tokens are in the vocabulary whole: one lookup of the token string.
        # For the others, every shorter width that an entry could match (up to the longest).
        whole_ids = self._first_table.lookup(token_strings)
        whole = short & (whole_ids >= 0)
        whole_score = (tf.bitwise.left_shift(tf.cast(token_lengths, tf.int64), 32) +
                       tf.cast(whole_ids, tf.int64))
        partial_starts = tf.gather(token_splits[:-1], _positions(short & ~whole))
        first_start, first_score = longest_matches(
            partial_starts,
            tf.minimum(tf.gather(remaining, partial_starts) - 1, self._max_first_piece),
            self._max_first_piece, self._first_table)
        best = tf.math.unsorted_segment_max(
            tf.concat([tf.where(whole, whole_score, -1), first_score], 0),
            tf.concat([token_splits[:-1], first_start], 0), num_chars)
        first_width = tf.gather(tf.cast(tf.bitwise.right_shift(tf.maximum(best, 0), 32),
                                        tf.int32), token_splits[:-1])
        # Continuations: only tokens whose first piece matched but is not all of it (most words
        # are one piece), and only from the end of the first piece on (the chain goes there).
        continued = short & (first_width > 0) & (first_width < token_lengths)
        first_width = tf.gather(first_width, token_of_char)
        next_starts = _positions(tf.gather(continued, token_of_char) & (position >= first_width))
        next_start, next_score = longest_matches(
            next_starts, tf.minimum(tf.gather(remaining, next_starts), self._max_next_piece),
            max(self._max_next_piece, 1), self._next_table)
        best = tf.maximum(best, tf.math.unsorted_segment_max(next_score, next_start, num_chars))
        best = tf.maximum(best, 0)  # no match (or no candidate): width 0
        best_width = tf.cast(tf.bitwise.right_shift(best, 32), tf.int32)
        best_id = tf.cast(tf.bitwise.bitwise_and(best, 0xFFFFFFFF), tf.int32)

        # The greedy chain of a continued token, from the end of its first piece: jump by the
        # best width. Pointer doubling over those starts (numbered 0..k-1, contiguous per token)
        # marks every start on the chain; k is the "end / no match" sentinel.
        num_starts = tf.size(next_starts)
        start_width = tf.gather(best_width, next_starts)
        jump = tf.concat([tf.where((start_width > 0) &
                                   (start_width < tf.gather(remaining, next_starts)),
                                   tf.range(num_starts) + start_width, num_starts),
                          [num_starts]], 0)
        on_chain = tf.concat([tf.cast(tf.equal(tf.gather(position, next_starts),
                                               tf.gather(first_width, next_starts)), tf.int32),
                              [0]], 0)
        for round_ in range(_DOUBLING_ROUNDS):
            on_chain = tf.maximum(on_chain, tf.math.unsorted_segment_max(on_chain, jump,
                                                                         num_starts + 1))
            if round_ + 1 < _DOUBLING_ROUNDS:
                jump = tf.gather(jump, jump)
        # Every token's first character is on its chain too.
        on_chain = tf.equal(position, 0) | tf.scatter_nd(next_starts[:, None],
                                                         on_chain[:num_starts] > 0,
                                                         tf.shape(position))
        dead_end = tf.cast(on_chain & tf.equal(best_width, 0), tf.int32)
        token_ok = short & (tf.math.unsorted_segment_max(dead_end, token_of_char, num_tokens) <= 0)

        # Output, in character order: every start on the chain of a good token gives its piece,
        # the first character of a long or failed token gives one [UNK].
        good = tf.gather(token_ok, token_of_char)
        emitting = _positions(on_chain & (good | tf.equal(position, 0)))
        ids = tf.gather(tf.where(good, best_id, self.unk_id), emitting)
        lengths = _segment_count(tf.gather(token_rows, tf.gather(token_of_char, emitting)), batch)
        return ids, lengths


def _string_table(mapping: Dict[str, int]) -> tf.lookup.StaticHashTable:
    """A string -> int32 hash table (default -1) holding `mapping`."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(mapping), tf.string),
                                            tf.constant(list(mapping.values()), tf.int32)),
        default_value=-1)
