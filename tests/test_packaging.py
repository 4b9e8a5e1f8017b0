"""`pip install .`: the package, the original's module names and the console commands work from
a clean virtual environment, outside the checkout; pyproject.toml pins what requirements.txt
pins."""
import os
import re
import shutil
import subprocess
import sysconfig
import venv

import pytest

import e2e_util
import fixtures
from e2e_util import REPO_ROOT

# What a checkout holds beside the sources (built data, weights, environments): not copied.
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv*", "output", "__pycache__", "*.egg-info",
                                      "build", "sim_bbc", "minilm_*", ".pytest_cache")


def _requirements() -> list:
    with open(os.path.join(REPO_ROOT, "requirements.txt")) as f:
        return sorted(line.split("#")[0].strip() for line in f
                      if line.split("#")[0].strip())


def test_pyproject_pins_what_requirements_txt_pins():
    with open(os.path.join(REPO_ROOT, "pyproject.toml")) as f:
        text = f.read()
    block = re.search(r"^dependencies = \[(.*?)\]", text, re.MULTILINE | re.DOTALL).group(1)
    assert sorted(re.findall(r'"([^"]+)"', block)) == _requirements()


@pytest.mark.slow
def test_pip_install_gives_the_package_modules_and_commands(tmp_path):
    # A clean environment that sees the already-installed dependencies through a .pth file
    # (nothing is downloaded but the build backend), so pip resolves the pins against them.
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCES)
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip()
    with open(os.path.join(site, "project_dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([python, "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    work = tmp_path / "elsewhere"  # not the checkout: imports must come from the install
    work.mkdir()
    env = e2e_util.subprocess_env()
    env.pop("PYTHONPATH", None)
    probe = subprocess.run(
        [python, "-c",
         "import bert_classifier, run_classifier, modeling, tokenization, optimization, "
         "processors, extract_features; from bert_classifier import fine_tune, Classifier; "
         "from run_classifier import DataProcessor, InputExample; "
         "print(modeling.__file__); print(bert_classifier.__file__)"],
        capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    for path in probe.stdout.split():
        assert path.startswith(site), path

    # The console commands run the scripts: train a tiny model, then classify with it.
    tiny = e2e_util.make_tiny_bert(str(tmp_path / "tiny"))
    data_dir = str(tmp_path / "data")
    fixtures.write_sim(data_dir)
    output_dir = str(tmp_path / "out")
    bin_dir = env_dir / "bin"
    train = subprocess.run(
        [str(bin_dir / "bert-run-classifier")] + e2e_util.classifier_args(
            tiny, data_dir, output_dir, "sim", do_train="true", do_eval="true", seed=3),
        capture_output=True, text=True, cwd=work, env=env, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert os.path.exists(os.path.join(output_dir, "eval_results.txt"))
    predict = subprocess.run(
        [str(bin_dir / "bert-predict"), f"--model_dir={output_dir}", "--text_a=a text",
         "--text_b=another"], capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert predict.stdout.splitlines()[0] == "guid\tlabel\t0\t1"
    # absl's --helpfull lists every flag the command defines.
    for command, flag in (("bert-extract-features", "--pooling"),
                          ("bert-export-saved-model", "--export_dir")):
        helped = subprocess.run([str(bin_dir / command), "--helpfull"], capture_output=True,
                                text=True, cwd=work, env=env, timeout=300)
        assert flag in helped.stdout, helped.stdout[-2000:] + helped.stderr[-2000:]
    # A command's error is one line, as the script's.
    refused = subprocess.run([str(bin_dir / "bert-run-classifier"), "--task_name=sim",
                              f"--data_dir={data_dir}", f"--vocab_file={tiny['vocab']}",
                              f"--bert_config_file={tiny['config']}",
                              f"--output_dir={output_dir}"],
                             capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "run_classifier.py: error: At least one of `do_train`, `do_eval` or `do_predict' must "
        "be True.")
