"""Converts a Hugging Face BERT folder into Google's checkpoint layout.

Input folder: `config.json`, `vocab.txt` and the weights as `model.safetensors` (also sharded,
with `model.safetensors.index.json`) or `pytorch_model.bin` (needs PyTorch, imported only then).
Output folder: `bert_model.ckpt.index`, `bert_model.ckpt.data-00000-of-00001` (Google's names,
linear kernels transposed to [in, out]), `bert_config.json` (Google's field names),
`vocab.txt`, and `conversion_info.json` (source fingerprint, written last: a folder without it
is incomplete).

    python -m pretrained.convert_hf --hf_dir=/path/to/hf_model --output_dir=pretrained/my_model

HF's `hidden_act` "gelu" is the exact erf GELU, written as "gelu_exact"; "gelu_new",
"gelu_pytorch_tanh" and "gelu_fast" are the tanh approximation Google calls "gelu".
A model saved without pooler weights (e.g. `BertModel(add_pooling_layer=False)`) gets a pooler
initialised like a fresh layer (truncated normal, seeded, biases zero) with a loud warning: the
checkpoint is then complete, but the pooled output is not pre-trained.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from typing import Dict, List, Mapping, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402
from absl import logging  # noqa: E402

# Bump when the output of the conversion changes, so stamped folders are rebuilt.
CONVERTER_VERSION = 1
CHECKPOINT_NAME = "bert_model.ckpt"
INFO_NAME = "conversion_info.json"
POOLER_SEED = 12345

_HF_ACTIVATIONS = {
    "gelu": "gelu_exact",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu",
    "relu": "relu",
    "tanh": "tanh",
}

_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
    """Reads a .safetensors file as {name: read-only array view of a memory map} (no copy).

    Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets: [begin, end]}} (plus optional "__metadata__"), then the raw little-endian data.
    BF16 tensors are returned converted to float32 (numpy has no bfloat16).
    """
    with open(path, "rb") as f:
        header_size_bytes = f.read(8)
        if len(header_size_bytes) != 8:
            raise ValueError("%s is not a safetensors file (shorter than 8 bytes)" % path)
        header_size = int.from_bytes(header_size_bytes, "little")
        file_size = os.fstat(f.fileno()).st_size
        if header_size > file_size - 8:
            raise ValueError("%s is not a safetensors file (header length %d > file size)"
                             % (path, header_size))
        try:
            header = json.loads(f.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError("%s has an unreadable safetensors header: %s" % (path, e)) from e
    data_start = 8 + header_size
    if file_size == data_start:
        data = np.zeros([0], np.uint8)
    else:
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        dtype = entry["dtype"]
        raw = data[begin:end]
        if dtype == "BF16":
            # bfloat16 is the upper half of a float32.
            array = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _SAFETENSORS_DTYPES:
            array = raw.view(_SAFETENSORS_DTYPES[dtype])
        else:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dtype))
        tensors[name] = array.reshape(shape)
    return tensors


def _read_pytorch_bin(path: str) -> Dict[str, np.ndarray]:
    try:
        import torch  # Imported only for this format: the project itself does not need it.
    except ImportError as e:
        raise ValueError("%s is a PyTorch pickle; reading it needs PyTorch (pip install torch), "
                         "or convert the folder to model.safetensors first" % path) from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: t.detach().float().numpy() if t.is_floating_point() else t.numpy()
            for name, t in state.items()}


def load_hf_weights(hf_dir: str) -> Dict[str, np.ndarray]:
    """The folder's weights as {HF name: array}: model.safetensors, a sharded safetensors
    index, or pytorch_model.bin (in that order of preference)."""
    single = os.path.join(hf_dir, "model.safetensors")
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    pt_bin = os.path.join(hf_dir, "pytorch_model.bin")
    if os.path.exists(single):
        return read_safetensors(single)
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_safetensors(os.path.join(hf_dir, shard)))
        return tensors
    if os.path.exists(pt_bin):
        return _read_pytorch_bin(pt_bin)
    raise ValueError("%s holds no model.safetensors, model.safetensors.index.json or "
                     "pytorch_model.bin" % hf_dir)


def bert_config_from_hf(hf_config: Mapping, config_path: str = "config.json") -> Dict:
    """Google's bert_config.json fields from a Hugging Face BertConfig dict."""
    model_type = hf_config.get("model_type", "bert")
    if model_type != "bert":
        raise ValueError("%s: model_type is %r; only BERT (model_type \"bert\") converts to "
                         "Google's layout" % (config_path, model_type))
    position_type = hf_config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError("%s: position_embedding_type %r is not supported (Google's BERT uses "
                         "\"absolute\")" % (config_path, position_type))
    hidden_act = hf_config.get("hidden_act", "gelu")
    if hidden_act not in _HF_ACTIVATIONS:
        raise ValueError("%s: hidden_act %r has no equivalent here (expected one of %s)"
                         % (config_path, hidden_act, ", ".join(sorted(_HF_ACTIVATIONS))))
    eps = hf_config.get("layer_norm_eps", 1e-12)
    if abs(eps - 1e-12) > 1e-15:
        logging.warning("%s: layer_norm_eps is %g but Google's BERT (and this port) uses 1e-12; "
                        "outputs will differ slightly from the Hugging Face model",
                        config_path, eps)
    required = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size"]
    missing = [k for k in required if k not in hf_config]
    if missing:
        raise ValueError("%s lacks %s" % (config_path, ", ".join(missing)))
    return {
        "attention_probs_dropout_prob": hf_config.get("attention_probs_dropout_prob", 0.1),
        "hidden_act": _HF_ACTIVATIONS[hidden_act],
        "hidden_dropout_prob": hf_config.get("hidden_dropout_prob", 0.1),
        "hidden_size": hf_config["hidden_size"],
        "initializer_range": hf_config.get("initializer_range", 0.02),
        "intermediate_size": hf_config["intermediate_size"],
        "max_position_embeddings": hf_config.get("max_position_embeddings", 512),
        "num_attention_heads": hf_config["num_attention_heads"],
        "num_hidden_layers": hf_config["num_hidden_layers"],
        "type_vocab_size": hf_config.get("type_vocab_size", 2),
        "vocab_size": hf_config["vocab_size"],
    }


