"""The original's four tasks: CoLA, MNLI, MRPC and XNLI, reading the GLUE/XNLI files as-is.

Each reproduces the original processor exactly (files, columns, guid formats, which files
have a header line, dummy test labels). Differences are only in failure cases: a row with
too few columns raises a ValueError naming file and line (the original raised IndexError),
and fully blank lines are skipped (the original crashed on them) without renumbering the rest.
"""
import os
from typing import List, Tuple

from processors.base import (DataProcessor, InputExample, read_tsv_rows, require_columns,
                             source_of)
from processors.registry import register_processor

_NLI_LABELS = ["contradiction", "entailment", "neutral"]


def _numbered_rows(path: str) -> List[Tuple[int, int, List[str]]]:
    """(row index as the original counted it, file line, fields) for each non-blank row."""
    rows = read_tsv_rows(path)
    return [(i, line, fields) for i, (line, fields) in enumerate(rows) if fields]


@register_processor("xnli")
class XnliProcessor(DataProcessor):
    """XNLI: MultiNLI machine-translated train set plus the XNLI dev set, one language.

    The language is "zh", set in `__init__` as in the original; override `self.language` in a
    subclass for another one. There is no test set (`get_test_examples` is not implemented).
    """

    def __init__(self):
        self.language = "zh"

    def get_train_examples(self, data_dir: str) -> List[InputExample]:
        """Rows of multinli/multinli.train.<language>.tsv after its header: premise, hypo, label."""
        path = os.path.join(data_dir, "multinli", "multinli.train.%s.tsv" % self.language)
        examples = []
        for i, line, fields in _numbered_rows(path):
            if i == 0:
                continue
            require_columns(fields, 3, path, line)
            label = fields[2]
            # The machine-translated file spells one class differently from the dev set.
            if label == "contradictory":
                label = "contradiction"
            examples.append(InputExample(guid="train-%d" % i, text_a=fields[0], text_b=fields[1],
                                         label=label, source=source_of(path, line)))
        return examples

    def get_dev_examples(self, data_dir: str) -> List[InputExample]:
        """Rows of xnli.dev.tsv in this language: columns 6/7 are the texts, 1 the gold label."""
        path = os.path.join(data_dir, "xnli.dev.tsv")
        examples = []
        for i, line, fields in _numbered_rows(path):
            if i == 0:
                continue
            if fields[0] != self.language:
                continue
            require_columns(fields, 8, path, line)
            examples.append(InputExample(guid="dev-%d" % i, text_a=fields[6], text_b=fields[7],
                                         label=fields[1], source=source_of(path, line)))
        return examples

    def get_labels(self) -> List[str]:
        """contradiction, entailment, neutral."""
        return list(_NLI_LABELS)


@register_processor("mnli")
class MnliProcessor(DataProcessor):
    """MultiNLI (GLUE): train.tsv, dev_matched.tsv, test_matched.tsv, each with a header."""

    def get_train_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of train.tsv; guid "train-<index column>"."""
        return self._create_examples(os.path.join(data_dir, "train.tsv"), "train")

    def get_dev_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of dev_matched.tsv; guid "dev_matched-<index column>"."""
        return self._create_examples(os.path.join(data_dir, "dev_matched.tsv"), "dev_matched")

    def get_test_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of test_matched.tsv with the dummy label "contradiction"; guid "test-<index>"."""
        return self._create_examples(os.path.join(data_dir, "test_matched.tsv"), "test")

    def get_labels(self) -> List[str]:
        """contradiction, entailment, neutral."""
        return list(_NLI_LABELS)

    def _create_examples(self, path: str, set_type: str) -> List[InputExample]:
        """Columns: 0 index, 8 sentence1, 9 sentence2, last = gold label (not in test)."""
        examples = []
        for i, line, fields in _numbered_rows(path):
            if i == 0:
                continue
            require_columns(fields, 10 if set_type == "test" else 11, path, line)
            label = "contradiction" if set_type == "test" else fields[-1]
            examples.append(InputExample(guid="%s-%s" % (set_type, fields[0]), text_a=fields[8],
                                         text_b=fields[9], label=label,
                                         source=source_of(path, line)))
        return examples


@register_processor("mrpc")
class MrpcProcessor(DataProcessor):
    """MRPC (GLUE): train.tsv, dev.tsv, test.tsv, each with a header line."""

    def get_train_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of train.tsv; guid "train-<line index>" (the first data row is 1)."""
        return self._create_examples(os.path.join(data_dir, "train.tsv"), "train")

    def get_dev_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of dev.tsv; guid "dev-<line index>"."""
        return self._create_examples(os.path.join(data_dir, "dev.tsv"), "dev")

    def get_test_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of test.tsv with the dummy label "0"."""
        return self._create_examples(os.path.join(data_dir, "test.tsv"), "test")

    def get_labels(self) -> List[str]:
        """"0" (not paraphrase), "1" (paraphrase)."""
        return ["0", "1"]

    def _create_examples(self, path: str, set_type: str) -> List[InputExample]:
        """Columns: 0 Quality (label), 3 #1 String, 4 #2 String."""
        examples = []
        for i, line, fields in _numbered_rows(path):
            if i == 0:
                continue
            require_columns(fields, 5, path, line)
            label = "0" if set_type == "test" else fields[0]
            examples.append(InputExample(guid="%s-%s" % (set_type, i), text_a=fields[3],
                                         text_b=fields[4], label=label,
                                         source=source_of(path, line)))
        return examples


@register_processor("cola")
class ColaProcessor(DataProcessor):
    """CoLA (GLUE): train.tsv and dev.tsv have no header; test.tsv has "index\\tsentence"."""

    def get_train_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of train.tsv; guid "train-<line index from 0>"."""
        return self._create_examples(os.path.join(data_dir, "train.tsv"), "train")

    def get_dev_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of dev.tsv; guid "dev-<line index from 0>"."""
        return self._create_examples(os.path.join(data_dir, "dev.tsv"), "dev")

    def get_test_examples(self, data_dir: str) -> List[InputExample]:
        """Examples of test.tsv (after its header) with the dummy label "0"."""
        return self._create_examples(os.path.join(data_dir, "test.tsv"), "test")

    def get_labels(self) -> List[str]:
        """"0" (unacceptable), "1" (acceptable)."""
        return ["0", "1"]

    def _create_examples(self, path: str, set_type: str) -> List[InputExample]:
        """train/dev columns: 1 label, 3 sentence; test columns: 0 index, 1 sentence."""
        examples = []
        for i, line, fields in _numbered_rows(path):
            if set_type == "test":
                # Only the test file starts with a header line.
                if i == 0:
                    continue
                require_columns(fields, 2, path, line)
                text_a, label = fields[1], "0"
            else:
                require_columns(fields, 4, path, line)
                text_a, label = fields[3], fields[1]
            examples.append(InputExample(guid="%s-%s" % (set_type, i), text_a=text_a, text_b=None,
                                         label=label, source=source_of(path, line)))
        return examples
