"""What every script does first, before TensorFlow is imported (`from bert_classifier.cli import
script_env`, the first import of an entry point):

- the environment TensorFlow reads at import (core/tf_environment.py: tf_keras, the BFC
  allocator, quiet C++ logs; importing the package sets it too);
- on a machine without the NVIDIA driver (no `libcuda.so.1` to load), TensorFlow's first look
  for GPUs logs `E ... failed call to cuInit: ... (303)` at ERROR level, which the log level
  does not hide. There no GPU can be used at all, so this module makes that first look itself
  with the process's stderr pointed at /dev/null for that call only
  (DRIVERLESS_GPU_PROBE_QUIETED says it did). With a driver nothing is hidden: a failing GPU
  then says why. `TF_CPP_MIN_LOG_LEVEL=0` also keeps the line;
- Ctrl-C before a script's main() runs (while TensorFlow is imported, say) ends it with one line,
  `script.py: interrupted`, instead of a traceback (errors.main_with_clean_errors handles Ctrl-C
  inside main()). BERT_TRACEBACK=1 keeps the traceback.

Library users get the environment from the package and none of the script-only behaviour.
"""

import os
import sys

from bert_classifier.core import tf_environment

ABSEIL_LOG_LEVEL_SET = tf_environment.ABSEIL_LOG_LEVEL_SET


def _interrupted_hook(previous):
    """sys.excepthook: an uncaught KeyboardInterrupt prints one line, the rest as before."""
    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt) and not os.environ.get("BERT_TRACEBACK"):
            sys.stderr.write("%s: interrupted\n" % os.path.basename(sys.argv[0] or "python"))
            return
        previous(exc_type, exc, tb)
    return hook


sys.excepthook = _interrupted_hook(sys.excepthook)
DRIVERLESS_GPU_PROBE_QUIETED = tf_environment.quiet_driverless_gpu_probe()
