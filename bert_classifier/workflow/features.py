"""Examples -> `InputFeatures` -> `.tf_record` files, and the record spec to read them back.

The layout is the original's: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, segment ids 0 for
the first part and 1 for b, zero padding up to max_seq_length, pairs truncated by popping
from the longer side (from b on a tie). The records hold the int64 features input_ids,
input_mask, segment_ids, label_ids and is_real_example, one `tf.train.Example` per example.

Speed (the original is single-threaded pure Python, bert#658): with the project's own
`tokenization.FullTokenizer`, a text is tokenized per space-separated chunk with a cache of
chunk -> token ids. That is exact, because the original algorithm never lets a token span
an ASCII space (cleanup and CJK spacing act per character, then text is split on
whitespace and every later step acts per token). `file_based_convert_examples_to_features`
also spreads the work over processes. Both paths write the same records as the original.
"""
import dataclasses
import gc
import itertools
import multiprocessing
import os
import signal
import sys
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import logging  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_classifier.core import kill_points  # noqa: E402
from bert_classifier.core import files  # noqa: E402
import tokenization  # noqa: E402
from bert_classifier.core.progress import ProgressBar  # noqa: E402
from processors.base import InputFeatures, PaddingInputExample  # noqa: E402

# Examples per task handed to a worker process: large enough to amortise the pickling.
_CHUNK_SIZE = 256
# Below this many examples per worker a process pool costs more than it saves (default only).
_MIN_EXAMPLES_PER_WORKER = 2000
# Chunks longer than this (characters) are tokenized but not cached: they rarely repeat.
_MAX_CACHED_CHUNK = 64
_MAX_CACHE_ENTRIES = 500_000
# The first examples get the original's "*** Example ***" log block.
_NUM_LOGGED_EXAMPLES = 5


def _truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """Shortens two lists in place until len(a) + len(b) <= max_length.

    One item at a time is removed from the end of the longer list (from b when they are
    equally long): a short text keeps its tokens, which carry more of its meaning.
    """
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def validate_labels(examples: Sequence, label_list: Sequence[str]) -> None:
    """Raises one ValueError if any example's label is not in `label_list`.

    The message names the first offending row (`example.source` "path:line", else its
    guid), its value, the allowed labels, and how many other rows are wrong. Padding
    examples are skipped. Call it before any training so a typo fails in seconds.
    """
    allowed = set(label_list)
    bad = [ex for ex in examples
           if not isinstance(ex, PaddingInputExample) and ex.label not in allowed]
    if not bad:
        return
    first = bad[0]
    where = first.source if getattr(first, "source", None) else "example %s" % first.guid
    message = "%s: label %r is not one of the task's labels %s" % (
        where, first.label, list(label_list))
    if len(bad) > 1:
        others = sorted({repr(ex.label) for ex in bad[1:]})
        message += "; %d more row(s) have unknown labels (values: %s)" % (
            len(bad) - 1, ", ".join(others[:10]) + (", ..." if len(others) > 10 else ""))
    raise ValueError(message)


def _uses_original_algorithm(tokenizer) -> bool:
    """True when `tokenizer` is the project's FullTokenizer with its own tokenize/ids methods."""
    cls = type(tokenizer)
    return (isinstance(tokenizer, tokenization.FullTokenizer) and
            cls.tokenize is tokenization.FullTokenizer.tokenize and
            cls.convert_tokens_to_ids is tokenization.FullTokenizer.convert_tokens_to_ids)


class _ChunkCache(object):
    """text -> token ids, by space-separated chunks with a bounded chunk -> ids cache."""

    def __init__(self, tokenizer):
        self._tokenize = tokenizer.tokenize
        self._to_ids = tokenizer.convert_tokens_to_ids
        self._cache: Dict[str, List[int]] = {}

    def ids(self, text) -> List[int]:
        """Token ids of `text`, equal to convert_tokens_to_ids(tokenize(text))."""
        if not isinstance(text, str):
            return self._to_ids(self._tokenize(text))
        chunks = text.split(" ")
        pieces = list(map(self._cache.get, chunks))
        # Fill the misses; list.index finds them at C speed.
        try:
            i = pieces.index(None)
            while True:
                pieces[i] = self._lookup_miss(chunks[i])
                i = pieces.index(None, i + 1)
        except ValueError:
            pass
        return list(itertools.chain.from_iterable(pieces))

    def _lookup_miss(self, chunk: str) -> List[int]:
        ids = self._to_ids(self._tokenize(chunk))
        if len(chunk) <= _MAX_CACHED_CHUNK:
            if len(self._cache) >= _MAX_CACHE_ENTRIES:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids


