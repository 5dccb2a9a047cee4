"""`cdp serve`'s supervisor: the HTTP server and the background-jobs process live and die together."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from cdp.serving import Supervisor
from tests.processes import alive, writes_pid_then_sleeps

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _exits_with(code: int, after: float = 0.0) -> list[str]:
    return [sys.executable, "-c", f"import sys, time; time.sleep({after}); sys.exit({code})"]


def _jobs_recording_pids(pid_file: Path) -> list[str]:
    """A jobs stand-in that appends its pid to ``pid_file`` and dies at once."""
    return [sys.executable, "-c", f"import os; open({str(pid_file)!r}, 'a').write(f'{{os.getpid()}}\\n')"]


def test_the_supervisor_ends_with_the_servers_status_and_stops_the_jobs(tmp_path: Path) -> None:
    pid_file = tmp_path / "jobs.pid"
    jobs = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]

    code = Supervisor(_exits_with(3, after=1.0), jobs, dict(os.environ), grace=5, poll_seconds=0.05).run()

    assert code == 3
    jobs_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(jobs_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(jobs_pid)


def test_a_jobs_process_that_dies_is_started_again(tmp_path: Path) -> None:
    pid_file = tmp_path / "jobs.pids"

    code = Supervisor(
        _exits_with(0, after=2.5), _jobs_recording_pids(pid_file), dict(os.environ), poll_seconds=0.05
    ).run()

    assert code == 0
    starts = pid_file.read_text().split()
    assert len(starts) >= 2, "the jobs process died at once and should have been restarted after a pause"
    assert len(set(starts)) == len(starts)


def test_sigterm_stops_server_and_jobs_and_exits_cleanly(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    server = writes_pid_then_sleeps(pid_file)
    supervisor = Supervisor(server, SLEEPER, dict(os.environ), grace=5, poll_seconds=0.05)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    try:
        code = supervisor.run()
    finally:
        timer.cancel()

    assert code == 0
    assert time.monotonic() - started < 10
    assert not alive(int(pid_file.read_text()))
    assert signal.getsignal(signal.SIGTERM) is not supervisor._on_signal, "handlers are restored"
