"""Using a trained model with bad input (issue 24): every check before the work, every error one
line naming the user's path or item, Ctrl-C one line with the outputs intact, empty input said,
and the README's first command shape (a relative --output_dir, a rerun into it) logging no
warning at all."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import e2e_util
import fixtures
from e2e_util import REPO_ROOT, read_tsv, run_script

sys.path.insert(0, REPO_ROOT)

from bert_classifier.api import inference  # noqa: E402
from bert_classifier.core import files  # noqa: E402

# A line of absl (`W1207 12:00:00.000000 123 file.py:1] ...`) or of TensorFlow's C++ logger
# (`2026-12-07 12:00:00.000000: E external/...`) at WARNING level or above.
_WARNING_LINE = re.compile(r"^(?:[WEF]\d{4} \d|\d{4}-\d\d-\d\d [\d:.]+: [WEF] )")

# Each case runs a script or trains the fixture model in a subprocess.
pytestmark = pytest.mark.slow


def _alarming_lines(stderr: str):
    """The lines a clean run must not print: warnings, errors, tracebacks, Python warnings."""
    return [line for line in stderr.splitlines()
            if _WARNING_LINE.match(line) or "Traceback" in line or "Warning:" in line
            or "cuInit" in line]


def _one_error_line(proc, script="predict.py"):
    """The script failed with exit status 1, one `script: error: ...` line and no traceback;
    returns that line."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(script + ": error: "), last
    return last


@pytest.fixture(scope="module")
def trained(trained_sim):
    return trained_sim


def _predict(trained, *args, stdin=None, check=False, env=None):
    argv = [sys.executable, os.path.join(REPO_ROOT, "predict.py"),
            "--model_dir=" + trained["output_dir"], *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300,
                          env=e2e_util.subprocess_env(env), cwd=REPO_ROOT, check=check)


# ---------------------------------------------------------------------------------------------
# The README's first command, shaped: relative --output_dir, train + eval + predict, a rerun.
# ---------------------------------------------------------------------------------------------
def test_readme_command_shape_logs_no_warning(tmp_path):
    # As `run_classifier.py --flagfile=examples/sim_bbc.flags` from the repository: every path
    # relative to the working directory, the output_dir too.
    tiny = e2e_util.make_tiny_bert(str(tmp_path / "pretrained" / "tiny"))
    fixtures.write_sim(str(tmp_path / "data" / "sim"), n_test=6)
    flags = tmp_path / "sim.flags"
    flags.write_text("\n".join([
        "--task_name=sim", "--do_train=true", "--do_eval=true", "--do_predict=true",
        "--data_dir=data/sim", "--vocab_file=pretrained/tiny/vocab.txt",
        "--bert_config_file=pretrained/tiny/bert_config.json",
        "--init_checkpoint=pretrained/tiny/bert_model.ckpt", "--max_seq_length=32",
        "--train_batch_size=8", "--eval_batch_size=8", "--predict_batch_size=8",
        "--learning_rate=1e-3", "--num_train_epochs=1.0", "--seed=12345",
        "--num_featurize_workers=1", "--output_dir=output/sim"]) + "\n")
    assert os.path.isabs(tiny["vocab"])
    command = [sys.executable, os.path.join(REPO_ROOT, "run_classifier.py"),
               "--flagfile=sim.flags"]
    env = e2e_util.subprocess_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # what a user's shell has: script_env's default
    for run in ("first", "rerun"):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env,
                              cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert _alarming_lines(proc.stderr) == [], (run, _alarming_lines(proc.stderr))
        assert "Evaluating checkpoint output/sim/model.ckpt-3" in proc.stderr, run
        assert "Predicting with checkpoint output/sim/model.ckpt-3" in proc.stderr, run
    out = tmp_path / "output" / "sim"
    assert (out / "checkpoint").read_text().splitlines()[0] == \
        'model_checkpoint_path: "model.ckpt-3"'
    assert len((out / "test_results.tsv").read_text().splitlines()) == 6


