"""Authorized profile reads over HTTP, served as in production, against the same read without token
validation, policy and decryption.

    python -m bench.http_reads [--backends sqlite,postgres] [--seconds 15] [--people 3000]
                               [--connections 8,32] [--repeats 3] [--warmup 3] [--workers N (cores)]
                               [--uneven-retries 2] [--no-log-check] [--variant LABEL:KEY=VALUE,...]

Per backend: a throw-away platform (``Platform.initialize``; on PostgreSQL a private schema, dropped
after) seeded with the demo data set (``cdp demo seed``'s function: generated sources ingested and
resolved into entities), a ``support_agent`` client-credentials client with ``profiles:read``, and three
servers, each under ``cdp serve``'s gunicorn command (:func:`cdp.serving.gunicorn_argv`: sync workers,
two per core), access log to stdout (sent to /dev/null), run one at a time (an idle server's background
jobs would otherwise share the cores, off its books):

* **authorized** — ``cdp serve`` itself (gunicorn ``api.wsgi:app`` plus its background-jobs process, whose
  audit sequencer seals every read's entry; its CPU is counted), token fetched from its
  ``/oauth/token``: ``GET /v1/customers/{id}?purpose=support`` with the bearer token, i.e. JWT
  verification, revocation check, the field policy, decryption, survivorship, the API's schemas and the
  audit entry.
* **plain** — :mod:`bench.plain_read_app` under the same gunicorn settings: the same member query on the
  same database and engine settings, ciphertexts returned base64-encoded; no token check, no policy, no
  decryption, no survivorship, no audit (a bare Flask app, so the real app's framework layers count as
  overhead).
* **authorized, no access log** — ``cdp serve --no-access-log``, at the first connection count only: what
  the access log costs.
* **variants** (``--variant LABEL:KEY=VALUE,...``, repeatable) — ``cdp serve`` with extra settings in its
  environment (e.g. ``mmap1g:CDP_SQLITE_SERVER_MMAP_MIB=1024``), measured in every round beside the authorized
  server and reported with their paired ratio to it: how to try a setting without the machine's drift
  between two separate runs deciding the answer.

Load is ``wrk --latency -t1 -c<N>`` with ``bench/http_reads.lua`` (a random entity id per request, the
same sequence of ids for every server), after a warm-up. wrk runs on the same cores as the servers and
is counted in the CPU columns. Server CPU per request (every process of the server, from /proc) is the
figure least disturbed by other work on the machine; "worker split" shows how the load fell on the
workers. A run whose load fell on one worker (> 75 % of the server's CPU) measures one core, not the
server: it is measured again with new connections, up to ``--uneven-retries`` times per backend, and the
retries are reported (sync workers take turns at accepting, so this should not happen; gthread workers,
which keep the keep-alive connections they accept, often did).

Each connection count is measured in ``--repeats`` rounds, the servers alternating within a round
(authorized, plain, authorized, plain …), because a virtual machine's speed drifts by tens of percent over
minutes: the table shows each server's median round with the range in brackets, and the ratios are
paired per round (the two servers measured back to back) and reported as their median and range.

Goals (issue): >= 1,000 req/s, p99 < 50 ms, overhead <= 1.5x (median of the paired rounds); reported as
met or missed. The exit status
is non-zero only when a request failed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import select

from bench.common import (
    BenchPlatform,
    Header,
    console,
    load_average,
    parse_backends,
    parse_ints,
    postgres_version,
    print_table,
    temp_platform,
)
from cdp.access.clients import ClientRepository
from cdp.access.gate import AccessGate, Actor
from cdp.access.policy import FieldPolicy
from cdp.canonical import CANONICAL_FIELDS
from cdp.db.models import Entity
from cdp.demo.seed import seed
from cdp.serving import default_workers, gunicorn_argv
from cdp.sources.records import QUALITY_SENSITIVE

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path(__file__).with_name("http_reads.lua")
ROLE, SCOPE, PURPOSE = "support_agent", "profiles:read", "support"
READ_PATH = "/v1/customers/{}?purpose=" + PURPOSE
GOAL_RPS, GOAL_P99_MS, GOAL_OVERHEAD = 1000.0, 50.0, 1.5
LOAD_SEED = 20_261_201
VERIFY_SAMPLE = 25

PLAIN_APP = "bench.plain_read_app:create_app()"
AUTHORIZED, PLAIN, NO_LOG = "authorized", "plain", "authorized, no log"
_FIXED_SERVERS = (AUTHORIZED, PLAIN, NO_LOG)

# ---------------------------------------------------------------------------------------------------
# Tools and processes


def find_wrk() -> str:
    """The wrk binary; installed from Debian when missing and running as root, else a clear exit."""
    found = shutil.which("wrk")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        console.print("[dim]wrk is missing; installing it: apt-get install -y -qq wrk[/dim]")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        installed = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True, check=False
        )
        if installed.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True, check=False
            )
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("this benchmark needs wrk (HTTP load generator): apt-get install -y wrk")


def _venv_program(name: str) -> str:
    program = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if program is None:
        raise SystemExit(f"{name} is not installed in this environment (bash scripts/venv.sh)")
    return program


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of a live process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (its CPU is the database's share of a read; other
    users of the same server are counted too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = values[3] + values[4]
    return (sum(values) - idle) / _CLK_TCK, sum(values) / _CLK_TCK


def _is_jobs_process(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"jobs" in argv and b"cdp" in argv


class Server:
    """A gunicorn server started by this benchmark (its master's pid is ours; the workers are its
    children). Stopped with SIGTERM (graceful), SIGKILL after a timeout."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.label = label
        self.port = free_port()
        self.argv = [arg.replace("{port}", str(self.port)) for arg in argv]
        self.stderr_path = workdir / f"server-{re.sub(r'[^a-z]+', '-', label.lower()).strip('-')}.log"
        self.env = env
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with self.stderr_path.open("wb") as stderr:
            # Access log to /dev/null: formatting it is still paid for; the no-log variant measures that.
            self.proc = subprocess.Popen(
                self.argv, cwd=self.workdir, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}:\n{self.stderr_tail()}")
            with suppress(OSError, http.client.HTTPException):
                status, _ = http_get(self.port, "/readyz", timeout=2)
                if status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} was not ready within {timeout:.0f} s:\n{self.stderr_tail()}")

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The server's whole process tree: for ``cdp serve`` its supervisor, the background-jobs process,
        gunicorn's master and the workers; for a bare gunicorn the master and the workers."""
        if self.proc is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat is not None:
                    children.setdefault(stat[0], []).append(int(entry.name))
        found = [self.proc.pid]
        for pid in found:
            found.extend(children.get(pid, ()))
        return found

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the leaves of the tree, but the background-jobs process."""
        tree = self.pids()
        parents = {stat[0] for pid in tree if (stat := _proc_stat(pid)) is not None}
        return [pid for pid in tree[1:] if pid not in parents and not _is_jobs_process(pid)]

    @staticmethod
    def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
        """CPU seconds so far of each of ``pids`` still alive."""
        return {pid: stat[1] for pid in pids if (stat := _proc_stat(pid)) is not None}

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        server.start()
        yield server
    finally:
        server.stop()


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def fetch_token(port: int, client_id: str, secret: str) -> tuple[str, int]:
    """A client-credentials access token from the running server (client_secret_basic)."""
    basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/oauth/token",
            body=urlencode({"grant_type": "client_credentials", "scope": SCOPE}),
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"/oauth/token answered {response.status}: {body[:300]!r}")
    payload = json.loads(body)
    return str(payload["access_token"]), int(payload.get("expires_in", 0))


# ---------------------------------------------------------------------------------------------------
# Data


@dataclass
class Prepared:
    ids: list[str]
    client_id: str
    secret: str
    columns: list[str]
    records: int
    interactions: int
    seed_seconds: float


def read_columns() -> list[str]:
    """The source_record ciphertext columns the authorized read fetches for the role and purpose: its
    disclosed fields (ProfileService.read), the record's own id and the normalized blob when a
    quality-flagged field is among them (RecordRepository.disclose_members). Decided once, here."""
    disclosure = AccessGate(FieldPolicy.default()).disclose(Actor("bench", ROLE), PURPOSE, uuid.uuid4())
    readable = [name for name in disclosure.disclosed if name in (*CANONICAL_FIELDS, "attributes")]
    columns = ["enc_source_record_id", *(f"enc_{name}" for name in readable)]
    if QUALITY_SENSITIVE.intersection(readable):
        columns.append("enc_normalized")
    return columns


def prepare(bench: BenchPlatform, people: int) -> Prepared:
    platform = bench.platform
    console.print(f"[dim]{bench.backend}: seeding the demo data set ({people:,} people)…[/dim]")
    started = time.perf_counter()
    result = seed(platform.db, platform.vault, work_dir=bench.workdir / "demo", people=people)
    seed_seconds = time.perf_counter() - started
    with platform.db.transaction() as session:
        client, secret = ClientRepository(session).create(
            name="bench-http-reads", role=ROLE, scopes=[SCOPE], grant="client_credentials"
        )
    assert secret is not None, "a client-credentials client always has a secret"
    with platform.db.read() as session:
        ids = [str(entity_id) for entity_id in session.scalars(select(Entity.id).order_by(Entity.id))]
    if not ids:
        raise RuntimeError("the seed resolved no entities")
    bench.settle()
    if not platform.db.is_sqlite:
        with platform.db.engine.connect() as conn:
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("entity", "entity_member", "source", "oauth_client"):
                autocommit.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
    platform.db.dispose()  # the servers open their own connections; this process only watches
    return Prepared(
        ids, client.client_id, secret, read_columns(), result.records, result.interactions, seed_seconds
    )


def server_env(bench: BenchPlatform) -> dict[str, str]:
    """The environment every server runs with: no inherited CDP_* settings, the bench platform's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDP_")}
    env.update(
        CDP_DATA_DIR=str(bench.workdir),
        CDP_DATABASE_URL=bench.settings.database_url,
        CDP_KEYRING=bench.settings.keyring,
        CDP_ACCESS_TOKEN_TTL_SECONDS="3600",  # noqa: S106 - a lifetime, not a secret
        # One issuer for every server of the run (each listens on its own port, and an issuer derived
        # from host and port would differ), so a token from one is valid at the others.
        CDP_ISSUER="http://127.0.0.1:8000",
    )
    return env


