"""Evaluation during training: run_classifier's --eval_every_steps / --eval_at_checkpoints,
--keep_best_checkpoint and --early_stopping_patience.

`TrainingEvaluator` is the hook train_loop.train() calls between host calls. At each due step the
chief evaluates the dev set on the model being trained (no checkpoint round trip), then:

1. appends a row to `output_dir/eval_history.tsv` (the file is rewritten under a temporary name
   and renamed, so a crash leaves the previous complete file, on local disks and gs:// alike);
2. if the metric of --keep_best_checkpoint improved, replaces `output_dir/best/` (see
   save_best_checkpoint) and writes `best/eval_metrics.json` for it;
3. logs the metrics and writes them as TensorBoard scalars in `output_dir/eval`;
4. with --early_stopping_patience=K, stops training after K evaluations in a row without
   improvement. On several workers the chief's decision reaches every worker through a
   collective, so all stop at the same step.

A resumed run takes up where the last one was: rows of eval_history.tsv after the restored
checkpoint's step are dropped (those steps are trained again), the best value and the count of
evaluations since it are read back from best/ and the history, and a run whose patience was
already used up does not train on.
"""

import dataclasses
import json
import math
import os
import sys
from typing import Dict, List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.core import checkpoint_names  # noqa: E402

from bert_classifier.core import checkpoints  # noqa: E402
from bert_classifier.core import files  # noqa: E402
import modeling  # noqa: E402
from bert_classifier.workflow import forward  # noqa: E402
from bert_classifier.workflow import outputs  # noqa: E402
from bert_classifier.workflow import strategies  # noqa: E402

# The metrics --keep_best_checkpoint accepts, and which way is better.
METRIC_GOALS = {"eval_accuracy": "max", "eval_loss": "min", "macro_f1": "max", "mcc": "max",
                "roc_auc": "max"}
HISTORY_FILENAME = "eval_history.tsv"
HISTORY_COLUMNS = ("global_step", "eval_accuracy", "eval_loss", "loss", "macro_f1", "mcc",
                   "roc_auc")
BEST_DIRNAME = "best"
REPORT_FILENAME = "eval_metrics.json"

_FLAG_NAMES = ("eval_every_steps", "eval_at_checkpoints", "keep_best_checkpoint",
               "early_stopping_patience")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """When to evaluate during training, and what to do with the results."""
    every_steps: Optional[int] = None  # evaluate at every multiple of this global step
    at_checkpoints: bool = False  # evaluate whenever a checkpoint is saved
    best_metric: Optional[str] = None  # keep output_dir/best by this metric (METRIC_GOALS)
    patience: Optional[int] = None  # stop after this many evaluations without improvement

    def due(self, global_step: int, checkpoint_saved: bool, final: bool) -> bool:
        """Whether to evaluate after reaching global_step (always at the last step)."""
        return (final or bool(self.every_steps and global_step % self.every_steps == 0)
                or (self.at_checkpoints and checkpoint_saved))

    def steps_until_due(self, global_step: int) -> int:
        """Steps to the next multiple of every_steps (checkpoint steps end host calls anyway)."""
        if self.every_steps:
            return self.every_steps - global_step % self.every_steps
        return sys.maxsize


def settings_from_flags(flags, num_labels: int) -> Optional[EvalSettings]:
    """EvalSettings from run_classifier's flags (an object with do_train, do_eval and the four
    flags of _FLAG_NAMES), None when no evaluation during training is asked for.

    Raises ValueError naming the flags for values or combinations that cannot work; called
    before anything is read or written.
    """
    every, at_checkpoints = flags.eval_every_steps, flags.eval_at_checkpoints
    metric, patience = flags.keep_best_checkpoint, flags.early_stopping_patience
    if every is not None and every <= 0:
        raise ValueError(f"--eval_every_steps={every}: expected a positive number of training "
                         "steps between evaluations (leave it unset for none)")
    if patience is not None and patience <= 0:
        raise ValueError(f"--early_stopping_patience={patience}: expected a positive number of "
                         "evaluations without improvement")
    if metric is not None and metric not in METRIC_GOALS:
        raise ValueError(f"--keep_best_checkpoint={metric}: unknown metric; expected one of "
                         f"{', '.join(METRIC_GOALS)}")
    if metric == "roc_auc" and num_labels != 2:
        raise ValueError(f"--keep_best_checkpoint=roc_auc needs a task with two labels; this "
                         f"task has {num_labels} (use macro_f1, mcc, eval_accuracy or eval_loss)")
    if patience is not None and metric is None:
        raise ValueError(f"--early_stopping_patience={patience} needs --keep_best_checkpoint="
                         "METRIC: the metric whose improvement it waits for")
    given = " and ".join(f"--{name}" for name in _FLAG_NAMES
                         if getattr(flags, name) not in (None, False))
    if not given:
        return None
    if every is None and not at_checkpoints:
        raise ValueError(f"{given}: no evaluation during training to act on; add "
                         "--eval_every_steps=N or --eval_at_checkpoints")
    if not (flags.do_train and flags.do_eval):
        raise ValueError(f"{given}: evaluation during training needs --do_train=true and "
                         "--do_eval=true (it evaluates the dev set)")
    return EvalSettings(every, bool(at_checkpoints), metric, patience)


