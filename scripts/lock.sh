#!/usr/bin/env bash
# Regenerate requirements.lock: every package cdp installs (runtime, dev and bench extras) at an exact
# version, resolved in a fresh virtualenv from pyproject.toml. Run it after changing dependencies in
# pyproject.toml and commit both; scripts/venv.sh installs with the lock as constraints.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet '.[dev,bench]'
{
  echo "# Exact versions of every dependency (runtime + dev + bench), resolved from pyproject.toml by"
  echo "# scripts/lock.sh; scripts/venv.sh installs with this file as constraints. Do not edit by hand."
  "$work/venv/bin/python" -m pip freeze --exclude-editable | grep -iv '^cdp[ =@]'
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