def verify(authorized: Server, plain: Server, token: str, ids: Sequence[str]) -> list[str]:
    """Direct requests before any load: the real endpoint answers 200 with disclosed attributes, the
    baseline 200 with the same member records, and a request without a token is refused. Returns the
    problems found (empty when all is well)."""
    problems: list[str] = []
    status, _ = http_get(authorized.port, READ_PATH.format(ids[0]))
    if status != 401:
        problems.append(f"a read without a token answered {status}, expected 401")
    bearer = {"Authorization": f"Bearer {token}"}
    for entity_id in random.Random(LOAD_SEED).sample(list(ids), min(VERIFY_SAMPLE, len(ids))):
        status, body = http_get(authorized.port, READ_PATH.format(entity_id), bearer)
        if status != 200:
            problems.append(f"authorized read of {entity_id} answered {status}: {body[:200]!r}")
            continue
        profile = json.loads(body)
        if not profile.get("attributes"):
            problems.append(f"authorized read of {entity_id} disclosed no attributes")
        status, body = http_get(plain.port, READ_PATH.format(entity_id), bearer)
        if status != 200:
            problems.append(f"plain read of {entity_id} answered {status}: {body[:200]!r}")
            continue
        members = len(json.loads(body)["records"])
        if members != len(profile.get("records", ())):
            problems.append(
                f"{entity_id}: plain read returned {members} records, authorized {len(profile['records'])}"
            )
    return problems


