"""BERT fine-tuning for classification on TensorFlow 2: the package behind run_classifier.py.

Folders are the layers (top to bottom; a lower one never imports an upper one):
api/ (the Python API) and cli/ (what only scripts need), checks/ (before any work),
workflow/ (the pipeline and the training loop), core/ (ground support modules).

Importing the package first sets the TensorFlow environment (cli/script_env), and is cheap:
`Classifier` and `Encoder` load TensorFlow on first use of the name.
"""

from bert_classifier.cli import script_env  # noqa: F401  (before anything imports TensorFlow)

_LAZY = {
    "Classifier": "bert_classifier.api.inference",
    "Encoder": "bert_classifier.api.inference",
}

__all__ = sorted(_LAZY)


def __getattr__(name):  # PEP 562: the API's names, imported on first use
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