# ---------------------------------------------------------------------------------------------
# predict.py: the output path, checked before the work.
# ---------------------------------------------------------------------------------------------
def test_output_file_folder_is_made(trained, tmp_path):
    out = tmp_path / "no" / "such" / "pred.tsv"
    proc = _predict(trained, "--text_a=hello", "--output_file=%s" % out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_tsv(out.read_text())[0] == ["guid", "label", "0", "1"]


@pytest.mark.parametrize("case", ["directory", "trailing_slash", "under_a_file"])
def test_unwritable_output_file_is_refused_before_the_work(trained, tmp_path, case):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    (tmp_path / "adir").mkdir()
    path = {"directory": str(tmp_path / "adir"), "trailing_slash": str(tmp_path / "new") + "/",
            "under_a_file": str(a_file / "pred.tsv")}[case]
    proc = _predict(trained, "--input_file=" + trained["test_file"], "--output_file=" + path)
    line = _one_error_line(proc)
    assert ("--output_file=%s" % path) in line and ".tmp-" not in line, line
    assert "Predicting" not in proc.stderr and "Restoring" not in proc.stderr  # before the work
    assert a_file.read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["a_file", "adir"]
    assert os.listdir(tmp_path / "adir") == []


def test_failed_write_names_the_users_path(tmp_path):
    # A write that fails after the checks (the folder went away): the user's path, one line,
    # no temporary file left.
    path = str(tmp_path / "gone" / "pred.tsv")
    with pytest.raises(OSError) as error:
        files.write_file(path, "guid\tlabel\n")
    message = str(error.value)
    assert message.startswith("cannot write %s: " % path) and ".tmp-" not in message, message
    assert "\n" not in message
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# predict.py: the input's format, quotes, empty input.
# ---------------------------------------------------------------------------------------------
def test_format_is_stated_before_reading(trained):
    proc = _predict(trained, "--input_file=" + trained["test_file"], check=True)
    reading = proc.stderr.index("Reading %s as tab-separated values (quotes are text, one "
                                "example a line)" % trained["test_file"])
    assert reading < proc.stderr.index("Predicting 13 example(s)")


def test_comma_separated_tsv_names_the_way_out(trained, tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("text_a,text_b\nfirst,second\n")
    line = _one_error_line(_predict(trained, "--input_file=%s" % path))
    assert "pairs.tsv:1: the header row 'text_a,text_b' is comma-separated" in line, line
    assert "read as tab-separated values" in line
    assert "--input_format=csv" in line and ".csv" in line
    # ... and the way out works.
    proc = _predict(trained, "--input_file=%s" % path, "--input_format=csv", check=True)
    assert len(read_tsv(proc.stdout)) == 2


@pytest.mark.parametrize("columns", [["text_a"], ["text_a", "text_b"]])
def test_quoted_multiline_text_is_never_two_rows(trained, tmp_path, columns):
    # As pandas writes a table whose second text holds a line break.
    frame = pd.DataFrame({"text_a": ["first text", "second\ntext", "third text"]})
    if "text_b" in columns:
        frame["text_b"] = ["b one", "b two", "b three"]
    tsv, csv_path = tmp_path / "texts.tsv", tmp_path / "texts.csv"
    frame.to_csv(tsv, sep="\t", index=False)
    frame.to_csv(csv_path, index=False)
    line = _one_error_line(_predict(trained, "--input_file=%s" % tsv))
    assert "texts.tsv:3: column 1 is a quoted text that spans lines" in line, line
    assert ".csv" in line and "JSON lines" in line
    # Written as .csv, it is three texts, the second one with its line break.
    proc = _predict(trained, "--input_file=%s" % csv_path, check=True)
    rows = read_tsv(proc.stdout)
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    clf = inference.Classifier.load(trained["output_dir"])
    texts = [(a, frame["text_b"][i] if "text_b" in columns else None)
             for i, a in enumerate(frame["text_a"])]
    np.testing.assert_allclose(np.array([[float(x) for x in r[2:]] for r in rows[1:]]),
                               clf.predict_proba(texts), atol=1e-6)


def test_a_lone_quote_in_a_tsv_stays_text(trained, tmp_path):
    path = tmp_path / "quotes.tsv"
    path.write_text('text_a\n"an open quote\nsaid "yes" twice\n')
    proc = _predict(trained, "--input_file=%s" % path, check=True)
    assert [r[0] for r in read_tsv(proc.stdout)[1:]] == ["0", "1"]


@pytest.mark.parametrize("content", ["", "text_a\ttext_b\n", "\n\n"])
def test_empty_input_is_a_warning(trained, tmp_path, content):
    path = tmp_path / "empty.tsv"
    path.write_text(content)
    out = tmp_path / "pred.tsv"
    proc = _predict(trained, "--input_file=%s" % path, "--output_file=%s" % out, check=True)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("W")]
    assert len(warnings) == 1 and "%s holds no text to classify" % path in warnings[0], \
        proc.stderr[-2000:]
    assert out.read_text() == "guid\tlabel\t0\t1\n"
    proc = _predict(trained, "--input_file=-", stdin="", check=True)
    assert "stdin holds no text to classify" in proc.stderr
    assert proc.stdout == "guid\tlabel\t0\t1\n"


def test_max_seq_length_flag_is_honoured(trained):
    text = " ".join(a + " " + b for a, b in trained["pairs"][:3])  # far over 8 tokens
    proc = _predict(trained, "--text_a=" + text, "--max_seq_length=8", check=True)
    assert "max_seq_length 8)" in proc.stderr
    assert "1 of 1 example(s) were longer than max_seq_length=8" in proc.stderr
    short = inference.Classifier.load(trained["output_dir"], max_seq_length=8)
    full = inference.Classifier.load(trained["output_dir"])
    got = [float(x) for x in read_tsv(proc.stdout)[1][2:]]
    np.testing.assert_allclose(got, short.predict_proba([text])[0], atol=1e-6)
    # The flag made a difference (float noise is under 1e-6).
    assert np.abs(full.predict_proba([text])[0] - got).max() > 5e-6


# ---------------------------------------------------------------------------------------------
# The Python API: the wrong item named, before anything is tokenized.
# ---------------------------------------------------------------------------------------------
def test_api_names_the_wrong_item(trained):
    clf = inference.Classifier.load(trained["output_dir"])
    cases = [
        (lambda: clf.predict(None),
         r"texts: expected a list of strings or \(text_a, text_b\) pairs, got None"),
        (lambda: clf.predict(["fine", 42]),
         r"texts\[1\]: expected a string or a \(text_a, text_b\) pair, got int"),
        (lambda: clf.predict_proba([("a", "b", "c")]),
         r"texts\[0\]: expected a string or a \(text_a, text_b\) pair, got a tuple of 3"),
        (lambda: clf.predict([("a", 5)]),
         r"texts\[0\]: text_b must be a string or None, got int"),
        (lambda: clf.predict([(None, "b")]), r"texts\[0\]: text_a must be a string, got None"),
        (lambda: clf.predict("one string"), "got a single string: wrap it in a list"),
    ]
    encoder = inference.Encoder.load(trained["output_dir"])
    cases += [
        (lambda: encoder.encode(["fine", None]),
         r"texts\[1\]: expected a string or a \(text_a, text_b\) pair, got None"),
        # A generator's errors come at once, not at its first next().
        (lambda: encoder.layer_outputs([["a", "b"], 3.5]),
         r"texts\[1\]: expected a string or a \(text_a, text_b\) pair, got float"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
        with pytest.raises(TypeError):
            call()
    # Pairs as lists and as rows of a DataFrame's .values, None and "" as text_b, still work.
    probabilities = clf.predict_proba([["a", "b"], ("a", None), ("a", "")])
    np.testing.assert_allclose(probabilities[1], probabilities[2], atol=1e-6)
    frame = pd.DataFrame({"text_a": ["a", "a"], "text_b": ["b", None]})
    np.testing.assert_allclose(clf.predict_proba(frame.values), probabilities[:2], atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(frame["text_a"]), probabilities[1:2].repeat(2, 0),
                               atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Ctrl-C: one line, outputs as they were.
# ---------------------------------------------------------------------------------------------
def _interrupted(proc, script, what):
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, \
        proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == "%s: interrupted; %s" % (script, what)


def test_ctrl_c_in_predict(trained, tmp_path):
    out = tmp_path / "pred.tsv"
    out.write_text("earlier predictions\n")
    proc = _predict(trained, "--input_file=" + trained["test_file"], "--batch_size=4",
                    "--output_file=%s" % out, env={"BERT_KILL_AT": "inference_batch:2:INT"})
    _interrupted(proc, "predict.py", "%s left as it was" % out)
    assert out.read_text() == "earlier predictions\n"
    assert os.listdir(tmp_path) == ["pred.tsv"]


def test_ctrl_c_in_extract_features(trained, tmp_path):
    lines = tmp_path / "input.txt"
    lines.write_text("\n".join(a for a, _ in trained["pairs"]) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text("{}\n")
    env = e2e_util.subprocess_env({"BERT_KILL_AT": "inference_batch:1:INT"})
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "extract_features.py"),
                           "--input_file=%s" % lines, "--output_file=%s" % out,
                           "--init_checkpoint=" + trained["output_dir"], "--batch_size=4",
                           "--layers=-1"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT)
    _interrupted(proc, "extract_features.py", "%s left as it was" % out)
    assert out.read_text() == "{}\n"
    assert sorted(os.listdir(tmp_path)) == ["input.txt", "out.jsonl"]


def test_ctrl_c_in_export(trained, tmp_path):
    export_dir = tmp_path / "export"
    env = e2e_util.subprocess_env({"BERT_KILL_AT": "export_written:1:INT"})
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "export_saved_model.py"),
                           "--model_dir=" + trained["output_dir"], "--weights_only",
                           "--export_dir=%s" % export_dir],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT)
    _interrupted(proc, "export_saved_model.py", "%s left as it was" % export_dir)
    assert os.listdir(tmp_path) == []