# ---------------------------------------------------------------------------------------------------
# Load


@dataclass
class Load:
    server: str
    connections: int
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float = 0.0
    worker_cpu_s: list[float] = field(default_factory=list)
    """Each worker's CPU seconds: if one worker took most of the connections, it served most of the load
    while the others idled."""
    uneven_runs: int = 0
    """Earlier runs of this measurement discarded because the load fell on one worker."""
    repeat: int = 0
    """Which round of ``--repeats`` this load was measured in."""
    db_cpu_s: float = 0.0
    """CPU seconds of the PostgreSQL server processes (0 on SQLite, which runs inside the workers)."""
    wrk_cpu_s: float = 0.0
    machine_busy_s: float = 0.0
    machine_total_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else 0.0

    @property
    def outside_workers_us_per_request(self) -> float:
        """Server CPU per request spent outside the workers: gunicorn's master, ``cdp serve``'s supervisor
        and its background-jobs process (the audit sequencer sealing every read's entry)."""
        outside = self.server_cpu_s - sum(self.worker_cpu_s)
        return outside / self.requests * 1e6 if self.requests else 0.0

    @property
    def total_cpu_us_per_request(self) -> float:
        """Server and database CPU per request (on SQLite the database runs inside the workers)."""
        return (self.server_cpu_s + self.db_cpu_s) / self.requests * 1e6 if self.requests else 0.0

    @property
    def other_cpu_s(self) -> float:
        return self.machine_busy_s - self.server_cpu_s - self.db_cpu_s - self.wrk_cpu_s

    @property
    def worker_split(self) -> str:
        total = sum(self.worker_cpu_s)
        if not total:
            return "n/a"
        return "/".join(f"{cpu / total:.0%}".rstrip("%") for cpu in sorted(self.worker_cpu_s, reverse=True))

    @property
    def uneven(self) -> bool:
        total = sum(self.worker_cpu_s)
        return len(self.worker_cpu_s) > 1 and total > 0 and max(self.worker_cpu_s) / total > 0.75

    def share(self, cpu_seconds: float) -> float:
        """CPU seconds as a fraction of the machine's capacity over the run (all cores = 100 %)."""
        return cpu_seconds / self.machine_total_s if self.machine_total_s else 0.0