class BestTracker:
    """The best value of one metric so far and the evaluations since it (early stopping).

    A value is better only if strictly better (ties are not improvements); None or NaN (e.g.
    roc_auc with one label in the dev set) never is.
    """

    def __init__(self, metric: str, patience: Optional[int] = None):
        self.metric = metric
        self.maximize = METRIC_GOALS[metric] == "max"
        self.patience = patience
        self.best_value: Optional[float] = None
        self.best_step: Optional[int] = None
        self.evaluations_since_best = 0

    def is_better(self, value: Optional[float]) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.maximize else value < self.best_value

    def update(self, global_step: int, value: Optional[float]) -> bool:
        """Records one evaluation; True if it is the new best."""
        if self.is_better(value):
            self.best_value, self.best_step, self.evaluations_since_best = value, global_step, 0
            return True
        self.evaluations_since_best += 1
        return False

    @property
    def exhausted(self) -> bool:
        """True once `patience` evaluations in a row brought no improvement."""
        return self.patience is not None and self.evaluations_since_best >= self.patience


def _history_value(text: str) -> Optional[float]:
    return float(text) if text else None


def _show(value: Optional[float]) -> str:
    return "undefined" if value is None else str(np.float32(value))


class EvalHistory:
    """output_dir/eval_history.tsv: a header row (HISTORY_COLUMNS), then one row per evaluation
    (global_step, then the metrics as str(float32); roc_auc empty when undefined).

    Every change rewrites the whole file under a temporary name and renames it into place, so a
    crash keeps every row written before (rows are few: one per evaluation).
    """

    def __init__(self, path: str):
        self.path = path
        self.rows: List[Dict[str, str]] = self._read() if tf.io.gfile.exists(path) else []

    def _read(self) -> List[Dict[str, str]]:
        with tf.io.gfile.GFile(self.path, "r") as f:
            lines = f.read().splitlines()
        if not lines or lines[0].split("\t") != list(HISTORY_COLUMNS):
            raise ValueError(f"{self.path}: expected the header row "
                             f"{chr(9).join(HISTORY_COLUMNS)!r}; move the file away to start a "
                             "new history")
        rows = []
        for number, line in enumerate(lines[1:], start=2):
            fields = line.split("\t")
            if len(fields) != len(HISTORY_COLUMNS) or not fields[0].isdigit():
                raise ValueError(f"{self.path}, row {number}: expected {len(HISTORY_COLUMNS)} "
                                 "tab-separated fields starting with a global_step")
            rows.append(dict(zip(HISTORY_COLUMNS, fields)))
        return rows

    def _write(self) -> None:
        lines = ["\t".join(HISTORY_COLUMNS)]
        lines += ["\t".join(row[c] for c in HISTORY_COLUMNS) for row in self.rows]
        files.write_file(self.path, "\n".join(lines) + "\n")

    def keep_until(self, global_step: int) -> int:
        """Drops the rows after global_step (a resumed run trains those steps again); returns
        how many were dropped."""
        kept = [row for row in self.rows if int(row["global_step"]) <= global_step]
        dropped = len(self.rows) - len(kept)
        if dropped:
            self.rows = kept
            self._write()
        return dropped

    def append(self, row: Dict[str, str]) -> None:
        self.rows.append(row)
        self._write()


def history_row(report: Dict[str, object]) -> Dict[str, str]:
    """eval_history.tsv's row of one evaluation report (see outputs.eval_metrics_report)."""
    row = {"global_step": str(int(report["global_step"]))}
    for column in HISTORY_COLUMNS[1:]:
        value = report[column]
        row[column] = "" if value is None else str(np.float32(value))
    return row


def save_best_checkpoint(best_dir: str, name_to_variable: Dict[str, tf.Variable],
                         global_step: int) -> str:
    """Writes the model's variables (Google names, global_step; no optimizer slots) as
    best_dir/model.ckpt-<global_step> and makes it best_dir's only checkpoint.

    The `checkpoint` state file is switched atomically once the new checkpoint is complete and
    the old one is deleted only then (checkpoints.save_checkpoint with max_to_keep=1), so a
    crash leaves the old best or the new one, never a half-written one. best_dir is not
    output_dir: the keep-last-N rule there never touches it. Returns the new prefix.
    """
    previous = checkpoints.latest_checkpoint(best_dir)
    basename = f"{checkpoints.CHECKPOINT_BASENAME}-{int(global_step)}"
    if previous and os.path.basename(previous) == basename:
        # The same step again (a resumed run trained it again): its files would be overwritten
        # in place, so drop the old one first; a crash now leaves no best, not a mixed one.
        tf.io.gfile.remove(os.path.join(best_dir, checkpoints.STATE_FILENAME))
        for filename in tf.io.gfile.glob(previous + ".*"):
            tf.io.gfile.remove(filename)
    return checkpoints.save_checkpoint(best_dir, name_to_variable, global_step, max_to_keep=1)


