"""`cdp serve` really serves: gunicorn workers start on the configured port and answer the probes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cli.test_cli import _env, cdp, ok, one_line_error
from tests.processes import alive
from tests.processes import children as child_processes


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


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("CDP_AUDIT_RETENTION_DAYS", "400", "audit_retention_days (400) must be longer"),
        ("CDP_RETENTION_SWEEP_CRON", "99 3 * * *", "retention_sweep_cron is not a valid crontab"),
    ],
)
def test_serve_refuses_settings_its_background_jobs_would_refuse_before_starting_anything(
    tmp_path: Path, setting: str, value: str, named: str
) -> None:
    ok(cdp(tmp_path, "init"))
    result = cdp(tmp_path, "serve", "--port", str(_free_port()), **{setting: value})
    assert named in one_line_error(result)
    assert "serving on" not in result.stdout


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.mark.slow
def test_demo_run_serves_the_three_web_apps_and_prints_who_can_sign_in(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cdp", "demo", "run", "--people", "30", "--port", str(port)],
        cwd=tmp_path,
        env=_env(COLUMNS="240", CDP_WORKERS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        printed = []
        for line in server.stdout:
            printed.append(line)
            if "serving on" in line:
                break
        text = "".join(printed)
        base = f"http://127.0.0.1:{port}"
        for app in ("/privacy/", "/staff/", "/console/"):
            assert f"{base}{app}" in text, text
        for username in ("support", "compliance", "dpo", "steward"):
            assert f" {username} " in text
        assert "cdp outbox list" in text and "cdp demo totp compliance" in text
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/privacy/", timeout=2) as response:  # noqa: S310
                    page = response.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert "Privacy center" in page and 'href="/privacy/login"' in page
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"{base}/console/login", timeout=5)
        assert redirect.value.code == 303
        assert redirect.value.headers["Location"].startswith(f"{base}/oauth/authorize?")
        code = ok(cdp(tmp_path, "demo", "totp", "compliance")).strip()
        assert code.isdigit() and len(code) == 6
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_serve_runs_the_background_jobs_beside_its_workers_and_sigterm_stops_them_all(
    tmp_path: Path,
) -> None:
    from cdp.config import Settings
    from cdp.platform import Platform
    from tests.test_jobs import sealed_entries

    ok(cdp(tmp_path, "init"))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cdp", "serve", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=_env(CDP_AUDIT_SEAL_INTERVAL_MS="100"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"http://127.0.0.1:{port}/readyz")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        children = child_processes(server.pid)
        jobs = [pid for pid, argv in children.items() if "jobs" in argv]
        assert len(jobs) == 1, children
        http_server = [pid for pid in children if pid not in jobs]
        assert len(http_server) == 1, children

        # The worker recorded the policy in force at start-up; only the jobs process seals it.
        platform = Platform.open(Settings(data_dir=tmp_path / "var"))
        try:
            while sealed_entries(platform) == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            sealed = sealed_entries(platform)
        finally:
            platform.close()
        assert sealed >= 1

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert not any(alive(pid) for pid in (*jobs, *http_server))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
