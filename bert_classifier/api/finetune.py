"""fine_tune(): run_classifier.py's whole workflow as one Python call.

    from bert_classifier import fine_tune
    run = fine_tune("pretrained/minilm_L-6_H-384_A-12", train=train_df, dev=dev_df,
                    output_dir="out/my_task", num_train_epochs=2)
    run.eval_results["eval_accuracy"], run.classifier.predict([("a headline", "a paragraph")])

Every run_classifier flag is a keyword argument with the same name and default (flags.md), and
`flagfile=` reads them from a file, as `--flagfile` does (keywords override it). The call runs
the same code as the script (bert_classifier/workflow/run.py): same checks, same files in
output_dir, same numbers for the same seed.
"""
import contextlib
import dataclasses
import difflib
import functools
import logging as std_logging
import os
import sys
from typing import Dict, Iterator, List, Optional, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.checks import preflight  # noqa: E402
from bert_classifier.core import tf_environment  # noqa: E402
from bert_classifier.cli import classifier_flags  # noqa: E402
from bert_classifier.workflow import model_dir as model_dir_lib  # noqa: E402
from bert_classifier.workflow import run as workflow  # noqa: E402
from processors import DataProcessor, input_encoding, set_input_encoding  # noqa: E402
from processors.in_memory import InMemoryProcessor  # noqa: E402

# Where a call's full log (INFO lines, the original's "*** Example ***" blocks) goes, in
# output_dir; the notebook cell or terminal shows warnings, errors and the progress bars.
LOG_FILENAME = "fine_tune.log"
# The task name recorded in model_info.json for data given in memory (task_name= overrides).
IN_MEMORY_TASK_NAME = "custom"
# What a model folder stands for when these flags are not given.
_MODEL_FOLDER_FLAGS = ("vocab_file", "bert_config_file", "init_checkpoint", "do_lower_case")
_SPLIT_FLAGS = (("train", "do_train"), ("dev", "do_eval"), ("test", "do_predict"))


@dataclasses.dataclass
class FineTuneRun:
    """The result of fine_tune(): numbers in memory, every file in output_dir.

    eval_results: {"eval_accuracy", "eval_loss", "loss": float, "global_step": int} (the values
      of eval_results.txt), None when the dev set was not evaluated.
    eval_metrics: eval_metrics.json's content (per-class precision/recall/F1, macro-F1, MCC,
      ROC AUC, confusion matrix), None without evaluation.
    checkpoint: the checkpoint evaluated (or the last one saved).
    test_probabilities: float32 [test examples, labels] in `labels` order, None without test data.
    classifier: the trained model loaded for new text (inference.Classifier), on first use.
    """
    output_dir: str
    labels: List[str]
    eval_results: Optional[Dict[str, float]]
    eval_metrics: Optional[Dict[str, object]]
    checkpoint: Optional[str]
    global_step: Optional[int]
    test_probabilities: Optional[np.ndarray]
    log_file: Optional[str]

    @functools.cached_property
    def classifier(self):
        """inference.Classifier over output_dir (its model_info.json, vocab and checkpoint)."""
        from bert_classifier.api import inference
        return inference.Classifier.load(self.output_dir, checkpoint=self.checkpoint)


def _set(flag_values: flags.FlagValues, name: str, value) -> None:
    """Sets one setting as if given on the command line (parsed and range-checked)."""
    if name not in flag_values:
        close = difflib.get_close_matches(name, list(flag_values), n=3)
        raise ValueError(f"fine_tune(): unknown setting {name}=; expected a run_classifier flag "
                         "name (flags.md)" + (f"; did you mean {', '.join(close)}?" if close
                                              else ""))
    flag = flag_values[name]
    if value is None:
        flag.value = None
        flag.present += 1
        return
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    try:
        flag.parse(value)
    except (flags.Error, ValueError, TypeError) as err:
        raise ValueError(f"fine_tune(): {name}={value!r}: {err}") from None


