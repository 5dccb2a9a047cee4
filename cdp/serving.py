"""What ``cdp serve`` runs: the HTTP server and one background-jobs process, started and stopped together.

The jobs (audit sequencer, housekeeping, scheduled segments, retention sweep; :mod:`cdp.jobs`) run in a
process of their own rather than in every HTTP worker: the sequencer's batches are pure-Python hashing,
and in a worker they held the GIL while that worker's request threads waited. One jobs process also
means one sequencer, instead of every worker racing for the chain lock with the same pending entries.

The supervisor is deliberately small: on SIGTERM, SIGINT or SIGHUP it stops the server (which drains its
requests) and then the jobs, each with SIGTERM and a grace period; it restarts the jobs process if that
dies (with a growing pause, logged); and when the server ends on its own it stops the jobs and exits with
the server's status.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

logger = logging.getLogger(__name__)

WORKER_TIMEOUT_SECONDS = 300
"""gunicorn kills a sync worker that has not answered within this time. Long enough for the longest
operation that runs inside one request (a retention sweep of 100k records took 26 s on 2 cores)."""
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
"""Client, method, path without the query string, status, bytes, seconds: no token, no query."""


def default_workers() -> int:
    """Two sync workers per core: each serves one request at a time, so the second keeps a core busy
    while the first waits on the database."""
    return 2 * (os.cpu_count() or 1)


def gunicorn_argv(
    gunicorn: str,
    bind: str,
    workers: int | str,
    *,
    access_log: bool = True,
    app: str = "api.wsgi:app",
    pythonpath: str | None = None,
) -> list[str]:
    """The gunicorn command of ``cdp serve`` (bench/http_reads serves its baseline with the same one).

    Sync workers, not gthread: the kernel hands each new connection to an idle worker, so the load
    spreads evenly over the cores, and no request thread shares an interpreter (and its GIL) with
    another. gthread workers keep the keep-alive connections they accept, and a burst of connections on
    a busy machine often landed on one worker, leaving the other core idle (bench/http_reads, SQLite:
    504 req/s with a 100/0 split, 990 with 50/50; 4 sync workers 1,100 req/s at 25/25/25/25, p99 27 ms
    against 29; PostgreSQL 721-732 against 650). Sync workers close the connection after each response:
    run them behind a reverse proxy (which the deployment notes ask for anyway)."""
    argv = [gunicorn, "--bind", bind, "--workers", str(workers), "--worker-class", "sync"]
    argv += ["--timeout", str(WORKER_TIMEOUT_SECONDS)]
    if access_log:
        argv += ["--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT]
    if pythonpath is not None:
        argv += ["--pythonpath", pythonpath]
    return [*argv, app]


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_SECONDS = 30.0
"""How long each child gets to stop after SIGTERM before it is killed."""
RESTART_PAUSES = (1.0, 2.0, 5.0, 15.0, 60.0)
"""Pause before restarting a jobs process that died, growing with each death in a row; reset once one
has run for a minute."""


@dataclass
class _Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(list(self.argv), env=dict(self.env))
        self.started_at = time.monotonic()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, grace)
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass
class Supervisor:
    """Runs ``server`` and ``jobs`` until the server ends or a stop signal arrives."""

    server_argv: Sequence[str]
    jobs_argv: Sequence[str]
    env: Mapping[str, str]
    grace: float = GRACE_SECONDS
    poll_seconds: float = 0.2
    sleep: Callable[[float], None] = time.sleep
    _stopping: int | None = field(default=None, init=False)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = signum

    def run(self) -> int:
        server = _Child("HTTP server", self.server_argv, self.env)
        jobs = _Child("background jobs", self.jobs_argv, self.env)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        deaths = 0
        restart_at: float | None = None
        try:
            jobs.start()
            server.start()
            while self._stopping is None:
                code = server.exit_code()
                if code is not None:
                    logger.warning("the HTTP server exited with status %d; stopping", code)
                    jobs.stop(self.grace)
                    return code
                now = time.monotonic()
                jobs_code = jobs.exit_code()
                if jobs_code is not None and restart_at is None:
                    deaths = 0 if now - jobs.started_at > 60 else deaths + 1
                    pause = RESTART_PAUSES[min(deaths, len(RESTART_PAUSES) - 1)]
                    logger.warning(
                        "background jobs exited with status %d; restarting in %.0f s", jobs_code, pause
                    )
                    restart_at = now + pause
                if restart_at is not None and now >= restart_at:
                    jobs.start()
                    restart_at = None
                self.sleep(self.poll_seconds)
            # A stop signal: the server first (it drains its requests), then the jobs (a running job
            # finishes its transaction).
            code = server.stop(self.grace)
            jobs.stop(self.grace)
            return 0 if code in (0, None, -signal.SIGTERM) else code
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if server.exit_code() is None:
                server.stop(self.grace)
            if jobs.exit_code() is None:
                jobs.stop(self.grace)
