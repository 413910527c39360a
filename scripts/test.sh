#!/usr/bin/env bash
# Set up, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/system.sh  # chromium (browser tests) and mkdssp (8-state DSSP)
# two workers (pytest-xdist), a test file per worker, one torch thread each (tests/conftest.py); the 30
# slowest tests are listed: keep CI under 25 minutes
.venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=30 "$@"