class _Converter(object):
    """Converts examples for one (label_list, max_seq_length, tokenizer) setting."""

    def __init__(self, label_list: Sequence[str], max_seq_length: int, tokenizer):
        self.label_map = {label: i for i, label in enumerate(label_list)}
        self.label_list = list(label_list)
        self.max_seq_length = max_seq_length
        self.tokenizer = tokenizer
        self.fast = _ChunkCache(tokenizer) if _uses_original_algorithm(tokenizer) else None
        if self.fast is not None:
            self.cls_id, self.sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])

    def label_id(self, example) -> int:
        try:
            return self.label_map[example.label]
        except KeyError:
            validate_labels([example], self.label_list)
            raise

    def convert(self, ex_index: int, example) -> InputFeatures:
        """One example -> InputFeatures (logs the example block for ex_index < 5)."""
        seq_len = self.max_seq_length
        if isinstance(example, PaddingInputExample):
            return InputFeatures(input_ids=[0] * seq_len, input_mask=[0] * seq_len,
                                 segment_ids=[0] * seq_len, label_id=0, is_real_example=False)
        if self.fast is None or ex_index < _NUM_LOGGED_EXAMPLES:
            return self._convert_with_tokens(ex_index, example)
        ids, segment_ids, _ = self.layout(example.text_a, example.text_b)
        padding = [0] * (seq_len - len(ids))
        return InputFeatures(input_ids=ids + padding, input_mask=[1] * len(ids) + padding,
                             segment_ids=segment_ids + padding,
                             label_id=self.label_id(example), is_real_example=True)

    def layout(self, text_a, text_b) -> Tuple[List[int], List[int], bool]:
        """The unpadded ids and segment ids of `[CLS] a [SEP] (b [SEP])`, and whether
        truncation to max_seq_length dropped tokens."""
        seq_len = self.max_seq_length
        if self.fast is not None:
            ids_a = self.fast.ids(text_a)
            ids_b = self.fast.ids(text_b) if text_b else None
            cls_id, sep_id = self.cls_id, self.sep_id
        else:
            to_ids = self.tokenizer.convert_tokens_to_ids
            ids_a = list(to_ids(self.tokenizer.tokenize(text_a)))
            ids_b = list(to_ids(self.tokenizer.tokenize(text_b))) if text_b else None
            cls_id, sep_id = to_ids(["[CLS]", "[SEP]"])
        total = len(ids_a) + (len(ids_b) if ids_b else 0)
        # An empty text_b, or one that tokenizes to nothing, takes the single-sentence path.
        if ids_b:
            _truncate_seq_pair(ids_a, ids_b, seq_len - 3)
            ids = [cls_id] + ids_a + [sep_id] + ids_b + [sep_id]
            segment_ids = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
            truncated = len(ids_a) + len(ids_b) < total
        else:
            truncated = len(ids_a) > seq_len - 2
            del ids_a[seq_len - 2:]
            ids = [cls_id] + ids_a + [sep_id]
            segment_ids = [0] * len(ids)
        return ids, segment_ids, truncated

    def _convert_with_tokens(self, ex_index: int, example) -> InputFeatures:
        """The token-level path: plain `tokenizer.tokenize`, and the log block."""
        seq_len = self.max_seq_length
        tokens_a = self.tokenizer.tokenize(example.text_a)
        tokens_b = self.tokenizer.tokenize(example.text_b) if example.text_b else None
        if tokens_b:
            # Room for [CLS], [SEP], [SEP].
            _truncate_seq_pair(tokens_a, tokens_b, seq_len - 3)
        else:
            # Room for [CLS], [SEP].
            tokens_a = tokens_a[:seq_len - 2]
        tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
        segment_ids = [0] * len(tokens)
        if tokens_b:
            tokens += tokens_b + ["[SEP]"]
            segment_ids += [1] * (len(tokens_b) + 1)
        input_ids = list(self.tokenizer.convert_tokens_to_ids(tokens))
        input_mask = [1] * len(input_ids)
        padding = [0] * (seq_len - len(input_ids))
        input_ids += padding
        input_mask += padding
        segment_ids += padding
        label_id = self.label_id(example)
        if ex_index < _NUM_LOGGED_EXAMPLES:
            logging.info("*** Example ***")
            logging.info("guid: %s" % (example.guid))
            logging.info("tokens: %s" % " ".join(tokenization.printable_text(t) for t in tokens))
            logging.info("input_ids: %s" % " ".join(str(x) for x in input_ids))
            logging.info("input_mask: %s" % " ".join(str(x) for x in input_mask))
            logging.info("segment_ids: %s" % " ".join(str(x) for x in segment_ids))
            logging.info("label: %s (id = %d)" % (example.label, label_id))
        return InputFeatures(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids,
                             label_id=label_id, is_real_example=True)