# HF sub-module path (after "bert.") -> Google scope, for modules with weight + bias.
_DENSE_RE = re.compile(r"^encoder\.layer\.(\d+)\.(attention\.self\.query|attention\.self\.key|"
                       r"attention\.self\.value|attention\.output\.dense|intermediate\.dense|"
                       r"output\.dense)\.(weight|bias)$")
_LAYER_NORM_RE = re.compile(r"^encoder\.layer\.(\d+)\.(attention\.output|output)\.LayerNorm\."
                            r"(weight|bias|gamma|beta)$")
_FIXED = {
    "embeddings.word_embeddings.weight": ("bert/embeddings/word_embeddings", False),
    "embeddings.token_type_embeddings.weight": ("bert/embeddings/token_type_embeddings", False),
    "embeddings.position_embeddings.weight": ("bert/embeddings/position_embeddings", False),
    "pooler.dense.weight": ("bert/pooler/dense/kernel", True),
    "pooler.dense.bias": ("bert/pooler/dense/bias", False),
    # Pre-training heads (BertForPreTraining): kept so the checkpoint matches Google's.
    "cls.predictions.transform.dense.weight": ("cls/predictions/transform/dense/kernel", True),
    "cls.predictions.transform.dense.bias": ("cls/predictions/transform/dense/bias", False),
    "cls.predictions.bias": ("cls/predictions/output_bias", False),
    "cls.seq_relationship.weight": ("cls/seq_relationship/output_weights", False),
    "cls.seq_relationship.bias": ("cls/seq_relationship/output_bias", False),
}
_LN_SUFFIX = {"weight": "gamma", "gamma": "gamma", "bias": "beta", "beta": "beta"}
# Buffers and tied copies that Google's layout does not store.
_SKIP_RE = re.compile(r"(position_ids|cls\.predictions\.decoder\.(weight|bias))$")


