"""The environment TensorFlow reads when it is imported, set before it is (importing the
package `bert_classifier` does it, and so every script):

- `TF_USE_LEGACY_KERAS=1`: every `tf.keras` is tf_keras (Keras 2), as the project's modules.
- `TF_CPU_ALLOCATOR_USE_BFC=true`: CPU tensors come from TensorFlow's BFC allocator, which keeps
  one pool and reuses its blocks, instead of glibc malloc, whose per-thread arenas (the input
  pipeline's threads too) each keep their own freed memory: lower peak RSS in training and in
  eval/predict (bench/README.md).
- `TF_CPP_MIN_LOG_LEVEL=2`: TensorFlow's C++ INFO and WARNING lines (CUDA stub, oneDNN and CPU
  feature notices, XLA service lines, "Local rendezvous is aborting ...") stay off the terminal
  or notebook cell. The same level is given to the Abseil C++ logger, which XLA uses directly
  ("Compiled cluster using XLA!") and which ignores the variable.

A value already in the environment wins, e.g. `TF_CPP_MIN_LOG_LEVEL=0` shows everything.
Importing this module does not import TensorFlow. `quiet_driverless_gpu_probe()` hides the
driverless `failed call to cuInit` error (scripts call it at start through cli/script_env,
fine_tune and the inference API before they look for devices).
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


_PROBED = []


def quiet_driverless_gpu_probe() -> bool:
    """On a machine without the NVIDIA driver: imports TensorFlow and lists the GPUs once with
    stderr (fd 2) sent to /dev/null. The CUDA platform initializes once per process, so its
    driverless cuInit error is not written later either. Returns whether it did (once per
    process; False with a driver, or with TF_CPP_MIN_LOG_LEVEL=0)."""
    if _PROBED:
        return _PROBED[0]
    _PROBED.append(False)
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
    _PROBED[0] = True
    return True
