"""The process environment every script sets before TensorFlow is imported.

Import it first in an entry point (`from bert_classifier.cli import script_env`, before
`tensorflow`; importing the package `bert_classifier` does it too):

- `TF_USE_LEGACY_KERAS=1`: every `tf.keras` is tf_keras (Keras 2), as the project's modules.
- `TF_CPU_ALLOCATOR_USE_BFC=true`: CPU tensors come from TensorFlow's BFC allocator, which keeps
  one pool and reuses its blocks, instead of glibc malloc, whose per-thread arenas (the input
  pipeline's threads too) each keep their own freed memory: lower peak RSS in training and in
  eval/predict (bench/README.md).
- `TF_CPP_MIN_LOG_LEVEL=2`: TensorFlow's C++ INFO and WARNING lines (CUDA stub, oneDNN and CPU
  feature notices, XLA service lines, "Local rendezvous is aborting ...") stay off the terminal,
  which then shows the scripts' own log lines and progress bars. The same level is given to
  the Abseil C++ logger, which XLA uses directly ("Compiled cluster using XLA!") and which
  ignores the variable.

A value already in the environment wins, e.g. `TF_CPP_MIN_LOG_LEVEL=0` shows everything.

Two more things a first run should not show:

- On a machine without the NVIDIA driver (no `libcuda.so.1` to load), TensorFlow's first look
  for GPUs logs `E ... failed call to cuInit: ... (303)` at ERROR level, which the log level
  does not hide. There no GPU can be used at all, so this module imports TensorFlow and makes
  that first look itself with the process's stderr pointed at /dev/null for that call only
  (DRIVERLESS_GPU_PROBE_QUIETED says it did). With a driver nothing is hidden: a failing GPU
  then says why. `TF_CPP_MIN_LOG_LEVEL=0` also keeps the line.
- Ctrl-C before a script's main() runs (while TensorFlow is imported, say) ends it with one line,
  `script.py: interrupted`, instead of a traceback (errors.main_with_clean_errors handles Ctrl-C
  inside main()). BERT_TRACEBACK=1 keeps the traceback.
"""

import ctypes
import importlib.util
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# absl::SetMinLogLevel(absl::LogSeverityAtLeast) of the Abseil copy inside TensorFlow
# (severity 0 INFO, 1 WARNING, 2 ERROR, 3 FATAL; the C++ enum is an int).
_ABSL_SET_MIN_LOG_LEVEL = "_ZN4absl12lts_2025012714SetMinLogLevelENS0_18LogSeverityAtLeastE"


def _quiet_abseil_logging() -> bool:
    """Gives TF_CPP_MIN_LOG_LEVEL to the Abseil logger of TensorFlow's framework library.

    Loading the library here (without importing TensorFlow) is the same load TensorFlow does
    later, so the setting holds for it. Returns False, changing nothing, when TensorFlow or the
    symbol (another Abseil version) is not there.
    """
    try:
        level = max(0, min(3, int(os.environ["TF_CPP_MIN_LOG_LEVEL"])))
    except ValueError:
        return False
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return False
    library = os.path.join(list(spec.submodule_search_locations)[0],
                           "libtensorflow_framework.so.2")
    try:
        set_min_log_level = getattr(ctypes.CDLL(library), _ABSL_SET_MIN_LOG_LEVEL)
    except (OSError, AttributeError):
        return False
    set_min_log_level(ctypes.c_int(level))
    return True


ABSEIL_LOG_LEVEL_SET = _quiet_abseil_logging()


def _cuda_driver_missing() -> bool:
    """True on Linux when the NVIDIA driver library cannot be loaded (no GPU is usable)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return True
    return False


def _probe_gpus_quietly() -> bool:
    """Imports TensorFlow and lists the GPUs once with stderr (fd 2) sent to /dev/null: the
    CUDA platform initializes once per process, so its driverless cuInit error is not written
    again later. Returns whether it did."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" or not _cuda_driver_missing():
        return False
    import tensorflow as tf
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        tf.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return True


def _interrupted_hook(previous):
    """sys.excepthook: an uncaught KeyboardInterrupt prints one line, the rest as before."""
    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt) and not os.environ.get("BERT_TRACEBACK"):
            sys.stderr.write("%s: interrupted\n" % os.path.basename(sys.argv[0] or "python"))
            return
        previous(exc_type, exc, tb)
    return hook


sys.excepthook = _interrupted_hook(sys.excepthook)
DRIVERLESS_GPU_PROBE_QUIETED = _probe_gpus_quietly()