def google_name(hf_name: str) -> Optional[Tuple[str, bool]]:
    """(Google name, transpose?) for a Hugging Face parameter name, or None if it has none."""
    name = hf_name[len("bert."):] if hf_name.startswith("bert.") else hf_name
    if name in _FIXED:
        return _FIXED[name]
    match = re.match(r"^(embeddings|cls\.predictions\.transform)\.LayerNorm\.(weight|bias|gamma|"
                     r"beta)$", name)
    if match:
        scope = "bert/embeddings" if match.group(1) == "embeddings" \
            else "cls/predictions/transform"
        return "%s/LayerNorm/%s" % (scope, _LN_SUFFIX[match.group(2)]), False
    match = _DENSE_RE.match(name)
    if match:
        layer, path, kind = match.groups()
        scope = "bert/encoder/layer_%s/%s" % (layer, path.replace(".", "/"))
        if kind == "weight":
            return scope + "/kernel", True  # torch Linear stores [out, in]; Google [in, out]
        return scope + "/bias", False
    match = _LAYER_NORM_RE.match(name)
    if match:
        layer, path, kind = match.groups()
        return ("bert/encoder/layer_%s/%s/LayerNorm/%s"
                % (layer, path.replace(".", "/"), _LN_SUFFIX[kind]), False)
    return None


