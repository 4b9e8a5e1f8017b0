"""Data classes and the `DataProcessor` base class, with the original's API.

An `InputExample` is one row of a task's data; a `DataProcessor` turns the files of a task
into lists of them. The readers here also do the bookkeeping the original skipped: every
row knows the file and line it came from (`InputExample.source`), a missing file or a short
row raises a `ValueError` naming the file and line, and undecodable bytes are reported once
per file instead of being dropped silently. Files are read as UTF-8 unless
`set_input_encoding()` (run_classifier.py --encoding) names another encoding.
"""
import codecs
import csv
import io
import os
import sys
from typing import List, Optional, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import logging  # noqa: E402
import tensorflow as tf  # noqa: E402

# Python's csv module refuses fields longer than 131,072 characters by default, which real
# corpora (long documents in one cell) exceed. Raise the limit as far as the C long allows.
_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
csv.field_size_limit(_FIELD_LIMIT)


class InputExample(object):
    """One example: `text_a` (str), optional `text_b` (str) and `label` (str).

    `guid` is a unique id such as "train-12"; `source` is an optional "path:line" string that
    error messages use to point at the row the example came from.
    """

    def __init__(self, guid: str, text_a: str, text_b: Optional[str] = None,
                 label: Optional[str] = None, source: Optional[str] = None):
        self.guid = guid
        self.text_a = text_a
        self.text_b = text_b
        self.label = label
        self.source = source

    def __repr__(self) -> str:
        return ("InputExample(guid=%r, text_a=%r, text_b=%r, label=%r, source=%r)" %
                (self.guid, self.text_a, self.text_b, self.label, self.source))


class PaddingInputExample(object):
    """Marker for a fake example that pads eval/predict sets to a whole number of batches.

    It becomes all-zero features with `is_real_example=False`, so metrics can ignore it.
    A dedicated class (rather than None) makes a forgotten example fail loudly.
    """


class InputFeatures(object):
    """Model inputs for one example: three int lists of length max_seq_length and a label id."""

    def __init__(self, input_ids: List[int], input_mask: List[int], segment_ids: List[int],
                 label_id: int, is_real_example: bool = True):
        self.input_ids = input_ids
        self.input_mask = input_mask
        self.segment_ids = segment_ids
        self.label_id = label_id
        self.is_real_example = is_real_example

    def __repr__(self) -> str:
        return ("InputFeatures(input_ids=%r, input_mask=%r, segment_ids=%r, label_id=%r, "
                "is_real_example=%r)" % (self.input_ids, self.input_mask, self.segment_ids,
                                         self.label_id, self.is_real_example))


# The encoding of every data file read through read_text_file (so also DataProcessor._read_tsv
# and the built-in processors). run_classifier.py --encoding sets it with set_input_encoding();
# processors written for the original keep their signatures and get it without a change.
_input_encoding = "utf-8"