def test_ctrl_c_in_run_classifier(tmp_path):
    tiny = e2e_util.make_tiny_bert(str(tmp_path / "tiny"))
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    fixtures.write_sim(data_dir)
    args = e2e_util.classifier_args(tiny, data_dir, output_dir, "sim", do_train="true",
                                    do_eval="true", save_checkpoints_steps=1)
    proc = e2e_util.run_classifier(args, env={"BERT_KILL_AT": "train_step:2:INT"}, check=False)
    _interrupted(proc, "run_classifier.py",
                 "%s keeps what was finished (files written whole, checkpoints); the same "
                 "command goes on from its latest checkpoint" % output_dir)
    assert not [f for f in os.listdir(output_dir) if ".tmp" in f]
    assert os.path.exists(os.path.join(output_dir, "model.ckpt-1.index"))
    # ... and the same command goes on.
    e2e_util.run_classifier(args)
    assert e2e_util.read_eval_results(output_dir)["global_step"] == "3"


def test_extract_features_refuses_a_directory_before_the_work(trained, tmp_path):
    lines = tmp_path / "input.txt"
    lines.write_text("one line\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "extract_features.py"),
                           "--input_file=%s" % lines, "--output_file=%s" % tmp_path,
                           "--init_checkpoint=" + trained["output_dir"], "--layers=-1"],
                          capture_output=True, text=True, timeout=300,
                          env=e2e_util.subprocess_env(), cwd=REPO_ROOT)
    line = _one_error_line(proc, "extract_features.py")
    assert "--output_file=%s is a directory" % tmp_path in line, line
    assert "Restoring" not in proc.stderr and "Extracting" not in proc.stderr
    assert os.listdir(tmp_path) == ["input.txt"]


