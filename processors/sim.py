"""`sim`: a generic binary sentence-pair similarity task read with pandas.

Files `train`, `dev`, `test` in data_dir, each either `.tsv` (tab-separated, quote characters
are ordinary text) or `.csv` (comma-separated, standard double-quote quoting). Columns are
text_a, text_b, label, in that order when there is no header row; a header row (a first row
naming text_a and text_b, any case) gives the columns by name instead. The test file may
omit the label column (every label is then "0", the original's dummy test label).

Every non-blank data row becomes one example with its texts exactly as in the file:
everything is read as str, so "NA", "null" or "None" stay text, and labels written as
numbers ("1.0", " 1") are normalised to "0"/"1".
"""
import collections
import csv
import io
import math
import os
from typing import List, Optional, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pandas as pd  # noqa: E402
from absl import logging  # noqa: E402
import tensorflow as tf  # noqa: E402

from processors.base import (DataProcessor, InputExample, read_text_file,  # noqa: E402
                             source_of)
from processors.registry import register_processor  # noqa: E402

_TEXT_A, _TEXT_B, _LABEL = "text_a", "text_b", "label"


def normalize_label(value: str) -> str:
    """"1", "1.0", " 1 ", "1e0" -> "1"; other strings are returned stripped but unchanged."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return text


def find_split_file(data_dir: str, split: str) -> str:
    """The path of `<split>.tsv` or `<split>.csv` in data_dir; ValueError if none or both exist."""
    candidates = [os.path.join(data_dir, split + ext) for ext in (".tsv", ".csv")]
    present = [p for p in candidates if tf.io.gfile.exists(p)]
    if not present:
        raise ValueError("Data file not found: %s (or %s)" % tuple(candidates))
    if len(present) > 1:
        raise ValueError("Both %s and %s exist; keep only one of them" % tuple(present))
    return present[0]


def _is_blank(fields: List[str]) -> bool:
    # pandas (skip_blank_lines=True) drops empty and whitespace-only lines.
    return not fields or (len(fields) == 1 and not fields[0].strip())


def read_table(path: str) -> Tuple[List[List[str]], List[int]]:
    """Reads a .tsv/.csv file into its non-blank rows (lists of str) and their 1-based lines.

    All rows must have the same number of columns, otherwise ValueError names the file, the
    line where the first odd row starts and the counts (pandas would silently pad short rows);
    the expected count is the one most rows have, so a short first row is blamed on line 1. In a
    .csv, a row that a double quote stretches over several lines is reported where the quote
    opens.
    """
    text = read_text_file(path)
    is_csv = path.lower().endswith(".csv")
    sep = "," if is_csv else "\t"
    quoting = csv.QUOTE_MINIMAL if is_csv else csv.QUOTE_NONE
    # A structural pass with the csv module: the physical lines of every row and its width.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"',
                        quoting=quoting)
    lines, ends, widths = [], [], []
    row_start = 1
    try:
        for fields in reader:
            if not _is_blank(fields):
                lines.append(row_start)
                ends.append(reader.line_num)
                widths.append(len(fields))
            row_start = reader.line_num + 1
    except csv.Error as e:
        raise ValueError("%s:%d: %s" % (path, row_start, e)) from e
    if not lines:
        return [], []
    expected = collections.Counter(widths).most_common(1)[0][0]
    for line, end, width in zip(lines, ends, widths):
        if width == expected:
            continue
        if end > line:
            raise ValueError(
                "%s:%d: a double quote opens a field here that runs to line %d, giving a row of "
                "%d column(s) where %d are expected: a closing quote is missing (a quote inside "
                "a quoted field is written \"\")" % (path, line, end, width, expected))
        raise ValueError("%s:%d: expected %d columns (as %d of the %d rows have), found %d" %
                         (path, line, expected, widths.count(expected), len(widths), width))
    spanning = [(line, end) for line, end in zip(lines, ends) if end > line]
    if spanning:
        logging.warning("%s:%d: a quoted field runs over lines %d-%d (%d such row(s)); if that is "
                        "not meant, a closing double quote is missing", path, spanning[0][0],
                        spanning[0][0], spanning[0][1], len(spanning))
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, header=None, dtype=str,
                            keep_default_na=False, na_filter=False, quoting=quoting,
                            skip_blank_lines=True, engine="c")
    except (pd.errors.ParserError, ValueError) as e:
        raise ValueError("%s: cannot parse: %s" % (path, e)) from e
    rows = frame.values.tolist()
    if len(rows) != len(lines):
        raise ValueError("%s: pandas read %d rows but the file has %d non-blank rows; check "
                         "quoting (a .csv needs standard double-quote quoting)" %
                         (path, len(rows), len(lines)))
    return rows, lines


@register_processor("sim")
class SimProcessor(DataProcessor):
    """Binary sentence-pair similarity: labels "0" (different) and "1" (similar)."""

    def get_train_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of train.tsv or train.csv; guid "train-<data row index from 0>"."""
        return self._create_examples(find_split_file(data_dir, "train"), "train")

    def get_dev_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of dev.tsv or dev.csv; guid "dev-<data row index from 0>"."""
        return self._create_examples(find_split_file(data_dir, "dev"), "dev")

    def get_test_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of test.tsv or test.csv; the label column is optional (default "0")."""
        return self._create_examples(find_split_file(data_dir, "test"), "test")

    def get_labels(self) -> List[str]:
        """"0" and "1"."""
        return ["0", "1"]

    def _create_examples(self, path: str, set_type: str) -> List[InputExample]:
        rows, lines = read_table(path)
        if not rows:
            return []
        label_optional = set_type == "test"
        header = [cell.strip().lower() for cell in rows[0]]
        if _TEXT_A in header:
            missing = [c for c in (_TEXT_A, _TEXT_B) if c not in header]
            if not label_optional and _LABEL not in header:
                missing.append(_LABEL)
            if missing:
                raise ValueError("%s:%d: the header row %r lacks column(s) %s" %
                                 (path, lines[0], rows[0], ", ".join(missing)))
            col_a, col_b = header.index(_TEXT_A), header.index(_TEXT_B)
            col_label: Optional[int] = header.index(_LABEL) if _LABEL in header else None
            rows, lines = rows[1:], lines[1:]
        else:
            needed = 2 if label_optional else 3
            if len(rows[0]) < needed:
                raise ValueError("%s:%d: expected %d columns (text_a, text_b%s), found %d" %
                                 (path, lines[0], needed, "" if label_optional else ", label",
                                  len(rows[0])))
            col_a, col_b = 0, 1
            col_label = 2 if len(rows[0]) >= 3 else None
        examples = []
        for index, (row, line) in enumerate(zip(rows, lines)):
            label = normalize_label(row[col_label]) if col_label is not None else ""
            if label_optional and not label:
                label = "0"
            examples.append(InputExample(guid="%s-%d" % (set_type, index), text_a=row[col_a],
                                         text_b=row[col_b], label=label,
                                         source=source_of(path, line)))
        return examples
