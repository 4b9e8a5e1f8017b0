"""One run per output_dir: a lock file naming its holder, and the clean-up of killed runs.

    with run_lock.output_dir_lock(output_dir):
        ...  # featurize, train, evaluate, predict

The lock is the file `output_dir/.run.lock` holding the holder's host, pid, start time and
command line (JSON). A second run into the same output_dir stops with a one-line
`OutputDirLockedError` naming them. A lock left by a run that was killed (its pid no longer runs
on this host) is taken over with a warning. After taking the lock, the temporary files a killed
run may have left in output_dir are removed (TEMP_FILE_PATTERNS).

Local (and NFS) folders: the lock is an exclusive `flock` on the file, held by the open file
for as long as the process lives, so it is released by the kernel whatever way the process
ends, and two runs can never both hold it. The JSON only names the holder.

gs:// and other remote file systems (tf.io.gfile): there is no create-exclusive operation and
no flock there, so the lock is check-then-write: a run reads the lock file and refuses if it
exists; otherwise it writes its own. Two runs started within the same second or so can both
pass the check (the second write wins, and both run); a lock left behind by a run killed on
another machine cannot be checked (its pid is not on this host) and must be deleted by hand:
the message names the file.
"""

import atexit
import contextlib
import errno
import fnmatch
import json
import os
import socket
import sys
import time
from typing import Dict, Iterator, List, Optional

from absl import logging

LOCK_FILENAME = ".run.lock"

# Temporary files of the writers of output_dir, left behind only when a run is killed:
# features.py writes `.train.tf_record.tmp-<hex>` and renames it; outputs.py writes
# `eval_results.txt.tmp-<pid>` (and others) and renames them; checkpoints.py writes the state
# file as `checkpoint.tmp<pid>`; TensorFlow's SaveV2 writes `model.ckpt-N.*.tempstate<n>`.
TEMP_FILE_PATTERNS = (".*.tmp-*", "*.tmp-[0-9]*", "checkpoint.tmp[0-9]*", "*.tempstate*")


class OutputDirLockedError(ValueError):
    """Another run holds output_dir (a user error: two runs into one folder)."""


def _is_remote(path: str) -> bool:
    return "://" in path


def _holder_info() -> Dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "start_time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": " ".join(sys.argv)[:500]}


def _describe(info: Dict[str, object]) -> str:
    return "pid %s on host %s, started %s" % (info.get("pid", "?"), info.get("host", "?"),
                                              info.get("start_time", "?"))


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _parse(text: str) -> Dict[str, object]:
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _locked_error(path: str, info: Dict[str, object], remedy: str) -> OutputDirLockedError:
    return OutputDirLockedError(
        "output_dir %s is in use by another run (%s; lock file %s). %s"
        % (os.path.dirname(path), _describe(info), path, remedy))


