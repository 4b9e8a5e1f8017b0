"""The Unicode tables of the in-graph tokenizer (graph_tokenizer.GraphTokenizer), built on the host.

Everything that depends on Unicode properties comes from Python (`unicodedata`, `str.lower`,
`str.isspace` and the predicates of `tokenization.py`), evaluated for all 0x110000 code points
and stored as a two-stage page table: `record = records_of_page[page_start[cp >> 8] + (cp & 255)]`,
where a record says what the basic tokenizer does with one character (drop it, treat it as a
separator, isolate it as a CJK ideograph, and in lower-case mode its lower-cased, NFD-decomposed
characters without Mn marks, each with its punctuation flag), plus the cased / case-ignorable
classes of the Final_Sigma rule. NumPy only: the graph is graph_tokenizer's.
"""
import functools
import unicodedata
from typing import Dict, List, NamedTuple, Tuple

import numpy as np

import tokenization


NUM_CODE_POINTS = 0x110000
PAGE_BITS = 8
PAGE_SIZE = 1 << PAGE_BITS

# What the basic tokenizer does with a character (record column `kind`).
KIND_NORMAL = 0     # part of a word
KIND_DROPPED = 1    # removed by _clean_text (NUL, U+FFFD, control and format characters)
KIND_SEPARATOR = 2  # splits words (_is_whitespace, or str.isspace such as U+2028)
KIND_ISOLATED = 3   # a CJK ideograph: a word of its own (_tokenize_chinese_chars)

# Final_Sigma context of a character (record column `context`, lower-case mode only).
CONTEXT_OTHER = 0       # neither cased nor case-ignorable; also every word boundary
CONTEXT_CASED = 1
CONTEXT_IGNORABLE = 2   # skipped when looking for the cased neighbours of U+03A3

CAPITAL_SIGMA = 0x3A3
FINAL_SIGMA = 0x3C2
SELF = -1  # in `out`: the source character itself (lets most pages share their records)


class CharTables(NamedTuple):
    """Per-code-point behaviour of the basic tokenizer, as numpy arrays.

    Two-stage lookup: `records_of_page[page_start[cp >> 8] + (cp & 255)]` is the record id of
    code point cp (pages of 256 code points with the same records are stored once); the other
    arrays are indexed by record id ([num_records] or [num_records, max_out]).
    """
    page_start: np.ndarray       # [0x1100] int32, offset of the page in records_of_page
    records_of_page: np.ndarray  # [num_blocks * 256] uint16 (int32 beyond 65536 records)
    kind: np.ndarray             # [R] uint8, KIND_*
    context: np.ndarray          # [R] uint8, CONTEXT_* (only used in lower-case mode)
    count: np.ndarray            # [R] uint8, number of output characters (0..max_out)
    starters: np.ndarray         # [R] uint8, combining-class-0 characters in the full NFD
    out: np.ndarray              # [R, max_out] int32, output code points (SELF: the source)
    punct: np.ndarray            # [R, max_out] bool, output character is punctuation
    out_ccc: np.ndarray          # [R, max_out] uint8, combining class of each output
    out_run: np.ndarray          # [R, max_out] uint8, starters up to and including the output
    reorders: np.ndarray         # [R] bool, an output has a nonzero combining class

    def nbytes(self) -> int:
        return sum(array.nbytes for array in self)


