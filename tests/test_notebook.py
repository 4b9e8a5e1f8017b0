"""notebooks/colab_tpu.ipynb runs top to bottom (on CPU here, its parameters overridden for a short
run) and pins the TensorFlow version of requirements.txt for tensorflow and tensorflow-tpu."""
import os
import re

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from e2e_util import REPO_ROOT

NOTEBOOK = os.path.join(REPO_ROOT, "notebooks", "colab_tpu.ipynb")


def _requirements_tf_version() -> str:
    with open(os.path.join(REPO_ROOT, "requirements.txt")) as f:
        match = re.search(r"^tensorflow==([\w.]+)\s*$", f.read(), re.MULTILINE)
    assert match, "requirements.txt pins no tensorflow version"
    return match.group(1)


def test_install_cell_pins_the_requirements_version():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    install = [c.source for c in notebook.cells if "TF_VERSION =" in c.source]
    assert len(install) == 1
    version = re.search(r'TF_VERSION = "([\w.]+)"', install[0]).group(1)
    assert version == _requirements_tf_version()
    assert "tensorflow==%s tensorflow-tpu==%s" in install[0]
    assert "(TF_VERSION, TF_VERSION)" in install[0]


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_cpu(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(notebook.cells)
                 if "parameters" in c.metadata.get("tags", []))
    output_dir = tmp_path / "output"
    overrides = nbformat.v4.new_code_cell(
        f"PROJECT_DIR = {REPO_ROOT!r}\nUSE_TPU = False\nOUTPUT_DIR = {str(output_dir)!r}\n"
        "MAX_SEQ_LENGTH = 32\nNUM_TRAIN_EPOCHS = 0.1\n")
    notebook.cells.insert(index + 1, overrides)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []))
    assert "TPU: False" in text
    results = dict(line.split(" = ") for line in
                   (output_dir / "eval_results.txt").read_text().splitlines())
    assert int(results["global_step"]) == 3  # int(1200 / 32 * 0.1)
    assert 0.0 <= float(results["eval_accuracy"]) <= 1.0
    assert (output_dir / "model_info.json").exists()
    assert "guid\tlabel\t0\t1" in text  # predict.py's header
    vectors = np.load(output_dir / "vectors.npy")
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
