"""Use a BERT model from Python: sentence vectors and answers for new text, loaded once.

    from bert_classifier.api.inference import Encoder, Classifier

    encoder = Encoder.load("pretrained/minilm_L-6_H-384_A-12")       # or a fine-tuned output_dir
    vectors = encoder.encode(["a sentence", "another"], pooling="mean", normalize=True)  # [2, 384]

    clf = Classifier.load("output/sim_bbc")                          # a run_classifier output_dir
    result = clf.predict([("text a", "text b")])   # result.labels ["1"], result.probabilities [1, 2]

A text is a string (one sentence) or a (text_a, text_b) pair (a tuple, a list, a row of a numpy
array such as a DataFrame's .values); text_b None, "" or NaN means a single
sentence. Texts are tokenized exactly as run_classifier.py tokenizes them
(features.encode_texts), then run in batches: sorted by length, each batch cut to its longest
text (rounded up to a multiple of 8, so few shapes are compiled) instead of max_seq_length --
short texts do not pay for 128 positions; the results are the same up to float noise, because
padding positions are masked. On a TPU the shapes stay static (full max_seq_length batches).
The model runs op by op by default (jit_compile=False): with batches of many lengths, XLA would
compile each new length (seconds each) for no steady-state gain (bench/README.md).

extract_features.py and predict.py are thin command lines over these two classes.
"""
import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.core import checkpoint_names  # noqa: E402
from bert_classifier.workflow import features  # noqa: E402
from bert_classifier.workflow import model_dir as model_dir_lib  # noqa: E402
from bert_classifier.checks import preflight  # noqa: E402
from bert_classifier.core import kill_points  # noqa: E402
from bert_classifier.core import tf_environment  # noqa: E402
import tokenization  # noqa: E402
from bert_classifier.workflow import forward  # noqa: E402
from bert_classifier.workflow import input_pipeline  # noqa: E402
from bert_classifier.workflow import strategies  # noqa: E402
from bert_classifier.core.progress import ProgressBar  # noqa: E402

Text = Union[str, Tuple[str, Optional[str]]]

DEFAULT_BATCH_SIZE = 64


class TextsError(TypeError, ValueError):
    """The texts given to the API are not a list of strings or (text_a, text_b) pairs (a
    TypeError, and a ValueError as every bad input of this project)."""


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def as_pairs(texts: Sequence[Text]) -> List[Tuple[str, Optional[str]]]:
    """Strings and (text_a, text_b) pairs -> (text_a, text_b or None) pairs, every item checked
    before any is tokenized; TextsError names the first wrong one (`texts[1]: ...`)."""
    if isinstance(texts, (str, bytes)):
        raise TextsError("texts: expected a list of texts, got a single string: wrap it in a "
                         "list")
    try:
        items = list(texts)
    except TypeError:
        raise TextsError("texts: expected a list of strings or (text_a, text_b) pairs, got %s"
                         % _type_name(texts)) from None
    pairs = []
    for index, text in enumerate(items):
        if isinstance(text, (str, bytes)):
            pairs.append((text, None))
            continue
        # A pair: a tuple, a list or a row of a numpy array (e.g. a DataFrame's .values).
        is_sequence = isinstance(text, (tuple, list)) or (
            isinstance(text, np.ndarray) and text.ndim == 1)
        if not is_sequence or len(text) != 2:
            got = ("a %s of %d" % (type(text).__name__, len(text)) if is_sequence
                   else _type_name(text))
            raise TextsError("texts[%d]: expected a string or a (text_a, text_b) pair, got %s"
                             % (index, got))
        text_a, text_b = text
        if isinstance(text_b, float) and text_b != text_b:
            text_b = None  # NaN: how pandas marks a missing text_b
        if not isinstance(text_a, (str, bytes)):
            raise TextsError("texts[%d]: text_a must be a string, got %s"
                             % (index, _type_name(text_a)))
        if text_b is not None and not isinstance(text_b, (str, bytes)):
            raise TextsError("texts[%d]: text_b must be a string or None, got %s"
                             % (index, _type_name(text_b)))
        pairs.append((text_a, text_b or None))
    return pairs


def _is_tpu(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy)


