"""The one atomic write of the project: write under a temporary sibling name, then rename.

Every writer of a file or folder that a reader (or a rerun) may look at goes through
`into_place`: the output files of run_classifier, the TFRecords, the checkpoint state file,
model_dir's copies, the SavedModel export and the converted pre-trained model. A reader never
sees a half-written file, and a failure (an exception, Ctrl-C) leaves no temporary behind; a
killed process leaves `<name>.tmp-<pid>`, which checks/run_lock.py recognises and removes.
Paths may be local or gs:// (tf.io.gfile).
"""

import contextlib
import os
from typing import Iterable, Iterator, Optional, Union

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402


def temporary_name(path: str) -> str:
    """`<path>.tmp-<pid>`: a sibling of path (same folder, so the rename stays on one device)."""
    return "%s.tmp-%d" % (path.rstrip("/"), os.getpid())


def _remove(path: str) -> None:
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


@contextlib.contextmanager
def into_place(path: str, temporary: Optional[str] = None) -> Iterator[str]:
    """Yields a temporary sibling path for the block to write (a file or a folder); when the
    block ends without error, renames it onto `path` (replacing a file, or a folder's whole
    contents); on any error removes it and re-raises. `temporary` overrides the name."""
    tmp = temporary or temporary_name(path)
    _remove(tmp)  # a leftover of a killed process with the same pid
    try:
        yield tmp
        if tf.io.gfile.isdir(tmp) and tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException as error:
        _remove(tmp)
        if isinstance(error, tf.errors.OpError):
            # The user's path, not the temporary name, and one line.
            reason = (error.message or "").split("\n")[0].replace(tmp, path)
            raise OSError("cannot write %s: %s" % (path, reason)) from None
        raise


def write_file(path: str, text: Union[str, bytes, Iterable[Union[str, bytes]]]) -> None:
    """Writes `text` (a str, bytes, or an iterable of pieces streamed one by one) to `path`
    atomically (into_place)."""
    pieces = [text] if isinstance(text, (str, bytes)) else text
    with into_place(path) as tmp:
        with tf.io.gfile.GFile(tmp, "w") as f:
            for piece in pieces:
                f.write(piece)


def copy_file(source: str, target: str) -> None:
    """Copies source to target atomically (into_place); nothing to do when they are one file."""
    if os.path.abspath(source) == os.path.abspath(target):
        return
    with into_place(target) as tmp:
        tf.io.gfile.copy(source, tmp, overwrite=True)
