"""BERT fine-tuning for sentence and sentence-pair classification on TensorFlow 2: the package
behind run_classifier.py, and its Python API.

    from bert_classifier import fine_tune
    run = fine_tune("pretrained/minilm_L-6_H-384_A-12", train=train_df, dev=dev_df,
                    output_dir="out/my_task", num_train_epochs=2)
    run.eval_results["eval_accuracy"], run.classifier.predict([("a headline", "a paragraph")])

Folders are the layers (top to bottom; a lower one never imports an upper one): api/ (the
Python API) and cli/ (what only scripts need), workflow/ (run_classifier's workflow, the
pipeline and the training loop), checks/ (before any work), core/ (ground support modules).

Importing the package first sets the TensorFlow environment (core/tf_environment), and is
cheap: `fine_tune`, `FineTuneRun`, `Classifier` and `Encoder` load TensorFlow on first use.
"""

from bert_classifier.core import tf_environment  # noqa: F401  (before anything imports TensorFlow)

_LAZY = {
    "fine_tune": "bert_classifier.api.finetune",
    "FineTuneRun": "bert_classifier.api.finetune",
    "Classifier": "bert_classifier.api.inference",
    "Encoder": "bert_classifier.api.inference",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):  # PEP 562: the API's names, imported on first use
    if name not in _LAZY:
        raise AttributeError(f"module 'bert_classifier' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
