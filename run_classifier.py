#!/usr/bin/env python
"""BERT finetuning runner: google-research/bert's run_classifier.py on TensorFlow 2.

Same flags, same processors, same output files as the original; training runs on
tf.distribute (CPU, GPUs, TPU, several machines). Read main() top to bottom for the workflow.

    python run_classifier.py --task_name=sim --do_train=true --do_eval=true --data_dir=DATA \
      --vocab_file=CKPT/vocab.txt --bert_config_file=CKPT/bert_config.json \
      --init_checkpoint=CKPT/bert_model.ckpt --max_seq_length=128 --train_batch_size=32 \
      --learning_rate=2e-5 --num_train_epochs=3.0 --output_dir=OUT
"""

# The environment TensorFlow reads at import (tf_keras, the BFC allocator, quiet C++ logs).
from bert_classifier.cli import script_env  # noqa: F401  (first: before TensorFlow is imported)

import os
import tempfile

import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.cli import classifier_flags  # noqa: E402
from bert_classifier.cli import errors  # noqa: E402
from bert_classifier.workflow import features  # noqa: E402
from bert_classifier.workflow import model_dir  # noqa: E402
from bert_classifier.checks import preflight  # noqa: E402
from bert_classifier.checks import run_lock  # noqa: E402
from bert_classifier.core import precision  # noqa: E402
import tokenization  # noqa: E402
from bert_classifier.workflow import train_eval  # noqa: E402
from bert_classifier.workflow import forward  # noqa: E402
from bert_classifier.workflow import input_pipeline  # noqa: E402
from bert_classifier.workflow import outputs  # noqa: E402
from bert_classifier.workflow import strategies  # noqa: E402
from bert_classifier.workflow import train_loop  # noqa: E402
from processors import get_processor, import_processor_module, set_input_encoding  # noqa: E402

# Re-exported so that user code written for the original keeps working, e.g.
# `from run_classifier import DataProcessor, InputExample`.
from processors import (  # noqa: E402,F401
    DataProcessor, InputExample, InputFeatures, PaddingInputExample, register_processor)
from bert_classifier.workflow.features import (  # noqa: E402,F401
    _truncate_seq_pair, convert_examples_to_features, convert_single_example,
    file_based_convert_examples_to_features)

classifier_flags.define_run_classifier_flags()
FLAGS = classifier_flags.FLAGS


def _pad_to_batch_multiple(examples: list, batch_size: int) -> list:
    """The original's TPU padding: PaddingInputExample rows (is_real_example = 0) until the
    count is a multiple of the batch size, so every batch is full."""
    padded = list(examples)
    while len(padded) % batch_size != 0:
        padded.append(PaddingInputExample())
    return padded


def _write_inference_records(examples: list, record_name: str, batch_size: int, pad: bool,
                             label_list: list, tokenizer, title: str):
    """Writes the eval or predict .tf_record (padded to full batches when `pad`) and logs the
    original's "Running evaluation/prediction" block. Returns (path, number of records)."""
    records = _pad_to_batch_multiple(examples, batch_size) if pad else examples
    record_file = os.path.join(FLAGS.output_dir, record_name)
    features.file_based_convert_examples_to_features(
        records, label_list, FLAGS.max_seq_length, tokenizer, record_file,
        num_workers=FLAGS.num_featurize_workers)
    logging.info(title)
    logging.info("  Num examples = %d (%d actual, %d padding)",
                 len(records), len(examples), len(records) - len(examples))
    logging.info("  Batch size = %d", batch_size)
    return record_file, len(records)


def _check_training_options(train_examples, label_list: list, strategy):
    """Checks the training batch flags before any featurization (one-line errors naming the
    flags) and returns --class_weights as one weight per label (None when unset)."""
    if not FLAGS.do_train:
        return None
    input_pipeline.check_batch_size("train_batch_size", FLAGS.train_batch_size, strategy)
    train_loop.check_gradient_accumulation(FLAGS.train_batch_size,
                                           FLAGS.gradient_accumulation_steps,
                                           strategy.num_replicas_in_sync)
    class_weights = train_loop.class_weights_from_flag(
        FLAGS.class_weights, label_list, [example.label for example in train_examples])
    if class_weights is not None:
        logging.info("Class weights (--class_weights=%s): %s", FLAGS.class_weights,
                     ", ".join(f"{label}: {weight:.4g}"
                               for label, weight in zip(label_list, class_weights)))
    return class_weights


