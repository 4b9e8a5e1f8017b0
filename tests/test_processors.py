"""processors/: built-in tasks against Google's original processors, the sim task's pandas
traps, bad-input messages, the registry and user modules."""
import json
import logging as py_logging
import os
import subprocess
import sys

import pytest

from bert_classifier.workflow import features
import processors
from processors import (DataProcessor, InputExample, get_processor, import_processor_module,
                        register_processor, registered_task_names)
from processors.base import read_text_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402

ORACLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "oracle_features.py")
GLUE_JOBS = [("mrpc", "train"), ("mrpc", "dev"), ("mrpc", "test"),
             ("cola", "train"), ("cola", "dev"), ("cola", "test"),
             ("mnli", "train"), ("mnli", "dev"), ("mnli", "test"),
             ("xnli", "train"), ("xnli", "dev")]


def _as_dicts(examples):
    return [{"guid": e.guid, "text_a": e.text_a, "text_b": e.text_b, "label": e.label}
            for e in examples]


@pytest.fixture(scope="module")
def glue_data(tmp_path_factory):
    """Fixture files for the four original tasks and the original processors' examples."""
    root = tmp_path_factory.mktemp("glue")
    counts = {}
    for task in ("mrpc", "cola", "mnli", "xnli"):
        counts[task] = getattr(fixtures, "write_" + task)(str(root / task))
    jobs = [[task, str(root / task), split] for task, split in GLUE_JOBS]
    jobs_path, out_path = root / "jobs.json", root / "out.json"
    jobs_path.write_text(json.dumps(jobs))
    subprocess.run([sys.executable, ORACLE, "examples", str(jobs_path), str(out_path)],
                   check=True, capture_output=True, text=True, timeout=300)
    original = json.loads(out_path.read_text(encoding="utf-8"))
    return root, counts, dict(zip(GLUE_JOBS, original))


@pytest.mark.slow
@pytest.mark.parametrize("task,split", GLUE_JOBS)
def test_builtin_processor_matches_original(glue_data, task, split):
    root, counts, original = glue_data
    processor = get_processor(task)
    examples = getattr(processor, "get_%s_examples" % split)(str(root / task))
    assert len(examples) == counts[task][split]
    assert _as_dicts(examples) == original[(task, split)]
    for e in examples:
        path, line = e.source.rsplit(":", 1)
        assert os.path.isfile(path) and int(line) >= 1


@pytest.mark.slow
def test_glue_quirks(glue_data):
    root, _, _ = glue_data
    mrpc = get_processor("mrpc").get_train_examples(str(root / "mrpc"))
    assert mrpc[0].guid == "train-1" and mrpc[0].source.endswith("train.tsv:2")
    cola_train = get_processor("cola").get_train_examples(str(root / "cola"))
    assert cola_train[0].guid == "train-0" and cola_train[0].text_b is None  # no header
    cola_test = get_processor("cola").get_test_examples(str(root / "cola"))
    assert cola_test[0].guid == "test-1" and {e.label for e in cola_test} == {"0"}
    mnli_test = get_processor("mnli").get_test_examples(str(root / "mnli"))
    assert {e.label for e in mnli_test} == {"contradiction"} and mnli_test[0].guid == "test-0"
    xnli = get_processor("xnli")
    train = xnli.get_train_examples(str(root / "xnli"))
    assert "contradictory" not in {e.label for e in train}
    assert {e.label for e in train} == set(xnli.get_labels())
    with pytest.raises(NotImplementedError):
        xnli.get_test_examples(str(root / "xnli"))


def test_read_tsv_keeps_quotes_and_long_fields(tmp_path):
    long_field = "x" * 200_000  # beyond csv's default 131,072-character limit
    path = tmp_path / "a.tsv"
    path.write_text('say "hi\tit\'s\n%s\tb\n' % long_field, encoding="utf-8")
    rows = DataProcessor._read_tsv(str(path))
    assert rows == [['say "hi', "it's"], [long_field, "b"]]


# ---- bad input ----

def test_unknown_task_message():
    with pytest.raises(ValueError) as err:
        get_processor("NoSuchTask")
    assert str(err.value) == "Task not found: NoSuchTask"


def test_missing_file_names_path(tmp_path):
    with pytest.raises(ValueError, match="train.tsv"):
        get_processor("mrpc").get_train_examples(str(tmp_path))
    with pytest.raises(ValueError) as err:
        get_processor("sim").get_dev_examples(str(tmp_path))
    assert "dev.tsv" in str(err.value) and "dev.csv" in str(err.value)


