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
"""

import ctypes
import importlib.util
import os

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
