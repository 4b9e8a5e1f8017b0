"""One function per concern (issue 23), in-process: the batch-length rule and where the API and
the export take its multiple from, the atomic write, the checkpoint-fits check, the pooling
check, argmax to label, the variable shapes table."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_classifier.core import checkpoint_names

from bert_classifier.core import checkpoints
from bert_classifier.core import files
import e2e_util
from bert_classifier.workflow import forward
from bert_classifier.workflow import input_pipeline
from bert_classifier.workflow import model_dir
import modeling


@pytest.mark.parametrize("longest, multiple, max_length, expected", [
    (3, 8, 40, 8), (9, 8, 40, 16), (8, 8, 40, 8), (17, 16, 40, 32), (33, 16, 40, 40),
    (0, 8, 40, 8), (2, 64, 40, 40), (5, 0, 40, 40), (1, 16, 128, 16)])
def test_batch_length_is_one_rule_for_ints_and_tensors(longest, multiple, max_length, expected):
    as_int = input_pipeline.batch_length(longest, multiple, max_length)
    assert type(as_int) is int and as_int == expected
    if multiple:
        as_tensor = input_pipeline.batch_length(tf.constant(longest), multiple, max_length)
        assert int(as_tensor) == expected


def _model_files(tmp_path):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(e2e_util.TINY_CONFIG))
    return str(config), e2e_util.minilm_vocab_path()


def test_model_info_records_the_length_multiple(tmp_path):
    """Training records --length_multiple in model_info.json; a folder without it (a pre-trained
    one, an older output_dir) gets the flag's default; a keyword argument wins."""
    config, vocab = _model_files(tmp_path)
    trained = str(tmp_path / "trained")
    model_dir.write_model_info(trained, "sim", ["0", "1"], 32, True, config, vocab,
                               length_multiple=8)
    with open(os.path.join(trained, model_dir.MODEL_INFO_FILENAME)) as f:
        assert json.load(f)["length_multiple"] == 8
    assert model_dir.load_model_info(trained).length_multiple == 8
    assert model_dir.load_model_info(trained, length_multiple=0).length_multiple == 0
    bare = tmp_path / "bare"
    bare.mkdir()
    info = model_dir.load_model_info(str(bare), bert_config_file=config, vocab_file=vocab,
                                     do_lower_case=True)
    assert info.length_multiple == input_pipeline.DEFAULT_LENGTH_MULTIPLE == 16
    with open(os.path.join(trained, model_dir.MODEL_INFO_FILENAME)) as f:
        recorded = json.load(f)
    recorded["length_multiple"] = -1
    with open(os.path.join(trained, model_dir.MODEL_INFO_FILENAME), "w") as f:
        json.dump(recorded, f)
    with pytest.raises(ValueError, match=r"length_multiple=-1 .*model_info.json.*>= 0"):
        model_dir.load_model_info(trained)


def test_into_place_writes_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "out.txt")
    files.write_file(path, ["a", "b\n"])
    assert open(path).read() == "ab\n"
    with pytest.raises(RuntimeError):
        with files.into_place(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("interrupted")
    assert open(path).read() == "ab\n"  # the old file, untouched
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary left
    folder = str(tmp_path / "export")
    os.mkdir(folder)
    with files.into_place(folder) as tmp:
        os.mkdir(tmp)
        open(os.path.join(tmp, "saved_model.pb"), "w").close()
    assert os.listdir(folder) == ["saved_model.pb"]
    files.copy_file(path, str(tmp_path / "copy.txt"))
    files.copy_file(path, path)  # the same file: nothing to do
    assert open(tmp_path / "copy.txt").read() == "ab\n"
    assert sorted(os.listdir(tmp_path)) == ["copy.txt", "export", "out.txt"]


def test_one_fit_check_names_the_head_and_what_is_missing():
    config = modeling.BertConfig(**e2e_util.TINY_CONFIG)
    model = checkpoint_names.expected_variable_shapes(config, 3)
    trained = checkpoint_names.expected_variable_shapes(config, 2)
    with pytest.raises(ValueError, match=r"Shape of variable output_weights in checkpoint c is "
                                         r"\[2, \d+\].*head for 2 labels, but the label list "
                                         r"has 3"):
        checkpoints.check_checkpoint_fits("c", trained, model)
    pretrained = checkpoint_names.expected_variable_shapes(config)
    # Initializing from a pre-trained checkpoint: the head is not needed ...
    assert checkpoints.check_checkpoint_fits("c", pretrained, model) == list(pretrained)
    # ... restoring a trained classifier: it is.
    with pytest.raises(ValueError, match=r"checkpoint c lacks 2 variable\(s\) of this model "
                                         r"\(output_weights, output_bias\): it has no classifier"):
        checkpoints.check_checkpoint_fits("c", pretrained, model, complete=True)


def test_pooling_check_and_argmax_to_label():
    for pooling in forward.POOLINGS:
        forward.check_pooling(pooling)
    with pytest.raises(ValueError, match=r"pooling='max': expected one of cls, mean, pooled"):
        forward.check_pooling("max")
    probabilities = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]], np.float32)
    assert forward.predicted_labels(probabilities, ["a", "b"]) == ["b", "a", "a"]
    assert forward.predicted_labels(np.zeros([0, 2], np.float32), ["a", "b"]) == []