def convert_single_example(ex_index: int, example, label_list: Sequence[str],
                           max_seq_length: int, tokenizer) -> InputFeatures:
    """Converts one `InputExample` (or `PaddingInputExample`) into `InputFeatures`.

    Returns three int lists of length max_seq_length (input_ids, input_mask, segment_ids),
    the label's index in `label_list`, and is_real_example (False only for padding, whose
    features are all zero). For ex_index < 5 the original's "*** Example ***" block is logged.
    """
    return _Converter(label_list, max_seq_length, tokenizer).convert(ex_index, example)


def convert_examples_to_features(examples: Sequence, label_list: Sequence[str],
                                 max_seq_length: int, tokenizer) -> List[InputFeatures]:
    """Converts a list of examples in order; returns one `InputFeatures` per example."""
    converter = _Converter(label_list, max_seq_length, tokenizer)
    features = []
    for ex_index, example in enumerate(examples):
        if ex_index % 10000 == 0:
            logging.info("Writing example %d of %d" % (ex_index, len(examples)))
        features.append(converter.convert(ex_index, example))
    return features


@dataclasses.dataclass
class EncodedTexts:
    """Model inputs for texts without labels, padded to max_seq_length.

    input_ids, input_mask, segment_ids: int32 [N, max_seq_length]; lengths: int32 [N] (real
    tokens, [CLS] and [SEP] included); truncated: bool [N] (tokens dropped to fit).
    """
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray


def encode_texts(texts: Sequence[Tuple[str, Optional[str]]], max_seq_length: int,
                 tokenizer) -> EncodedTexts:
    """(text_a, text_b or None) pairs -> EncodedTexts, laid out exactly as
    `convert_single_example` lays out an example (no log block, no label)."""
    converter = _Converter([], max_seq_length, tokenizer)
    count = len(texts)
    input_ids = np.zeros([count, max_seq_length], np.int32)
    segment_ids = np.zeros([count, max_seq_length], np.int32)
    lengths = np.zeros([count], np.int32)
    truncated = np.zeros([count], bool)
    for row, (text_a, text_b) in enumerate(texts):
        ids, segments, truncated[row] = converter.layout(text_a, text_b)
        lengths[row] = len(ids)
        input_ids[row, :len(ids)] = ids
        segment_ids[row, :len(ids)] = segments
    input_mask = (np.arange(max_seq_length)[np.newaxis, :] < lengths[:, np.newaxis])
    return EncodedTexts(input_ids, input_mask.astype(np.int32), segment_ids, lengths, truncated)


