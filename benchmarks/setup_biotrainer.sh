#!/usr/bin/env bash
# Creates a separate environment with Rostlab's biotrainer 2.1.1 for the side-by-side in
# benchmarks/heads_speed.py:
#
#     bash benchmarks/setup_biotrainer.sh [DIR]          # DIR defaults to /tmp/btvenv
#     .venv/bin/python benchmarks/heads_speed.py --biotrainer DIR/bin/python
#
# Why not simply `pip install biotrainer`: biotrainer 2.1.1 (and biotrainer-core) declare
# Requires-Python >=3.12,<3.14, and this machine runs Debian 12, whose only Python is 3.11. So the two
# biotrainer wheels (pure Python) are installed with --ignore-requires-python --no-deps, and their
# dependencies are installed in a second step from biotrainer's own declared list, with these deviations:
#   - scipy==1.17.1 instead of biotrainer's scipy>=1.18.1,<1.20: scipy 1.18 has no Python 3.11 wheels;
#   - numpy>=2.4.1,<2.5: the intersection of biotrainer's (<2.6) and biotrainer-core's (<2.5) ranges, which
#     also keeps pip off numpy 2.5.x, which has no Python 3.11 wheel and fails to build from source here;
#   - aaanalysis is left out: it is only used by biotrainer's aa-ontology baseline embedder, which a run on
#     precomputed embeddings never loads.
# pip then reports the scipy conflict (and the missing aaanalysis); the training, testing and bootstrapping
# used by the benchmark run as they should. On a machine with Python >= 3.12 the normal route is a plain
#     python3.12 -m venv DIR && DIR/bin/pip install torch==2.13.0 biotrainer==2.1.1
#
# TORCH_SPEC picks the torch build as in scripts/setup.sh: torch==2.13.0 by default (the CPU build where the
# pip index serves it; on PyPI for Linux add --index-url https://download.pytorch.org/whl/cpu for CPU only).
set -euo pipefail
DIR="${1:-/tmp/btvenv}"
PY="${PYTHON:-python3}"

"$PY" -m venv "$DIR"
"$DIR/bin/python" -m pip install -q --upgrade pip
# torch first, so biotrainer's dependencies do not pull a different build
"$DIR/bin/python" -m pip install "${TORCH_SPEC:-torch==2.13.0}"
# biotrainer itself, ignoring its Python >= 3.12 requirement
"$DIR/bin/python" -m pip install --ignore-requires-python --no-deps biotrainer==2.1.1 biotrainer-core==2.1.1
# biotrainer's and biotrainer-core's declared dependencies (their METADATA, Requires-Dist), with the
# deviations explained above
"$DIR/bin/python" -m pip install \
  "scipy==1.17.1" \
  "numpy>=2.4.1,<2.5.0" \
  "accelerate>=1.15.0,<2.0.0" \
  "appdirs>=1.4.4" \
  "blosum>=2.2.0,<2.3.0" \
  "cyclopts>=4.22.0,<4.23.0" \
  "datasets>=5.0.1,<6.0.0" \
  "einops>=0.8.2,<0.9.0" \
  "gpytorch>=1.15.2,<2.0" \
  "h5py>=3.15.0,<4.0.0" \
  "junban>=1.0.3,<1.1.0" \
  "llvmlite>=0.49.0,<0.52.0" \
  "onnx>=1.23.0,<1.25.0" \
  "onnxscript>=0.7.0,<0.8.0" \
  "peft>=0.21.0,<0.23.0" \
  "pydantic>=2.12.3,<2.15.0" \
  "ruamel-yaml>=0.17.40,<0.18.0" \
  "safetensors>=0.4.4" \
  "scikit-learn>=1.5.1" \
  "sentencepiece>=0.2.0" \
  "tensorboard>=2.20.0,<2.22.0" \
  "torchmetrics>=1.9.0" \
  "tqdm>=4.67.3,<5.0.0" \
  "transformers>=5.17.0,<5.20.0" \
  "umap-learn>=0.5.7,<0.6.0" \
  "email-validator>=2.3.0,<2.4.0" \
  "pandas>=2.3.3"
# the import the benchmark relies on
"$DIR/bin/python" -c "from biotrainer.training.utilities.executer import parse_config_file_and_execute_run; \
from biotrainer.shared import __version__; print('biotrainer', __version__, 'ready in $DIR')"
