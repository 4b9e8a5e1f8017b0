"""run_classifier's workflow, once: what `run_classifier.py` and `bert_classifier.fine_tune` run.

`run(settings, processor=None)` reads the task's data, trains, evaluates and predicts as the
original's main() did, with the same checks (in the same order), log lines and files in
output_dir. `settings` holds run_classifier's flags by name: absl's FLAGS for the script, a
FlagValues of fine_tune's own for the Python call. Read it top to bottom for the workflow.
"""
import dataclasses
import os
import tempfile
from typing import Dict, List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

import tokenization  # noqa: E402
from bert_classifier.checks import preflight  # noqa: E402
from bert_classifier.checks import run_lock  # noqa: E402
from bert_classifier.core import precision  # noqa: E402
from bert_classifier.core import progress  # noqa: E402
from bert_classifier.workflow import features  # noqa: E402
from bert_classifier.workflow import forward  # noqa: E402
from bert_classifier.workflow import input_pipeline  # noqa: E402
from bert_classifier.workflow import model_dir  # noqa: E402
from bert_classifier.workflow import outputs  # noqa: E402
from bert_classifier.workflow import strategies  # noqa: E402
from bert_classifier.workflow import train_eval  # noqa: E402
from bert_classifier.workflow import train_loop  # noqa: E402
from processors import (DataProcessor, PaddingInputExample, get_processor,  # noqa: E402
                        import_processor_module, set_input_encoding)


@dataclasses.dataclass
class RunResult:
    """What one run produced (every file is also in output_dir, as the original's).

    eval_results: eval_results.txt's values as numbers (eval_accuracy, eval_loss, loss floats;
      global_step int), None without do_eval; eval_metrics: eval_metrics.json's content.
    checkpoint: the checkpoint eval/predict used, else the last one training saved (None when
      neither ran).
    test_probabilities: float32 [test examples, labels] (test_results.tsv), None without
      do_predict.
    """
    output_dir: str
    labels: List[str]
    eval_results: Optional[Dict[str, float]] = None
    eval_metrics: Optional[Dict[str, object]] = None
    checkpoint: Optional[str] = None
    global_step: Optional[int] = None
    test_probabilities: Optional[np.ndarray] = None


def _pad_to_batch_multiple(examples: list, batch_size: int) -> list:
    """The original's TPU padding: PaddingInputExample rows (is_real_example = 0) until the
    count is a multiple of the batch size, so every batch is full."""
    padded = list(examples)
    while len(padded) % batch_size != 0:
        padded.append(PaddingInputExample())
    return padded


def _write_inference_records(settings, examples: list, record_name: str, batch_size: int,
                             pad: bool, label_list: list, tokenizer, title: str):
    """Writes the eval or predict .tf_record (padded to full batches when `pad`) and logs the
    original's "Running evaluation/prediction" block. Returns (path, number of records)."""
    records = _pad_to_batch_multiple(examples, batch_size) if pad else examples
    record_file = os.path.join(settings.output_dir, record_name)
    features.file_based_convert_examples_to_features(
        records, label_list, settings.max_seq_length, tokenizer, record_file,
        num_workers=settings.num_featurize_workers)
    logging.info(title)
    logging.info("  Num examples = %d (%d actual, %d padding)",
                 len(records), len(examples), len(records) - len(examples))
    logging.info("  Batch size = %d", batch_size)
    return record_file, len(records)


def _check_batch_sizes(settings, strategy, multi_worker: bool) -> None:
    """Batch sizes are global and must split over the replicas: checked before any data is
    read (a multi-worker chief evaluates on its own, so only the training batch is split)."""
    for flag_name, needed in (("train_batch_size", settings.do_train),
                              ("eval_batch_size", settings.do_eval and not multi_worker),
                              ("predict_batch_size", settings.do_predict and not multi_worker)):
        if needed:
            input_pipeline.check_batch_size(flag_name, getattr(settings, flag_name), strategy)