def _read_json(path: str) -> Optional[dict]:
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        return json.load(f)


def recorded_best_value(best_dir: str, best_step: int, metric: str,
                        rows: List[Dict[str, str]]) -> Optional[float]:
    """The metric of best_dir's checkpoint (at best_step): from best_dir/eval_metrics.json when
    it describes that step, else from the history row of that step. The evaluator writes the
    history row, then the checkpoint, then the json, so after a crash one of them has it."""
    report = _read_json(os.path.join(best_dir, REPORT_FILENAME))
    if report is not None and report.get("global_step") == best_step:
        value = report.get(metric)
        return None if value is None else float(np.float32(value))
    for row in reversed(rows):
        if int(row["global_step"]) == best_step:
            return _history_value(row[metric])
    return None


def resume(history: EvalHistory, best_dir: str, tracker: Optional[BestTracker],
           global_step: int) -> bool:
    """Takes up an earlier run's evaluations at the restored global_step: drops the history
    rows after it (those steps are trained again), sets the tracker's best from best_dir and
    its count of evaluations since then from the history. Returns True if that count already
    used up the patience (training should not go on)."""
    if tracker is not None:
        best = checkpoints.latest_checkpoint(best_dir)
        if best:
            best_step = checkpoints.checkpoint_global_step(best)
            value = recorded_best_value(best_dir, best_step, tracker.metric, history.rows)
            if value is None:
                logging.warning("No recorded %s for %s; the next evaluation replaces it.",
                                tracker.metric, best)
            else:
                tracker.best_value, tracker.best_step = value, best_step
    dropped = history.keep_until(global_step)
    if dropped:
        logging.info("Dropped %d row(s) after global_step %d from %s (trained again).",
                     dropped, global_step, history.path)
    if tracker is None or tracker.best_step is None:
        return False
    tracker.evaluations_since_best = sum(
        1 for row in history.rows if int(row["global_step"]) > tracker.best_step)
    if tracker.exhausted:
        logging.info("Early stopping: %s has not improved for %d evaluations (best %s at "
                     "global_step %d); not training on.", tracker.metric,
                     tracker.evaluations_since_best, _show(tracker.best_value),
                     tracker.best_step)
        return True
    return False


def _make_chief_decision(strategy: tf.distribute.Strategy):
    """fn(flag) -> bool on every worker: whether the chief's flag is set. Every worker calls it
    at the same step (a collective); the other workers pass False."""

    @tf.function
    def decide(value):
        # Every replica contributes its worker's flag; only the chief's can be non-zero.
        summed = strategy.reduce(tf.distribute.ReduceOp.SUM,
                                 strategy.run(lambda: tf.identity(value)), axis=None)
        return summed > 0

    return lambda flag: bool(decide(tf.constant(1.0 if flag else 0.0)).numpy())


