"""Named points in long work where the fault tests stop or kill the process, deterministically.

`reached(name)` does nothing unless the environment variable BERT_KILL_AT is
`<name>:<count>[:<signal>]`: then, the count-th time the point `name` is reached, the process
sends itself the signal (KILL by default; STOP pauses it so that a test can act while it holds
its state, then CONT resumes it). tests/test_faults.py uses it to kill a run during
featurization, during training and right after a checkpoint is written, instead of sleeping
and hoping the process is at the right place.

Points: "featurize_example" (after each record written to a .tf_record), "train_step" (after
each host call of the training loop, before any checkpoint of that step), "checkpoint_saved"
(after a checkpoint and its state file are written), "inference_batch" (after each batch of
the inference API: predict.py, extract_features.py), "export_written" (export_saved_model.py,
before the written export is renamed into place).
"""

import os
import signal
from typing import Dict

_SPEC = os.environ.get("BERT_KILL_AT", "")
_COUNTS: Dict[str, int] = {}


def reached(name: str) -> None:
    """Marks one pass through the point `name` (a no-op unless BERT_KILL_AT names it)."""
    if not _SPEC:
        return
    parts = _SPEC.split(":")
    if parts[0] != name:
        return
    _COUNTS[name] = _COUNTS.get(name, 0) + 1
    if _COUNTS[name] == int(parts[1]):
        sig = getattr(signal, "SIG" + (parts[2] if len(parts) > 2 else "KILL"))
        os.kill(os.getpid(), sig)
