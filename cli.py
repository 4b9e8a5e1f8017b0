"""What every command-line script shares: one-line errors instead of tracebacks.

Errors a user can cause (bad flags, files, labels, checkpoints) end a script with one line
naming what is wrong -- `predict.py: error: ...` on stderr and exit status 1 -- not a traceback.
Set BERT_TRACEBACK=1 in the environment to see the traceback.
"""
import os
import sys
from typing import Callable, List

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

# The exception types that mean "the input is wrong", not "the program is wrong".
USER_ERRORS = (ValueError, NotImplementedError, FileNotFoundError, tf.errors.NotFoundError,
               tf.errors.InvalidArgumentError)


def main_with_clean_errors(main: Callable[[List[str]], None], script_name: str
                           ) -> Callable[[List[str]], None]:
    """Wraps a script's main(argv) for absl's app.run: USER_ERRORS become one line."""

    def wrapped(argv: List[str]) -> None:
        try:
            main(argv)
        except USER_ERRORS as err:
            if os.environ.get("BERT_TRACEBACK"):
                raise
            message = str(err).strip() or type(err).__name__
            logging.error("%s", message)
            sys.exit(f"{script_name}: error: {message}")

    return wrapped
