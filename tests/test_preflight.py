"""preflight.py: every check before any work, in-process, and run_classifier's sequence of them."""

import json
import os
import shutil
import types

import pytest

from bert_classifier.core import checkpoint_names

from bert_classifier.core import checkpoints
import e2e_util
import fixtures
import modeling
from bert_classifier.checks import preflight
import processors


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return e2e_util.make_tiny_bert(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def config(tiny):
    return modeling.BertConfig.from_json_file(tiny["config"])


@pytest.mark.parametrize("check,value,ok", [
    (preflight.check_positive_int, 1, True), (preflight.check_positive_int, 0, False),
    (preflight.check_positive_int, -3, False), (preflight.check_positive_int, True, False),
    (preflight.check_non_negative_int, 0, True), (preflight.check_non_negative_int, -1, False),
    (preflight.check_positive_float, 2e-5, True), (preflight.check_positive_float, 0.0, False),
    (preflight.check_positive_float, -1.0, False),
    (preflight.check_positive_float, float("nan"), False),
    (preflight.check_positive_float, float("inf"), False),
])
def test_number_checks_name_the_flag(check, value, ok):
    if ok:
        check("some_flag", value)
    else:
        with pytest.raises(ValueError, match=r"^--some_flag=.*: expected"):
            check("some_flag", value)


def test_check_range_is_inclusive():
    for value in (0, 0.1, 1):
        preflight.check_range("warmup_proportion", value, 0, 1)
    for value in (-0.5, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"--warmup_proportion=.*: expected a number from 0 "
                                             r"to 1"):
            preflight.check_range("warmup_proportion", value, 0, 1)


@pytest.mark.slow
def test_max_seq_length(config):
    preflight.check_max_seq_length(3, config)
    with pytest.raises(ValueError, match=r"--max_seq_length=2: expected at least 3"):
        preflight.check_max_seq_length(2, config)
    with pytest.raises(ValueError, match="Cannot use sequence length 65 because the BERT model "
                                         "was only trained up to sequence length 64"):
        preflight.check_max_seq_length(65, config)


def test_seq_length_boundary_is_max_position_embeddings(config):
    # --max_seq_length=512 on BERT-base (512 positions) is the original's own setting.
    assert config.max_position_embeddings == 64
    preflight.check_seq_length_fits_model(64, config)
    preflight.check_max_seq_length(64, config)
    with pytest.raises(ValueError, match="Cannot use sequence length 65"):
        preflight.check_seq_length_fits_model(65, config)


def test_vocab_boundary_is_vocab_size(tiny, config, tmp_path):
    # Exactly vocab_size tokens pass (the tiny vocab has 30522), one more is refused.
    assert preflight.check_vocab(tiny["vocab"], config) == config.vocab_size
    one_more = tmp_path / "one_more.txt"
    shutil.copyfile(tiny["vocab"], one_more)
    with open(one_more, "a") as f:
        f.write("extra_a\n")
    with pytest.raises(ValueError, match=r"has 30523 tokens but the config's vocab_size is 30522"):
        preflight.check_vocab(str(one_more), config)


def test_output_file(tmp_path):
    preflight.check_output_file("output_file", "-", allow_stdout=True)
    preflight.check_output_file("output_file", str(tmp_path / "new" / "deeper" / "p.tsv"))
    preflight.check_output_file("output_file", "relative_name.tsv")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    preflight.check_output_file("output_file", str(a_file))  # replaced as a whole
    for path, message in [
            (str(tmp_path), r"--output_file=.* is a directory: expected a file path"),
            (str(tmp_path / "new") + "/", r"--output_file=.*new/ is a directory"),
            (str(a_file / "p.tsv"), r"--output_file=.*a_file/p.tsv: cannot make its folder, "
                                    r".*a_file is a file"),
            ("", r"--output_file is empty")]:
        with pytest.raises(ValueError, match=message):
            preflight.check_output_file("output_file", path)


def test_output_dir(tmp_path):
    preflight.check_output_dir("output_dir", str(tmp_path))  # exists
    preflight.check_output_dir("output_dir", str(tmp_path / "new" / "deeper"))  # can be made
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=r"--output_dir=.*a_file is a file: expected a directory"):
        preflight.check_output_dir("output_dir", str(a_file))
    with pytest.raises(ValueError, match=r"cannot make a directory there, .*a_file is a file"):
        preflight.check_output_dir("output_dir", str(a_file / "sub"))


