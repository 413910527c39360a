#!/usr/bin/env bash
# Installs the Debian packages the tests use: chromium (the web UI's browser tests; Playwright drives it
# through executable_path, its own browser download is not used) and dssp (mkdssp: 8-state secondary
# structure for `plmforge structure`; without it plmforge falls back to 3 states). Needs root or sudo;
# safe to re-run.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v mkdssp >/dev/null 2>&1 || missing+=(dssp)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "the tests need ${missing[*]}: install them with your package manager (no apt-get here)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v chromium >/dev/null && command -v mkdssp >/dev/null