def _final_sigma_contexts(chars: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(cased, case_ignorable) of each character, measured with Python's own `str.lower()`.

    CPython lowercases U+03A3 to final sigma when a cased character precedes it and none
    follows it, skipping case-ignorable characters both ways. So "A" + c + "Σ" ends in a final
    sigma iff c is case-ignorable or cased, and "AΣ" + c starts with "aς" iff c is
    case-ignorable or not cased. NUL (never in a word: it is dropped) separates the probes.
    """
    probes_before = ("A" + "\u03a3\x00A".join(chars) + "\u03a3").lower().split("\x00")
    probes_after = ("A\u03a3" + "\x00A\u03a3".join(chars)).lower().split("\x00")
    ignorable_or_cased = np.array([probe[-1] == "\u03c2" for probe in probes_before])
    ignorable_or_uncased = np.array([probe[1] == "\u03c2" for probe in probes_after])
    return (ignorable_or_cased & ~ignorable_or_uncased,
            ignorable_or_cased & ignorable_or_uncased)


def _record_arrays(records: Dict[tuple, int]) -> Dict[str, np.ndarray]:
    """Record tuples (kind, context, outputs, punct, starters, ccc, run) -> column arrays."""
    max_out = max(len(record[2]) for record in records)
    num_records = len(records)
    columns = {"kind": np.zeros(num_records, np.uint8),
               "context": np.zeros(num_records, np.uint8),
               "count": np.zeros(num_records, np.uint8),
               "starters": np.zeros(num_records, np.uint8),
               "out": np.zeros((num_records, max_out), np.int32),
               "punct": np.zeros((num_records, max_out), bool),
               "out_ccc": np.zeros((num_records, max_out), np.uint8),
               "out_run": np.zeros((num_records, max_out), np.uint8)}
    for (kind, context, outputs, punct, starters, ccc, run), index in records.items():
        n = len(outputs)
        columns["kind"][index] = kind
        columns["context"][index] = context
        columns["count"][index] = n
        columns["starters"][index] = starters
        columns["out"][index, :n] = outputs
        columns["punct"][index, :n] = punct
        columns["out_ccc"][index, :n] = ccc
        columns["out_run"][index, :n] = run
    columns["reorders"] = (columns["out_ccc"] != 0).any(axis=1)
    return columns


@functools.lru_cache(maxsize=2)
def build_char_tables(do_lower_case: bool) -> CharTables:
    """Evaluates the basic tokenizer's per-character steps on every code point.

    The predicates are tokenization.py's own (`_is_control`, `_is_whitespace`,
    `_is_chinese_char`, `_is_punctuation`), applied in bulk; only the characters that lower-casing
    or NFD change go through the per-character loop. Raises RuntimeError if this Python's Unicode
    data breaks an assumption the graph relies on (an output character that is whitespace).
    """
    # Surrogates cannot come out of UTF-8 decoding and NUL is dropped (and serves as the
    # separator of the bulk calls below): both get the "dropped" record.
    code_points = np.array([cp for cp in range(1, NUM_CODE_POINTS)
                            if not 0xD800 <= cp <= 0xDFFF])
    chars = list(map(chr, code_points.tolist()))
    if do_lower_case:
        # Per character: str.lower(), then NFD, for all characters in one call each (NUL keeps
        # them apart: lowercasing and NFD never move a character across a combining-class-0
        # one). A lone U+03A3 lowercases to the non-final sigma; the graph corrects it by context.
        lowered = "\x00".join(chars).lower().split("\x00")
        decomposed = unicodedata.normalize("NFD", "\x00".join(lowered)).split("\x00")
        cased, ignorable = _final_sigma_contexts(chars)
        context = np.where(ignorable, CONTEXT_IGNORABLE,
                           np.where(cased, CONTEXT_CASED, CONTEXT_OTHER))
        marks = np.array([category == "Mn" for category in map(unicodedata.category, chars)])
        unchanged = np.array([a == b for a, b in zip(decomposed, chars)]) & ~marks
        if len(decomposed) != len(chars):
            raise RuntimeError("a character's lowercase or NFD form contains NUL")
    else:
        decomposed = chars
        context = np.zeros(len(chars), np.int64)
        unchanged = np.ones(len(chars), bool)
    dropped = np.array([char == "\ufffd" or tokenization._is_control(char) for char in chars])
    separator = ~dropped & np.array([tokenization._is_whitespace(char) or char.isspace()
                                     for char in chars])
    kind = np.where(dropped, KIND_DROPPED, np.where(separator, KIND_SEPARATOR, np.where(
        list(map(tokenization._is_chinese_char, code_points.tolist())), KIND_ISOLATED,
        KIND_NORMAL)))
    context = np.where(kind == KIND_NORMAL, context, CONTEXT_OTHER)
    combining = np.array(list(map(unicodedata.combining, chars)))
    if not do_lower_case:
        combining[:] = 0  # no NFD in cased mode: nothing is ever reordered
    punct = np.array(list(map(tokenization._is_punctuation, chars)))

    records: Dict[tuple, int] = {}
    record_of_cp = np.zeros(NUM_CODE_POINTS, np.int64)
    # Dropped characters and separators have no outputs. A dropped character is invisible to
    # Final_Sigma (case-ignorable) and to NFD (no starter); a separator is a space in the
    # cleaned text, a word boundary and a combining-class-0 character that ends a run of marks.
    dropped_record = (KIND_DROPPED, CONTEXT_IGNORABLE, (), (), 0, (), ())
    record_of_cp[0] = record_of_cp[0xD800:0xE000] = records.setdefault(dropped_record, 0)
    record_of_cp[code_points[kind == KIND_DROPPED]] = records[dropped_record]
    record_of_cp[code_points[kind == KIND_SEPARATOR]] = records.setdefault(
        (KIND_SEPARATOR, CONTEXT_OTHER, (), (), 1, (), ()), len(records))
    # Characters that stay themselves: their record depends on a few flags only.
    simple = unchanged & (kind != KIND_DROPPED) & (kind != KIND_SEPARATOR)
    flags = (((kind * 4 + context) * 2 + punct) * 256 + combining)[simple]
    distinct, inverse = np.unique(flags, return_inverse=True)
    ids = []
    for flag in distinct.tolist():
        ccc = flag % 256
        k, c, p = flag // 256 // 2 // 4, flag // 256 // 2 % 4, flag // 256 % 2
        ids.append(records.setdefault((k, c, (SELF,), (bool(p),), int(ccc == 0), (ccc,),
                                       (int(ccc == 0),)), len(records)))
    record_of_cp[code_points[simple]] = np.array(ids)[inverse.reshape(-1)]
    # The others, one at a time: outputs are NFD's characters without Mn marks.
    for index in np.flatnonzero(~unchanged & (kind != KIND_DROPPED) & (kind != KIND_SEPARATOR)):
        outputs, out_punct, out_ccc, out_run = [], [], [], []
        starters = 0
        for out_char in decomposed[index]:
            ccc = unicodedata.combining(out_char)
            starters += ccc == 0
            if unicodedata.category(out_char) == "Mn":
                continue  # _run_strip_accents
            if out_char.isspace():
                raise RuntimeError("U+%04X becomes whitespace when lowercased/NFD"
                                   % code_points[index])
            outputs.append(ord(out_char))
            out_punct.append(tokenization._is_punctuation(out_char))
            out_ccc.append(ccc)
            out_run.append(starters)
        record = (int(kind[index]), int(context[index]), tuple(outputs), tuple(out_punct),
                  starters, tuple(out_ccc), tuple(out_run))
        record_of_cp[code_points[index]] = records.setdefault(record, len(records))

    columns = _record_arrays(records)
    pages = record_of_cp.reshape(-1, PAGE_SIZE)
    blocks, block_of_page = np.unique(pages, axis=0, return_inverse=True)
    record_dtype = np.uint16 if len(records) <= np.iinfo(np.uint16).max + 1 else np.int32
    return CharTables(page_start=block_of_page.reshape(-1).astype(np.int32) * PAGE_SIZE,
                      records_of_page=blocks.reshape(-1).astype(record_dtype), **columns)
