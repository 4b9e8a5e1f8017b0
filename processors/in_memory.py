"""A task whose data is already in memory: what `fine_tune(train=..., dev=..., test=...)` reads.

Each split is a pandas DataFrame (columns `text_a`, optional `text_b`, `label`; a `guid` column
is used when present), a sequence of `(text_a, text_b, label)` tuples (`text_b` None for a
single sentence; a test split may leave the label out), or `InputExample`s. Labels are strings,
as every processor's: numbers become their text, and whole floats lose their ".0" ("1.0" ->
"1", as the `sim` task reads its files). The label list is given, or else taken from the
training data, sorted.

Every row is checked when the processor is made, so a bad row fails before any work, with a
message naming the split and the row (`train[3]: text_a is float (nan); expected a string`),
and a bad label with the same message as a file-based task (features.validate_labels), naming
the row through `InputExample.source`.
"""
import math
import numbers
from typing import Iterable, List, Optional, Sequence

from processors.base import DataProcessor, InputExample
from processors.sim import normalize_label

# The DataFrame columns read; anything else is ignored.
TEXT_A, TEXT_B, LABEL, GUID = "text_a", "text_b", "label", "guid"


def _is_missing(value) -> bool:
    """None, NaN (what pandas puts in an empty cell) or pandas' NA."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def label_text(value) -> str:
    """A label as the string every processor uses: 1, 1.0, np.int64(1), "1" and "1.0" -> "1"
    (numbers written as text are normalised as the sim task does; other text is stripped)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return normalize_label(str(value))


def _describe(value) -> str:
    return f"{type(value).__name__} ({value!r})" if not isinstance(value, str) else repr(value)


def _text(value, field: str, where: str, optional: bool) -> Optional[str]:
    if optional and _is_missing(value):
        return None
    if not isinstance(value, str):
        hint = (" (pandas reads an empty cell as NaN: read_csv(..., keep_default_na=False) "
                "keeps it as an empty text)" if _is_missing(value) else "")
        raise ValueError(f"{where}: {field} is {_describe(value)}; expected a string" + hint)
    return value


def _rows(data, split: str):
    """(where, guid, text_a, text_b, label or None) for every row of one split's data."""
    if hasattr(data, "columns") and hasattr(data, "itertuples"):  # a pandas DataFrame
        columns = [str(c) for c in data.columns]
        if TEXT_A not in columns:
            raise ValueError(
                f"{split}: the DataFrame has no column '{TEXT_A}' (columns: "
                f"{', '.join(columns) or 'none'}); expected {TEXT_A}, optionally {TEXT_B}, "
                f"and {LABEL}")
        for position, (index, row) in enumerate(data.iterrows()):
            where = f"{split}[{index!r}]" if index != position else f"{split}[{position}]"
            guid = row[GUID] if GUID in columns and not _is_missing(row[GUID]) else None
            yield (where, guid, row[TEXT_A], row[TEXT_B] if TEXT_B in columns else None,
                   row[LABEL] if LABEL in columns else None)
        return
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ValueError(f"{split}: expected a pandas DataFrame, a list of (text_a, text_b, "
                         f"label) tuples or a list of InputExample, got {type(data).__name__}")
    for position, item in enumerate(data):
        where = f"{split}[{position}]"
        if isinstance(item, InputExample):
            yield where, item.guid, item.text_a, item.text_b, item.label
        elif isinstance(item, str) and split == "test":
            yield where, None, item, None, None
        elif isinstance(item, (tuple, list)) and (len(item) == 3 or
                                                   (split == "test" and len(item) in (1, 2))):
            text_a, text_b, label = (list(item) + [None, None])[:3]
            yield where, None, text_a, text_b, label
        else:
            shape = (f"a {len(item)}-tuple" if isinstance(item, (tuple, list))
                     else _describe(item))
            expected = ("a (text_a, text_b, label) tuple, a (text_a, text_b) pair, a string or "
                        "an InputExample" if split == "test"
                        else "a (text_a, text_b, label) tuple or an InputExample")
            raise ValueError(f"{where}: expected {expected}, got {shape}")


def examples_from_data(data, split: str, needs_labels: bool) -> List[InputExample]:
    """One split's data (see the module docstring) as InputExamples with string labels; guids
    `<split>-<i>` unless the data gives them. ValueError naming the row for a text that is not a
    string, or a missing label where `needs_labels` (train and dev)."""
    examples = []
    for i, (where, guid, text_a, text_b, label) in enumerate(_rows(data, split)):
        text_a = _text(text_a, TEXT_A, where, optional=False)
        text_b = _text(text_b, TEXT_B, where, optional=True)
        if _is_missing(label):
            if needs_labels:
                raise ValueError(f"{where}: no label; every {split} row needs one")
            label = None
        else:
            label = label_text(label)
        examples.append(InputExample(guid=str(guid) if guid is not None else f"{split}-{i}",
                                     text_a=text_a, text_b=text_b, label=label, source=where))
    return examples


class InMemoryProcessor(DataProcessor):
    """A DataProcessor over data given in memory (data_dir is ignored). Splits left None are
    absent: asking for them is an error naming the keyword to give."""

    def __init__(self, train=None, dev=None, test=None, labels: Optional[Sequence] = None):
        self._splits = {
            "train": examples_from_data(train, "train", True) if train is not None else None,
            "dev": examples_from_data(dev, "dev", True) if dev is not None else None,
            "test": examples_from_data(test, "test", False) if test is not None else None,
        }
        if labels is not None:
            self._labels = [label_text(label) for label in labels]
            if len(set(self._labels)) != len(self._labels):
                raise ValueError(f"labels={list(labels)!r}: the same label is given twice")
        elif self._splits["train"] is not None:
            self._labels = sorted({example.label for example in self._splits["train"]})
        else:
            self._labels = None
        if self._labels is not None and len(self._labels) < 2:
            raise ValueError(f"labels {self._labels}: a classifier needs at least two labels "
                             "(the training data has only one; give labels= to name the others)")

    def _split(self, split: str) -> List[InputExample]:
        examples = self._splits[split]
        if examples is None:
            raise ValueError(f"no {split} data: pass {split}= (a DataFrame or a list of rows)")
        return examples

    def get_train_examples(self, data_dir) -> List[InputExample]:
        return self._split("train")

    def get_dev_examples(self, data_dir) -> List[InputExample]:
        return self._split("dev")

    def get_test_examples(self, data_dir) -> List[InputExample]:
        return self._split("test")

    def get_labels(self) -> List[str]:
        if self._labels is None:
            raise ValueError("no labels: pass labels=, training data, or a trained model folder")
        return list(self._labels)