class OutputDirLock:
    """The lock of one output_dir (see the module docstring). acquire() raises
    OutputDirLockedError when another run holds it; release() is idempotent."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILENAME)
        self._fd: Optional[int] = None
        self._owner_pid: Optional[int] = None

    # -- local folders: flock -------------------------------------------------------------
    def _acquire_local(self) -> None:
        import fcntl  # POSIX only; imported here so that the module imports everywhere
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                info = _parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
                os.close(fd)
                raise _locked_error(self.path, info, "Wait for it to end, or use another "
                                    "--output_dir.") from None
            # The holder may have removed the file between our open and our flock: then we
            # hold a lock on a file nobody else will open. Start again on the current file.
            try:
                same_file = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)
        previous = _parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        if previous:
            if previous.get("host") not in (None, socket.gethostname()):
                os.close(fd)
                raise _locked_error(self.path, previous, "This host cannot tell whether that run "
                                    "still runs; if it does not, delete the lock file.")
            # Same host and the flock was free: that process died without cleaning up.
            logging.warning("Taking over the lock of output_dir %s left by a run that no longer "
                            "runs (%s)", self.output_dir, _describe(previous))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder_info()).encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd

    def _release_local(self) -> None:
        # Remove the file while still holding the lock, so a waiting run never sees our
        # content as a stale lock.
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        os.close(self._fd)
        self._fd = None

    # -- remote file systems: check, then write --------------------------------------------
    def _acquire_remote(self) -> None:
        import tensorflow as tf  # only for gs:// and friends
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path, "r") as f:
                info = _parse(f.read())
            same_host = info.get("host") == socket.gethostname()
            if not (same_host and isinstance(info.get("pid"), int)
                    and not _pid_running(info["pid"])):
                raise _locked_error(self.path, info, "Wait for it to end, or use another "
                                    "--output_dir; if no run uses it, delete the lock file.")
            logging.warning("Taking over the lock of output_dir %s left by a run that no longer "
                            "runs (%s)", self.output_dir, _describe(info))
        with tf.io.gfile.GFile(self.path, "w") as f:
            f.write(json.dumps(_holder_info()))

    def _release_remote(self) -> None:
        import tensorflow as tf
        with contextlib.suppress(tf.errors.NotFoundError):
            tf.io.gfile.remove(self.path)

    # -- public ---------------------------------------------------------------------------
    def acquire(self) -> "OutputDirLock":
        """Takes the lock (output_dir must exist), then removes killed runs' temporary files."""
        if _is_remote(self.path):
            self._acquire_remote()
        else:
            self._acquire_local()
        self._owner_pid = os.getpid()
        remove_temporary_files(self.output_dir)
        return self

    def release(self) -> None:
        """Gives the lock back (only in the process that took it: not in forked children)."""
        if self._owner_pid != os.getpid():
            return
        self._owner_pid = None
        if _is_remote(self.path):
            self._release_remote()
        elif self._fd is not None:
            self._release_local()

    def __enter__(self) -> "OutputDirLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


@contextlib.contextmanager
def output_dir_lock(output_dir: str, enabled: bool = True) -> Iterator[Optional[OutputDirLock]]:
    """Holds the lock of output_dir for the `with` block (nothing when not enabled, e.g. on a
    worker that is not the chief: only the chief writes into output_dir)."""
    if not enabled:
        yield None
        return
    with OutputDirLock(output_dir) as lock:
        yield lock


# Locks held until exit by this process, by output_dir: a second main() in the same process
# (a notebook) keeps its lock instead of being refused by itself.
_HELD_UNTIL_EXIT: Dict[str, OutputDirLock] = {}


def hold_until_exit(output_dir: str) -> OutputDirLock:
    """Takes the lock of output_dir for the rest of the process: released when Python exits
    (normally, by sys.exit or an uncaught error), or by the kernel if the process is killed."""
    key = output_dir if _is_remote(output_dir) else os.path.abspath(output_dir)
    held = _HELD_UNTIL_EXIT.get(key)
    if held is not None and held._owner_pid == os.getpid():
        return held
    lock = OutputDirLock(output_dir).acquire()
    _HELD_UNTIL_EXIT[key] = lock
    atexit.register(lock.release)
    return lock


def remove_temporary_files(output_dir: str) -> List[str]:
    """Deletes what killed runs left in output_dir (TEMP_FILE_PATTERNS, top level only); call it
    holding the lock. Returns the paths removed (each also logged)."""
    if _is_remote(output_dir):
        import tensorflow as tf
        names = [os.path.basename(p) for p in tf.io.gfile.glob(os.path.join(output_dir, "*"))]
        remove, is_dir = tf.io.gfile.remove, tf.io.gfile.isdir
        gone = (FileNotFoundError, tf.errors.NotFoundError)
    else:
        names = os.listdir(output_dir)
        remove, is_dir = os.remove, os.path.isdir
        gone = (FileNotFoundError,)
    removed = []
    for name in sorted(names):
        if name == LOCK_FILENAME or not any(fnmatch.fnmatchcase(name, p)
                                            for p in TEMP_FILE_PATTERNS):
            continue
        path = os.path.join(output_dir, name)
        if is_dir(path):
            continue
        with contextlib.suppress(*gone):
            remove(path)
            removed.append(path)
            logging.info("Removed %s, left by an interrupted run", path)
    return removed