def test_too_few_columns_names_file_and_line(tmp_path):
    fixtures.write_mrpc(str(tmp_path))
    path = tmp_path / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = "1\t100\tonly three columns"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        get_processor("mrpc").get_train_examples(str(tmp_path))
    assert "%s:4" % path in str(err.value) and "5" in str(err.value)


def test_sim_short_row_names_file_and_line(tmp_path):
    (tmp_path / "train.csv").write_text("text_a,text_b,label\na,b,1\nonly,1\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        get_processor("sim").get_train_examples(str(tmp_path))
    assert "%s:3" % (tmp_path / "train.csv") in str(err.value)


def test_unknown_label_one_error_with_file_row_value_and_labels(tmp_path):
    fixtures.write_mrpc(str(tmp_path))
    path = tmp_path / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    for i in (5, 9):
        lines[i] = "2" + lines[i][1:]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    processor = get_processor("mrpc")
    examples = processor.get_train_examples(str(tmp_path))
    with pytest.raises(ValueError) as err:
        features.validate_labels(examples, processor.get_labels())
    message = str(err.value)
    assert "%s:6" % path in message and "'2'" in message and "['0', '1']" in message
    assert "1 more row" in message and "\n" not in message
    features.validate_labels(processor.get_dev_examples(str(tmp_path)), processor.get_labels())


def test_unknown_label_without_source_names_guid():
    with pytest.raises(ValueError, match=r"example dev-3: label 'x'"):
        features.validate_labels([InputExample("dev-3", "a", label="x")], ["0", "1"])


def test_undecodable_bytes_warn_with_count_and_first_line(tmp_path, caplog):
    path = tmp_path / "train.tsv"
    path.write_bytes("gj04\t1\t\tfine\n".encode() + b"gj04\t0\t*\tbad \xff\xfe byte\n" +
                     b"gj04\t1\t\tagain \xc3\n")
    with caplog.at_level(py_logging.WARNING):
        examples = get_processor("cola").get_train_examples(str(tmp_path))
    assert [e.text_a for e in examples] == ["fine", "bad  byte", "again "]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == py_logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0] and "3 byte(s)" in warnings[0] and "line 2" in warnings[0]


def test_read_text_strips_bom(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b"\xef\xbb\xbfa\tb\n")
    assert read_text_file(str(path)) == "a\tb\n"


# ---- sim ----

@pytest.mark.parametrize("ext", ["tsv", "csv"])
@pytest.mark.parametrize("header", [True, False])
def test_sim_fixture_round_trip(tmp_path, ext, header):
    counts = fixtures.write_sim(str(tmp_path), ext=ext, header=header)
    processor = get_processor("sim")
    train = processor.get_train_examples(str(tmp_path))
    test = processor.get_test_examples(str(tmp_path))
    assert len(train) == counts["train"] and len(test) == counts["test"]
    assert [e.guid for e in train[:3]] == ["train-0", "train-1", "train-2"]
    a, b = fixtures._pair(0, fixtures.SENTENCES)
    assert (train[0].text_a, train[0].text_b) == (a, b)
    assert {e.label for e in train} == {"0", "1"} and {e.label for e in test} == {"0"}
    texts = {e.text_a for e in train} | {e.text_b for e in train}
    assert {"NA", "null", "None", "nan", "Unbalanced \"quote at the start"} <= texts
    features.validate_labels(train, processor.get_labels())


def _sim(tmp_path, name, content, split="train"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return getattr(get_processor("sim"), "get_%s_examples" % split)(str(tmp_path))


def test_sim_tsv_traps(tmp_path):
    content = ("\ufeffTEXT_A\tText_B\tLabel\r\n"
               "NA\tnull\t1.0\r\n"
               "\r\n"
               "He said \"hi\tnan\t0\r\n"
               "  spaced  \tNone\t 1 \r\n"
               "\r\n")
    examples = _sim(tmp_path, "train.tsv", content)
    assert [(e.guid, e.text_a, e.text_b, e.label) for e in examples] == [
        ("train-0", "NA", "null", "1"),
        ("train-1", 'He said "hi', "nan", "0"),
        ("train-2", "  spaced  ", "None", "1")]
    assert [e.source.rsplit(":", 1)[1] for e in examples] == ["2", "4", "5"]


def test_sim_csv_quoting_and_numeric_labels(tmp_path):
    content = ('label,text_b,text_a\n'
               '1,"b, with comma","a ""quoted"""\n'
               '0.0,"multi\nline",plain\n'
               '1,NA,None\n')
    examples = _sim(tmp_path, "train.csv", content)
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ('a "quoted"', "b, with comma", "1"), ("plain", "multi\nline", "0"),
        ("None", "NA", "1")]
    assert examples[2].source.endswith("train.csv:5")


