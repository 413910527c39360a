#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs plmforge with its test tools. Safe to re-run.
# TORCH_SPEC picks the torch build: the default is a CPU build; on a GPU machine set e.g. TORCH_SPEC=torch
# (or TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu121"); changing it installs again
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" - <<'PYCHECK'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"plmforge needs Python >= 3.11, this is {sys.version.split()[0]}; set PYTHON=/path/to/python3.11")
PYCHECK
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.plmforge-installed
torch_spec="${TORCH_SPEC:-torch==2.13.0}"  # may carry pip options, e.g. "torch --index-url https://.../cu121"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$(cat "$stamp")" != "$torch_spec" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # shellcheck disable=SC2086  # (split on purpose: a requirement and its pip options)
  .venv/bin/python -m pip install -q $torch_spec
  .venv/bin/python -m pip install -q -e ".[dev]"
  printf '%s' "$torch_spec" > "$stamp"  # a new TORCH_SPEC installs again
fi
