"""Every command-line flag of the project's scripts, defined in one place.

Each script calls its `define_*_flags()` function at import: run_classifier.py (the original's
flag set, then this port's additions), extract_features.py (the original's extract_features
flags, then ours), predict.py and export_saved_model.py. Flags that several scripts share
(`vocab_file`, `max_seq_length`, the TPU and device flags, ...) are defined by one helper each,
so their names, defaults and help are the same everywhere. absl flags are process-wide: a flag
already defined (by another script's function in the same process) is left as it is.
flags.md documents every flag.
"""

from typing import Optional

from absl import flags

from bert_classifier.workflow import input_pipeline

FLAGS = flags.FLAGS

# Where _define puts flags: absl's process-wide FLAGS for the scripts, a private FlagValues for
# each fine_tune() call (run_classifier_flag_values), so calls never share settings.
_target: flags.FlagValues = FLAGS


def _define(kind: str, name: str, default, help_text: str, **kwargs) -> None:
    """flags.DEFINE_<kind>(name, default, help), unless a flag of that name exists already."""
    if name in _target:
        return
    kwargs["flag_values"] = _target
    if kind == "enum":
        flags.DEFINE_enum(name, default, kwargs.pop("enum_values"), help_text, **kwargs)
    else:
        getattr(flags, "DEFINE_" + kind)(name, default, help_text, **kwargs)


# ---------------------------------------------------------------------------------------------
# Shared groups.
# ---------------------------------------------------------------------------------------------
def _define_model_file_flags(do_lower_case: Optional[bool] = True,
                             max_seq_length: Optional[int] = 128,
                             init_checkpoint: bool = True) -> None:
    """The pre-trained model's files and the tokenization settings (the original's help)."""
    _define("string", "bert_config_file", None,
            "The config json file corresponding to the pre-trained BERT model. "
            "This specifies the model architecture.")
    _define("string", "vocab_file", None,
            "The vocabulary file that the BERT model was trained on.")
    if init_checkpoint:
        _define("string", "init_checkpoint", None,
                "Initial checkpoint (usually from a pre-trained BERT model).")
    _define("bool", "do_lower_case", do_lower_case,
            "Whether to lower case the input text. Should be True for uncased models and False "
            "for cased models.")
    _define("integer", "max_seq_length", max_seq_length,
            "The maximum total input sequence length after WordPiece tokenization. Sequences "
            "longer than this will be truncated, and sequences shorter than this will be padded.")


def _define_tpu_flags() -> None:
    """The original's TPU flags."""
    _define("bool", "use_tpu", False, "Whether to use TPU or GPU/CPU.")
    _define("string", "tpu_name", None,
            "The Cloud TPU to use: a TPU name or grpc://ip:8470 address for a TPU node, or "
            "empty/'local' for the TPU attached to this VM (Colab, Cloud TPU VM).")
    _define("string", "tpu_zone", None,
            "[Optional] GCE zone where the Cloud TPU is located in. If not specified, we will "
            "attempt to automatically detect the GCE zone from metadata.")
    _define("string", "gcp_project", None,
            "[Optional] Project name for the Cloud TPU-enabled project. If not specified, we "
            "will attempt to automatically detect the GCE project from metadata.")
    _define("string", "master", None, "[Optional] TensorFlow master URL.")
    _define("integer", "num_tpu_cores", 8,
            "Only used if `use_tpu` is True. Total number of TPU cores to use.")


def _define_device_flags() -> None:
    """How to spread the work over local devices when --use_tpu is False."""
    _define("enum", "distribution_strategy", "one_device",
            "How to spread the work over devices when --use_tpu is False: one_device = the first "
            "GPU, else the CPU (the original's behaviour); mirrored = all local GPUs (or the "
            "--num_cpu_devices logical CPUs when there is no GPU); multi_worker_mirrored = "
            "several machines described by the TF_CONFIG environment variable.",
            enum_values=["one_device", "mirrored", "multi_worker_mirrored"])
    _define("integer", "num_cpu_devices", 1,
            "Split the CPU into this many logical devices. With --distribution_strategy=mirrored "
            "and no GPU this gives that many replicas: a way to test multi-replica runs on a "
            "laptop.")


