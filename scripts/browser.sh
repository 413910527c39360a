#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests of the web UI (Playwright drives it through
# executable_path; Playwright's own browser download is not used). Needs root or sudo; safe to re-run.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "the browser tests need Chromium: install it with your package manager (no apt-get here)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