def main(_):
    logging.set_verbosity(logging.INFO)
    strategies.configure_cpu_devices(FLAGS.num_cpu_devices)
    if FLAGS.processor_module:
        import_processor_module(FLAGS.processor_module)

    # Every flag, file and checkpoint checked before any work (the original's checks first, in
    # its order); returns the model config.
    bert_config = preflight.check_run_classifier_flags(FLAGS)
    set_input_encoding(FLAGS.encoding)

    processor = get_processor(FLAGS.task_name.lower())
    label_list = processor.get_labels()
    eval_settings = train_eval.settings_from_flags(FLAGS, len(label_list))

    # Created before any TensorFlow op runs (collective ops must be configured at start-up).
    strategy = strategies.create_strategy(FLAGS.distribution_strategy, FLAGS.use_tpu,
                                          FLAGS.tpu_name, FLAGS.tpu_zone, FLAGS.gcp_project)
    chief = strategies.is_chief(strategy)
    # Only the chief writes into output_dir; other workers keep their files to themselves.
    work_dir = FLAGS.output_dir if chief else tempfile.mkdtemp(prefix="bert_worker_")
    if chief:
        tf.io.gfile.makedirs(FLAGS.output_dir)
        # One run at a time per output_dir, held until the process ends; a second run is refused
        # naming this one. Temporary files of a killed run are removed here (run_lock.py).
        run_lock.hold_until_exit(FLAGS.output_dir)
    replicas = strategy.num_replicas_in_sync
    # Batch sizes are global and must split over the replicas: checked now, not after training.
    if FLAGS.do_train:
        input_pipeline.check_batch_size("train_batch_size", FLAGS.train_batch_size, strategy)
    if not strategies.is_multi_worker(strategy):  # (a multi-worker chief evaluates on its own)
        for flag_name, needed in (("eval_batch_size", FLAGS.do_eval),
                                  ("predict_batch_size", FLAGS.do_predict)):
            if needed:
                input_pipeline.check_batch_size(flag_name, getattr(FLAGS, flag_name), strategy)
    logging.info("Distribution: %s with %d replica(s) in sync",
                 strategies.strategy_name(strategy), replicas)
    infer_strategy = strategies.inference_strategy(strategy)
    # Padding makes every batch full: the original does it on TPU, and here also when
    # batches are split over several replicas.
    pad = FLAGS.use_tpu or infer_strategy.num_replicas_in_sync > 1
    # Before any model is built: the tf_keras policy decides the layers' compute dtype.
    precision.configure(FLAGS.precision, FLAGS.use_tpu)

    tokenizer = tokenization.FullTokenizer(
        vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    progress = classifier_flags.progress_setting(FLAGS.progress_bar)

    # Read every set the run needs and check its labels first: a bad label fails here, with
    # the file and row, not after an hour of training.
    train_examples = processor.get_train_examples(FLAGS.data_dir) if FLAGS.do_train else None
    eval_examples = processor.get_dev_examples(FLAGS.data_dir) if FLAGS.do_eval else None
    predict_examples = processor.get_test_examples(FLAGS.data_dir) if FLAGS.do_predict else None
    if predict_examples is not None:
        # Test sets often have no labels; the original needs a dummy one (else KeyError).
        for example in predict_examples:
            if example.label is None:
                example.label = label_list[0]
    for examples, split, flag_name in ((train_examples, "train", "do_train"),
                                       (eval_examples, "dev", "do_eval"),
                                       (predict_examples, "test", "do_predict")):
        if examples is not None:
            preflight.check_examples(examples, split, flag_name, FLAGS.task_name, FLAGS.data_dir)
            features.validate_labels(examples, label_list)
    class_weights = _check_training_options(train_examples, label_list, strategy)
    # A TPU compiles one program per shape: there batches keep max_seq_length, as the original.
    length_multiple = 0 if FLAGS.use_tpu else FLAGS.length_multiple

    eval_file = num_eval_records = None
    if FLAGS.do_train:
        num_train_steps = int(
            len(train_examples) / FLAGS.train_batch_size * FLAGS.num_train_epochs)
        num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)
        if num_train_steps <= 0:
            raise ValueError(
                f"--num_train_epochs={FLAGS.num_train_epochs} with {len(train_examples)} training "
                f"examples and --train_batch_size={FLAGS.train_batch_size} gives 0 training steps; "
                "expected at least one full batch")
        train_file = os.path.join(work_dir, "train.tf_record")
        features.file_based_convert_examples_to_features(
            train_examples, label_list, FLAGS.max_seq_length, tokenizer, train_file,
            num_workers=FLAGS.num_featurize_workers)
        if chief:
            # What predict.py, extract_features.py and export_saved_model.py need to use the
            # trained model later without these flags (model_dir.py).
            model_dir.write_model_info(
                FLAGS.output_dir, FLAGS.task_name.lower(), label_list, FLAGS.max_seq_length,
                FLAGS.do_lower_case, FLAGS.bert_config_file, FLAGS.vocab_file,
                length_multiple=FLAGS.length_multiple)
        logging.info("***** Running training *****")
        logging.info("  Num examples = %d", len(train_examples))
        logging.info("  Batch size = %d", FLAGS.train_batch_size)
        logging.info("  Num steps = %d", num_train_steps)
        eval_hook = None
        if eval_settings is not None:
            # The dev set is evaluated during training too: featurized before it starts.
            if chief:
                eval_file, num_eval_records = _write_inference_records(
                    eval_examples, "eval.tf_record", FLAGS.eval_batch_size, pad, label_list,
                    tokenizer, "***** Running evaluation *****")
            eval_hook = train_eval.TrainingEvaluator(
                eval_settings, FLAGS.output_dir, label_list, strategy, infer_strategy, eval_file,
                FLAGS.max_seq_length, FLAGS.eval_batch_size, drop_remainder=pad,
                jit_compile=FLAGS.xla_inference,
                micro_batch_size=FLAGS.inference_micro_batch_size,
                num_batches=(-(-num_eval_records // FLAGS.eval_batch_size)
                             if num_eval_records is not None else None),
                length_multiple=length_multiple)
        train_loop.train(bert_config, len(label_list), train_loop.TrainConfig(
            output_dir=FLAGS.output_dir,
            train_file=train_file,
            max_seq_length=FLAGS.max_seq_length,
            train_batch_size=FLAGS.train_batch_size,
            learning_rate=FLAGS.learning_rate,
            num_train_steps=num_train_steps,
            num_warmup_steps=num_warmup_steps,
            init_checkpoint=FLAGS.init_checkpoint,
            save_checkpoints_steps=FLAGS.save_checkpoints_steps,
            iterations_per_loop=FLAGS.iterations_per_loop,
            keep_checkpoint_max=FLAGS.keep_checkpoint_max,
            log_step_count_steps=FLAGS.log_step_count_steps,
            shuffle_buffer_size=FLAGS.shuffle_buffer_size,
            seed=FLAGS.seed,
            progress_bar=progress,
            allow_partial_checkpoint=FLAGS.allow_partial_checkpoint,
            hook=eval_hook,
            length_multiple=length_multiple,
            bucket_by_length=FLAGS.bucket_by_length,
            gradient_accumulation_steps=FLAGS.gradient_accumulation_steps,
            class_weights=class_weights), strategy)

    if not chief:
        # Evaluation and prediction run on the chief alone, from the checkpoint it saved.
        tf.io.gfile.rmtree(work_dir)
        return

    if FLAGS.do_eval:
        if eval_file is None:
            eval_file, num_eval_records = _write_inference_records(
                eval_examples, "eval.tf_record", FLAGS.eval_batch_size, pad, label_list,
                tokenizer, "***** Running evaluation *****")
        model, checkpoint_path, global_step = forward.load_for_inference(
            bert_config, len(label_list), FLAGS.output_dir, FLAGS.init_checkpoint, infer_strategy,
            FLAGS.allow_partial_checkpoint)
        logging.info("Evaluating checkpoint %s", checkpoint_path)
        eval_outputs = forward.evaluate_with_outputs(
            model, len(label_list), eval_file, FLAGS.max_seq_length, FLAGS.eval_batch_size,
            infer_strategy, drop_remainder=pad, global_step=global_step, progress_bar=progress,
            num_batches=-(-num_eval_records // FLAGS.eval_batch_size),
            jit_compile=FLAGS.xla_inference, micro_batch_size=FLAGS.inference_micro_batch_size,
            length_multiple=length_multiple)
        result = eval_outputs.results
        outputs.write_eval_results(os.path.join(FLAGS.output_dir, "eval_results.txt"), result)
        outputs.write_eval_summaries(FLAGS.output_dir, result)
        # Beyond the original: per-class metrics, macro-F1, MCC, ROC AUC, confusion matrix.
        outputs.write_json(os.path.join(FLAGS.output_dir, train_eval.REPORT_FILENAME),
                           outputs.eval_metrics_report(eval_outputs, label_list))

    if FLAGS.do_predict:
        predict_file, _ = _write_inference_records(
            predict_examples, "predict.tf_record", FLAGS.predict_batch_size, pad, label_list,
            tokenizer, "***** Running prediction*****")
        model, checkpoint_path, _ = forward.load_for_inference(
            bert_config, len(label_list), FLAGS.output_dir, FLAGS.init_checkpoint, infer_strategy,
            FLAGS.allow_partial_checkpoint)
        logging.info("Predicting with checkpoint %s", checkpoint_path)
        probabilities = forward.predict(
            model, predict_file, FLAGS.max_seq_length, FLAGS.predict_batch_size, infer_strategy,
            drop_remainder=pad, num_examples=len(predict_examples), progress_bar=progress,
            jit_compile=FLAGS.xla_inference, micro_batch_size=FLAGS.inference_micro_batch_size,
            length_multiple=length_multiple)
        output_predict_file = os.path.join(FLAGS.output_dir, "test_results.tsv")
        num_written_lines = outputs.write_test_results(output_predict_file, probabilities)
        assert num_written_lines == len(predict_examples)
        # Beside the original's file: the same probabilities with a header, the guid and the
        # predicted label's name.
        outputs.write_test_predictions(
            os.path.join(FLAGS.output_dir, "test_predictions.tsv"),
            [example.guid for example in predict_examples], probabilities, label_list)


if __name__ == "__main__":
    classifier_flags.mark_required()
    app.run(errors.main_with_clean_errors(main, "run_classifier.py"))
