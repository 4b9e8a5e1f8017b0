"""Task name -> `DataProcessor` class registry, and loading of user modules that add tasks.

A task is added without editing the project: decorate a `DataProcessor` subclass with
`@register_processor("mytask")` in any module, then import that module (or pass it to
`import_processor_module`, which `run_classifier.py --processor_module` does).
"""
import importlib
import importlib.util
import os
import sys
from typing import Callable, Dict, List, Type

from processors.base import DataProcessor

_REGISTRY: Dict[str, Type[DataProcessor]] = {}


def register_processor(name: str) -> Callable[[Type[DataProcessor]], Type[DataProcessor]]:
    """Class decorator registering a `DataProcessor` subclass under `name` (case-insensitive).

    Registering a different class under a name already taken raises ValueError; registering
    the same class again (a module imported twice) is allowed.
    """
    key = name.lower()

    def decorator(cls: Type[DataProcessor]) -> Type[DataProcessor]:
        if not (isinstance(cls, type) and issubclass(cls, DataProcessor)):
            raise ValueError("register_processor(%r): %r is not a DataProcessor subclass" %
                             (name, cls))
        existing = _REGISTRY.get(key)
        if existing is not None and _qualname(existing) != _qualname(cls):
            raise ValueError("Task %r is already registered by %s; cannot register %s" %
                             (key, _qualname(existing), _qualname(cls)))
        _REGISTRY[key] = cls
        return cls

    return decorator


def _qualname(cls: type) -> str:
    return "%s.%s" % (cls.__module__, cls.__qualname__)


def get_processor(task_name: str) -> DataProcessor:
    """Returns a new instance of the processor registered as `task_name` (case-insensitive).

    Unknown names raise ValueError("Task not found: <task_name>"), the original's message.
    """
    cls = _REGISTRY.get(str(task_name).lower())
    if cls is None:
        raise ValueError("Task not found: %s" % (task_name))
    return cls()


def registered_task_names() -> List[str]:
    """The registered task names (lower case), sorted."""
    return sorted(_REGISTRY)


def import_processor_module(module_or_path: str):
    """Imports a user module so that its `@register_processor` classes are registered.

    `module_or_path` is either a dotted module name importable from the current directory or
    sys.path (e.g. "my_tasks"), or a path to a .py file. Returns the module. A module that
    cannot be found raises ValueError naming it.
    """
    spec_text = module_or_path.strip()
    if spec_text.endswith(".py") or os.sep in spec_text or "/" in spec_text:
        path = os.path.abspath(os.path.expanduser(spec_text))
        if not os.path.isfile(path):
            raise ValueError("--processor_module: file not found: %s" % path)
        name = os.path.splitext(os.path.basename(path))[0]
        # Re-use an already loaded copy of the same file, so its classes register only once.
        for module in list(sys.modules.values()):
            if os.path.abspath(getattr(module, "__file__", "") or "") == path:
                return module
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    # A dotted name: the current directory is searched too, as `python -m` users expect.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(spec_text)
    except ModuleNotFoundError as e:
        if e.name and spec_text.startswith(e.name):
            raise ValueError("--processor_module: cannot import module %r (not found on "
                             "sys.path or in the current directory %s)" %
                             (spec_text, os.getcwd())) from e
        raise