_RESULT = re.compile(r"^BENCH_RESULT (\{.*\})$", re.MULTILINE)


def run_wrk(
    wrk: str, server: Server, ids_file: Path, token: str, connections: int, seconds: int, *, postgres: bool
) -> Load:
    argv = [
        wrk,
        "--latency",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        server.base,
        "--",
        str(ids_file),
        token,
        str(LOAD_SEED),
    ]
    pids = server.pids()
    workers = server.worker_pids()
    db_pids = postgres_pids() if postgres else []
    cpu_before = server.cpu_seconds(pids)
    db_before = server.cpu_seconds(db_pids)
    busy_before, total_before = machine_cpu()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_after, total_after = machine_cpu()
    cpu_after = server.cpu_seconds(pids)
    db_after = server.cpu_seconds(db_pids)
    match = _RESULT.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw: dict[str, Any] = json.loads(match.group(1))
    return Load(
        server=server.label,
        connections=connections,
        requests=int(raw["requests"]),
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        bytes=int(raw["bytes"]),
        errors={
            name: int(raw[key])
            for name, key in (
                ("HTTP >= 400", "status_errors"),
                ("connect", "connect_errors"),
                ("read", "read_errors"),
                ("write", "write_errors"),
                ("timeout", "timeouts"),
            )
        },
        server_cpu_s=sum(cpu_after.values()) - sum(cpu_before.values()),
        worker_cpu_s=[cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in workers if pid in cpu_after],
        db_cpu_s=sum(db_after[pid] - db_before[pid] for pid in db_after if pid in db_before),
        wrk_cpu_s=(children_after.ru_utime + children_after.ru_stime)
        - (children_before.ru_utime + children_before.ru_stime),
        machine_busy_s=busy_after - busy_before,
        machine_total_s=total_after - total_before,
    )


def warm_up(wrk: str, server: Server, ids_file: Path, token: str, connections: int, seconds: int) -> None:
    if seconds > 0:
        run_wrk(wrk, server, ids_file, token, connections, seconds, postgres=False)


# ---------------------------------------------------------------------------------------------------
# One backend


@dataclass
class BackendResult:
    backend: str
    entities: int
    records: int
    interactions: int
    seed_seconds: float
    loads: list[Load]
    problems: list[str]
    response_bytes: dict[str, float]
    token_ttl: int