def settings_for_call(flagfile: Optional[str] = None, **settings) -> flags.FlagValues:
    """run_classifier's flags for one call: their defaults, then the flagfile, then `settings`
    (keyword arguments named as the flags). A FlagValues of its own, never absl's FLAGS."""
    flag_values = classifier_flags.run_classifier_flag_values()
    argv = ["fine_tune"]
    if flagfile is not None:
        if not os.path.isfile(flagfile):
            raise ValueError(f"fine_tune(): flagfile={flagfile}: no such file")
        argv.append(f"--flagfile={os.fspath(flagfile)}")
    try:
        rest = flag_values(argv, known_only=False)
    except flags.Error as err:
        raise ValueError(f"fine_tune(): flagfile={flagfile}: {err}") from None
    if len(rest) > 1:
        raise ValueError(f"fine_tune(): flagfile={flagfile}: {rest[1:]} are not flags "
                         "(expected one --name=value a line)")
    for name, value in settings.items():
        _set(flag_values, name, value)
    return flag_values


def _fill_from_model_folder(flag_values: flags.FlagValues,
                            folder: str) -> model_dir_lib.ModelInfo:
    """A pre-trained folder (or a run_classifier output_dir) stands for the vocab, config,
    checkpoint and case flags not given otherwise."""
    info = model_dir_lib.load_model_info(
        folder, flag_hint="vocab_file=, bert_config_file= and init_checkpoint=")
    found = {"vocab_file": info.vocab_file, "bert_config_file": info.bert_config_file,
             "init_checkpoint": info.checkpoint, "do_lower_case": info.do_lower_case}
    for name in _MODEL_FOLDER_FLAGS:
        if not flag_values[name].present:
            _set(flag_values, name, found[name])
    return info


def _choose_processor(flag_values: flags.FlagValues, data: Dict[str, object],
                      labels: Optional[Sequence], processor: Optional[DataProcessor],
                      folder_labels: Optional[List[str]]) -> Optional[DataProcessor]:
    """The task: data given in memory, a DataProcessor instance, or task_name + data_dir.
    Also decides do_train/do_eval/do_predict when none of them is given."""
    in_memory = any(value is not None for value in data.values())
    if in_memory and processor is not None:
        raise ValueError("fine_tune(): give the data either as train=/dev=/test= or through "
                         "processor=, not both")
    needed = ["output_dir", "vocab_file", "bert_config_file"]
    if not in_memory and processor is None:
        needed += ["task_name", "data_dir"]
    missing = [name for name in needed if not flag_values[name].value]
    if missing:
        raise ValueError(f"fine_tune(): {', '.join(n + '=' for n in missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} required"
                         + (" (or a model folder as the first argument)"
                            if set(missing) & {"vocab_file", "bert_config_file"} else ""))
    if in_memory:
        if labels is None and data["train"] is None:
            # Evaluating or predicting only: the trained folder's labels.
            labels = folder_labels
            if not labels:
                raise ValueError("fine_tune(): no labels: pass labels= or train= (its labels, "
                                 "sorted), or a trained model folder that records them")
        processor = InMemoryProcessor(**data, labels=labels)
        if not flag_values["task_name"].present:
            _set(flag_values, "task_name", IN_MEMORY_TASK_NAME)
    elif processor is not None and not flag_values["task_name"].present:
        _set(flag_values, "task_name", type(processor).__name__.replace("Processor", "").lower()
             or IN_MEMORY_TASK_NAME)
    elif labels is not None:
        raise ValueError("fine_tune(): labels= goes with data given in memory (train=, dev=, "
                         "test=); a task's labels come from its processor")
    if not any(flag_values[name].present for _, name in _SPLIT_FLAGS):
        # Nothing said: do what the data allows (in memory: each split given; a task's
        # files: train, then evaluate on dev, as the README's commands).
        for split, name in _SPLIT_FLAGS:
            wanted = data[split] is not None if in_memory else name != "do_predict"
            _set(flag_values, name, wanted)
    return processor


