#!/usr/bin/env bash
# The whole test suite: lint, types, and pytest on SQLite, on the real PostgreSQL server and in Chromium.
# Used by `make test` and by .ci/run. Exits non-zero on any failure, including "no tests collected".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh

pg_up() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect(("127.0.0.1", 5432))
except OSError:
    sys.exit(1)
PY
}

if [ -z "${CDP_TEST_POSTGRES_URL:-}" ]; then
  if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is down; starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  if pg_up; then
    export CDP_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:5432/test"
  else
    echo "note: no PostgreSQL on 127.0.0.1:5432 — PostgreSQL tests will be skipped (they fail under CI=true)"
  fi
fi

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests (Playwright never downloads one)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: /usr/bin/chromium is missing — browser tests will be skipped (they fail under CI=true)"
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Security lint of the shipped code: any finding of high severity fails the run (pyproject [tool.bandit]).
.venv/bin/bandit -c pyproject.toml -r cdp api web -q --severity-level high
# Known vulnerabilities in the installed (locked) dependencies fail the run; see the script for what it
# does when the vulnerability service cannot be reached from this machine.
bash scripts/audit-deps.sh
set +e
.venv/bin/python -m pytest -n "${CDP_TEST_WORKERS:-2}" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: no tests were collected" >&2
  exit 1
fi
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
  # After the suite, never beside it: this one restarts the local PostgreSQL cluster under load.
  bash scripts/restart-check.sh
fi
exit "$status"
