"""BERT fine-tuning for sentence and sentence-pair classification on TensorFlow 2.

    from bert_classifier import fine_tune
    run = fine_tune("pretrained/minilm_L-6_H-384_A-12", train=train_df, dev=dev_df,
                    output_dir="out/my_task", num_train_epochs=2)
    run.eval_results["eval_accuracy"], run.classifier.predict([("a headline", "a paragraph")])

The names below are imported on first use, so `import bert_classifier` stays cheap.
"""
# First: the environment TensorFlow reads at import (tf_keras, allocator, quiet C++ logs).
import script_env  # noqa: F401

_EXPORTS = {
    "fine_tune": ("bert_classifier.api.finetune", "fine_tune"),
    "FineTuneRun": ("bert_classifier.api.finetune", "FineTuneRun"),
    "Classifier": ("inference", "Classifier"),
    "Encoder": ("inference", "Encoder"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bert_classifier' has no attribute {name!r}")
    import importlib
    module_name, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value
