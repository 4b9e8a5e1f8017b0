"""Task data: example/feature classes, the `DataProcessor` API, the task registry.

Importing the package registers the built-in tasks: cola, mnli, mrpc, xnli (the original's)
and sim (generic sentence-pair similarity from .tsv/.csv).
"""
from processors.base import (DataProcessor, InputExample, InputFeatures,
                             PaddingInputExample, input_encoding, set_input_encoding)
from processors.registry import (get_processor, import_processor_module,
                                 register_processor, registered_task_names)
from processors.glue import ColaProcessor, MnliProcessor, MrpcProcessor, XnliProcessor
from processors.sim import SimProcessor

__all__ = [
    "DataProcessor", "InputExample", "InputFeatures", "PaddingInputExample",
    "input_encoding", "set_input_encoding",
    "get_processor", "import_processor_module", "register_processor",
    "registered_task_names", "ColaProcessor", "MnliProcessor", "MrpcProcessor",
    "XnliProcessor", "SimProcessor",
]
