#!/usr/bin/env python
"""BERT finetuning runner: google-research/bert's run_classifier.py on TensorFlow 2.

Same flags, same processors, same output files as the original; training runs on
tf.distribute (CPU, GPUs, TPU, several machines). The workflow, read top to bottom, is
bert_classifier/workflow/run.py: the same code path as `bert_classifier.fine_tune` in Python.

    python run_classifier.py --task_name=sim --do_train=true --do_eval=true --data_dir=DATA \
      --vocab_file=CKPT/vocab.txt --bert_config_file=CKPT/bert_config.json \
      --init_checkpoint=CKPT/bert_model.ckpt --max_seq_length=128 --train_batch_size=32 \
      --learning_rate=2e-5 --num_train_epochs=3.0 --output_dir=OUT
"""

# The environment TensorFlow reads at import (tf_keras, the BFC allocator, quiet C++ logs).
from bert_classifier.cli import script_env  # noqa: F401  (first: before TensorFlow is imported)

from absl import app  # noqa: E402
from absl import logging  # noqa: E402

from bert_classifier.cli import classifier_flags  # noqa: E402
from bert_classifier.cli import errors  # noqa: E402
from bert_classifier.workflow import run as workflow  # noqa: E402

# Re-exported so that user code written for the original keeps working, e.g.
# `from run_classifier import DataProcessor, InputExample`.
from processors import (  # noqa: E402,F401
    DataProcessor, InputExample, InputFeatures, PaddingInputExample, register_processor)
from bert_classifier.workflow.features import (  # noqa: E402,F401
    _truncate_seq_pair, convert_examples_to_features, convert_single_example,
    file_based_convert_examples_to_features)

classifier_flags.define_run_classifier_flags()
FLAGS = classifier_flags.FLAGS


def main(_):
    """The original's main(): the workflow (bert_classifier/workflow/run.py, the same code
    path as bert_classifier.fine_tune) run with the command line's flags."""
    logging.set_verbosity(logging.INFO)
    workflow.run(FLAGS, hold_lock_until_exit=True)


def console_main() -> None:
    """The `bert-run-classifier` command installed by `pip install .`."""
    classifier_flags.mark_required()
    app.run(errors.main_with_clean_errors(
        main, "run_classifier.py",
        interrupted=lambda: "%s keeps what was finished (files written whole, checkpoints); "
        "the same command goes on from its latest checkpoint" % FLAGS.output_dir))


if __name__ == "__main__":
    console_main()
