"""The README's commands run as printed: its first command (the default job) logs no warning, and
the Python blocks of "Fine-tune from Python" give the same eval_accuracy as that command (the
same seed: one code path), on the real embedded model and data."""
import os
import re
import subprocess
import sys

import pytest

import e2e_util
from e2e_util import REPO_ROOT

pytestmark = pytest.mark.slow


def _readme() -> str:
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def _python_blocks_of(section: str):
    text = _readme()
    start = text.index(f"## {section}\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.DOTALL)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, minilm_dir):
    """A folder laid out as the checkout (the embedded model, data and flagfile), where the
    README's relative paths (output/...) land."""
    work = tmp_path_factory.mktemp("readme")
    for name in ("data", "pretrained", "examples"):
        os.symlink(os.path.join(REPO_ROOT, name), work / name)
    return work


def _run(argv, cwd):
    env = e2e_util.subprocess_env({"PYTHONPATH": REPO_ROOT})
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _eval_results(workdir, output_dir):
    with open(os.path.join(workdir, output_dir, "eval_results.txt")) as f:
        return f.read()


def test_the_first_command_and_the_python_blocks_agree(workdir):
    command = next(line.strip() for line in _readme().splitlines()
                   if "run_classifier.py --flagfile=examples/sim_bbc.flags" in line)
    args = re.search(r"run_classifier\.py (--flagfile=\S+)", command).group(1)
    cli = _run([sys.executable, os.path.join(REPO_ROOT, "run_classifier.py"), args], workdir)
    # A clean run shows no warning, error or traceback (absl's W/E lines, Python's warnings).
    noisy = [line for line in cli.stderr.splitlines()
             if re.match(r"[WEF]\d{4} ", line) or "Traceback" in line or "Warning" in line]
    assert not noisy, "\n".join(noisy)
    expected = _eval_results(workdir, "output/sim_bbc")
    assert "global_step = 75" in expected

    blocks = _python_blocks_of("Fine-tune from Python")
    assert len(blocks) == 2 and all("fine_tune(" in block for block in blocks)
    for block, output_dir in zip(blocks, ("output/sim_bbc_py", "output/sim_bbc_df")):
        assert f'output_dir="{output_dir}"' in block
        run = _run([sys.executable, "-c", block], workdir)
        # Printed: the eval accuracy, then the classifier's predictions.
        printed = run.stdout.split()[0]
        got = _eval_results(workdir, output_dir)
        accuracy = re.search(r"eval_accuracy = (\S+)", expected).group(1)
        assert re.search(r"eval_accuracy = (\S+)", got).group(1) == accuracy
        assert float(printed) == pytest.approx(float(accuracy))
        assert "Predictions(labels=" in run.stdout
    # The flagfile block is the same run in every number (it also predicts, as the flags say).
    assert _eval_results(workdir, "output/sim_bbc_py") == expected