class TrainingEvaluator:
    """Evaluation during training (a train_loop.TrainHook). On several workers only the chief
    evaluates and writes; the others only take part in the stop decision.

    Args:
      settings: when to evaluate, best metric, patience.
      output_dir: run_classifier's output_dir (history, best/, eval/ summaries go there).
      label_names: get_labels(), for the metrics.
      strategy: the training strategy.
      infer_strategy: where the chief evaluates: the training strategy itself (the training
        model is evaluated directly), or a one-device strategy on several workers (the weights
        are copied into a model there before each evaluation).
      eval_file, seq_length, eval_batch_size, drop_remainder, jit_compile, micro_batch_size,
        num_batches, length_multiple: as forward.evaluate; eval_file must exist (on the chief)
        before training starts.
    """

    def __init__(self, settings: EvalSettings, output_dir: str, label_names: List[str],
                 strategy: tf.distribute.Strategy, infer_strategy: tf.distribute.Strategy,
                 eval_file: Optional[str], seq_length: int, eval_batch_size: int,
                 drop_remainder: bool, jit_compile: bool = False, micro_batch_size: int = 0,
                 num_batches: Optional[int] = None, length_multiple: int = 0):
        self.settings = settings
        self.num_batches = num_batches
        self.length_multiple = length_multiple
        self.output_dir = output_dir
        self.label_names = list(label_names)
        self.strategy = strategy
        self.infer_strategy = infer_strategy
        self.eval_file = eval_file
        self.seq_length = seq_length
        self.eval_batch_size = eval_batch_size
        self.drop_remainder = drop_remainder
        self.jit_compile = jit_compile
        self.micro_batch_size = micro_batch_size
        self.chief = strategies.is_chief(strategy)
        self.best_dir = os.path.join(output_dir, BEST_DIRNAME)
        self.tracker = (BestTracker(settings.best_metric, settings.patience)
                        if settings.best_metric else None)
        self._decide = (_make_chief_decision(strategy) if strategies.is_multi_worker(strategy)
                        else None)
        self._train_variables: Dict[str, tf.Variable] = {}
        self._eval_model: Optional[modeling.BertClassifier] = None
        self._eval_variables: Dict[str, tf.Variable] = {}
        self._run_step = None
        self._history: Optional[EvalHistory] = None
        self._writer = None

    # -- train_loop.TrainHook ----------------------------------------------------------------
    def begin(self, model: modeling.BertClassifier, name_to_variable: Dict[str, tf.Variable],
              global_step: int) -> bool:
        stop = False
        if self.chief:
            self._train_variables = name_to_variable
            if self.infer_strategy is self.strategy:
                self._eval_model = model
            else:
                self._eval_model = forward.build_classifier(model.config, model.num_labels,
                                                            self.infer_strategy)
                self._eval_variables = checkpoint_names.variables_by_checkpoint_name(
                    self._eval_model)
            self._run_step = forward.make_eval_step(
                self._eval_model, model.num_labels, self.infer_strategy, self.jit_compile,
                self.micro_batch_size)
            self._history = EvalHistory(os.path.join(self.output_dir, HISTORY_FILENAME))
            stop = resume(self._history, self.best_dir, self.tracker, global_step)
            self._writer = tf.summary.create_file_writer(os.path.join(self.output_dir, "eval"))
        return self._agree(stop)

    def steps_until_due(self, global_step: int) -> int:
        return self.settings.steps_until_due(global_step)

    def after_steps(self, global_step: int, checkpoint_saved: bool, final: bool) -> bool:
        if not self.settings.due(global_step, checkpoint_saved, final):
            return False
        stop = self._evaluate(global_step) if self.chief else False
        # At the last step training ends anyway: no decision to share.
        return False if final else self._agree(stop)

    # -- the chief's work ------------------------------------------------------------------
    def _agree(self, stop: bool) -> bool:
        return self._decide(stop) if self._decide is not None else stop

    def _evaluate(self, global_step: int) -> bool:
        """Evaluates, records, keeps the best; True when early stopping says stop."""
        if self._eval_variables:  # another strategy's model: take the current weights
            for name, variable in self._eval_variables.items():
                variable.assign(self._train_variables[name].read_value())
        eval_outputs = forward.evaluate_with_outputs(
            self._eval_model, len(self.label_names), self.eval_file, self.seq_length,
            self.eval_batch_size, self.infer_strategy, self.drop_remainder, global_step,
            progress_bar=False, num_batches=self.num_batches, jit_compile=self.jit_compile,
            micro_batch_size=self.micro_batch_size, run_step=self._run_step,
            length_multiple=self.length_multiple)
        report = outputs.eval_metrics_report(eval_outputs, self.label_names)
        row = history_row(report)
        # Order matters for resuming after a crash (see recorded_best_value): history, then best.
        self._history.append(row)
        logging.info("Evaluation at global_step %d: %s", global_step, ", ".join(
            f"{c} = {row[c] or 'undefined'}" for c in HISTORY_COLUMNS[1:]))
        with self._writer.as_default(step=global_step):
            for column in HISTORY_COLUMNS[1:]:
                if row[column]:
                    tf.summary.scalar(column, float(row[column]))
        self._writer.flush()
        tracker = self.tracker
        if tracker is None:
            return False
        if tracker.update(global_step, _history_value(row[tracker.metric])):
            path = save_best_checkpoint(self.best_dir, self._train_variables, global_step)
            outputs.write_json(os.path.join(self.best_dir, REPORT_FILENAME), report)
            logging.info("New best %s = %s at global_step %d: saved %s", tracker.metric,
                         row[tracker.metric], global_step, path)
            return False
        logging.info("Best %s is still %s (global_step %s): %d evaluation(s) without "
                     "improvement%s", tracker.metric, _show(tracker.best_value), tracker.best_step,
                     tracker.evaluations_since_best,
                     f" of {tracker.patience}" if tracker.patience else "")
        if tracker.exhausted:
            logging.info("Early stopping: %s has not improved for %d evaluations (best %s at "
                         "global_step %d).", tracker.metric, tracker.evaluations_since_best,
                         _show(tracker.best_value), tracker.best_step)
            return True
        return False