def _define_inference_flags(micro_batches: bool = True) -> None:
    """How the model runs when it only computes outputs (eval, predict, vectors). XLA is off by
    default in every script: batches cut to their longest example meet many lengths, each a
    new XLA compilation of seconds, and on CPUs where TensorFlow runs oneDNN the op-by-op step
    is also faster in steady state (bench/README.md, "Sentence vectors and raw-text
    prediction")."""
    _define("bool", "xla_inference", False,
            "Compile the model step of eval/predict/vectors with XLA (jit_compile), once per "
            "batch shape. Results may differ from --noxla_inference in the last float32 bits; "
            "worth it only for many batches of few shapes on a CPU without oneDNN "
            "(bench/README.md).")
    if micro_batches:
        _define("integer", "inference_micro_batch_size", 16,
                "Eval and predict run the model on at most this many examples at a time inside "
                "each eval/predict batch (0 = the whole batch at once). Bounds the activation "
                "memory (the attention scores alone are batch x heads x seq x seq floats) "
                "without changing results or the batch-size flags.", lower_bound=0)
    _define("enum", "progress_bar", "auto",
            "A progress line with rate and ETA on stderr: auto = only when stderr is a terminal.",
            enum_values=["auto", "on", "off"])


def _define_processor_module_flag() -> None:
    _define("string", "processor_module", None,
            "A Python module (dotted name on sys.path, or a path to a .py file) to import before "
            "the task lookup, so that the DataProcessor subclasses it registers with "
            "@register_processor(name) can be used with --task_name.")


def _define_input_encoding_flag() -> None:
    """The encoding of the data files the scripts read."""
    _define("string", "encoding", "utf-8",
            "Encoding of the data files (a Python codec name: utf-8, utf-16, cp1252, latin-1, "
            "...). With utf-8 (the original's reading) bytes that are not UTF-8 are dropped with "
            "a warning; other encodings are decoded strictly.")


def _define_checkpoint_load_flags() -> None:
    """How strictly init_checkpoint must fit the model of bert_config_file."""
    _define("bool", "allow_partial_checkpoint", False,
            "Load init_checkpoint even when the model leaves some of its bert/ variables unused "
            "or needs bert/ variables it lacks (they keep their initial values), with a warning "
            "listing them. By default that is an error (the original ignored it silently).")


# ---------------------------------------------------------------------------------------------
# run_classifier.py
# ---------------------------------------------------------------------------------------------
CLASSIFIER_REQUIRED_FLAGS = ("data_dir", "task_name", "vocab_file", "bert_config_file",
                             "output_dir")


