"""The README's commands run as printed: its first command (the default job) logs no warning; the
three-line Python block of "Fine-tune from Python" gives the same eval_results.txt as that
command (one code path, the same seed), on the real embedded model and data; the DataFrame block
asks for the same training."""
import ast
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
    flagfile_block, frame_block = blocks
    assert 'output_dir="output/sim_bbc_py"' in flagfile_block
    run = _run([sys.executable, "-c", flagfile_block], workdir)
    # The same run in every number (it also predicts, as the flags say), printed first.
    assert _eval_results(workdir, "output/sim_bbc_py") == expected
    accuracy = re.search(r"eval_accuracy = (\S+)", expected).group(1)
    assert float(run.stdout.split()[0]) == pytest.approx(float(accuracy))
    assert "Predictions(labels=" in run.stdout
    # The DataFrame block trains on the same rows (tests/test_fine_tune.py: identical weights for
    # the same rows and settings) with the flagfile's training settings; checked here without a
    # third run of the job.
    _assert_same_training_settings(frame_block, os.path.join(REPO_ROOT, "examples",
                                                             "sim_bbc.flags"))


def _assert_same_training_settings(block: str, flagfile: str):
    from bert_classifier.cli import classifier_flags
    call = next(node for node in ast.walk(ast.parse(block))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "fine_tune")
    given = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords
             if kw.arg not in ("train", "dev", "output_dir")}
    assert ast.literal_eval(call.args[0]) == "pretrained/minilm_L-6_H-384_A-12"
    flag_values = classifier_flags.run_classifier_flag_values()
    flag_values(["readme", f"--flagfile={flagfile}"])
    defaults = classifier_flags.run_classifier_flag_values()
    defaults(["readme"])
    for name in ("max_seq_length", "train_batch_size", "learning_rate", "num_train_epochs",
                 "warmup_proportion", "seed", "adam_bias_correction", "shuffle_buffer_size",
                 "length_multiple", "bucket_by_length", "precision", "do_lower_case"):
        value = given.get(name, defaults[name].value)
        assert value == flag_values[name].value, (name, value, flag_values[name].value)
