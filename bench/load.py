"""A bounded mixed load on the real server: profile reads, record ingests and consent changes at once.

    python -m bench.load [--backend sqlite|postgres] [--seconds 180] [--people 2000] [--threads 8]
                         [--workers 2]

A throw-away platform seeded with the demo data set is served by ``cdp serve --no-access-log`` (gunicorn
``api.wsgi:app`` with its sync workers plus the background-jobs process, on 127.0.0.1 only).
``--threads`` client threads then send, until the time is up, a weighted mix, each with a real
client-credentials token:

* 70 % ``GET /v1/customers/{id}?purpose=support`` (a support desk),
* 20 % ``POST /v1/sources/crm/records`` with 5 new fictitious customers (the sales CRM feed; each batch
  is resolved incrementally on the write path),
* 10 % ``POST /v1/customers/{id}/consents`` granting or withdrawing marketing email (the DPO's desk).

Every answer must be the expected status (200 / 200 / 201); anything else counts as an error and the
first few are printed. The server's memory (RSS of all its processes: supervisor, jobs, gunicorn's master
and workers) is sampled every 5 s: the report
gives the first and last minute's averages and the peak, so a leak shows as growth under a steady load.
Printed: requests and errors per kind, throughput, p50/p95/p99 latency, memory over time.

``--ingest-pool N`` makes the data size steady, so memory can be judged on its own: the feed then sends
rows from a fixed pool of N fictitious customers (generated once), so after the pool has been seen once
every batch is a re-send the server finds unchanged — the same parsing, validation, normalization and
blind-index look-ups, but no new customers. The memory report then adds the least-squares slope of RSS
after the first minute (MiB per minute): a leak shows as a positive slope while the store does not grow.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import select

from bench.common import Header, console, print_table, temp_platform
from bench.http_reads import Server, _venv_program, running, server_env
from cdp.access.clients import ClientRepository
from cdp.db.models import Entity
from cdp.demo.seed import seed

MIX = (("read", 0.7), ("ingest", 0.2), ("consent", 0.1))
BATCH = 5
SAMPLE_SECONDS = 5.0
RECOVERY_GRACE_SECONDS = 10.0
"""After a database restart, failures later than this count as the server not recovering by itself."""
FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Ewa", "Finn", "Gita", "Hugo", "Iris", "Jonas")
LAST_NAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Reyes", "Kowalski", "Byrne")


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    """Answers by HTTP status (0 = no answer: the connection failed)."""
    outcomes: list[tuple[float, bool]] = field(default_factory=list)
    """(monotonic time, succeeded) of every request, for the recovery after a database restart."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, ok: bool, detail: str, status: int = 0) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.latencies[kind].append(seconds)
            self.outcomes.append((time.monotonic(), ok))
            if not ok:
                self.errors[kind] += 1
                if len(self.samples) < 5:
                    self.samples.append(f"{kind}: {detail}")


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _pool(size: int, seed_value: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed_value)
    return [_row(rng) for _ in range(size)]


