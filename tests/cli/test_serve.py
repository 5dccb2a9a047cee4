"""`cdp serve` really serves: gunicorn workers start on the configured port and answer the probes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cli.test_cli import _env, cdp, ok


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL built here
        return response.status, json.loads(response.read())


@pytest.mark.slow
def test_serve_prints_the_url_and_answers_readiness(tmp_path: Path) -> None:
    ok(cdp(tmp_path, "init"))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cdp", "serve", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        first_line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in first_line
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/readyz")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert status == 200
        assert body["status"] == "ready"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_serve_refuses_to_start_without_keys(tmp_path: Path) -> None:
    result = cdp(tmp_path, "serve", "--port", str(_free_port()))
    assert result.returncode == 2
    assert result.stderr.startswith("error: key file")