def run_backend(backend: str, args: argparse.Namespace, wrk: str) -> BackendResult:
    cdp = _venv_program("cdp")
    gunicorn = _venv_program("gunicorn")
    workers = str(args.workers)
    pg = backend == "postgres"
    with temp_platform(backend, "http-reads") as bench:
        prepared = prepare(bench, args.people)
        ids_file = bench.workdir / "entity-ids.txt"
        ids_file.write_text("\n".join(prepared.ids) + "\n")
        env = server_env(bench)
        plain_env = {**env, "BENCH_PLAIN_COLUMNS": ",".join(prepared.columns)}
        serve = [cdp, "serve", "--port", "{port}", "--workers", workers]
        # The baseline runs under cdp serve's own gunicorn command (cdp.serving), minus the jobs process.
        plain_argv = gunicorn_argv(gunicorn, "127.0.0.1:{port}", workers, app=PLAIN_APP, pythonpath=str(ROOT))
        servers = {
            AUTHORIZED: Server(AUTHORIZED, serve, env, bench.workdir),
            PLAIN: Server(PLAIN, plain_argv, plain_env, bench.workdir),
        }
        if not args.no_log_check:
            servers[NO_LOG] = Server(NO_LOG, [*serve, "--no-access-log"], env, bench.workdir)
        for label, extra in args.variant:
            servers[label] = Server(label, serve, {**env, **extra}, bench.workdir)
        loads: list[Load] = []
        sizes: dict[str, float] = {}
        with running(servers[AUTHORIZED]), running(servers[PLAIN]):
            token, ttl = fetch_token(servers[AUTHORIZED].port, prepared.client_id, prepared.secret)
            problems = verify(servers[AUTHORIZED], servers[PLAIN], token, prepared.ids)
        if problems:
            return BackendResult(
                backend, len(prepared.ids), prepared.records, prepared.interactions,
                prepared.seed_seconds, loads, problems, sizes, ttl,
            )  # fmt: skip
        retries_left = args.uneven_retries
        rounds = [
            (i, connections, r) for i, connections in enumerate(args.connections) for r in range(args.repeats)
        ]
        for i, connections, repeat in rounds:
            # Rounds alternate the servers (authorized, plain, authorized, plain …), so a drift in the
            # machine's speed during the run falls on both alike; each round's ratio is paired.
            for label, server in servers.items():
                if label == NO_LOG and (i > 0 or repeat > 0):
                    continue
                # One server at a time: an idle server's background jobs (cdp serve's sequencer) would
                # otherwise seal the measured server's audit entries on the same cores, off its books.
                with running(server):
                    console.print(f"[dim]{backend}: warming up {label} ({args.warmup} s)…[/dim]")
                    warm_up(wrk, server, ids_file, token, connections, args.warmup)
                    console.print(
                        f"[dim]{backend}: {label}, {connections} connections, {args.seconds} s, round "
                        f"{repeat + 1} of {args.repeats} (load average {load_average()})…[/dim]"
                    )
                    measure = partial(
                        run_wrk, wrk, server, ids_file, token, connections, args.seconds, postgres=pg
                    )
                    load = measure()
                    while load.uneven and retries_left > 0:
                        # A load that fell on one worker measures one core, not the server: measure again
                        # with new connections (the count is reported).
                        retries_left -= 1
                        console.print(
                            f"[dim]{backend}: {label}: worker split {load.worker_split}, "
                            "measuring again…[/dim]"
                        )
                        again = measure()
                        again.uneven_runs = load.uneven_runs + 1
                        load = again
                    load.repeat = repeat
                    loads.append(load)
                    if load.requests:
                        sizes[label] = load.bytes / load.requests
    return BackendResult(
        backend, len(prepared.ids), prepared.records, prepared.interactions,
        prepared.seed_seconds, loads, [], sizes, ttl,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Report


def parse_variant(raw: str) -> tuple[str, dict[str, str]]:
    """``LABEL:KEY=VALUE,KEY=VALUE`` → (label, environment); only CDP_* settings are accepted."""
    label, _, assignments = raw.partition(":")
    label = label.strip()
    if not label or label in _FIXED_SERVERS:
        raise ValueError(f"--variant needs a label of its own before ':' (got {raw!r})")
    env: dict[str, str] = {}
    for assignment in filter(None, (part.strip() for part in assignments.split(","))):
        key, sep, value = assignment.partition("=")
        if not sep or not key.startswith("CDP_"):
            raise ValueError(f"--variant {label}: {assignment!r} is not a CDP_*=VALUE setting")
        env[key] = value
    if not env:
        raise ValueError(f"--variant {label}: no settings given")
    return label, env


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _rounds_by_server(result: BackendResult) -> dict[tuple[str, int], list[Load]]:
    """Every round's load, by (server, connections)."""
    grouped: dict[tuple[str, int], list[Load]] = {}
    for load in result.loads:
        grouped.setdefault((load.server, load.connections), []).append(load)
    return grouped


def _median_load(loads: Sequence[Load]) -> Load:
    """The round with the median req/s (the lower middle one of an even count): a real run, not a blend."""
    ranked = sorted(loads, key=lambda load: load.rps)
    return ranked[(len(ranked) - 1) // 2]


def _with_spread(value: float, values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{value:,.0f}"
    return f"{value:,.0f} ({min(values):,.0f}..{max(values):,.0f})"


def paired_ratios(
    result: BackendResult,
    connections: int,
    measure: Callable[[Load], float],
    servers: tuple[str, str] = (AUTHORIZED, PLAIN),
) -> list[float]:
    """``servers[0]``/``servers[1]`` (authorized/plain unless given) of ``measure`` per round (the
    servers measured back to back)."""
    rounds: dict[int, dict[str, Load]] = {}
    for load in result.loads:
        if load.connections == connections and load.server in servers:
            rounds.setdefault(load.repeat, {})[load.server] = load
    over, under = servers
    return sorted(
        measure(pair[over]) / measure(pair[under])
        for pair in rounds.values()
        if len(pair) == 2 and measure(pair[under]) > 0
    )


def _paired(
    result: BackendResult,
    connections: int,
    measure: Callable[[Load], float],
    servers: tuple[str, str] = (AUTHORIZED, PLAIN),
) -> str:
    ratios = paired_ratios(result, connections, measure, servers)
    if not ratios:
        return "n/a"
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}x"
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}..{ratios[-1]:.2f})"