def test_sim_headerless_and_test_without_labels(tmp_path):
    train = _sim(tmp_path, "train.tsv", "a\tb\t1\nc\td\t0\n")
    assert [(e.text_a, e.text_b, e.label) for e in train] == [("a", "b", "1"), ("c", "d", "0")]
    test = _sim(tmp_path, "test.tsv", "x\ty\nnull\tNA\n", split="test")
    assert [(e.guid, e.text_a, e.text_b, e.label) for e in test] == [
        ("test-0", "x", "y", "0"), ("test-1", "null", "NA", "0")]


def test_sim_both_extensions_is_an_error(tmp_path):
    (tmp_path / "train.tsv").write_text("a\tb\t1\n")
    (tmp_path / "train.csv").write_text("a,b,1\n")
    with pytest.raises(ValueError) as err:
        get_processor("sim").get_train_examples(str(tmp_path))
    assert str(tmp_path / "train.tsv") in str(err.value)
    assert str(tmp_path / "train.csv") in str(err.value)


def test_sim_bad_label_caught_before_training(tmp_path):
    examples = _sim(tmp_path, "train.tsv", "text_a\ttext_b\tlabel\na\tb\t1\nc\td\tyes\n")
    with pytest.raises(ValueError) as err:
        features.validate_labels(examples, ["0", "1"])
    assert "%s:3" % (tmp_path / "train.tsv") in str(err.value) and "'yes'" in str(err.value)


def test_sim_header_missing_label_column(tmp_path):
    with pytest.raises(ValueError, match="label"):
        _sim(tmp_path, "train.tsv", "text_a\ttext_b\nx\ty\n")


def test_sim_short_first_row_is_blamed_on_line_1(tmp_path):
    """The expected column count is the one most rows have, not the first row's."""
    rows = "a\tb\n" + "".join("x%d\ty%d\t%d\n" % (i, i, i % 2) for i in range(5))
    with pytest.raises(ValueError, match=r"train.tsv:1: expected 3 columns \(as 5 of the 6 rows "
                                         r"have\), found 2$"):
        _sim(tmp_path, "train.tsv", rows)
    header = "text_a\ttext_b\n" + "".join("x%d\ty%d\t%d\n" % (i, i, i % 2) for i in range(3))
    with pytest.raises(ValueError, match=r"train.tsv:1: expected 3 columns"):
        _sim(tmp_path, "train.tsv", header)


def test_sim_unbalanced_quote_is_reported_where_it_opens(tmp_path):
    lines = ["text_a,text_b,label"] + ["sentence %d,other %d,%d" % (i, i, i % 2)
                                       for i in range(30)]
    lines[3] = '"Unbalanced quote at the start,other,1'
    with pytest.raises(ValueError) as err:
        _sim(tmp_path, "train.csv", "\n".join(lines) + "\n")
    message = str(err.value)
    assert message.startswith("%s:4: a double quote opens a field here that runs to line 31"
                              % (tmp_path / "train.csv"))
    assert "closing quote is missing" in message