def _check_training_options(settings, train_examples, label_list: list, strategy):
    """Checks --gradient_accumulation_steps before any featurization and returns
    --class_weights as one weight per label (None when unset or without training)."""
    if not settings.do_train:
        return None
    train_loop.check_gradient_accumulation(settings.train_batch_size,
                                         settings.gradient_accumulation_steps,
                                         strategy.num_replicas_in_sync)
    class_weights = train_loop.class_weights_from_flag(
        settings.class_weights, label_list, [example.label for example in train_examples])
    if class_weights is not None:
        logging.info("Class weights (--class_weights=%s): %s", settings.class_weights,
                     ", ".join(f"{label}: {weight:.4g}"
                               for label, weight in zip(label_list, class_weights)))
    return class_weights


def _take_lock(output_dir: str, until_exit: bool) -> Optional[run_lock.OutputDirLock]:
    """One run at a time per output_dir; a second run is refused naming this one. The script
    holds it until the process ends (as before); a Python call gives it back when it returns.
    Temporary files of a killed run are removed here (run_lock.py)."""
    if until_exit:
        run_lock.hold_until_exit(output_dir)
        return None
    return run_lock.OutputDirLock(output_dir).acquire()


def run(settings, processor: Optional[DataProcessor] = None,
        hold_lock_until_exit: bool = True) -> RunResult:
    """The original run_classifier main(): checks, train, eval, predict. `settings` has every
    run_classifier flag as an attribute; `processor` replaces --task_name's lookup. Errors a
    user can cause are one-line ValueErrors raised before any long work."""
    strategies.configure_cpu_devices(settings.num_cpu_devices)
    if settings.processor_module:
        import_processor_module(settings.processor_module)

    # Every flag, file and checkpoint checked before any work (the original's checks first, in
    # its order); returns the model config.
    bert_config = preflight.check_run_classifier_flags(settings, processor)
    set_input_encoding(settings.encoding)

    if processor is None:
        processor = get_processor(settings.task_name.lower())
    task_name = settings.task_name.lower()
    label_list = processor.get_labels()
    eval_settings = train_eval.settings_from_flags(settings, len(label_list))

    # Created before any TensorFlow op runs (collective ops must be configured at start-up).
    strategy = strategies.create_strategy(settings.distribution_strategy, settings.use_tpu,
                                        settings.tpu_name, settings.tpu_zone,
                                        settings.gcp_project)
    chief = strategies.is_chief(strategy)
    multi_worker = strategies.is_multi_worker(strategy)
    # Only the chief writes into output_dir; other workers keep their files to themselves.
    work_dir = settings.output_dir if chief else tempfile.mkdtemp(prefix="bert_worker_")
    lock = None
    if chief:
        tf.io.gfile.makedirs(settings.output_dir)
        lock = _take_lock(settings.output_dir, hold_lock_until_exit)
    try:
        return _run_locked(settings, processor, task_name, label_list, bert_config,
                           eval_settings, strategy, chief, multi_worker, work_dir)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(settings, processor, task_name, label_list, bert_config, eval_settings,
                strategy, chief, multi_worker, work_dir) -> RunResult:
    """run() once output_dir is locked."""
    _check_batch_sizes(settings, strategy, multi_worker)
    logging.info("Distribution: %s with %d replica(s) in sync",
                 strategies.strategy_name(strategy), strategy.num_replicas_in_sync)
    infer_strategy = strategies.inference_strategy(strategy)
    # Padding makes every batch full: the original does it on TPU, and here also when
    # batches are split over several replicas.
    pad = settings.use_tpu or infer_strategy.num_replicas_in_sync > 1
    # Before any model is built: the tf_keras policy decides the layers' compute dtype.
    precision.configure(settings.precision, settings.use_tpu)

    tokenizer = tokenization.FullTokenizer(
        vocab_file=settings.vocab_file, do_lower_case=settings.do_lower_case)
    show_progress = progress.enabled_setting(settings.progress_bar)

    # Read every set the run needs and check its labels first: a bad label fails here, with
    # the file and row, not after an hour of training.
    data_dir = settings.data_dir
    train_examples = processor.get_train_examples(data_dir) if settings.do_train else None
    eval_examples = processor.get_dev_examples(data_dir) if settings.do_eval else None
    predict_examples = processor.get_test_examples(data_dir) if settings.do_predict else None
    if predict_examples is not None:
        # Test sets often have no labels; the original needs a dummy one (else KeyError).
        for example in predict_examples:
            if example.label is None:
                example.label = label_list[0]
    for examples, split, flag_name in ((train_examples, "train", "do_train"),
                                       (eval_examples, "dev", "do_eval"),
                                       (predict_examples, "test", "do_predict")):
        if examples is not None:
            preflight.check_examples(examples, split, flag_name, settings.task_name,
                                     data_dir or "the data given in memory")
            features.validate_labels(examples, label_list)
    class_weights = _check_training_options(settings, train_examples, label_list, strategy)
    # A TPU compiles one program per shape: there batches keep max_seq_length, as the original.
    length_multiple = 0 if settings.use_tpu else settings.length_multiple
    # How eval, predict and evaluation during training run the model: the same for all three.
    inference = dict(jit_compile=settings.xla_inference,
                     micro_batch_size=settings.inference_micro_batch_size,
                     length_multiple=length_multiple)
    result = RunResult(output_dir=settings.output_dir, labels=list(label_list))

    eval_file = num_eval_records = None
    if settings.do_train:
        num_train_steps = int(
            len(train_examples) / settings.train_batch_size * settings.num_train_epochs)
        num_warmup_steps = int(num_train_steps * settings.warmup_proportion)
        if num_train_steps <= 0:
            raise ValueError(
                f"--num_train_epochs={settings.num_train_epochs} with {len(train_examples)} "
                f"training examples and --train_batch_size={settings.train_batch_size} gives 0 "
                "training steps; expected at least one full batch")
        train_file = os.path.join(work_dir, "train.tf_record")
        features.file_based_convert_examples_to_features(
            train_examples, label_list, settings.max_seq_length, tokenizer, train_file,
            num_workers=settings.num_featurize_workers)
        if chief:
            # What predict.py, extract_features.py and export_saved_model.py need to use the
            # trained model later without these flags (model_dir.py).
            model_dir.write_model_info(
                settings.output_dir, task_name, label_list, settings.max_seq_length,
                settings.do_lower_case, settings.bert_config_file, settings.vocab_file,
                length_multiple=settings.length_multiple)
        logging.info("***** Running training *****")
        logging.info("  Num examples = %d", len(train_examples))
        logging.info("  Batch size = %d", settings.train_batch_size)
        logging.info("  Num steps = %d", num_train_steps)
        eval_hook = None
        if eval_settings is not None:
            # The dev set is evaluated during training too: featurized before it starts.
            if chief:
                eval_file, num_eval_records = _write_inference_records(
                    settings, eval_examples, "eval.tf_record", settings.eval_batch_size, pad,
                    label_list, tokenizer, "***** Running evaluation *****")
            eval_hook = train_eval.TrainingEvaluator(
                eval_settings, settings.output_dir, label_list, strategy, infer_strategy,
                eval_file, settings.max_seq_length, settings.eval_batch_size,
                drop_remainder=pad,
                num_batches=(-(-num_eval_records // settings.eval_batch_size)
                             if num_eval_records is not None else None),
                **inference)
        result.global_step = train_loop.train(bert_config, len(label_list), train_loop.TrainConfig(
            output_dir=settings.output_dir,
            train_file=train_file,
            max_seq_length=settings.max_seq_length,
            train_batch_size=settings.train_batch_size,
            learning_rate=settings.learning_rate,
            num_train_steps=num_train_steps,
            num_warmup_steps=num_warmup_steps,
            init_checkpoint=settings.init_checkpoint,
            save_checkpoints_steps=settings.save_checkpoints_steps,
            iterations_per_loop=settings.iterations_per_loop,
            keep_checkpoint_max=settings.keep_checkpoint_max,
            log_step_count_steps=settings.log_step_count_steps,
            shuffle_buffer_size=settings.shuffle_buffer_size,
            seed=settings.seed,
            progress_bar=show_progress,
            allow_partial_checkpoint=settings.allow_partial_checkpoint,
            hook=eval_hook,
            length_multiple=length_multiple,
            bucket_by_length=settings.bucket_by_length,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            class_weights=class_weights,
            adam_bias_correction=settings.adam_bias_correction), strategy)
        if chief:
            result.checkpoint = tf.train.latest_checkpoint(settings.output_dir)

    if not chief:
        # Evaluation and prediction run on the chief alone, from the checkpoint it saved.
        tf.io.gfile.rmtree(work_dir)
        return result

    loaded = []

    def load_model():
        """The model eval and predict use, built and restored once (the same checkpoint)."""
        if not loaded:
            loaded.append(forward.load_for_inference(
                bert_config, len(label_list), settings.output_dir, settings.init_checkpoint,
                infer_strategy, settings.allow_partial_checkpoint))
        return loaded[0]

    if settings.do_eval:
        if eval_file is None:
            eval_file, num_eval_records = _write_inference_records(
                settings, eval_examples, "eval.tf_record", settings.eval_batch_size, pad,
                label_list, tokenizer, "***** Running evaluation *****")
        model, result.checkpoint, global_step = load_model()
        logging.info("Evaluating checkpoint %s", result.checkpoint)
        eval_outputs = forward.evaluate_with_outputs(
            model, len(label_list), eval_file, settings.max_seq_length,
            settings.eval_batch_size, infer_strategy, drop_remainder=pad,
            global_step=global_step, progress_bar=show_progress,
            num_batches=-(-num_eval_records // settings.eval_batch_size), **inference)
        outputs.write_eval_results(os.path.join(settings.output_dir, "eval_results.txt"),
                                    eval_outputs.results)
        outputs.write_eval_summaries(settings.output_dir, eval_outputs.results)
        # Beyond the original: per-class metrics, macro-F1, MCC, ROC AUC, confusion matrix.
        report = outputs.eval_metrics_report(eval_outputs, label_list)
        outputs.write_json(os.path.join(settings.output_dir, train_eval.REPORT_FILENAME),
                            report)
        result.eval_metrics = report
        result.eval_results = {key: report[key] for key in eval_outputs.results}
        result.global_step = result.eval_results.get("global_step", result.global_step)

    if settings.do_predict:
        predict_file, _ = _write_inference_records(
            settings, predict_examples, "predict.tf_record", settings.predict_batch_size, pad,
            label_list, tokenizer, "***** Running prediction*****")
        model, result.checkpoint, _ = load_model()
        logging.info("Predicting with checkpoint %s", result.checkpoint)
        probabilities = forward.predict(
            model, predict_file, settings.max_seq_length, settings.predict_batch_size,
            infer_strategy, drop_remainder=pad, num_examples=len(predict_examples),
            progress_bar=show_progress, **inference)
        output_predict_file = os.path.join(settings.output_dir, "test_results.tsv")
        num_written_lines = outputs.write_test_results(output_predict_file, probabilities)
        assert num_written_lines == len(predict_examples)
        # Beside the original's file: the same probabilities with a header, the guid and the
        # predicted label's name.
        outputs.write_test_predictions(
            os.path.join(settings.output_dir, "test_predictions.tsv"),
            [example.guid for example in predict_examples], probabilities, label_list)
        result.test_probabilities = np.asarray(probabilities, dtype=np.float32)
    return result