def define_run_classifier_flags() -> None:
    """run_classifier.py: the original flag set (same names, defaults and meaning), then this
    port's additions, none of which changes what the original invocation does."""
    _define("string", "data_dir", None,
            "The input data dir. Should contain the .tsv files (or other data files) for the "
            "task.")
    _define("string", "task_name", None, "The name of the task to train.")
    _define("string", "output_dir", None,
            "The output directory where the model checkpoints will be written.")
    _define_model_file_flags()
    _define("bool", "do_train", False, "Whether to run training.")
    _define("bool", "do_eval", False, "Whether to run eval on the dev set.")
    _define("bool", "do_predict", False,
            "Whether to run the model in inference mode on the test set.")
    _define("integer", "train_batch_size", 32, "Total batch size for training.")
    _define("integer", "eval_batch_size", 8, "Total batch size for eval.")
    _define("integer", "predict_batch_size", 8, "Total batch size for predict.")
    _define("float", "learning_rate", 5e-5, "The initial learning rate for Adam.")
    _define("float", "num_train_epochs", 3.0, "Total number of training epochs to perform.")
    _define("float", "warmup_proportion", 0.1,
            "Proportion of training to perform linear learning rate warmup for. "
            "E.g., 0.1 = 10% of training.")
    _define("integer", "save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
    _define("integer", "iterations_per_loop", 1000,
            "How many steps to make in each call to the device (one host round trip).")
    _define_tpu_flags()

    # Additions of this port. Defaults keep the original behaviour.
    _define_processor_module_flag()
    _define_device_flags()
    _define("integer", "seed", None,
            "Random seed for the classifier's initial weights, dropout and the training shuffle. "
            "Unset (the default) means a fresh random run, as the original. Set it for "
            "reproducible runs, and always for multi-worker runs so every worker reads batches "
            "in the same order.")
    _define("integer", "keep_checkpoint_max", 5,
            "How many of the most recent checkpoints to keep in output_dir (the original's "
            "Estimator default is 5).")
    _define("integer", "log_step_count_steps", 100,
            "Log the loss and global_step/sec every this many training steps (Estimator's "
            "default).")
    _define("integer", "shuffle_buffer_size", 100,
            "Shuffle buffer of the training input pipeline; the original hard-codes 100.")
    _define("bool", "adam_bias_correction", False,
            "Adam with bias correction (divide its moments by 1 - beta^t, as standard Adam and "
            "Hugging Face's AdamW). Off: Google's AdamWeightDecay without it (the original). On "
            "short fine-tuning runs it is the more accurate (bench/README.md, accuracy ablation).")
    _define("integer", "num_featurize_workers", None,
            "Processes used to tokenize examples into .tf_record files. Unset means one per CPU "
            "core. The records are identical whatever the count.")
    _define_inference_flags()
    _define_input_encoding_flag()
    _define_checkpoint_load_flags()
    _define("integer", "eval_every_steps", None,
            "Evaluate the dev set during training every this many steps (and at the last "
            "step): logged, TensorBoard scalars in output_dir/eval, a row in "
            "output_dir/eval_history.tsv. Needs --do_train and --do_eval. Unset: no evaluation "
            "during training (the original).")
    _define("bool", "eval_at_checkpoints", False,
            "Evaluate the dev set during training whenever a checkpoint is saved (every "
            "save_checkpoints_steps and at the last step), like --eval_every_steps.")
    _define("string", "keep_best_checkpoint", None,
            "Keep the checkpoint with the best value of this dev-set metric in output_dir/best/ "
            "(never deleted by keep_checkpoint_max): eval_accuracy, eval_loss (lower is better), "
            "macro_f1, mcc or roc_auc (two labels). Needs evaluation during training.")
    _define("integer", "early_stopping_patience", None,
            "Stop training after this many evaluations in a row without improvement of "
            "--keep_best_checkpoint's metric (the step reached is saved as the final "
            "checkpoint).")
    _define_training_speed_flags()


def _define_training_speed_flags() -> None:
    """Length-aware batches, mixed precision, gradient accumulation and class weights."""
    _define("integer", "length_multiple", input_pipeline.DEFAULT_LENGTH_MULTIPLE,
            "Cut every train/eval/predict batch to its longest example, rounded up to a multiple "
            "of this (0 = every batch keeps max_seq_length, as the original). Results equal "
            "the fixed-length ones up to float rounding; ignored on TPU (static shapes).",
            lower_bound=0)
    _define("bool", "bucket_by_length", False,
            "Training batches of examples of similar length (windows of 16 batches sorted by "
            "length, the batches shuffled; seeded by --seed): less padding with "
            "--length_multiple.")
    _define("enum", "precision", "float32",
            "Compute precision: float32 (the original); bfloat16 (TPU, GPUs of compute "
            "capability 8.0+, CPUs with AVX512_BF16/AMX); mixed_float16 (GPU, with dynamic loss "
            "scaling). Variables, optimizer state, checkpoints and outputs stay float32.",
            enum_values=["float32", "bfloat16", "mixed_float16"])
    _define("integer", "gradient_accumulation_steps", 1,
            "Compute each training step's batch (--train_batch_size, still the batch of one "
            "update) as this many micro-batches in turn, summing their gradients: the same "
            "update with one micro-batch's activations in memory. Must divide the per-replica "
            "batch.")
    _define("string", "class_weights", None,
            "Weight each training example's loss by its label: 'auto' (inverse label frequency "
            "in the training set, averaging 1 over its examples) or one weight per label in "
            "get_labels() order, e.g. '1,3'. Eval metrics stay unweighted.")


def run_classifier_flag_values() -> flags.FlagValues:
    """A new FlagValues holding run_classifier.py's flags with their defaults, not yet parsed:
    the settings of one fine_tune() call, independent of absl's FLAGS and of other calls."""
    global _target
    flag_values = flags.FlagValues()
    previous, _target = _target, flag_values
    try:
        define_run_classifier_flags()
    finally:
        _target = previous
    return flag_values


def mark_required() -> None:
    """Marks the original's five required flags of run_classifier.py (called only when run as a
    script, as the original does, so that importing run_classifier from a notebook does not
    demand them)."""
    for name in CLASSIFIER_REQUIRED_FLAGS:
        flags.mark_flag_as_required(name)


# ---------------------------------------------------------------------------------------------
# extract_features.py
# ---------------------------------------------------------------------------------------------
EXTRACT_REQUIRED_FLAGS = ("input_file", "output_file", "init_checkpoint")


def define_extract_features_flags() -> None:
    """extract_features.py: the original's flags (same names, defaults and meaning), then this
    port's additions (sentence vectors, folders, devices)."""
    _define("string", "input_file", None,
            "One example a line: a sentence, or a pair written `text_a ||| text_b`.")
    _define("string", "output_file", None,
            "Where the features go: JSON lines (the original's format), or with --pooling one "
            "vector a line as JSON lines, or a float32 .npy array [lines, hidden] when the name "
            "ends in .npy.")
    _define("string", "layers", "-1,-2,-3,-4",
            "Comma-separated encoder layer indexes to write per token (-1 = the last).")
    _define_model_file_flags()
    _define("integer", "batch_size", 32, "Batch size for predictions.")
    _define_tpu_flags()
    _define("bool", "use_one_hot_embeddings", False,
            "If True, tf.one_hot will be used for embedding lookups, otherwise tf.nn.embedding_"
            "lookup will be used. On TPUs, this should be True since it is much faster. (Accepted "
            "for compatibility: both give the same values here, and the gather is used.)")

    # Additions of this port.
    _define("enum", "pooling", None,
            "Write one vector per line instead of per-token layers: cls = the last layer at "
            "[CLS]; mean = the mean of the last layer over the line's tokens (sentence-"
            "transformers' pooling); pooled = the pooler output that run_classifier's head reads.",
            enum_values=["cls", "mean", "pooled"])
    _define("bool", "normalize", False,
            "With --pooling: scale every vector to unit L2 norm (cosine similarity = dot product).")
    _define_input_encoding_flag()
    _define_device_flags()
    _define_inference_flags(micro_batches=False)


# ---------------------------------------------------------------------------------------------
# predict.py
# ---------------------------------------------------------------------------------------------
def _define_model_dir_flags(model_dir_help: str) -> None:
    """A trained output_dir (or model folder) to use, and what stands in for what it lacks."""
    _define("string", "model_dir", None, model_dir_help)
    _define("string", "checkpoint", None,
            "The checkpoint to use: a prefix (model.ckpt-75, or a path), or a folder (its "
            "latest); default: the latest checkpoint in --model_dir.")
    # What a folder without model_info.json (e.g. the original TF1 run_classifier's output_dir)
    # does not record.
    _define_model_file_flags(do_lower_case=None, max_seq_length=None, init_checkpoint=False)
    _define("string", "task_name", None,
            "The task whose get_labels() gives the label list, for a model_dir without "
            "model_info.json.")
    _define_processor_module_flag()
    _define("list", "labels", None,
            "The label list in get_labels() order (comma-separated), for a model_dir without "
            "model_info.json.")


def define_predict_flags() -> None:
    """predict.py: classify raw text with a fine-tuned run_classifier output_dir."""
    _define_model_dir_flags(
        "A run_classifier.py --do_train output_dir: its model_info.json, bert_config.json, "
        "vocab.txt and checkpoints are all predict.py needs.")
    _define("string", "input_file", None,
            "Texts to classify: a .tsv or .csv file with a header row naming text_a (and "
            "optionally text_b and guid), or JSON lines with those keys; - reads stdin.")
    _define("enum", "input_format", "auto",
            "Format of --input_file: auto = by the file name (.csv, .jsonl/.json, else tsv; "
            "stdin: JSON lines if the first character is {, else tsv).",
            enum_values=["auto", "tsv", "csv", "jsonl"])
    _define("string", "text_a", None, "Classify this one text (instead of --input_file).")
    _define("string", "text_b", None, "The second text of the pair given by --text_a.")
    _define("string", "output_file", "-",
            "Where the TSV of predictions goes (guid, label, one probability column per label); "
            "- = stdout.")
    _define("integer", "batch_size", 32, "Batch size for predictions.")
    _define_input_encoding_flag()
    _define_device_flags()
    _define_inference_flags()


# ---------------------------------------------------------------------------------------------
# export_saved_model.py
# ---------------------------------------------------------------------------------------------
def define_export_flags() -> None:
    """export_saved_model.py: a SavedModel with raw-string signatures, or a weights-only
    checkpoint, from a trained output_dir (or, with --encoder, any model folder)."""
    _define_model_dir_flags(
        "A run_classifier.py --do_train output_dir; with --encoder also a pre-trained model "
        "folder (bert_config.json, vocab.txt, one checkpoint).")
    _define("string", "export_dir", None,
            "Where the SavedModel (or with --weights_only the checkpoint folder) is written; it "
            "must not exist yet or be empty.")
    _define("bool", "encoder", False,
            "Export a sentence encoder (text -> vector) instead of the classifier.")
    _define("enum", "pooling", "mean",
            "With --encoder: the vector of a text (cls, mean or pooled; see extract_features.py).",
            enum_values=["cls", "mean", "pooled"])
    _define("bool", "normalize", False, "With --encoder: unit L2 norm per vector.")
    _define("bool", "weights_only", False,
            "Write export_dir/bert_model.ckpt (Google's names, no optimizer slots) with "
            "bert_config.json, vocab.txt and model_info.json, instead of a SavedModel.")