def test_sim_quoted_field_over_lines_is_read_with_a_warning(tmp_path, caplog):
    text = 'text_a,text_b,label\n"two\nlines",b,1\nc,d,0\n'
    with caplog.at_level(py_logging.WARNING):
        examples = _sim(tmp_path, "train.csv", text)
    assert [e.text_a for e in examples] == ["two\nlines", "c"]
    assert [e.source for e in examples] == ["%s:2" % (tmp_path / "train.csv"),
                                            "%s:4" % (tmp_path / "train.csv")]
    assert any("train.csv:2: a quoted field runs over lines 2-3" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("encoding,name", [("utf-16", "UTF-16"), ("utf-16-be", None),
                                           ("utf-32", "UTF-32")])
def test_utf16_and_utf32_files_are_named_not_misread(tmp_path, encoding, name):
    text = "text_a\ttext_b\tlabel\nCafé au lait\tun café\t1\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        assert not data.startswith(b"\xfe\xff")  # no byte-order mark: found by its NUL bytes
    (tmp_path / "train.tsv").write_bytes(data)
    with pytest.raises(ValueError) as err:
        get_processor("sim").get_train_examples(str(tmp_path))
    message = str(err.value)
    if name:
        assert message == ("%s is %s (it starts with a %s byte-order mark), not UTF-8: pass "
                           "--encoding=%s or re-encode the file as UTF-8"
                           % (tmp_path / "train.tsv", name, name, name.lower()))
    else:
        assert "is not UTF-8" in message and "UTF-16 without a byte-order mark" in message


@pytest.fixture
def restore_encoding():
    yield
    processors.set_input_encoding("utf-8")


def test_encoding_reaches_builtin_and_user_processors(tmp_path, restore_encoding):
    """set_input_encoding (run_classifier --encoding) is read by read_text_file, so by the
    built-in processors and by a processor written for the original (`_read_tsv`)."""
    (tmp_path / "train.tsv").write_bytes("gj04\t1\t\tCafé naïve\n".encode("cp1252"))

    class OriginalStyle(DataProcessor):
        def get_train_examples(self, data_dir):
            return [InputExample("train-%d" % i, row[3], label=row[1])
                    for i, row in enumerate(self._read_tsv(data_dir + "/train.tsv"))]

    assert processors.input_encoding() == "utf-8"
    processors.set_input_encoding("cp1252")
    assert get_processor("cola").get_train_examples(str(tmp_path))[0].text_a == "Café naïve"
    assert OriginalStyle().get_train_examples(str(tmp_path))[0].text_a == "Café naïve"
    # Decoded strictly: a byte that is not in the encoding names file, line and encoding.
    (tmp_path / "dev.tsv").write_bytes(b"gj04\t1\t\tok\ngj04\t1\t\tbad \xff\n")
    processors.set_input_encoding("ascii")
    with pytest.raises(ValueError, match=r"dev.tsv:2: not valid ascii .*pass the file's encoding "
                                         r"with --encoding"):
        get_processor("cola").get_dev_examples(str(tmp_path))
    with pytest.raises(ValueError, match="--encoding=nope: unknown encoding"):
        processors.set_input_encoding("nope")
    assert processors.input_encoding() == "ascii"  # unchanged by the refused name


def test_utf16_with_encoding_flag_reads(tmp_path, restore_encoding):
    text = "text_a\ttext_b\tlabel\nCafé au lait\tun café\t1\n"
    (tmp_path / "train.tsv").write_bytes(text.encode("utf-16"))
    processors.set_input_encoding("utf-16")
    examples = get_processor("sim").get_train_examples(str(tmp_path))
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [("Café au lait", "un café", "1")]


# ---- registry and user modules ----

def test_registry_names_case_insensitive():
    assert {"cola", "mnli", "mrpc", "xnli", "sim"} <= set(registered_task_names())
    assert isinstance(get_processor("MRPC"), processors.MrpcProcessor)
    assert isinstance(get_processor("Sim"), processors.SimProcessor)
    assert get_processor("cola") is not get_processor("cola")  # a new instance each time


def test_register_processor_checks():
    @register_processor("Test_Registry_Task")
    class MyProcessor(DataProcessor):
        def get_labels(self):
            return ["a", "b"]

    assert get_processor("test_registry_task").get_labels() == ["a", "b"]
    with pytest.raises(ValueError, match="already registered"):
        @register_processor("mrpc")
        class Other(DataProcessor):
            pass
    with pytest.raises(ValueError, match="not a DataProcessor"):
        register_processor("notaprocessor")(object)


USER_MODULE = '''
import os
from processors import DataProcessor, InputExample, register_processor


@register_processor("{name}")
class SentimentProcessor(DataProcessor):
  """Reads data_dir/<split>.txt lines "label<TAB>sentence"."""

  def _read(self, data_dir, split):
    rows = self._read_tsv(os.path.join(data_dir, split + ".txt"))
    return [InputExample(guid="%s-%d" % (split, i), text_a=row[1], label=row[0])
            for i, row in enumerate(rows)]

  def get_train_examples(self, data_dir):
    return self._read(data_dir, "train")

  def get_labels(self):
    return ["neg", "pos"]
'''


def test_user_module_by_path(tmp_path):
    module_path = tmp_path / "my_path_tasks.py"
    module_path.write_text(USER_MODULE.format(name="UserPathTask"))
    (tmp_path / "train.txt").write_text("pos\tgreat film\nneg\tdull\n")
    import_processor_module(str(module_path))
    import_processor_module(str(module_path))  # a second import is harmless
    processor = get_processor("userpathtask")
    examples = processor.get_train_examples(str(tmp_path))
    assert [(e.guid, e.text_a, e.label) for e in examples] == [
        ("train-0", "great film", "pos"), ("train-1", "dull", "neg")]


def test_user_module_by_name_from_cwd(tmp_path, monkeypatch):
    (tmp_path / "my_named_tasks.py").write_text(USER_MODULE.format(name="usernametask"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    module = import_processor_module("my_named_tasks")
    assert module.__name__ == "my_named_tasks"
    assert get_processor("UserNameTask").get_labels() == ["neg", "pos"]
    with pytest.raises(ValueError, match="no_such_module_xyz"):
        import_processor_module("no_such_module_xyz")
    with pytest.raises(ValueError, match="not found"):
        import_processor_module(str(tmp_path / "missing.py"))
