#!/usr/bin/env bash
# PostgreSQL restarted under load: the server must recover by itself. Runs bench/load with --check on a
# throw-away database against the local cluster, restarts that cluster 10 s in (pg_ctlcluster), and fails
# on any 5xx but 503, any failure outlasting the restart by 10 s, or no success after it.
#
# It restarts the whole local cluster, so it runs after the test suite, never beside it. Needs root and
# pg_ctlcluster (Debian's postgresql-common); without them it is skipped, except under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CDP_TEST_POSTGRES_URL:-}" ] && [ -z "${CI:-}" ]; then
  echo "restart check skipped: CDP_TEST_POSTGRES_URL is not set"
  exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ "$(id -u)" != 0 ] || [ ! -d /etc/postgresql ]; then
  if [ -n "${CI:-}" ]; then
    echo "error: the PostgreSQL restart check needs root and pg_ctlcluster under CI" >&2
    exit 1
  fi
  echo "restart check skipped: needs root and pg_ctlcluster to restart the local cluster"
  exit 0
fi
CDP_BENCH_POSTGRES_URL="${CDP_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}" \
  .venv/bin/python -m bench.load --backend postgres --seconds 30 --people 300 --threads 4 \
  --restart-postgres-after 10 --check
