"""bert_classifier.fine_tune: the workflow as one Python call, on the same code path as
run_classifier.py (identical checkpoints and eval_results.txt for the same seed), with data in
memory, flagfiles, one-line errors and no state leaking from one call into the next."""
import csv
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import e2e_util
import fixtures
from bert_classifier import fine_tune

@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A tiny BERT (no dropout: every run of it takes the same steps) and the sim fixture."""
    tiny, data_dir, base = e2e_util.no_dropout_sim_setup(tmp_path_factory.mktemp("fine_tune"))
    return {"tiny": tiny, "data_dir": data_dir, "base": base}


def _model_settings(task):
    tiny = task["tiny"]
    return dict(vocab_file=tiny["vocab"], bert_config_file=tiny["config"],
                init_checkpoint=tiny["checkpoint"], max_seq_length=32, train_batch_size=8,
                eval_batch_size=8, learning_rate=1e-3, num_train_epochs=2.0,
                num_featurize_workers=1, seed=7)


def _checkpoint_state(output_dir):
    """Every tensor of the latest checkpoint (weights, Adam slots, global_step) by name."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(output_dir))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _read_split(data_dir, split):
    with open(os.path.join(data_dir, split + ".tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return pd.DataFrame(rows[1:], columns=rows[0])


@pytest.fixture(scope="module")
def cli_run(task):
    output_dir = os.path.join(str(task["base"]), "cli")
    settings = _model_settings(task)
    e2e_util.run_classifier(e2e_util.classifier_args(
        task["tiny"], task["data_dir"], output_dir, "sim", do_train="true", do_eval="true",
        **{k: v for k, v in settings.items()
           if k not in ("vocab_file", "bert_config_file", "init_checkpoint")}))
    return output_dir


@pytest.mark.slow
def test_the_api_and_the_cli_train_the_same_model(task, cli_run):
    output_dir = os.path.join(str(task["base"]), "api_task")
    run = fine_tune(task_name="sim", data_dir=task["data_dir"], output_dir=output_dir,
                    **_model_settings(task))
    expected, got = _checkpoint_state(cli_run), _checkpoint_state(output_dir)
    assert sorted(got) == sorted(expected)
    assert any(name.endswith("/adam_m") for name in got)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    with open(os.path.join(cli_run, "eval_results.txt")) as f:
        cli_results = f.read()
    with open(os.path.join(output_dir, "eval_results.txt")) as f:
        assert f.read() == cli_results
    # The result holds the same numbers as the file, as numbers.
    assert run.eval_results == {k: (int(v) if k == "global_step" else float(v))
                                for k, v in e2e_util.read_eval_results(cli_run).items()}
    assert run.global_step == 7  # int(30 / 8 * 2)
    assert run.checkpoint == os.path.join(output_dir, "model.ckpt-7")
    assert run.labels == ["0", "1"]
    assert run.eval_metrics["confusion_matrix"]
    for name in ("model_info.json", "bert_config.json", "vocab.txt", "eval_metrics.json"):
        assert os.path.exists(os.path.join(output_dir, name)), name


@pytest.mark.slow
def test_a_dataframe_trains_the_same_model_as_the_task_files(task, cli_run):
    output_dir = os.path.join(str(task["base"]), "api_frames")
    train = _read_split(task["data_dir"], "train")
    dev = _read_split(task["data_dir"], "dev")
    test = _read_split(task["data_dir"], "test")
    run = fine_tune(train=train, dev=dev, test=test, output_dir=output_dir,
                    **_model_settings(task))
    expected, got = _checkpoint_state(cli_run), _checkpoint_state(output_dir)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert run.labels == ["0", "1"]  # from the training data ("1.0" read as "1", as sim does)
    assert run.eval_results["eval_accuracy"] == pytest.approx(
        float(e2e_util.read_eval_results(cli_run)["eval_accuracy"]))
    # test= was given: predicted, in the original's file too.
    assert run.test_probabilities.shape == (len(test), 2)
    np.testing.assert_allclose(run.test_probabilities.sum(axis=1), 1.0, rtol=1e-5)
    written = np.loadtxt(os.path.join(output_dir, "test_results.tsv"), delimiter="\t")
    np.testing.assert_allclose(written, run.test_probabilities, rtol=1e-6)
    with open(os.path.join(output_dir, "model_info.json")) as f:
        assert json.load(f)["labels"] == ["0", "1"]
    # The loaded classifier gives the do_predict probabilities for the same texts.
    pairs = list(zip(test["text_a"], test["text_b"]))
    np.testing.assert_allclose(run.classifier.predict_proba(pairs), run.test_probabilities,
                               atol=1e-5)
    # The full log is in output_dir; INFO lines such as the examples block go there.
    with open(run.log_file) as f:
        assert "*** Example ***" in f.read()


@pytest.mark.slow
def test_tuples_and_a_flagfile(task, tmp_path):
    flagfile = tmp_path / "task.flags"
    settings = _model_settings(task)
    settings.update(output_dir=str(tmp_path / "ignored"), num_train_epochs=1.0)
    flagfile.write_text("".join(f"--{k}={v}\n" for k, v in settings.items()))
    train = [("a first text", "a second text", "1"), ("another text", None, 0)] * 8
    output_dir = str(tmp_path / "out")
    # The keyword wins over the flagfile's output_dir.
    run = fine_tune(flagfile=str(flagfile), train=train, output_dir=output_dir)
    assert run.global_step == 2  # int(16 / 8 * 1.0)
    assert run.eval_results is None  # no dev data: nothing evaluated
    assert os.path.exists(os.path.join(output_dir, "model.ckpt-2.index"))
    assert not os.path.exists(str(tmp_path / "ignored"))
    assert run.labels == ["0", "1"]


@pytest.mark.slow
def test_a_model_folder_stands_for_the_model_flags(task, tmp_path):
    # A pre-trained folder: bert_config.json, vocab.txt, one checkpoint.
    folder = tmp_path / "pretrained"
    folder.mkdir()
    tiny = task["tiny"]
    for src, name in ((tiny["config"], "bert_config.json"), (tiny["vocab"], "vocab.txt")):
        (folder / name).write_bytes(open(src, "rb").read())
    for suffix in (".index", ".data-00000-of-00001"):
        (folder / ("bert_model.ckpt" + suffix)).write_bytes(
            open(tiny["checkpoint"] + suffix, "rb").read())
    train = _read_split(task["data_dir"], "train")
    dev = _read_split(task["data_dir"], "dev")
    settings = {k: v for k, v in _model_settings(task).items()
                if k not in ("vocab_file", "bert_config_file", "init_checkpoint")}
    run = fine_tune(str(folder), train=train, dev=dev, output_dir=str(tmp_path / "out"),
                    **settings)
    assert 0.0 <= run.eval_results["eval_accuracy"] <= 1.0
    with open(tmp_path / "out" / "fine_tune.log") as f:
        # The original's variables block: every variable loaded from the folder's checkpoint.
        assert ", *INIT_FROM_CKPT*" in f.read()
    with open(tmp_path / "out" / "model_info.json") as f:
        assert json.load(f)["do_lower_case"] is True


@pytest.mark.slow
def test_two_calls_in_one_process_do_not_leak(task, tmp_path):
    import tf_keras
    from absl import flags, logging

    from bert_classifier.checks import run_lock
    from bert_classifier.core import precision
    absl_flags_before = {name: flags.FLAGS[name].value for name in flags.FLAGS}
    absl_logger = logging.get_absl_logger()
    logger_before = (absl_logger.level, absl_logger.propagate, list(absl_logger.handlers))
    policy_before = tf_keras.mixed_precision.global_policy().name
    settings = _model_settings(task)
    settings["num_train_epochs"] = 1.0
    three = [(f"text {i}", None, "abc"[i % 3]) for i in range(24)]
    # (the task's tiny checkpoint holds a two-label head: this one has none)
    settings["init_checkpoint"] = e2e_util.make_tiny_bert(str(tmp_path / "headless"))["checkpoint"]
    # Another precision where this CPU computes it natively (TensorFlow refuses to emulate it).
    other_precision = "bfloat16" if precision.cpu_bfloat16_flags() else "float32"
    first = fine_tune(train=three, dev=three[:6], output_dir=str(tmp_path / "three"),
                      precision=other_precision, **settings)
    assert tf_keras.mixed_precision.global_policy().name == policy_before
    assert first.labels == ["a", "b", "c"]
    # The lock is given back when the call returns.
    run_lock.OutputDirLock(str(tmp_path / "three")).acquire().release()

    settings["init_checkpoint"] = task["tiny"]["checkpoint"]
    second = fine_tune(task_name="sim", data_dir=task["data_dir"],
                       output_dir=str(tmp_path / "two"), **settings)
    assert second.labels == ["0", "1"]
    shapes = {run.output_dir: tf.train.load_checkpoint(run.checkpoint).get_variable_to_shape_map()
              for run in (first, second)}
    assert shapes[first.output_dir]["output_weights"][0] == 3
    assert shapes[second.output_dir]["output_weights"][0] == 2
    # The same call again: the run resumes from its checkpoint, as the script's rerun does.
    again = fine_tune(task_name="sim", data_dir=task["data_dir"],
                      output_dir=str(tmp_path / "two"), **settings)
    assert again.eval_results == second.eval_results
    with open(again.log_file) as f:
        assert "Skipping training since max_steps has already saved." in f.read()

    assert {name: flags.FLAGS[name].value for name in flags.FLAGS} == absl_flags_before
    assert (absl_logger.level, absl_logger.propagate, list(absl_logger.handlers)) == \
        logger_before
    assert tf_keras.mixed_precision.global_policy().name == policy_before


# ---------------------------------------------------------------------------------------------
# Errors: one-line ValueErrors before any work (never SystemExit), naming the setting or row.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A tiny config and the real vocab, no checkpoint (random weights): enough for the checks."""
    folder = tmp_path_factory.mktemp("model_files")
    config = folder / "bert_config.json"
    config.write_text(json.dumps(e2e_util.TINY_CONFIG))
    return dict(vocab_file=e2e_util.minilm_vocab_path(), bert_config_file=str(config),
                max_seq_length=32, train_batch_size=8)


def test_an_unknown_setting_names_the_nearest_flag(tmp_path):
    with pytest.raises(ValueError, match=r"unknown setting learning_rat=.*did you mean "
                                         r"learning_rate"):
        fine_tune(train=[("a", None, "0")], output_dir=str(tmp_path), learning_rat=1e-3)


@pytest.mark.parametrize("name, value, message", [
    ("precision", "fp8", r"precision='fp8'"),
    ("length_multiple", -1, r"length_multiple=-1"),
    ("train_batch_size", "many", r"train_batch_size='many'"),
])
def test_a_bad_value_names_the_setting(tmp_path, name, value, message):
    with pytest.raises(ValueError, match=message):
        fine_tune(train=[("a", None, "0")], output_dir=str(tmp_path), **{name: value})
    assert not os.listdir(tmp_path)


def test_bad_rows_are_named(model_files, tmp_path):
    settings = model_files
    with pytest.raises(ValueError, match=r"^train\[1\]: text_a is int \(42\); expected a string"):
        fine_tune(train=[("a", None, "0"), (42, None, "1")], output_dir=str(tmp_path),
                  **settings)
    with pytest.raises(ValueError, match=r"^train\[0\]: expected a \(text_a, text_b, label\) "
                                         r"tuple or an InputExample, got a 2-tuple"):
        fine_tune(train=[("a", "0")], output_dir=str(tmp_path), **settings)
    with pytest.raises(ValueError, match=r"^dev: the DataFrame has no column 'text_a' "
                                         r"\(columns: sentence, label\)"):
        fine_tune(train=[("a", None, "0"), ("b", None, "1")], output_dir=str(tmp_path),
                  dev=pd.DataFrame({"sentence": ["x"], "label": ["0"]}), **settings)
    assert not os.listdir(tmp_path)
    # A label the training data does not have: the CLI's message, naming the row.
    train = [("a", None, "0"), ("b", None, "1")] * 8
    dev = [("a", None, "0"), ("b", None, "1"), ("c", None, "2")]
    with pytest.raises(ValueError, match=r"^dev\[2\]: label '2' is not one of the task's "
                                         r"labels \['0', '1'\]"):
        fine_tune(train=train, dev=dev, output_dir=str(tmp_path / "out"), **settings)
    assert not any(name.startswith("model.ckpt") or name.endswith(".tf_record")
                   for name in os.listdir(tmp_path / "out"))


def test_what_is_required_is_named(model_files, tmp_path):
    with pytest.raises(ValueError, match=r"output_dir= is required"):
        fine_tune(train=[("a", None, "0")], **model_files)
    with pytest.raises(ValueError, match=r"vocab_file=, bert_config_file= are required \(or a "
                                         r"model folder"):
        fine_tune(train=[("a", None, "0")], output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"task_name=, data_dir= are required"):
        fine_tune(output_dir=str(tmp_path), **model_files)
    with pytest.raises(ValueError, match=r"flagfile=.*nope.flags: no such file"):
        fine_tune(flagfile=str(tmp_path / "nope.flags"), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"Task not found: nosuchtask"):
        fine_tune(task_name="nosuchtask", data_dir=str(tmp_path), output_dir=str(tmp_path),
                  **model_files)