def _varint(value: int) -> bytes:
    """Protocol-buffer base-128 varint of an int64 (negatives as 10-byte two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


# Varints of small non-negative ints (token ids, 0/1 flags, lengths), looked up, not computed.
_VARINTS = {i: _varint(i) for i in range(1 << 15)}


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    size = len(payload)
    return tag + (_VARINTS[size] if size < (1 << 15) else _varint(size)) + payload


def _int64_feature(key: bytes, values: Sequence[int]) -> bytes:
    """One `features.feature` map entry: key -> Feature{int64_list{value: values (packed)}}."""
    try:
        # Ints in 0..127 are one-byte varints equal to themselves (masks, segment ids, labels).
        payload = bytes(values)
        if not payload.isascii():
            raise ValueError("a value above 127")
    except ValueError:
        try:
            payload = b"".join(map(_VARINTS.__getitem__, values))
        except KeyError:  # a negative or large value
            payload = b"".join(map(_varint, values))
    feature = _length_delimited(b"\x1a", _length_delimited(b"\x0a", payload))
    return _length_delimited(b"\x0a", _length_delimited(b"\x0a", key) +
                             _length_delimited(b"\x12", feature))


def _serialize(feature: InputFeatures) -> bytes:
    """The serialized `tf.train.Example` with the original's five int64 features.

    Encoded directly (tf.train.Example's wire format: Example.features -> map<string,
    Feature> -> Feature.int64_list -> packed int64) because building the message objects
    costs more than the tokenization; tests check it parses to the same Example as the
    original's. The entries are written in the original's order.
    """
    entries = (_int64_feature(b"input_ids", feature.input_ids) +
               _int64_feature(b"input_mask", feature.input_mask) +
               _int64_feature(b"segment_ids", feature.segment_ids) +
               _int64_feature(b"label_ids", [feature.label_id]) +
               _int64_feature(b"is_real_example", [int(feature.is_real_example)]))
    return _length_delimited(b"\x0a", entries)


# The converter a forked worker inherits from its parent (set just before the pool starts).
_WORKER_CONVERTER: Optional[_Converter] = None


def _worker_serialize(task: Tuple[int, list]) -> List[bytes]:
    start, chunk = task
    convert = _WORKER_CONVERTER.convert
    return [_serialize(convert(start + i, ex)) for i, ex in enumerate(chunk)]


def _default_num_workers(num_examples: int) -> int:
    cpus = os.cpu_count() or 1
    return max(1, min(cpus, num_examples // _MIN_EXAMPLES_PER_WORKER))


def file_based_convert_examples_to_features(examples: Sequence, label_list: Sequence[str],
                                            max_seq_length: int, tokenizer,
                                            output_file: str,
                                            num_workers: Optional[int] = None) -> None:
    """Writes one `tf.train.Example` per example, in order, to the TFRecord `output_file`.

    Features (all int64): input_ids, input_mask, segment_ids ([max_seq_length] each),
    label_ids and is_real_example (scalars). The file is written under a temporary name in
    the same directory and renamed into place at the end, so a crash never leaves a partial
    file at `output_file`. `num_workers` > 1 tokenizes in that many processes (default: one
    per CPU when there are enough examples); the records are the same as with 1.
    """
    global _WORKER_CONVERTER
    converter = _Converter(label_list, max_seq_length, tokenizer)
    total = len(examples)
    if num_workers is None:
        num_workers = _default_num_workers(total)
    # Forking is the cheap way to hand the tokenizer to workers; only trusted on Linux.
    if num_workers > 1 and not sys.platform.startswith("linux"):
        logging.info("Parallel featurization needs fork (Linux); using one process.")
        num_workers = 1

    # A hidden temporary name, unique per call (run_lock recognises `.<name>.tmp-<hex>`).
    temp_file = os.path.join(os.path.dirname(output_file), ".%s.tmp-%s" % (
        os.path.basename(output_file), uuid.uuid4().hex[:8]))
    progress = ProgressBar(total, os.path.basename(output_file), unit="ex")
    with files.into_place(output_file, temporary=temp_file):
        with tf.io.TFRecordWriter(temp_file) as writer:
            def write(ex_index: int, record: bytes) -> None:
                if ex_index % 10000 == 0:
                    logging.info("Writing example %d of %d" % (ex_index, total))
                writer.write(record)
                kill_points.reached("featurize_example")

            # The first examples (with their log blocks) are always converted here, in order.
            head = min(total, _NUM_LOGGED_EXAMPLES) if num_workers > 1 else total
            for ex_index in range(head):
                write(ex_index, _serialize(converter.convert(ex_index, examples[ex_index])))
                progress.update(1)
            if head < total:
                tasks = [(start, list(examples[start:start + _CHUNK_SIZE]))
                         for start in range(head, total, _CHUNK_SIZE)]
                _WORKER_CONVERTER = converter
                # Objects that exist before the fork go to the collector's permanent generation:
                # otherwise each worker's garbage collections walk (and so copy, page by page) the
                # whole inherited heap, which made a 100k-example run 3x slower than one process.
                gc.freeze()
                try:
                    # Workers ignore Ctrl-C: the main process gets it and ends the pool,
                    # instead of each worker printing a traceback.
                    with multiprocessing.get_context("fork").Pool(
                            num_workers, initializer=signal.signal,
                            initargs=(signal.SIGINT, signal.SIG_IGN)) as pool:
                        gc.unfreeze()
                        for (start, _), records in zip(tasks, pool.imap(_worker_serialize, tasks)):
                            for i, record in enumerate(records):
                                write(start + i, record)
                            progress.update(len(records))
                finally:
                    gc.unfreeze()
                    _WORKER_CONVERTER = None
        progress.close()


def name_to_features(seq_length: int) -> Dict[str, tf.io.FixedLenFeature]:
    """The parsing spec of the records: three int64 [seq_length] vectors, two int64 scalars."""
    return {
        "input_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
        "label_ids": tf.io.FixedLenFeature([], tf.int64),
        "is_real_example": tf.io.FixedLenFeature([], tf.int64),
    }


def decode_record(record: tf.Tensor, name_to_features: Dict[str, tf.io.FixedLenFeature]
                  ) -> Dict[str, tf.Tensor]:
    """Parses one serialized record; int64 features become int32 (what TPUs accept)."""
    example = tf.io.parse_single_example(record, name_to_features)
    for name in list(example.keys()):
        if example[name].dtype == tf.int64:
            example[name] = tf.cast(example[name], tf.int32)
    return example
