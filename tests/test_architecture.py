"""The tree shows the architecture (ARCHITECTURE.md, issue 23): the package's folders are layers,
a lower layer never imports an upper one, the root holds the original's names and the scripts
only, and every script sets the TensorFlow environment first. Read from the source (AST), so
lazy imports inside functions count too."""
import ast
import os
import subprocess
import sys
from typing import Iterator, List, Tuple

import pytest

from e2e_util import REPO_ROOT

PACKAGE = "bert_classifier"
# Top to bottom. api (the Python API) is built on cli's flag definitions (fine_tune's keywords
# are run_classifier's flags); workflow (run_classifier's workflow, the pipeline, the training
# loop) runs the checks before any work; core is the ground.
LAYER_RANK = {"api": 4, "cli": 3, "workflow": 2, "checks": 1, "core": 0}
# The original's module names that stay at the root: ground modules, below every layer but core.
GROUND_MODULES = {"modeling", "tokenization", "optimization"}
SCRIPTS = {"run_classifier", "extract_features", "predict", "export_saved_model"}
ROOT_MODULES = GROUND_MODULES | SCRIPTS


def _python_files(folder: str) -> Iterator[str]:
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def _imported_modules(path: str) -> List[Tuple[int, str]]:
    """(line, dotted module) of every import in the file; `from a.b import c` gives a.b.c when
    a/b/c.py or a/b/c/ exists (a module object), else a.b."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                candidate = os.path.join(REPO_ROOT, *node.module.split("."), alias.name)
                is_module = os.path.exists(candidate + ".py") or os.path.isdir(candidate)
                found.append((node.lineno, node.module + "." + alias.name if is_module
                              else node.module))
    return found


def _layer(module: str):
    """The layer of a dotted project module: 'api' ... 'core', 'package' (bert_classifier's
    __init__), 'ground', 'script', or None for another package."""
    parts = module.split(".")
    if parts[0] == PACKAGE:
        return parts[1] if len(parts) > 1 and parts[1] in LAYER_RANK else "package"
    if parts[0] in GROUND_MODULES:
        return "ground"
    if parts[0] in SCRIPTS:
        return "script"
    return None


def _package_modules() -> List[str]:
    return list(_python_files(os.path.join(REPO_ROOT, PACKAGE)))


def test_every_package_module_sits_in_a_layer():
    for path in _package_modules():
        relative = os.path.relpath(path, os.path.join(REPO_ROOT, PACKAGE))
        folder = relative.split(os.sep)[0]
        assert folder in LAYER_RANK or relative == "__init__.py", (
            f"{PACKAGE}/{relative} is outside the layer folders {sorted(LAYER_RANK)}")


def test_no_layer_imports_an_upper_one():
    """A module imports its own layer, lower layers, the ground modules and processors/;
    never an upper layer, a script, or the package's __init__ (which loads the API)."""
    bad = []
    for path in _package_modules():
        relative = os.path.relpath(path, REPO_ROOT)
        own = relative.split(os.sep)[1]
        if own not in LAYER_RANK:
            continue  # bert_classifier/__init__.py: checked below
        for line, module in _imported_modules(path):
            layer = _layer(module)
            if layer in ("script", "package"):
                bad.append(f"{relative}:{line} imports {module} ({layer})")
            elif layer in LAYER_RANK and layer != own and (
                    LAYER_RANK[layer] >= LAYER_RANK[own]):
                bad.append(f"{relative}:{line} ({own}) imports {module} ({layer})")
    assert not bad, "\n".join(bad)


def test_ground_modules_and_processors_import_only_core():
    """modeling, tokenization, optimization and processors/ are below every layer but core."""
    paths = [os.path.join(REPO_ROOT, name + ".py") for name in sorted(GROUND_MODULES)]
    paths += list(_python_files(os.path.join(REPO_ROOT, "processors")))
    bad = []
    for path in paths:
        for line, module in _imported_modules(path):
            layer = _layer(module)
            if layer not in (None, "ground", "core"):
                bad.append(f"{os.path.relpath(path, REPO_ROOT)}:{line} imports {module} ({layer})")
    assert not bad, "\n".join(bad)


def test_package_init_imports_only_the_environment_eagerly():
    """`import bert_classifier` stays cheap: its only module-level import is core/tf_environment
    (the environment; the scripts' own start-up, cli/script_env, is not a library's)."""
    path = os.path.join(REPO_ROOT, PACKAGE, "__init__.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports and isinstance(imports[0], ast.ImportFrom)
    assert (imports[0].module, [a.name for a in imports[0].names]) == (
        f"{PACKAGE}.core", ["tf_environment"])
    assert len(imports) == 1, [ast.dump(node) for node in imports[1:]]


def test_root_holds_only_the_originals_names_and_the_scripts():
    root_modules = {name[:-3] for name in os.listdir(REPO_ROOT)
                    if name.endswith(".py") and os.path.isfile(os.path.join(REPO_ROOT, name))}
    assert root_modules == ROOT_MODULES, (
        f"support modules belong in {PACKAGE}/: {sorted(root_modules - ROOT_MODULES)}; "
        f"missing: {sorted(ROOT_MODULES - root_modules)}")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_scripts_set_the_environment_before_anything_else(script):
    """Before cli/script_env a script imports the standard library only: TensorFlow reads the
    environment when it is imported (importing the package runs script_env too)."""
    path = os.path.join(REPO_ROOT, script + ".py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == f"{PACKAGE}.cli" and [
                a.name for a in node.names] == ["script_env"]:
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(name.split(".")[0] in sys.stdlib_module_names for name in names), (
                f"{script}.py line {node.lineno} imports {names} before "
                f"`from {PACKAGE}.cli import script_env`")
    pytest.fail(f"{script}.py never imports {PACKAGE}.cli.script_env")


def test_the_layer_rule_sees_a_violation(tmp_path):
    """The checker itself: a core module importing the workflow is reported."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from bert_classifier.workflow import forward\n")
    (line, imported), = _imported_modules(str(module))
    assert (line, imported, _layer(imported)) == (2, "bert_classifier.workflow.forward",
                                                  "workflow")
    assert LAYER_RANK[_layer(imported)] > LAYER_RANK["core"]


@pytest.mark.slow
def test_importing_the_package_does_not_import_tensorflow():
    """`import bert_classifier` sets the environment only; Classifier loads TensorFlow on use."""
    code = ("import sys, os, bert_classifier; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'; "
            "print(bert_classifier.Classifier.__module__)")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "bert_classifier.api.inference"
