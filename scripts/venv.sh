#!/usr/bin/env bash
# Create or refresh .venv so that it matches pyproject.toml. Safe to run every time: it reinstalls only
# when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "error: cdp needs Python 3.11 or newer as '$PYTHON' (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.cdp-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ] \
   || ! .venv/bin/python -c 'import cdp, api, web' 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # The lock pins every dependency to the versions the suite was run with (scripts/lock.sh makes it).
  .venv/bin/python -m pip install --quiet -e '.[dev,bench]' -c requirements.lock
  touch "$stamp"
fi
