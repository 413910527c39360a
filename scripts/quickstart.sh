#!/usr/bin/env bash
# Set up, then fine-tune the offline AntiBERTy model on the bundled antimicrobial-peptide example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/plmforge train --config examples/quickstart.yaml --overwrite "$@"