@contextlib.contextmanager
def _call_logging(output_dir: str, verbose: bool) -> Iterator[Optional[str]]:
    """For the call: every log line to output_dir/fine_tune.log; on stderr (the notebook cell)
    only warnings and errors unless verbose. absl's logger is put back as it was afterwards."""
    absl_logger = logging.get_absl_logger()
    saved = absl_logger.level, absl_logger.propagate
    handlers = []
    console = std_logging.StreamHandler(sys.stderr)
    console.setLevel(std_logging.INFO if verbose else std_logging.WARNING)
    console.setFormatter(logging.PythonFormatter())
    handlers.append(console)
    log_file = None
    if "://" not in output_dir:
        os.makedirs(output_dir, exist_ok=True)
        log_file = os.path.join(output_dir, LOG_FILENAME)
        to_file = std_logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.PythonFormatter())
        handlers.append(to_file)
    # Only these handlers see the call's lines (not the root logger's, which would print
    # every INFO line into the cell).
    absl_logger.propagate = False
    absl_logger.setLevel(std_logging.INFO)
    for handler in handlers:
        absl_logger.addHandler(handler)
    try:
        yield log_file
    finally:
        for handler in handlers:
            absl_logger.removeHandler(handler)
            handler.close()
        absl_logger.setLevel(saved[0])
        absl_logger.propagate = saved[1]


@contextlib.contextmanager
def _process_state_restored() -> Iterator[None]:
    """What a run sets process-wide (the tf_keras precision policy, the input encoding) is
    put back when the call returns, so calls do not leak into each other or into user code."""
    import tf_keras
    policy = tf_keras.mixed_precision.global_policy()
    encoding = input_encoding()
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(policy)
        set_input_encoding(encoding)


def fine_tune(model: Optional[str] = None, *, train=None, dev=None, test=None,
              labels: Optional[Sequence] = None, processor: Optional[DataProcessor] = None,
              flagfile: Optional[str] = None, verbose: bool = False, **settings) -> FineTuneRun:
    """Fine-tunes, evaluates and predicts as run_classifier.py does; returns a FineTuneRun.

    Args:
      model: a pre-trained model folder (bert_config.json, vocab.txt, a checkpoint) or a
        run_classifier output_dir; stands for vocab_file, bert_config_file, init_checkpoint
        and do_lower_case where those are not given.
      train, dev, test: data in memory: pandas DataFrames (text_a, optional text_b, label),
        lists of (text_a, text_b, label) tuples, or InputExamples. Without them the task is
        task_name= (any registered processor; processor_module= imports yours) read from
        data_dir=, or processor= (a DataProcessor instance) read from data_dir=.
      labels: the label list (strings) for data in memory; default: the training data's
        labels, sorted (as the sim task).
      flagfile: a file of run_classifier flags, one --name=value a line (examples/*.flags);
        keyword arguments override it.
      verbose: show the INFO log on stderr too (it always goes to output_dir/fine_tune.log).
      **settings: any run_classifier flag by name, same default (output_dir= is required).
        When none of do_train/do_eval/do_predict is given, each split given in memory is
        used (train -> do_train, dev -> do_eval, test -> do_predict); a task's files are
        trained on and evaluated.

    Raises ValueError (one line naming the setting, file or row) before any long work.
    """
    flag_values = settings_for_call(flagfile, **settings)
    # Before TensorFlow first looks for devices: no driverless cuInit error in the cell.
    tf_environment.quiet_driverless_gpu_probe()
    folder_info = _fill_from_model_folder(flag_values, os.fspath(model)) if model else None
    processor = _choose_processor(
        flag_values, {"train": train, "dev": dev, "test": test}, labels, processor,
        folder_info.labels if folder_info is not None else None)
    output_dir = flag_values.output_dir
    preflight.check_output_dir("output_dir", output_dir)
    with _process_state_restored(), _call_logging(output_dir, verbose) as log_file:
        result = workflow.run(flag_values, processor, hold_lock_until_exit=False)
    return FineTuneRun(output_dir=output_dir, labels=result.labels,
                       eval_results=result.eval_results, eval_metrics=result.eval_metrics,
                       checkpoint=result.checkpoint, global_step=result.global_step,
                       test_probabilities=result.test_probabilities, log_file=log_file)
