"""Data classes and the `DataProcessor` base class, with the original's API.

An `InputExample` is one row of a task's data; a `DataProcessor` turns the files of a task
into lists of them. The readers here also do the bookkeeping the original skipped: every
row knows the file and line it came from (`InputExample.source`), a missing file or a short
row raises a `ValueError` naming the file and line, and undecodable bytes are reported once
per file instead of being dropped silently.
"""
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


def decode_text(data: bytes, name: str) -> str:
    """`data` decoded as UTF-8, `name` (a path, or "<stdin>") naming it in the warning.

    A leading UTF-8 byte-order mark is removed. Bytes that are not UTF-8 are dropped, as the
    original's `convert_to_unicode` did, but with one warning giving their count and the
    line of the first one.
    """
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
            "(byte offset %d). Re-encode the file as UTF-8 to keep that text.",
            name, count, line, first_error.start)
        return text


def read_text_file(path: str) -> str:
    """Returns the whole file at `path` (local or gs://) decoded as UTF-8 (see decode_text).

    A missing file raises ValueError naming the path.
    """
    if not tf.io.gfile.exists(path):
        raise ValueError("Data file not found: %s" % path)
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    return decode_text(data, path)


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