@pytest.mark.slow
def test_vocab(tiny, config, tmp_path):
    assert preflight.check_vocab(tiny["vocab"], config) == 30522
    with pytest.raises(ValueError, match=r"lacks \[CLS\], \[SEP\], \[UNK\]: expected a WordPiece "
                                         r"vocab.txt, one token a line \(it looks like JSON"):
        preflight.check_vocab(tiny["config"], config)
    longer = tmp_path / "longer.txt"
    shutil.copyfile(tiny["vocab"], longer)
    with open(longer, "a") as f:
        f.write("extra_a\nextra_b\n")
    with pytest.raises(ValueError, match=r"has 30524 tokens but the config's vocab_size is 30522"):
        preflight.check_vocab(str(longer), config)
    no_unk = tmp_path / "no_unk.txt"
    no_unk.write_text("[PAD]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"lacks \[UNK\]: expected"):
        preflight.check_vocab(str(no_unk), config)
    binary = tmp_path / "vocab.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        preflight.check_vocab(str(binary), config)
    with pytest.raises(ValueError, match="not found"):
        preflight.check_vocab(str(tmp_path / "missing.txt"), config)


@pytest.mark.parametrize("init_checkpoint,lower,refused", [
    ("/m/uncased_L-12_H-768_A-12/bert_model.ckpt", False, True),   # the original's form
    ("/m/uncased_L-12_H-768_A-12", False, True),                   # the folder
    ("/m/uncased_L-12_H-768_A-12/", False, True),                  # the folder, trailing /
    ("uncased_L-12_H-768_A-12", False, True),                      # a relative folder
    ("/m/cased_L-12_H-768_A-12/", True, True),
    ("/m/cased_L-12_H-768_A-12/", False, False),
    ("/m/uncased_L-12_H-768_A-12", True, False),
    ("/m/uncased_L-12_H-768_A-12/model.ckpt-343", False, False),   # not a Google name
    ("/m/my_model", False, False),
    (None, False, False),
])
def test_case_check_in_every_form(init_checkpoint, lower, refused):
    if refused:
        with pytest.raises(ValueError) as error:
            preflight.check_case(lower, init_checkpoint)
        assert str(error.value).startswith(
            "You passed in `--do_lower_case=%s` with `--init_checkpoint=%s`. However, `"
            % (lower, init_checkpoint))
    else:
        preflight.check_case(lower, init_checkpoint)


@pytest.mark.slow
def test_checkpoint_checks(tiny, config, tmp_path):
    assert preflight.check_checkpoint_fits(tiny["checkpoint"], config, 2) == tiny["checkpoint"]
    broken = str(tmp_path / "broken")
    os.makedirs(broken)
    for name in os.listdir(os.path.dirname(tiny["checkpoint"])):
        if name.startswith("bert_model.ckpt"):
            shutil.copy(os.path.join(os.path.dirname(tiny["checkpoint"]), name), broken)
    prefix = os.path.join(broken, "bert_model.ckpt")
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
        f.truncate(4096)
    with pytest.raises(ValueError, match=r"^--init_checkpoint=%s: checkpoint %s cannot be read: "
                                         r"its data file holds 4096 bytes" % (prefix, prefix)):
        preflight.check_checkpoint_readable(prefix)
    with pytest.raises(ValueError, match=r"--init_checkpoint=.*nowhere.ckpt: checkpoint .* not "
                                         r"found"):
        preflight.check_checkpoint_readable(str(tmp_path / "nowhere.ckpt"))
    one_layer = modeling.BertConfig.from_dict(dict(config.to_dict(), num_hidden_layers=1))
    with pytest.raises(ValueError, match=r"does not fit the model of the config: the model would "
                                         r"leave 16 BERT variable\(s\)"):
        preflight.check_checkpoint_fits(tiny["checkpoint"], one_layer, 2)
    preflight.check_checkpoint_fits(tiny["checkpoint"], one_layer, 2, allow_partial=True)
    three_layers = modeling.BertConfig.from_dict(dict(config.to_dict(), num_hidden_layers=3))
    with pytest.raises(ValueError, match=r"lacks 16 BERT variable\(s\) of the model"):
        preflight.check_checkpoint_fits(tiny["checkpoint"], three_layers, 2)


@pytest.mark.slow
def test_check_resumable(tiny, config, tmp_path):
    out = str(tmp_path / "out")
    assert preflight.check_resumable(out, config, 2) is None  # nothing there yet
    model = modeling.BertClassifier(config, 2)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    checkpoints.save_checkpoint(out, names, 3)
    assert preflight.check_resumable(out, config, 2) == os.path.join(out, "model.ckpt-3")
    with pytest.raises(ValueError, match=r"Shape of variable output_weights in checkpoint .* is "
                                         r"\[2, 32\], but the model's variable has shape \[3, 32\]"):
        preflight.check_resumable(out, config, 3)  # another task's output_dir
    encoder_only = str(tmp_path / "encoder_only")
    checkpoints.save_checkpoint(encoder_only, checkpoint_names.variables_by_checkpoint_name(
        modeling.BertModel(config)), 5)
    with pytest.raises(ValueError, match=r"model.ckpt-5 in --output_dir lacks 2 variable\(s\) of "
                                         r"this model \(output_weights, output_bias\)"):
        preflight.check_resumable(encoder_only, config, 2)
    os.remove(os.path.join(out, "model.ckpt-3.index"))
    with pytest.raises(ValueError, match="holds checkpoints but none can be restored"):
        preflight.check_resumable(out, config, 2)


def test_check_examples():
    preflight.check_examples([processors.InputExample("dev-0", "a")], "dev", "do_eval", "sim",
                             "/data")
    with pytest.raises(ValueError, match=r"^--do_eval: the dev set of task sim in /data has no "
                                         r"examples"):
        preflight.check_examples([], "dev", "do_eval", "sim", "/data")


def _flags(tiny, tmp_path, **overrides):
    """run_classifier's flag values as absl would give them (the defaults of the original)."""
    values = dict(
        data_dir=str(tmp_path / "data"), task_name="sim", output_dir=str(tmp_path / "out"),
        vocab_file=tiny["vocab"], bert_config_file=tiny["config"],
        init_checkpoint=tiny["checkpoint"], do_lower_case=True, max_seq_length=32,
        do_train=True, do_eval=True, do_predict=True, train_batch_size=32, eval_batch_size=8,
        predict_batch_size=8, learning_rate=5e-5, num_train_epochs=3.0, warmup_proportion=0.1,
        save_checkpoints_steps=1000, iterations_per_loop=1000, keep_checkpoint_max=5,
        log_step_count_steps=100, shuffle_buffer_size=100, num_featurize_workers=None,
        num_cpu_devices=1, inference_micro_batch_size=16, encoding="utf-8",
        allow_partial_checkpoint=False)
    values.update(overrides)
    return types.SimpleNamespace(**values)


@pytest.mark.slow
@pytest.mark.parametrize("overrides,message", [
    ({"max_seq_length": 2}, "--max_seq_length=2: expected at least 3"),
    ({"train_batch_size": 0}, "--train_batch_size=0: expected a positive integer"),
    ({"eval_batch_size": 0}, "--eval_batch_size=0: expected a positive integer"),
    ({"predict_batch_size": -8}, "--predict_batch_size=-8: expected a positive integer"),
    ({"save_checkpoints_steps": 0}, "--save_checkpoints_steps=0: expected a positive integer"),
    ({"iterations_per_loop": 0}, "--iterations_per_loop=0: expected a positive integer"),
    ({"keep_checkpoint_max": 0}, "--keep_checkpoint_max=0: expected a positive integer"),
    ({"learning_rate": -1.0}, "--learning_rate=-1.0: expected a number > 0"),
    ({"num_train_epochs": 0.0}, "--num_train_epochs=0.0: expected a number > 0"),
    ({"warmup_proportion": -0.5}, "--warmup_proportion=-0.5: expected a number from 0 to 1"),
    ({"num_featurize_workers": 0}, "--num_featurize_workers=0: expected a positive integer"),
    ({"encoding": "klingon"}, "--encoding=klingon: unknown encoding"),
    ({"output_dir": "FILE"}, "is a file: expected a directory"),
    ({"vocab_file": "CONFIG"}, "lacks [CLS], [SEP], [UNK]"),
    ({"init_checkpoint": "MISSING"}, "--init_checkpoint="),
])
def test_run_classifier_sequence_refuses(tiny, tmp_path, overrides, message):
    if overrides.get("output_dir") == "FILE":
        (tmp_path / "file").write_text("")
        overrides = {"output_dir": str(tmp_path / "file")}
    if overrides.get("vocab_file") == "CONFIG":
        overrides = {"vocab_file": tiny["config"]}
    if overrides.get("init_checkpoint") == "MISSING":
        overrides = {"init_checkpoint": str(tmp_path / "missing" / "bert_model.ckpt")}
    with pytest.raises(ValueError) as error:
        preflight.check_run_classifier_flags(_flags(tiny, tmp_path, **overrides))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_run_classifier_sequence_checks_only_what_the_run_uses(tiny, tmp_path):
    # Eval only: the training flags are not used, so not checked.
    flags = _flags(tiny, tmp_path, do_train=False, do_predict=False, learning_rate=-1.0,
                   train_batch_size=0, predict_batch_size=0)
    assert preflight.check_run_classifier_flags(flags).num_hidden_layers == 2
    # The original's order stays first: an unknown task is reported before a bad new flag.
    with pytest.raises(ValueError, match="^Task not found: nope$"):
        preflight.check_run_classifier_flags(_flags(tiny, tmp_path, task_name="nope",
                                                    max_seq_length=2, train_batch_size=0))
    with pytest.raises(ValueError, match="^At least one of `do_train`"):
        preflight.check_run_classifier_flags(_flags(
            tiny, tmp_path, do_train=False, do_eval=False, do_predict=False, train_batch_size=0))
    # A run that will resume does not need init_checkpoint any more.
    out = str(tmp_path / "resume")
    config = modeling.BertConfig.from_json_file(tiny["config"])
    names = checkpoint_names.variables_by_checkpoint_name(modeling.BertClassifier(config, 2))
    checkpoints.save_checkpoint(out, names, 1)
    preflight.check_run_classifier_flags(_flags(
        tiny, tmp_path, output_dir=out, init_checkpoint=str(tmp_path / "gone" / "x.ckpt")))


def test_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"--bert_config_file=.*nope.json: not found"):
        preflight.load_bert_config(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        preflight.load_bert_config(str(bad))
    no_vocab = tmp_path / "no_vocab.json"
    no_vocab.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="vocab_size is None, expected a positive integer"):
        preflight.load_bert_config(str(no_vocab))


@pytest.mark.slow
def test_sim_data_of_the_fixtures_passes(tiny, tmp_path):
    """The whole sequence on valid flags (the default values) passes and returns the config."""
    fixtures.write_sim(str(tmp_path / "data"))
    config = preflight.check_run_classifier_flags(_flags(tiny, tmp_path))
    assert config.hidden_size == 32