class _BertRunner:
    """What Encoder and Classifier share: the ModelInfo, the tokenizer, the strategy, and
    running a compiled step over length-sorted, length-trimmed, replica-split batches."""

    def __init__(self, info: model_dir_lib.ModelInfo, strategy: tf.distribute.Strategy,
                 batch_size: int):
        if batch_size <= 0:
            raise ValueError("batch_size=%d: expected a positive number" % batch_size)
        self.info = info
        self.strategy = strategy
        self.batch_size = batch_size
        self.max_seq_length = info.max_seq_length
        # Batches are cut to their longest text by the batch-length rule of training.
        self.length_multiple = info.length_multiple
        # The scripts' checks (preflight.py), before anything is built.
        self.bert_config = preflight.load_bert_config(info.bert_config_file)
        preflight.check_max_seq_length(info.max_seq_length, self.bert_config)
        preflight.check_vocab(info.vocab_file, self.bert_config)
        self.tokenizer = tokenization.FullTokenizer(info.vocab_file, info.do_lower_case)
        self.checkpoint = info.checkpoint

    def encode_texts(self, texts: Sequence[Text]) -> features.EncodedTexts:
        """Tokenized, laid out and padded to max_seq_length (see features.encode_texts)."""
        return features.encode_texts(as_pairs(texts), self.max_seq_length, self.tokenizer)

    def _batches(self, encoded: features.EncodedTexts, batch_size: int, sort: bool
                 ) -> Iterator[Tuple[np.ndarray, Dict[str, np.ndarray]]]:
        """(row indexes, feature arrays [b, S]) per batch; b is padded up to a multiple of the
        replicas (and to batch_size on TPU) with all-zero rows, whose results are dropped."""
        count = len(encoded.lengths)
        order = (np.argsort(-encoded.lengths, kind="stable") if sort
                 else np.arange(count))
        replicas = self.strategy.num_replicas_in_sync
        static = _is_tpu(self.strategy)
        for start in range(0, count, batch_size):
            rows = order[start:start + batch_size]
            seq_length = self.max_seq_length if static else input_pipeline.batch_length(
                int(encoded.lengths[rows].max()), self.length_multiple, self.max_seq_length)
            size = batch_size if static else -(-len(rows) // replicas) * replicas
            arrays = {}
            for name in ("input_ids", "input_mask", "segment_ids"):
                values = getattr(encoded, name)[rows, :seq_length]
                if size > len(rows):
                    values = np.concatenate(
                        [values, np.zeros([size - len(rows), seq_length], np.int32)])
                arrays[name] = values
            yield rows, arrays

    def _distribute(self, arrays: Dict[str, np.ndarray]):
        """The batch split into consecutive equal slices, one per replica."""
        replicas = self.strategy.num_replicas_in_sync
        per_replica = len(arrays["input_ids"]) // replicas

        def value_fn(context: tf.distribute.InputContext):
            start = context.replica_id_in_sync_group * per_replica
            return {name: tf.constant(values[start:start + per_replica])
                    for name, values in arrays.items()}
        return self.strategy.experimental_distribute_values_from_function(value_fn)

    def _run(self, run_step, encoded: features.EncodedTexts, batch_size: Optional[int],
             sort: bool, progress: Optional[bool], desc: str
             ) -> Iterator[Tuple[np.ndarray, Dict[str, np.ndarray]]]:
        """Runs run_step over every batch; yields (row indexes, {output: [rows, ...]})."""
        batch_size = batch_size or self.batch_size
        if batch_size <= 0:
            raise ValueError("batch_size=%d: expected a positive number" % batch_size)
        bar = ProgressBar(len(encoded.lengths), desc, enabled=progress, unit="texts")
        for rows, arrays in self._batches(encoded, batch_size, sort):
            outputs = run_step(self._distribute(arrays))
            if not isinstance(outputs, dict):
                outputs = {"out": outputs}
            merged = {}
            for name, per_replica in outputs.items():
                # Replicas hold consecutive slices of the batch (see _distribute).
                parts = [local.numpy() for local in
                         self.strategy.experimental_local_results(per_replica)]
                merged[name] = np.concatenate(parts, axis=0)[:len(rows)]
            bar.update(len(rows))
            kill_points.reached("inference_batch")
            yield rows, merged
        bar.close()


def _load(model: tf.Module, checkpoint: Optional[str], flag: str, what: str) -> None:
    """Loads every variable of the built model from checkpoint (forward.load_weights, complete:
    one read of its index, checked to fit the model); errors name `flag`."""
    if not checkpoint:
        raise ValueError("no checkpoint to load the %s from (the folder holds none): pass --%s"
                         % (what, flag))
    logging.info("Restoring %s parameters from %s", what, checkpoint)
    try:
        forward.load_weights(checkpoint_names.variables_by_checkpoint_name(model),
                             checkpoint=checkpoint, complete=True)
    except ValueError as error:
        raise ValueError(f"--{flag}={checkpoint}: {error}") from None


class Encoder(_BertRunner):
    """A BERT encoder, loaded once: sentence vectors and per-token layer outputs."""

    def __init__(self, info: model_dir_lib.ModelInfo,
                 strategy: Optional[tf.distribute.Strategy] = None, jit_compile: bool = False,
                 batch_size: int = DEFAULT_BATCH_SIZE, checkpoint_flag: str = "checkpoint"):
        """Builds the BertModel of info.bert_config_file under `strategy` (default: the first
        GPU, else the CPU) and loads the `bert/` variables of info.checkpoint (errors name
        `checkpoint_flag`)."""
        tf_environment.quiet_driverless_gpu_probe()  # before the first look for devices
        strategy = strategy or strategies.create_strategy("one_device")
        super().__init__(info, strategy, batch_size)
        self.jit_compile = jit_compile
        self.bert = forward.build_encoder(self.bert_config, strategy)
        _load(self.bert, self.checkpoint, checkpoint_flag, "encoder")
        self._steps: Dict[tuple, object] = {}

    @classmethod
    def load(cls, model_dir: str, checkpoint: Optional[str] = None, *,
             do_lower_case: Optional[bool] = None, max_seq_length: Optional[int] = None,
             bert_config_file: Optional[str] = None, vocab_file: Optional[str] = None,
             strategy: Optional[tf.distribute.Strategy] = None, jit_compile: bool = False,
             batch_size: int = DEFAULT_BATCH_SIZE, length_multiple: Optional[int] = None
             ) -> "Encoder":
        """An Encoder from a folder: a pre-trained one (bert_config.json, vocab.txt, one
        checkpoint) or a run_classifier output_dir (its latest checkpoint's bert/ variables).
        Keyword arguments override what the folder records (length_multiple: the batch-length
        rule's multiple, default the folder's model_info.json, else 16; 0 = max_seq_length)."""
        info = model_dir_lib.load_model_info(
            model_dir, checkpoint, bert_config_file=bert_config_file, vocab_file=vocab_file,
            do_lower_case=do_lower_case, max_seq_length=max_seq_length,
            length_multiple=length_multiple)
        return cls(info, strategy=strategy, jit_compile=jit_compile, batch_size=batch_size)

    @property
    def hidden_size(self) -> int:
        return int(self.bert_config.hidden_size)

    def _step(self, pooling: Optional[str], normalize: bool, layer_indexes: Tuple[int, ...]):
        key = (pooling, normalize, layer_indexes)
        if key not in self._steps:
            self._steps[key] = forward.make_encode_step(
                self.bert, self.strategy, self.jit_compile, pooling, normalize, layer_indexes)
        return self._steps[key]

    def encode(self, texts: Sequence[Text], pooling: str = "mean", normalize: bool = False,
               batch_size: Optional[int] = None, progress: Optional[bool] = False
               ) -> np.ndarray:
        """One vector per text: float32 [len(texts), hidden_size], in input order.

        pooling: "mean" (mean of the last layer over the text's tokens, [CLS] and [SEP]
        included -- what sentence-transformers models such as all-MiniLM-L6-v2 were trained
        for), "cls" (the last layer at [CLS]) or "pooled" (the pooler's tanh(dense([CLS])),
        what run_classifier's head reads). normalize: unit L2 norm (cosine similarity becomes a
        dot product).
        """
        forward.check_pooling(pooling)
        encoded = self.encode_texts(texts)
        vectors = np.zeros([len(encoded.lengths), self.hidden_size], np.float32)
        step = self._step(pooling, normalize, ())
        for rows, outputs in self._run(step, encoded, batch_size, sort=True, progress=progress,
                                       desc="encode"):
            vectors[rows] = outputs["vector"]
        return vectors

    def layer_outputs(self, texts: Sequence[Text], layer_indexes: Sequence[int] = (-1,),
                      batch_size: Optional[int] = None, progress: Optional[bool] = False
                      ) -> Iterator["TokenLayers"]:
        """Per text, in input order: its tokens and the requested encoder layers' outputs at
        those tokens ([len(tokens), hidden_size] float32 each) -- what extract_features.py
        writes. Layer indexes count from 0 (first encoder layer) or from -1 (last)."""
        num_layers = int(self.bert_config.num_hidden_layers)
        layer_indexes = tuple(int(i) for i in layer_indexes)
        for index in layer_indexes:
            if not -num_layers <= index < num_layers:
                raise ValueError("layer %d does not exist: the model has %d encoder layers "
                                 "(indexes 0..%d or -%d..-1)" % (index, num_layers,
                                                                 num_layers - 1, num_layers))
        # Checked now, not at the first next() of the generator.
        return self._layer_outputs(self.encode_texts(texts), layer_indexes, batch_size,
                                   progress)

    def _layer_outputs(self, encoded: features.EncodedTexts, layer_indexes: Tuple[int, ...],
                       batch_size: Optional[int], progress: Optional[bool]
                       ) -> Iterator["TokenLayers"]:
        inv_vocab = self.tokenizer.inv_vocab
        step = self._step(None, False, layer_indexes)
        for rows, outputs in self._run(step, encoded, batch_size, sort=False, progress=progress,
                                       desc="extract"):
            for offset, row in enumerate(rows):
                length = int(encoded.lengths[row])
                tokens = [inv_vocab[int(i)] for i in encoded.input_ids[row, :length]]
                yield TokenLayers(
                    tokens=tokens, truncated=bool(encoded.truncated[row]),
                    layers={index: outputs["layer_%d" % index][offset, :length]
                            for index in layer_indexes})


@dataclasses.dataclass
class TokenLayers:
    """One text's tokens ([CLS] ... [SEP]) and, per requested layer index, its output
    [len(tokens), hidden] float32."""
    tokens: List[str]
    layers: Dict[int, np.ndarray]
    truncated: bool


@dataclasses.dataclass
class Predictions:
    """labels: the predicted label per text; probabilities: float32 [texts, num_labels],
    columns in label_names (get_labels()) order; truncated: bool [texts], texts cut to
    max_seq_length."""
    labels: List[str]
    probabilities: np.ndarray
    label_names: List[str]
    truncated: np.ndarray


class Classifier(_BertRunner):
    """A fine-tuned run_classifier model, loaded once: labels and probabilities for new text."""

    def __init__(self, info: model_dir_lib.ModelInfo,
                 strategy: Optional[tf.distribute.Strategy] = None, jit_compile: bool = False,
                 batch_size: int = DEFAULT_BATCH_SIZE, micro_batch_size: int = 16):
        """Builds the BertClassifier for info.labels under `strategy` (default: the first GPU,
        else the CPU) and loads info.checkpoint, which must hold a classifier head
        (output_weights [num_labels, hidden]) for as many labels as info.labels."""
        if not info.labels:
            raise ValueError("%s: no labels known for the classifier" % info.model_dir)
        tf_environment.quiet_driverless_gpu_probe()  # before the first look for devices
        strategy = strategy or strategies.create_strategy("one_device")
        super().__init__(info, strategy, batch_size)
        self.labels = list(info.labels)
        self.model = forward.build_classifier(self.bert_config, len(self.labels), strategy)
        _load(self.model, self.checkpoint, "checkpoint", "classifier")
        self._step = forward.make_predict_step(self.model, strategy, jit_compile,
                                               micro_batch_size)

    @classmethod
    def load(cls, model_dir: str, checkpoint: Optional[str] = None, *,
             labels: Optional[Sequence[str]] = None, do_lower_case: Optional[bool] = None,
             max_seq_length: Optional[int] = None, bert_config_file: Optional[str] = None,
             vocab_file: Optional[str] = None, strategy: Optional[tf.distribute.Strategy] = None,
             jit_compile: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
             micro_batch_size: int = 16, flag_hint: str = "",
             length_multiple: Optional[int] = None) -> "Classifier":
        """A Classifier from a run_classifier.py output_dir (model_info.json, bert_config.json,
        vocab.txt and checkpoints; its latest checkpoint unless `checkpoint` names one).
        Keyword arguments stand in for what the folder does not record (e.g. an output_dir of
        Google's original run_classifier.py, which writes no model_info.json; length_multiple:
        as Encoder.load)."""
        info = model_dir_lib.load_model_info(
            model_dir, checkpoint, bert_config_file=bert_config_file, vocab_file=vocab_file,
            do_lower_case=do_lower_case, max_seq_length=max_seq_length,
            labels=list(labels) if labels else None, require_labels=True, flag_hint=flag_hint,
            length_multiple=length_multiple)
        return cls(info, strategy=strategy, jit_compile=jit_compile, batch_size=batch_size,
                   micro_batch_size=micro_batch_size)

    def predict_proba(self, texts: Sequence[Text], batch_size: Optional[int] = None,
                      progress: Optional[bool] = False) -> np.ndarray:
        """Softmax probabilities float32 [len(texts), num_labels], in input order."""
        return self.predict(texts, batch_size, progress).probabilities

    def predict(self, texts: Sequence[Text], batch_size: Optional[int] = None,
                progress: Optional[bool] = False) -> Predictions:
        """The predicted label and the probabilities of every label, for each text."""
        encoded = self.encode_texts(texts)
        probabilities = np.zeros([len(encoded.lengths), len(self.labels)], np.float32)
        for rows, outputs in self._run(self._step, encoded, batch_size, sort=True,
                                       progress=progress, desc="predict"):
            probabilities[rows] = outputs["out"]
        return Predictions(labels=forward.predicted_labels(probabilities, self.labels),
                           probabilities=probabilities, label_names=list(self.labels),
                           truncated=encoded.truncated)