def test_ctrl_c_on_a_terminal_during_parallel_featurization(tmp_path):
    # Ctrl-C on a terminal signals the whole process group: the featurization workers too.
    # The run stops itself (SIGSTOP) while its workers are alive, the group gets SIGINT, the
    # run continues: one line, and no worker traceback.
    import signal
    import time
    tiny = e2e_util.make_tiny_bert(str(tmp_path / "tiny"))
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    fixtures.write_sim(data_dir)
    args = e2e_util.classifier_args(tiny, data_dir, output_dir, "sim", do_train="true",
                                    num_featurize_workers=2)
    proc = subprocess.Popen(
        [sys.executable, e2e_util.RUN_CLASSIFIER] + args, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, start_new_session=True,
        env=e2e_util.subprocess_env({"BERT_KILL_AT": "featurize_example:10:STOP"}))
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            with open("/proc/%d/stat" % proc.pid) as f:
                if f.read().split(") ")[1].startswith("T"):
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGCONT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("run_classifier.py: interrupted; ")
    assert not [f for f in os.listdir(output_dir) if ".tmp" in f or f.endswith(".tf_record")]


def test_extract_features_empty_input_is_a_warning(trained, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = tmp_path / "vectors.npy"
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "extract_features.py"),
                           "--input_file=%s" % empty, "--output_file=%s" % out,
                           "--init_checkpoint=" + trained["output_dir"], "--pooling=mean"],
                          capture_output=True, text=True, timeout=300,
                          env=e2e_util.subprocess_env(), cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("W")]
    assert warnings and "%s is empty: %s will hold no vectors" % (empty, out) in warnings[0]
    assert np.load(out).shape == (0, 32)