# Byte-order marks of the encodings a UTF-8 reader would turn into garbage (longest first:
# the UTF-32 LE mark starts with the UTF-16 LE one).
_FOREIGN_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                 (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def set_input_encoding(encoding: str) -> None:
    """Sets the encoding of the data files read from now on (default "utf-8"). Raises
    ValueError for a name Python does not know."""
    global _input_encoding
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError("--encoding=%s: unknown encoding (expected a Python codec name such as "
                         "utf-8, utf-16, cp1252 or latin-1)" % encoding) from None
    _input_encoding = encoding


def input_encoding() -> str:
    """The encoding data files are read with (see set_input_encoding)."""
    return _input_encoding


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def read_text_file(path: str, encoding: Optional[str] = None) -> str:
    """Returns the whole file at `path` (local or gs://) as text (see decode_text).

    `encoding` defaults to input_encoding() ("utf-8" unless --encoding says otherwise).
    A missing file raises ValueError naming the path.
    """
    if not tf.io.gfile.exists(path):
        raise ValueError("Data file not found: %s" % path)
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    return decode_text(data, path, encoding)


def decode_text(data: bytes, name: str, encoding: Optional[str] = None) -> str:
    """`data` (the bytes of the file or stream `name`, e.g. "<stdin>") as text.

    `encoding` defaults to input_encoding().

    UTF-8 (the original's reading): a leading byte-order mark is removed; bytes that are not
    UTF-8 are dropped, as the original's `convert_to_unicode` did, but with one warning giving
    their count, the line of the first one and the --encoding to use. Data that starts with a
    UTF-16/UTF-32 byte-order mark, or is mostly NUL bytes (UTF-16 without a mark), is not read
    as UTF-8 garbage: ValueError names its encoding.

    Another encoding: decoded strictly (UTF-16/32 byte-order marks are honoured); a byte that
    does not decode raises ValueError naming the file, line and encoding.
    """
    encoding = encoding or _input_encoding
    path = name  # in the messages
    if not _is_utf8(encoding):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise ValueError("%s:%d: not valid %s (%s at byte offset %d); pass the file's "
                             "encoding with --encoding" % (path, line, encoding, error.reason,
                                                           error.start)) from None
    for bom, bom_name in _FOREIGN_BOMS:
        if data.startswith(bom):
            raise ValueError("%s is %s (it starts with a %s byte-order mark), not UTF-8: pass "
                             "--encoding=%s or re-encode the file as UTF-8"
                             % (path, bom_name, bom_name, bom_name.lower()))
    sample = data[:65536]
    # UTF-16 text of mostly ASCII characters is every other byte NUL; UTF-8 text has none (a
    # stray one is let through, as the original did).
    if sample and sample.count(b"\x00") * 4 >= len(sample):
        raise ValueError("%s is not UTF-8: a quarter or more of its bytes are NUL, as in UTF-16 "
                         "without a byte-order mark (pass --encoding=utf-16-le or utf-16-be), or "
                         "it is not a text file" % path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as first_error:
        text = data.decode("utf-8", "ignore")
        # Valid UTF-8 re-encodes to the same bytes, so the length difference is what was dropped.
        count = len(data) - len(text.encode("utf-8"))
        line = data.count(b"\n", 0, first_error.start) + 1
        logging.warning(
            "%s: dropped %d byte(s) that are not valid UTF-8; the first is on line %d "
            "(byte offset %d). The file is not UTF-8: pass its encoding with --encoding (e.g. "
            "--encoding=cp1252) or re-encode it as UTF-8 to keep that text.",
            path, count, line, first_error.start)
        return text


def read_tsv_rows(input_file: str, quotechar: Optional[str] = None
                 ) -> List[Tuple[int, List[str]]]:
    """Reads a tab-separated file as the original did; returns (line number, fields) pairs.

    Line numbers are 1-based physical lines of the file (the line where the row ends).
    Quote characters are kept literally when `quotechar` is None, as in the original.
    """
    text = read_text_file(input_file)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar=quotechar)
    rows = []
    for fields in reader:
        rows.append((reader.line_num, fields))
    return rows


def source_of(path: str, line: int) -> str:
    """The "path:line" string stored in `InputExample.source`."""
    return "%s:%d" % (path, line)


def require_columns(fields: Sequence[str], needed: int, path: str, line: int) -> None:
    """Raises ValueError naming file and line if a row has fewer than `needed` columns."""
    if len(fields) < needed:
        raise ValueError(
            "%s:%d: expected at least %d tab-separated columns, found %d: %r" %
            (path, line, needed, len(fields), "\t".join(fields)[:200]))


class DataProcessor(object):
    """Base class of the task readers: one method per data split plus the label list.

    Subclasses return lists of `InputExample`; labels are strings listed by `get_labels()`.
    """

    def get_train_examples(self, data_dir: str) -> List[InputExample]:
        """The training examples found in `data_dir`."""
        raise NotImplementedError()

    def get_dev_examples(self, data_dir: str) -> List[InputExample]:
        """The evaluation (dev) examples found in `data_dir`."""
        raise NotImplementedError()

    def get_test_examples(self, data_dir: str) -> List[InputExample]:
        """The examples to predict, found in `data_dir` (labels are dummies)."""
        raise NotImplementedError()

    def get_labels(self) -> List[str]:
        """The label strings; their order defines the label ids and output columns."""
        raise NotImplementedError()

    @classmethod
    def _read_tsv(cls, input_file: str, quotechar: Optional[str] = None) -> List[List[str]]:
        """Reads a tab-separated file (local or gs://) into a list of rows (lists of str)."""
        return [fields for _, fields in read_tsv_rows(input_file, quotechar)]