def _row(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    serial = uuid.uuid4().hex[:10]
    return {
        "LeadId": f"LOAD-{serial}",
        "FirstName": first,
        "LastName": last,
        "EMail": f"{first}.{last}.{serial}@example.net".lower(),
        "Phone": f"07400 {rng.randrange(100000, 999999)}",
        "Town": "Leeds",
        "Country": "United Kingdom",
    }


def _token(port: int, client_id: str, secret: str, scope: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/oauth/token",
            body=urlencode(
                {
                    "grant_type": "client_credentials",
                    "scope": scope,
                    "client_id": client_id,
                    "client_secret": secret,
                }
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        # client_secret_post keeps this free of Basic-auth quoting rules
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"/oauth/token answered {response.status}")
    return str(json.loads(body)["access_token"])


def _client(
    port: int,
    tokens: dict[str, str],
    ids: list[str],
    rng: random.Random,
    deadline: float,
    tally: Tally,
    pool: list[dict[str, str]],
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    while time.monotonic() < deadline:
        body: dict[str, object] | None
        kind = rng.choices(kinds, weights)[0]
        entity = rng.choice(ids)
        if kind == "read":
            method, path, body, expected, token = (
                "GET",
                f"/v1/customers/{entity}?purpose=support",
                None,
                200,
                tokens["read"],
            )
        elif kind == "ingest":
            rows = rng.sample(pool, BATCH) if pool else [_row(rng) for _ in range(BATCH)]
            method, path, body, expected, token = (
                "POST",
                "/v1/sources/crm/records",
                {"rows": rows},
                200,
                tokens["ingest"],
            )
        else:
            action = rng.choice(("grant", "withdraw"))
            body = {
                "purpose": "marketing_email",
                "channel": "email",
                "action": action,
                "source": "call_centre",
            }
            method, path, expected, token = (
                "POST",
                f"/v1/customers/{entity}/consents",
                201,
                tokens["consent"],
            )
        headers = {"Authorization": f"Bearer {token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            ok = response.status == expected
            status = response.status
            detail = f"{response.status} {data[:200]!r}"
        except (OSError, http.client.HTTPException) as exc:
            ok, status, detail = False, 0, f"{type(exc).__name__}: {exc}"
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        tally.record(kind, time.perf_counter() - started, ok, detail, status)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--ingest-pool",
        type=int,
        default=0,
        help="ingest rows from a fixed pool of this many customers (steady data size: after the first pass "
        "every batch is unchanged) instead of new customers each time; 0 = always new",
    )
    parser.add_argument(
        "--restart-postgres-after",
        type=float,
        default=None,
        help="with --backend postgres: restart the local PostgreSQL cluster this many seconds into the load "
        "(pg_ctlcluster) and report the errors during the outage and how long the server took to recover",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 unless the run was clean: no 5xx but 503, no failure at all without a restart, and with "
        "one no failure later than the grace period after it and requests succeeding again",
    )
    args = parser.parse_args()
    Header("mixed load: reads, ingests, consent changes", vars(args)).print([args.backend])

    with temp_platform(args.backend, "load") as bench:
        platform = bench.platform
        console.print(f"[dim]seeding {args.people:,} people…[/dim]")
        seed(platform.db, platform.vault, work_dir=bench.workdir / "demo", people=args.people)
        clients = {}
        with platform.db.transaction() as session:
            repo = ClientRepository(session)
            for name, role, scopes, department in (
                ("read", "support_agent", ["profiles:read"], None),
                ("ingest", "department_agent", ["ingest"], "sales"),
                ("consent", "dpo", ["consent:manage"], None),
            ):
                client, secret = repo.create(
                    name=f"load {name}",
                    role=role,
                    scopes=scopes,
                    grant="client_credentials",
                    department=department,
                )
                clients[name] = (client.client_id, str(secret), scopes[0])
        with platform.db.read() as session:
            ids = [str(e) for e in session.scalars(select(Entity.id))]
        bench.settle()
        platform.db.dispose()
        argv = [
            _venv_program("cdp"),
            "serve",
            "--port",
            "{port}",
            "--workers",
            str(args.workers),
            "--no-access-log",
        ]
        server = Server("cdp", argv, server_env(bench), bench.workdir)
        with running(server):
            tokens = {
                name: _token(server.port, client_id, secret, scope)
                for name, (client_id, secret, scope) in clients.items()
            }
            tally = Tally()
            pool = _pool(args.ingest_pool) if args.ingest_pool else []
            deadline = time.monotonic() + args.seconds
            threads = [
                threading.Thread(
                    target=_client,
                    args=(server.port, tokens, ids, random.Random(n), deadline, tally, pool),
                    daemon=True,
                )
                for n in range(args.threads)
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            restart: list[float] = []
            if args.restart_postgres_after is not None:
                threading.Thread(
                    target=_restart_postgres,
                    args=(started + args.restart_postgres_after, restart),
                    daemon=True,
                ).start()
            memory: list[tuple[float, float]] = []
            while any(thread.is_alive() for thread in threads):
                memory.append((time.monotonic() - started, _rss_mib(server.pids())))
                time.sleep(SAMPLE_SECONDS)
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
        # The server logs an unexpected error's class and request id only (never the message): name them.
        unhandled: dict[str, int] = defaultdict(int)
        for line in server.stderr_path.read_text(errors="replace").splitlines():
            if "unhandled " in line:
                unhandled[line.split("unhandled ", 1)[1].split(" ", 1)[0]] += 1

    rows = []
    for kind, _ in MIX:
        latencies = sorted(tally.latencies[kind])
        if not latencies:
            continue
        q = statistics.quantiles(latencies, n=100)
        rows.append(
            [
                kind,
                f"{len(latencies):,}",
                f"{tally.errors[kind]:,}",
                f"{len(latencies) / elapsed:,.1f}",
                f"{q[49] * 1000:.1f}",
                f"{q[94] * 1000:.1f}",
                f"{q[98] * 1000:.1f}",
            ]
        )
    total = sum(len(v) for v in tally.latencies.values())
    errors = sum(tally.errors.values())
    rows.append(["all", f"{total:,}", f"{errors:,}", f"{total / elapsed:,.1f}", "", "", ""])
    print_table(
        f"{elapsed:.0f} s, {args.threads} client threads, "
        f"{args.workers} workers x 4 threads ({args.backend})",
        ["kind", "requests", "errors", "per second", "p50 ms", "p95 ms", "p99 ms"],
        rows,
        left=1,
    )
    first = [rss for t, rss in memory if t <= 60]
    last = [rss for t, rss in memory if t >= elapsed - 60]
    console.print(
        f"server memory (all its processes): first minute {statistics.mean(first):.0f} MiB, "
        f"last minute {statistics.mean(last):.0f} MiB, peak {max(r for _, r in memory):.0f} MiB "
        f"({len(memory)} samples)"
    )
    steady = [(t, rss) for t, rss in memory if t > 60]
    if len(steady) >= 3:
        slope, _ = statistics.linear_regression([t for t, _ in steady], [rss for _, rss in steady])
        console.print(
            f"server memory after the first minute: least-squares slope {slope * 60:+.2f} MiB/min over "
            f"{len(steady)} samples ({steady[0][1]:.0f} → {steady[-1][1]:.0f} MiB)"
        )
    console.print(
        "answers by status: " + ", ".join(f"{k or 'none'}: {v:,}" for k, v in sorted(tally.statuses.items()))
    )
    if unhandled:
        console.print(
            "server's unexpected errors by class: " + ", ".join(f"{k}: {v}" for k, v in unhandled.items())
        )
    if restart:
        _report_recovery(tally, restart)
    for sample in tally.samples:
        console.print(f"[red]error[/red] {sample}")
    if args.check:
        problems = _check(tally, restart)
        for problem in problems:
            console.print(f"[red]check failed[/red] {problem}")
        if problems:
            raise SystemExit(1)
        console.print("check passed")


def _restart_postgres(at: float, times: list[float]) -> None:
    """Restart the local cluster at monotonic time ``at``; appends (restart began, restart ended)."""
    time.sleep(max(0.0, at - time.monotonic()))
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    times.append(time.monotonic())
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120
    )
    times.append(time.monotonic())


def _late_failures(outcomes: list[tuple[float, bool]], ended: float) -> int:
    """Failures later than the grace period after the restart ended: the server not recovering."""
    return sum(1 for t, ok in outcomes if not ok and t > ended + RECOVERY_GRACE_SECONDS)


def _check(tally: Tally, restart: list[float]) -> list[str]:
    """What makes the run unclean (``--check``): a server error other than 503, any failure without a
    restart, failures that outlast the restart by the grace period, or no success after it."""
    problems = []
    errors = {status: n for status, n in tally.statuses.items() if status >= 500 and status != 503}
    if errors:
        problems.append(f"server errors other than 503: {errors}")
    outcomes = sorted(tally.outcomes)
    if not restart:
        failed = sum(1 for _, ok in outcomes if not ok)
        if failed:
            problems.append(f"{failed} requests failed with no database restart")
        return problems
    ended = restart[-1]
    late = _late_failures(outcomes, ended)
    if late:
        problems.append(f"{late} failures more than {RECOVERY_GRACE_SECONDS:.0f} s after the restart ended")
    if not any(ok for t, ok in outcomes if t > ended):
        problems.append("no request succeeded after the restart")
    return problems


def _report_recovery(tally: Tally, restart: list[float]) -> None:
    began, ended = restart[0], restart[-1]
    outcomes = sorted(tally.outcomes)
    during = sum(1 for t, ok in outcomes if began <= t <= ended + 1 and not ok)
    first_ok = next((t for t, ok in outcomes if t > ended and ok), None)
    failing_after = [t for t, ok in outcomes if not ok and t > ended]
    last_failure = max(failing_after) if failing_after else ended
    late = _late_failures(outcomes, ended)
    console.print(
        f"PostgreSQL restarted {began - outcomes[0][0]:.0f} s into the load, down for {ended - began:.1f} s; "
        f"{during:,} requests failed meanwhile; first success {((first_ok or ended) - ended):.2f} s after it "
        f"was back, last failure {last_failure - ended:.2f} s after; {late} failures later than "
        f"{RECOVERY_GRACE_SECONDS:.0f} s after it (no manual step was taken)"
    )


if __name__ == "__main__":
    main()