def report(results: Sequence[BackendResult]) -> list[str]:
    verdicts: list[str] = []
    for result in results:
        pg = result.backend == "postgres"
        rows: list[list[object]] = []
        groups = _rounds_by_server(result)
        by_key = {key: _median_load(loads) for key, loads in groups.items()}
        variants = [s for s in dict.fromkeys(load.server for load in result.loads) if s not in _FIXED_SERVERS]
        for connections in dict.fromkeys(load.connections for load in result.loads):
            auth, plain = by_key.get((AUTHORIZED, connections)), by_key.get((PLAIN, connections))
            for label in (AUTHORIZED, NO_LOG, *variants, PLAIN):
                shown = by_key.get((label, connections))
                if shown is None:
                    continue
                load = shown
                errors = ", ".join(f"{n} {k}" for k, n in load.errors.items() if n) or "0"
                rows.append(
                    [
                        label,
                        connections,
                        _with_spread(load.rps, [each.rps for each in groups[(label, connections)]]),
                        f"{load.p50_ms:.1f}",
                        f"{load.p99_ms:.1f}",
                        errors,
                        f"{load.cpu_us_per_request:,.0f}",
                        f"{load.total_cpu_us_per_request:,.0f}" if pg else "-",
                        f"{load.share(load.server_cpu_s):.0%}",
                        load.worker_split,
                        f"{load.share(load.db_cpu_s):.0%}" if pg else "-",
                        f"{load.share(load.wrk_cpu_s):.0%}",
                        f"{load.share(load.other_cpu_s):.0%}",
                    ]
                )
            if auth and plain:
                rows.append(
                    [
                        "[bold]authorized/plain[/bold]",
                        connections,
                        _paired(result, connections, lambda load: load.rps),
                        _ratio(auth.p50_ms, plain.p50_ms),
                        _ratio(auth.p99_ms, plain.p99_ms),
                        "",
                        _paired(result, connections, lambda load: load.cpu_us_per_request),
                        _paired(result, connections, lambda load: load.total_cpu_us_per_request)
                        if pg
                        else "-",
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
            for variant in variants:
                if auth and (variant, connections) in by_key:
                    pair = (variant, AUTHORIZED)
                    rows.append(
                        [
                            f"[bold]{variant}/authorized[/bold]",
                            connections,
                            _paired(result, connections, lambda load: load.rps, pair),
                            "", "", "",
                            _paired(result, connections, lambda load: load.cpu_us_per_request, pair),
                            _paired(result, connections, lambda load: load.total_cpu_us_per_request, pair)
                            if pg
                            else "-",
                            "", "", "", "", "",
                        ]
                    )  # fmt: skip
        print_table(
            f"{result.backend}: GET /v1/customers/{{id}}?purpose={PURPOSE} — {result.entities:,} customers "
            f"({result.records:,} source records, {result.interactions:,} interactions; seeded in "
            f"{result.seed_seconds:.0f} s; token lifetime {result.token_ttl} s)",
            ["server", "conns", "req/s", "p50 ms", "p99 ms", "errors", "CPU µs/req server",
             "CPU µs/req +PG", "server CPU", "worker split %", "PG CPU", "wrk CPU", "other CPU"],
            rows,
        )  # fmt: skip
        uneven = [f"{load.server} at {load.connections}" for load in result.loads if load.uneven]
        if uneven:
            console.print(
                f"  [yellow]uneven worker split[/yellow] ({', '.join(uneven)}): its connections landed "
                "mostly on one worker, so its req/s is capped near one core; CPU µs/req still compares"
            )
        retried = [
            f"{load.server} at {load.connections} ({load.uneven_runs}x)"
            for load in result.loads
            if load.uneven_runs
        ]
        if retried:
            console.print(
                "  measured again after a run whose connections all landed on one worker: "
                f"{', '.join(retried)} "
                "(the kernel hands each connection to one worker; a run whose load stayed on one measures "
                "one core)"
            )
        if result.response_bytes:
            console.print(
                "  bytes per response (headers included): "
                + ", ".join(f"{label} {size:,.0f}" for label, size in result.response_bytes.items())
            )
        if result.problems:
            verdicts.append(f"{result.backend}: verification FAILED — " + "; ".join(result.problems[:5]))
            continue
        verdicts.append(_verdict(result))
    return verdicts


def _verdict(result: BackendResult) -> str:
    medians = {key: _median_load(loads) for key, loads in _rounds_by_server(result).items()}
    auth = [load for (server, _), load in medians.items() if server == AUTHORIZED]
    plain = {connections: load for (server, connections), load in medians.items() if server == PLAIN}
    within = [load for load in auth if load.p99_ms < GOAL_P99_MS]
    best = max(within or auth, key=lambda load: load.rps)
    base = plain.get(best.connections)
    rps_ratios = paired_ratios(result, best.connections, lambda load: load.rps)
    cpu_ratios = paired_ratios(result, best.connections, lambda load: load.total_cpu_us_per_request)
    overhead = 1 / statistics.median(rps_ratios) if rps_ratios else float("inf")
    cpu_overhead = statistics.median(cpu_ratios) if cpu_ratios else 0.0
    rounds = len(rps_ratios)
    spread = f", {rounds} rounds: {1 / rps_ratios[-1]:.2f}..{1 / rps_ratios[0]:.2f}x" if rounds > 1 else ""
    no_log = next((load for load in result.loads if load.server == NO_LOG), None)
    logged = next((load for load in auth if no_log and load.connections == no_log.connections), None)
    log_note = ""
    if no_log and logged:
        log_note = (
            f"; without the access log {no_log.rps:,.0f} req/s, {no_log.cpu_us_per_request:,.0f} µs CPU/req "
            f"(with it {logged.rps:,.0f} req/s, {logged.cpu_us_per_request:,.0f} µs; "
            f"{no_log.connections} conns)"
        )
    which = "best authorized" if within else f"no connection count kept p99 < {GOAL_P99_MS:.0f} ms; best"
    return (
        f"{result.backend}: {which} {best.rps:,.0f} req/s at {best.connections} conns "
        f"({_met(best.rps >= GOAL_RPS)} ≥{GOAL_RPS:,.0f}), p50 {best.p50_ms:.1f} ms, "
        f"p99 {best.p99_ms:.1f} ms ({_met(best.p99_ms < GOAL_P99_MS)} <{GOAL_P99_MS:.0f} ms), "
        f"overhead plain/authorized {overhead:.2f}x{spread} ({_met(overhead <= GOAL_OVERHEAD)} "
        f"≤{GOAL_OVERHEAD}x; "
        f"CPU per request {best.total_cpu_us_per_request:,.0f} vs "
        f"{base.total_cpu_us_per_request if base else 0:,.0f} µs = {cpu_overhead:.2f}x, of which "
        f"{best.outside_workers_us_per_request:,.0f} µs outside the workers: jobs process, masters){log_note}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_reads", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seconds", type=int, default=15, help="measured seconds per server and load")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per server (0: none)")
    parser.add_argument("--people", type=int, default=3000, help="demo people to seed per backend")
    parser.add_argument("--connections", default="8,32", help="wrk connection counts to measure")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="gunicorn workers (default: cdp serve's, two per core)",
    )
    parser.add_argument(
        "--uneven-retries",
        type=int,
        default=2,
        help="per backend: measure again (new connections) when one worker took >75%% of the load",
    )
    parser.add_argument(
        "--no-log-check", action="store_true", help="skip the server without access log (saves a run)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds per connection count, servers alternating; the table shows the median round and the "
        "range, ratios are paired per round",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE,...",
        help="also measure cdp serve with these settings in its environment, every round, paired with "
        "the authorized server (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        args.variant = [parse_variant(raw) for raw in args.variant]
    except ValueError as exc:
        parser.error(str(exc))
    if (
        min(args.seconds, args.people, args.workers, args.repeats) < 1
        or args.warmup < 0
        or args.uneven_retries < 0
    ):
        parser.error(
            "--seconds, --people, --workers and --repeats must be positive, --warmup and retries not negative"
        )
    args.connections = parse_ints(args.connections, "--connections")
    backends = parse_backends(args.backends)
    if "postgres" in backends and postgres_version().startswith("unavailable"):
        raise SystemExit(f"PostgreSQL is not reachable: {postgres_version()} (or pass --backends sqlite)")
    wrk = find_wrk()
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False).stdout
    Header(
        "cdp HTTP reads: authorized profile reads vs the same read without token, policy and decryption",
        {
            "endpoint": f"GET {READ_PATH.format('{id}')} (role {ROLE}, scope {SCOPE})",
            "servers": f"authorized = `cdp serve` (gunicorn api.wsgi:app + its jobs process); plain = "
            f"bench.plain_read_app; authorized, no log = `cdp serve --no-access-log`; each gunicorn "
            f"{args.workers} sync workers, access log to /dev/null; one server at a time",
            "load": f"{(wrk_version.splitlines() or ['wrk'])[0].split(' Copyright')[0]}, 1 thread, "
            f"connections {','.join(map(str, args.connections))}, {args.seconds} s each after "
            f"{args.warmup} s warm-up; random entity per request (same sequence for every server)",
            "note": f"wrk runs on the same {os.cpu_count()} cores as the servers (see its CPU column); "
            "CPU columns are shares of all cores; PG CPU counts every PostgreSQL process on the machine",
            "people seeded": f"{args.people:,} per backend",
        },
    ).print(backends)
    results = [run_backend(backend, args, wrk) for backend in backends]
    verdicts = report(results)
    console.print("[bold]Goals (≥1,000 req/s, p99 < 50 ms, overhead ≤ 1.5x):[/bold]")
    for verdict in verdicts:
        console.print(f"  {verdict}")
    console.print(f"  (load average at end: {load_average()})")
    failed = sum(load.failed for result in results for load in result.loads)
    if failed or any(result.problems for result in results):
        console.print(f"[bold red]{failed:,} requests failed under load, or verification failed[/bold red]")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
