"""Every command-line flag of run_classifier.py, defined in one place.

The first block is the original google-research/bert run_classifier.py flag set: same names, same
defaults, same meaning. The second block is what this port adds; none of it changes what the
original invocation does. flags.md documents each one.
"""

from absl import flags

FLAGS = flags.FLAGS

# ---------------------------------------------------------------------------------------------
# The original flags.
# ---------------------------------------------------------------------------------------------
flags.DEFINE_string(
    "data_dir", None,
    "The input data dir. Should contain the .tsv files (or other data files) for the task.")
flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file corresponding to the pre-trained BERT model. "
    "This specifies the model architecture.")
flags.DEFINE_string("task_name", None, "The name of the task to train.")
flags.DEFINE_string("vocab_file", None,
                    "The vocabulary file that the BERT model was trained on.")
flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints will be written.")
flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model).")
flags.DEFINE_bool(
    "do_lower_case", True,
    "Whether to lower case the input text. Should be True for uncased models and False for "
    "cased models.")
flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. Sequences longer "
    "than this will be truncated, and sequences shorter than this will be padded.")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")
flags.DEFINE_bool("do_predict", False,
                  "Whether to run the model in inference mode on the test set.")
flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")
flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")
flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")
flags.DEFINE_float("num_train_epochs", 3.0,
                   "Total number of training epochs to perform.")
flags.DEFINE_float(
    "warmup_proportion", 0.1,
    "Proportion of training to perform linear learning rate warmup for. "
    "E.g., 0.1 = 10% of training.")
flags.DEFINE_integer("save_checkpoints_steps", 1000,
                     "How often to save the model checkpoint.")
flags.DEFINE_integer(
    "iterations_per_loop", 1000,
    "How many steps to make in each call to the device (one host round trip).")
flags.DEFINE_bool("use_tpu", False, "Whether to use TPU or GPU/CPU.")
flags.DEFINE_string(
    "tpu_name", None,
    "The Cloud TPU to use for training: a TPU name or grpc://ip:8470 address for a TPU node, "
    "or empty/'local' for the TPU attached to this VM (Colab, Cloud TPU VM).")
flags.DEFINE_string(
    "tpu_zone", None,
    "[Optional] GCE zone where the Cloud TPU is located in. If not specified, we will attempt "
    "to automatically detect the GCE zone from metadata.")
flags.DEFINE_string(
    "gcp_project", None,
    "[Optional] Project name for the Cloud TPU-enabled project. If not specified, we will "
    "attempt to automatically detect the GCE project from metadata.")
flags.DEFINE_string("master", None, "[Optional] TensorFlow master URL.")
flags.DEFINE_integer(
    "num_tpu_cores", 8,
    "Only used if `use_tpu` is True. Total number of TPU cores to use.")

# ---------------------------------------------------------------------------------------------
# Additions of this port. Defaults keep the original behaviour.
# ---------------------------------------------------------------------------------------------
flags.DEFINE_string(
    "processor_module", None,
    "A Python module (dotted name on sys.path, or a path to a .py file) to import before the "
    "task lookup, so that the DataProcessor subclasses it registers with "
    "@register_processor(name) can be used with --task_name.")
flags.DEFINE_enum(
    "distribution_strategy", "one_device",
    ["one_device", "mirrored", "multi_worker_mirrored"],
    "How to spread training over devices when --use_tpu is False: one_device = the first GPU, "
    "else the CPU (the original's behaviour); mirrored = all local GPUs (or the "
    "--num_cpu_devices logical CPUs when there is no GPU); multi_worker_mirrored = several "
    "machines described by the TF_CONFIG environment variable.")
flags.DEFINE_integer(
    "num_cpu_devices", 1,
    "Split the CPU into this many logical devices. With --distribution_strategy=mirrored and "
    "no GPU this gives that many replicas: a way to test multi-replica training on a laptop.")
flags.DEFINE_integer(
    "seed", None,
    "Random seed for the classifier's initial weights, dropout and the training shuffle. "
    "Unset (the default) means a fresh random run, as the original. Set it for reproducible "
    "runs, and always for multi-worker runs so every worker reads batches in the same order.")
flags.DEFINE_integer(
    "keep_checkpoint_max", 5,
    "How many of the most recent checkpoints to keep in output_dir (the original's Estimator "
    "default is 5).")
flags.DEFINE_integer(
    "log_step_count_steps", 100,
    "Log the loss and global_step/sec every this many training steps (Estimator's default).")
flags.DEFINE_integer(
    "shuffle_buffer_size", 100,
    "Shuffle buffer of the training input pipeline; the original hard-codes 100.")
flags.DEFINE_integer(
    "num_featurize_workers", None,
    "Processes used to tokenize examples into .tf_record files. Unset means one per CPU core. "
    "The records are identical whatever the count.")
flags.DEFINE_enum(
    "progress_bar", "auto", ["auto", "on", "off"],
    "A progress line with steps/sec, loss and ETA on stderr: auto = only when stderr is a "
    "terminal.")

flags.DEFINE_bool(
    "xla_inference", True,
    "Compile the eval/predict model step with XLA (jit_compile): 1.2-1.4x faster on CPU "
    "(bench/README.md). Results may differ from --noxla_inference in the last float32 bits; "
    "--xla_inference=false runs TensorFlow's ops one by one.")

flags.DEFINE_integer(
    "inference_micro_batch_size", 16,
    "Eval and predict run the model on at most this many examples at a time inside each "
    "eval/predict batch (0 = the whole batch at once). Bounds the activation memory (the "
    "attention scores alone are batch x heads x seq x seq floats) without changing results "
    "or the batch-size flags.", lower_bound=0)

REQUIRED_FLAGS = ("data_dir", "task_name", "vocab_file", "bert_config_file", "output_dir")


def mark_required() -> None:
    """Marks the original's five required flags (called only when run as a script, as the
    original does, so that importing run_classifier from a notebook does not demand them)."""
    for name in REQUIRED_FLAGS:
        flags.mark_flag_as_required(name)
