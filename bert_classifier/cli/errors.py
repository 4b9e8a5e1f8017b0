"""What the command-line scripts share: one-line errors instead of tracebacks, and the flags
that stand in for a model folder's missing model_info.json.

Errors a user can cause (bad flags, files, labels, checkpoints; a file operation that fails,
such as a full disk or a missing permission) end a script with one line naming what is wrong --
`predict.py: error: ...` on stderr and exit status 1 -- not a traceback. Ctrl-C ends it with one
line too, `predict.py: interrupted; OUTPUT left as it was`, and exit status 130 (the outputs are
written under temporary names and renamed into place, so an interrupted write leaves the old
file). Set BERT_TRACEBACK=1 in the environment to see the traceback.
"""
import os
import sys
from typing import Callable, List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.core import progress  # noqa: E402

# The exception types that mean "the input is wrong", not "the program is wrong".
USER_ERRORS = (ValueError, NotImplementedError, OSError, tf.errors.NotFoundError,
               tf.errors.InvalidArgumentError, tf.errors.FailedPreconditionError,
               tf.errors.PermissionDeniedError, tf.errors.AlreadyExistsError,
               tf.errors.ResourceExhaustedError, tf.errors.DataLossError)
# The exit status of a process ended by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_STATUS = 130


def main_with_clean_errors(main: Callable[[List[str]], None], script_name: str,
                           interrupted: Optional[Callable[[], Optional[str]]] = None
                           ) -> Callable[[List[str]], None]:
    """Wraps a script's main(argv) for absl's app.run: USER_ERRORS become one line, and so does
    Ctrl-C: `script: interrupted; <interrupted()>` (e.g. "OUTPUT left as it was")."""

    def wrapped(argv: List[str]) -> None:
        try:
            main(argv)
        except KeyboardInterrupt:
            if os.environ.get("BERT_TRACEBACK"):
                raise
            what = interrupted() if interrupted is not None else None
            progress.clear_active_line()
            sys.stderr.write(f"{script_name}: interrupted" + (f"; {what}" if what else "") + "\n")
            sys.stderr.flush()
            sys.exit(INTERRUPTED_STATUS)
        except USER_ERRORS as err:
            if os.environ.get("BERT_TRACEBACK"):
                raise
            message = _one_line(err)
            logging.error("%s", message)
            sys.exit(f"{script_name}: error: {message}")

    return wrapped


def _one_line(err: BaseException) -> str:
    """The error's message: for a TensorFlow OpError its first line (the op context follows on
    the next ones)."""
    if isinstance(err, tf.errors.OpError):
        message = (err.message or "").strip().split("\n")[0]
    else:
        message = str(err).strip()
    return message or type(err).__name__


# The flags of predict.py / export_saved_model.py that stand in for a missing model_info.json.
FALLBACK_FLAGS = ("--labels (or --task_name), --vocab_file, --bert_config_file, --do_lower_case "
                  "and --max_seq_length")


def labels_from_flags(labels: Optional[List[str]], task_name: Optional[str],
                      processor_module: Optional[str]) -> Optional[List[str]]:
    """--labels, else --task_name's get_labels() (after importing --processor_module), else None
    (the model folder's model_info.json says)."""
    if labels:
        return list(labels)
    if task_name:
        from processors import get_processor, import_processor_module
        if processor_module:
            import_processor_module(processor_module)
        return get_processor(task_name.lower()).get_labels()
    return None
