"""Run a worker module in a separate process and kill -9 it part-way (the crash-safety tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_worker(module: str, args: list[str], *, kill_after: float | None, timeout: float = 300) -> bool:
    """Start ``python -m module *args``; once it prints ``ready`` (connected, about to do the real
    work), SIGKILL it ``kill_after`` seconds later, or with None let it finish. True if it finished."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        assert line.strip() == "ready", process.stderr.read() if process.stderr else line
        if kill_after is None:
            _, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, err
            return True
        time.sleep(kill_after)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        return process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
