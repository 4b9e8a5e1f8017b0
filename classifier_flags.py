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

FLAGS = flags.FLAGS


def _define(kind: str, name: str, default, help_text: str, **kwargs) -> None:
    """flags.DEFINE_<kind>(name, default, help), unless a flag of that name exists already."""
    if name in FLAGS:
        return
    if kind == "enum":
        flags.DEFINE_enum(name, default, kwargs.pop("enum_values"), help_text, **kwargs)
    else:
        getattr(flags, "DEFINE_" + kind)(name, default, help_text, **kwargs)


# ---------------------------------------------------------------------------------------------
# Shared groups.
# ---------------------------------------------------------------------------------------------
def _define_model_file_flags(do_lower_case: Optional[bool] = True,
                             max_seq_length: Optional[int] = 128) -> None:
    """The pre-trained model's files and the tokenization settings (the original's help)."""
    _define("string", "bert_config_file", None,
            "The config json file corresponding to the pre-trained BERT model. "
            "This specifies the model architecture.")
    _define("string", "vocab_file", None,
            "The vocabulary file that the BERT model was trained on.")
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


def _define_inference_flags() -> None:
    """How the model runs when it only computes outputs (eval, predict, vectors)."""
    _define("bool", "xla_inference", True,
            "Compile the eval/predict model step with XLA (jit_compile): 1.2-1.4x faster on CPU "
            "(bench/README.md). Results may differ from --noxla_inference in the last float32 "
            "bits; --xla_inference=false runs TensorFlow's ops one by one.")
    _define("integer", "inference_micro_batch_size", 16,
            "Eval and predict run the model on at most this many examples at a time inside each "
            "eval/predict batch (0 = the whole batch at once). Bounds the activation memory (the "
            "attention scores alone are batch x heads x seq x seq floats) without changing "
            "results or the batch-size flags.", lower_bound=0)
    _define("enum", "progress_bar", "auto",
            "A progress line with rate and ETA on stderr: auto = only when stderr is a terminal.",
            enum_values=["auto", "on", "off"])


def progress_setting(value: str) -> Optional[bool]:
    """--progress_bar's value as ProgressBar's `enabled` argument (None = decide by terminal)."""
    return {"auto": None, "on": True, "off": False}[value]


# ---------------------------------------------------------------------------------------------
# run_classifier.py
# ---------------------------------------------------------------------------------------------
# --length_multiple's default (bench/README.md, "Length-aware batches").
LENGTH_MULTIPLE_DEFAULT = 16

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
    _define("string", "processor_module", None,
            "A Python module (dotted name on sys.path, or a path to a .py file) to import before "
            "the task lookup, so that the DataProcessor subclasses it registers with "
            "@register_processor(name) can be used with --task_name.")
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
    _define("integer", "num_featurize_workers", None,
            "Processes used to tokenize examples into .tf_record files. Unset means one per CPU "
            "core. The records are identical whatever the count.")
    _define_inference_flags()
    _define_training_speed_flags()


def _define_training_speed_flags() -> None:
    """Length-aware batches, mixed precision, gradient accumulation and class weights."""
    _define("integer", "length_multiple", LENGTH_MULTIPLE_DEFAULT,
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


def mark_required() -> None:
    """Marks the original's five required flags of run_classifier.py (called only when run as a
    script, as the original does, so that importing run_classifier from a notebook does not
    demand them)."""
    for name in CLASSIFIER_REQUIRED_FLAGS:
        flags.mark_flag_as_required(name)