def _truncated_normal(shape: List[int], stddev: float, seed: int) -> np.ndarray:
    """Normal values redrawn until within 2 stddev (as tf.truncated_normal), float32."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return (values * stddev).astype(np.float32)


def _fingerprint(hf_dir: str) -> Dict[str, List[int]]:
    """{file: [size, mtime_ns]} of the input files the conversion reads."""
    result = {}
    for name in sorted(os.listdir(hf_dir)):
        if name in ("config.json", "vocab.txt", "pytorch_model.bin",
                    "model.safetensors.index.json") or name.endswith(".safetensors"):
            stat = os.stat(os.path.join(hf_dir, name))
            result[name] = [stat.st_size, stat.st_mtime_ns]
    return result


def output_files() -> List[str]:
    """The files a complete output folder holds."""
    return [CHECKPOINT_NAME + ".index", CHECKPOINT_NAME + ".data-00000-of-00001",
            "bert_config.json", "vocab.txt", INFO_NAME]


def is_up_to_date(hf_dir: str, output_dir: str) -> bool:
    """True when output_dir holds a complete conversion of hf_dir as it is now."""
    info_path = os.path.join(output_dir, INFO_NAME)
    if not os.path.isdir(hf_dir):
        return False
    if not all(os.path.exists(os.path.join(output_dir, f)) for f in output_files()):
        return False
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return (info.get("converter_version") == CONVERTER_VERSION
            and info.get("source_dir") == os.path.abspath(hf_dir)
            and info.get("source_files") == _fingerprint(hf_dir))


def convert(hf_dir: str, output_dir: str, pooler_seed: int = POOLER_SEED) -> Dict:
    """Converts the Hugging Face folder `hf_dir` into Google's layout in `output_dir`.

    Returns the conversion info written to conversion_info.json. Raises ValueError for a
    folder that is not a complete BERT model.
    """
    # Imported here so `--help` and is_up_to_date() do not pay for TensorFlow.
    from bert_classifier.core import checkpoint_names, checkpoints, files
    import modeling

    config_path = os.path.join(hf_dir, "config.json")
    vocab_path = os.path.join(hf_dir, "vocab.txt")
    for path in (config_path, vocab_path):
        if not os.path.exists(path):
            raise ValueError("%s not found: a Hugging Face BERT folder needs config.json, "
                             "vocab.txt and the weights" % path)
    with open(config_path) as f:
        hf_config = json.load(f)
    config = bert_config_from_hf(hf_config, config_path)
    with open(vocab_path, encoding="utf-8") as f:
        vocab_lines = sum(1 for _ in f)
    if vocab_lines != config["vocab_size"]:
        logging.warning("%s has %d lines but vocab_size is %d", vocab_path, vocab_lines,
                        config["vocab_size"])

    weights = load_hf_weights(hf_dir)
    converted: Dict[str, np.ndarray] = {}
    skipped = []
    for hf_name in list(weights):
        mapped = google_name(hf_name)
        if mapped is None:
            if not _SKIP_RE.search(hf_name):
                skipped.append(hf_name)
            continue
        name, transpose = mapped
        array = weights[hf_name]
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        # One contiguous float32 copy per tensor; the memory map itself is never copied whole.
        converted[name] = np.ascontiguousarray(array.T if transpose else array)
    del weights
    if skipped:
        logging.warning("Not converted (no place in Google's BERT layout): %s",
                        ", ".join(skipped))

    expected = checkpoint_names.expected_variable_shapes(modeling.BertConfig.from_dict(config))
    pooler_note = "converted"
    pooler_names = ["bert/pooler/dense/kernel", "bert/pooler/dense/bias"]
    if not any(n in converted for n in pooler_names):
        pooler_note = ("randomly initialised: truncated normal stddev %g, seed %d; bias zeros"
                       % (config["initializer_range"], pooler_seed))
        message = ("%s has NO POOLER WEIGHTS: the pooler (bert/pooler/dense) is %s. The pooled "
                   "output (used by the classifier head) is therefore not pre-trained."
                   % (hf_dir, pooler_note))
        logging.warning(message)
        print("WARNING: " + message, file=sys.stderr)
        h = config["hidden_size"]
        converted["bert/pooler/dense/kernel"] = _truncated_normal(
            [h, h], config["initializer_range"], pooler_seed)
        converted["bert/pooler/dense/bias"] = np.zeros([h], np.float32)
    missing = [n for n in expected if n not in converted]
    if missing:
        raise ValueError("%s lacks weights for %d BERT variable(s): %s"
                         % (hf_dir, len(missing), ", ".join(missing)))
    wrong = ["%s %s (expected %s)" % (n, list(converted[n].shape), s)
             for n, s in expected.items() if list(converted[n].shape) != s]
    if wrong:
        raise ValueError("%s: weights do not match config.json: %s" % (hf_dir, "; ".join(wrong)))

    os.makedirs(output_dir, exist_ok=True)
    info_path = os.path.join(output_dir, INFO_NAME)
    if os.path.exists(info_path):
        os.remove(info_path)  # the folder is incomplete until the new info is written
    # bert/ names first in Google's order, then any pre-training head.
    ordered = {n: converted[n] for n in expected}
    ordered.update({n: v for n, v in converted.items() if n not in ordered})
    del converted
    checkpoints.write_checkpoint(os.path.join(output_dir, CHECKPOINT_NAME), ordered)
    del ordered
    bert_config = modeling.BertConfig.from_dict(config)
    files.write_file(os.path.join(output_dir, "bert_config.json"), bert_config.to_json_string())
    shutil.copyfile(vocab_path, os.path.join(output_dir, "vocab.txt"))
    info = {
        "converter_version": CONVERTER_VERSION,
        "source_dir": os.path.abspath(hf_dir),
        "source_files": _fingerprint(hf_dir),
        "source_hidden_act": hf_config.get("hidden_act", "gelu"),
        "pooler": pooler_note,
        "not_converted": skipped,
    }
    files.write_file(info_path, json.dumps(info, indent=2, sort_keys=True) + "\n")
    logging.info("Converted %s -> %s (hidden_act %s -> %s, pooler %s)", hf_dir, output_dir,
                 info["source_hidden_act"], config["hidden_act"], pooler_note)
    return info


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pretrained.convert_hf",
        description="Convert a Hugging Face BERT folder (config.json, vocab.txt, "
                    "model.safetensors or pytorch_model.bin) into Google's layout "
                    "(bert_model.ckpt, bert_config.json, vocab.txt).")
    parser.add_argument("--hf_dir", required=True, help="Hugging Face model folder.")
    parser.add_argument("--output_dir", required=True, help="Folder to write Google's files to.")
    parser.add_argument("--pooler_seed", type=int, default=POOLER_SEED,
                        help="Seed for the pooler initialisation when the model has no pooler.")
    parser.add_argument("--force", action="store_true",
                        help="Convert even if output_dir is already up to date.")
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.INFO)
    if not args.force and is_up_to_date(args.hf_dir, args.output_dir):
        print("%s is up to date with %s" % (args.output_dir, args.hf_dir))
        return 0
    try:
        convert(args.hf_dir, args.output_dir, pooler_seed=args.pooler_seed)
    except ValueError as e:
        print("convert_hf: error: %s" % e, file=sys.stderr)
        return 2
    print("Wrote %s" % args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
