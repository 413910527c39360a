#!/usr/bin/env bash
# Set up, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/system.sh  # chromium (browser tests) and mkdssp (8-state DSSP)
.venv/bin/python -m pytest -q --durations=30 "$@"  # the 30 slowest tests are listed: keep CI under 30 minutes
