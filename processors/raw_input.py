"""Texts to classify, read from a file or stdin without a task processor (predict.py's input).

Formats:
  * tsv / csv: a header row naming the columns `text_a` (required), `text_b` and `guid`
    (optional), any order, any case; then one example a row. A .tsv keeps quote characters as
    text (as the original's _read_tsv); a .csv uses standard double-quote quoting.
  * jsonl: one JSON object a line with the keys `text_a` (required), `text_b`, `guid`.

Blank lines are skipped. A missing `guid` is the example's 0-based position. Every example
knows its "file:line" (InputExample.source) for error messages. Bytes that are not UTF-8 are
handled as for the training data (processors.base.decode_text).
"""
import csv
import io
import json
import sys
from typing import List, Optional

from processors.base import InputExample, decode_text, read_text_file, source_of

FORMATS = ("tsv", "csv", "jsonl")
_TEXT_A, _TEXT_B, _GUID = "text_a", "text_b", "guid"


def guess_format(path: str, text: str) -> str:
    """tsv, csv or jsonl from the file name (.csv, .jsonl/.json/.ndjson, else tsv); for stdin
    ("-") from the content: JSON lines if the first non-blank character is '{', else tsv."""
    if path == "-":
        return "jsonl" if text.lstrip().startswith("{") else "tsv"
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    return "tsv"


def read_input_text(path: str) -> str:
    """The text of `path`, or of stdin for "-" (decoded as processors.base.decode_text does)."""
    if path == "-":
        return decode_text(sys.stdin.buffer.read(), "<stdin>")
    return read_text_file(path)


def _from_table(path: str, text: str, fmt: str) -> List[InputExample]:
    quoting = csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t",
                        quotechar='"', quoting=quoting)
    header: Optional[List[str]] = None
    columns = {}
    examples = []
    try:
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            line = reader.line_num
            if header is None:
                header = [cell.strip().lower() for cell in fields]
                if _TEXT_A not in header:
                    raise ValueError("%s:%d: the header row %r names no text_a column (expected "
                                     "a header row text_a[, text_b][, guid])"
                                     % (path, line, fields))
                columns = {name: header.index(name) for name in (_TEXT_A, _TEXT_B, _GUID)
                           if name in header}
                continue
            if len(fields) != len(header):
                raise ValueError("%s:%d: expected %d %s-separated columns (as in the header "
                                 "row), found %d" % (path, line, len(header),
                                                     "comma" if fmt == "csv" else "tab",
                                                     len(fields)))
            index = len(examples)
            examples.append(InputExample(
                guid=fields[columns[_GUID]] if _GUID in columns else str(index),
                text_a=fields[columns[_TEXT_A]],
                text_b=fields[columns[_TEXT_B]] if _TEXT_B in columns else None,
                source=source_of(path, line)))
    except csv.Error as err:
        raise ValueError("%s:%d: %s" % (path, reader.line_num, err)) from None
    return examples


def _from_json_lines(path: str, text: str) -> List[InputExample]:
    examples = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError("%s:%d: not a JSON object (%s)" % (path, line_number, err)) from None
        if not isinstance(record, dict) or not isinstance(record.get(_TEXT_A), str):
            raise ValueError("%s:%d: expected a JSON object with a string \"text_a\" (and "
                             "optionally \"text_b\", \"guid\")" % (path, line_number))
        text_b = record.get(_TEXT_B)
        if text_b is not None and not isinstance(text_b, str):
            raise ValueError("%s:%d: \"text_b\" must be a string" % (path, line_number))
        index = len(examples)
        examples.append(InputExample(guid=str(record.get(_GUID, index)), text_a=record[_TEXT_A],
                                     text_b=text_b, source=source_of(path, line_number)))
    return examples


def read_raw_examples(path: str, input_format: str = "auto") -> List[InputExample]:
    """The examples of a tsv/csv/jsonl file (or stdin for "-"), in file order, without labels.

    Raises ValueError naming the file and line for a missing header column, a row with the
    wrong number of columns, a line that is not a JSON object with text_a.
    """
    if input_format not in FORMATS + ("auto",):
        raise ValueError("input format %r: expected auto, %s" % (input_format, ", ".join(FORMATS)))
    text = read_input_text(path)
    fmt = guess_format(path, text) if input_format == "auto" else input_format
    name = "<stdin>" if path == "-" else path
    if fmt == "jsonl":
        return _from_json_lines(name, text)
    return _from_table(name, text, fmt)

