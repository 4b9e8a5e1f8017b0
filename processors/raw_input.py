"""Texts to classify, read from a file or stdin without a task processor (predict.py's input).

Formats:
  * tsv / csv: a header row naming the columns `text_a` (required), `text_b` and `guid`
    (optional), any order, any case; then one example a row. A .tsv is one example a line and
    keeps quote characters as text (as the original's _read_tsv, csv.reader with
    quotechar=None). A quoted text that spans lines, as pandas and spreadsheets write one, is
    an error naming its line (instead of its lines becoming several examples): write such a
    file as .csv or JSON lines, where a quoted multi-line text stays one text. A .tsv whose
    header is comma-separated (or a .csv whose header is tab-separated) is refused with the
    hint to read it in the other format. A .csv uses standard double-quote quoting.
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


FORMAT_NAMES = {"tsv": "tab-separated values (quotes are text, one example a line)",
                "csv": "comma-separated values (double-quote quoting)",
                "jsonl": "JSON lines"}


def format_from_name(path: str, input_format: str = "auto") -> Optional[str]:
    """The format a file is read in, decided before reading it: `input_format` unless "auto",
    else by the file name (guess_format); None for stdin with "auto" (decided by its content)."""
    if input_format not in FORMATS + ("auto",):
        raise ValueError("input format %r: expected auto, %s" % (input_format, ", ".join(FORMATS)))
    if input_format != "auto":
        return input_format
    return None if path == "-" else guess_format(path, "")


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
    spans_lines: Optional[bool] = None  # computed at the first row that opens a quote
    try:
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            line = reader.line_num
            if header is None:
                header = [cell.strip().lower() for cell in fields]
                if _TEXT_A not in header:
                    raise ValueError(_header_problem(path, line, fields, fmt))
                columns = {name: header.index(name) for name in (_TEXT_A, _TEXT_B, _GUID)
                           if name in header}
                continue
            # A field opening a quote that closes on a later line is a quoted text spanning
            # lines (as pandas writes one): refused, not read as several examples. A lone
            # quote character in a file without such texts stays text.
            column = _open_quote_column(fields) if fmt == "tsv" else None
            if column is not None:
                if spans_lines is None:
                    spans_lines = _quoted_text_spans_lines(text)
                if spans_lines:
                    raise ValueError(
                        "%s:%d: column %d is a quoted text that spans lines: a .tsv is read one "
                        "example a line with quotes kept as text (as the original's _read_tsv), "
                        "so its lines would become several examples; put each text on one "
                        "line, or write the file as .csv (pandas: df.to_csv('texts.csv', "
                        "index=False)) or JSON lines, where a quoted multi-line text stays one "
                        "text" % (path, line, column))
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


def _header_problem(path: str, line: int, fields: List[str], fmt: str) -> str:
    """The message for a header row without text_a; names the other separator when the
    header is one cell holding it (a comma-separated .tsv, a tab-separated .csv)."""
    other = {"tsv": (",", "comma", "csv", ".csv"), "csv": ("\t", "tab", "tsv", ".tsv")}[fmt]
    if len(fields) == 1 and other[0] in fields[0] and _TEXT_A in [
            cell.strip().lower() for cell in fields[0].split(other[0])]:
        return ("%s:%d: the header row %r is %s-separated, but this file is read as %s: pass "
                "--input_format=%s or name the file %s"
                % (path, line, fields[0], other[1], FORMAT_NAMES[fmt], other[2], other[3]))
    return ("%s:%d: the header row %r names no text_a column (expected a header row "
            "text_a[, text_b][, guid], %s)" % (path, line, fields, FORMAT_NAMES[fmt]))


def _quoted_text_spans_lines(text: str) -> bool:
    """Whether `text`, read as tab-separated with double-quote quoting (as pandas and
    spreadsheets write a .tsv), holds a quoted field with a line break in it."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"',
                        strict=True)
    try:
        return any("\n" in field or "\r" in field for fields in reader for field in fields)
    except csv.Error:
        return False


def _open_quote_column(fields: List[str]) -> Optional[int]:
    """The 1-based column of the first field that opens a double quote it does not close."""
    for number, field in enumerate(fields, start=1):
        if field.startswith('"') and field.count('"') % 2 == 1:
            return number
    return None


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
    fmt = format_from_name(path, input_format)
    text = read_input_text(path)
    fmt = fmt or guess_format(path, text)
    name = "<stdin>" if path == "-" else path
    if fmt == "jsonl":
        return _from_json_lines(name, text)
    return _from_table(name, text, fmt)

