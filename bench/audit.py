"""Audit log: append throughput, sealing and verification rates, and what auditing costs a profile read.

    python -m bench.audit [--backends sqlite,postgres] [--appends 4000] [--threads 4]
                          [--people 1000] [--reads 1500]

Three parts, each on a fresh platform per back end:

* **append** — ``record_now`` (one committed transaction per entry, what every read pays) from one thread
  and from ``--threads`` threads, against the baseline the design rejected: chaining inside the request
  (take the chain lock, read the head, hash, insert with ``seq``) under the same threads.
* **seal / verify** — the sequencer linking everything appended above, then a full ``verify``.
* **profile reads** — ``ProfileService.read`` of random customers of the demo data set with auditing on
  (the production path) and off (a recorder that drops the event), from one thread and from
  ``--threads`` threads: the ratio is what the audit entry adds to a read.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import insert, select

from bench.common import BenchPlatform, Header, console, parse_backends, print_table, temp_platform
from cdp.access.gate import AccessGate, Actor
from cdp.access.policy import FieldPolicy
from cdp.audit import ActorKind, AuditActor, AuditEvent, AuditService, acting_as, record_now
from cdp.audit.canonical import canonical_json, document_hash, entry_document
from cdp.audit.sequencer import chain_head, lock_chain
from cdp.db.models import AuditEntry, Entity, table_of
from cdp.db.types import utcnow
from cdp.demo.seed import seed
from cdp.profiles.service import ProfileService

ROLE, DEPARTMENT, PURPOSE = "support_agent", "support", "support"
ACTOR = AuditActor("bench-client", ActorKind.CLIENT, ROLE, DEPARTMENT)


def _event(i: int) -> AuditEvent:
    subject = str(uuid.UUID(int=i + 1))
    return AuditEvent(
        "profile.read",
        purpose=PURPOSE,
        subjects=(subject, str(uuid.UUID(int=i + 10_000_000))),
        fields=("email", "first_name", "last_name", "phone", "postcode"),
        details={"policy_version": 1, "redacted": 3},
    )


def _parallel(threads: int, count: int, work: Callable[[int], None]) -> float:
    """Run ``work(i)`` for i in range(count) on ``threads`` threads; wall seconds."""
    started = time.perf_counter()
    if threads == 1:
        for i in range(count):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(count)))
    return time.perf_counter() - started


def _chained_in_request(bench: BenchPlatform, i: int) -> None:
    """The rejected design: every request extends the chain itself, under the chain lock."""
    event = _event(i)
    entry_id, now = uuid.uuid4(), utcnow()
    with bench.platform.db.transaction() as session:
        lock_chain(session)
        head = chain_head(session)
        subjects, fields, details = (
            canonical_json(sorted(event.subjects)),
            canonical_json(sorted(event.fields)),
            canonical_json(dict(event.details)),
        )
        values = dict(
            recorded_at=now,
            action=event.action,
            outcome=event.outcome.value,
            actor=ACTOR.principal,
            actor_kind=ACTOR.kind.value,
            role=ACTOR.role,
            department=ACTOR.department,
            purpose=event.purpose,
            request_id=None,
            subjects=subjects,
            fields=fields,
            details=details,
        )
        document = entry_document(seq=head.seq + 1, prev_hash=head.hash, entry_id=str(entry_id), **values)
        session.execute(
            insert(table_of(AuditEntry)),
            {
                "id": entry_id,
                "seq": head.seq + 1,
                "prev_hash": head.hash,
                "hash": document_hash(document),
                "sealed_at": now,
                **values,
            },
        )


@dataclass
class AppendFigures:
    backend: str
    rows: list[tuple[str, int, float]]  # mode, threads, seconds for `count`
    count: int
    seal_seconds: float
    sealed: int
    verify_seconds: float
    verified: int
    verify_ok: bool


def bench_appends(backend: str, count: int, threads: int) -> AppendFigures:
    rows: list[tuple[str, int, float]] = []
    with temp_platform(backend, "audit") as bench:
        db = bench.platform.db

        def append(i: int) -> None:
            with acting_as(ACTOR, f"req-{i}"):
                record_now(db, _event(i))

        for n in (1, threads):
            rows.append(("deferred chain (cdp)", n, _parallel(n, count, append)))
        service = AuditService(db, bench.platform.vault, "bench")
        started = time.perf_counter()
        sealed = service.seal().sealed
        seal_seconds = time.perf_counter() - started
        service.checkpoint()
        started = time.perf_counter()
        report = service.verify()
        verify_seconds = time.perf_counter() - started
    with temp_platform(backend, "audit-chained") as baseline:
        for n in (1, threads):
            seconds = _parallel(n, count, lambda i, b=baseline: _chained_in_request(b, i))  # type: ignore[misc]
            rows.append(("chained in request (baseline)", n, seconds))
    return AppendFigures(
        backend, rows, count, seal_seconds, sealed, verify_seconds, report.entries, report.ok
    )


@dataclass
class ReadFigures:
    backend: str
    rows: list[tuple[str, int, float, int]]  # mode, threads, seconds, reads


def bench_reads(backend: str, people: int, reads: int, threads: int) -> ReadFigures:
    rows: list[tuple[str, int, float, int]] = []
    with temp_platform(backend, "audit-reads") as bench:
        platform = bench.platform
        console.print(f"[dim]{backend}: seeding {people:,} people…[/dim]")
        seed(platform.db, platform.vault, work_dir=bench.workdir / "demo", people=people)
        bench.settle()
        with platform.db.read() as session:
            ids = list(session.scalars(select(Entity.id)))
        rng = random.Random(7)
        picks = [rng.choice(ids) for _ in range(reads)]
        gate = AccessGate(FieldPolicy.default())
        audited = ProfileService(platform.db, platform.vault, gate)
        unaudited = ProfileService(platform.db, platform.vault, gate, recorder=lambda event: None)
        reader = Actor("bench-client", ROLE, DEPARTMENT)
        lock = threading.Lock()
        done = [0]

        def reading(service: ProfileService) -> Callable[[int], None]:
            def work(i: int) -> None:
                with acting_as(ACTOR, f"req-{i}"):
                    service.read(reader, picks[i], PURPOSE)
                with lock:
                    done[0] += 1

            return work

        for service in (audited, unaudited):  # warm caches (keys, statements, pages) for both
            _parallel(1, min(200, reads), reading(service))
        for n in (1, threads):
            # off, on, off again: the better "off" run is the baseline, so drift cannot flatter "on"
            for label, service in (("audit off", unaudited), ("audit on", audited), ("audit off", unaudited)):
                rows.append((label, n, _parallel(n, reads, reading(service)), reads))
    return ReadFigures(backend, rows)


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds else "n/a"


def report(appends: Sequence[AppendFigures], reads: Sequence[ReadFigures]) -> None:
    rows: list[list[object]] = []
    for figures in appends:
        base = {n: s for mode, n, s in figures.rows if mode.startswith("chained")}
        for mode, n, seconds in figures.rows:
            ratio = base[n] / seconds if not mode.startswith("chained") else 1.0
            rows.append(
                [
                    figures.backend,
                    mode,
                    n,
                    _rate(figures.count, seconds),
                    f"{seconds / figures.count * 1e6:,.0f}",
                    f"{ratio:.2f}x",
                ]
            )
    print_table(
        "append: one committed entry per operation",
        ["backend", "mode", "threads", "entries/s", "µs wall/entry", "vs baseline"],
        rows,
        left=2,
    )
    print_table(
        "seal and verify",
        ["backend", "step", "entries", "rate", "result"],
        [
            row
            for f in appends
            for row in (
                [f.backend, "seal (sequencer)", f.sealed, _rate(f.sealed, f.seal_seconds), ""],
                [
                    f.backend,
                    "verify (full chain)",
                    f.verified,
                    _rate(f.verified, f.verify_seconds),
                    "ok" if f.verify_ok else "FAILED",
                ],
            )
        ],
    )
    read_rows: list[list[object]] = []
    for figures in reads:
        by_threads: dict[int, dict[str, list[float]]] = {}
        for mode, n, seconds, count in figures.rows:
            by_threads.setdefault(n, {}).setdefault(mode, []).append(seconds / count)
        for n, modes in by_threads.items():
            off = min(modes["audit off"])
            on = min(modes["audit on"])
            read_rows.append(
                [
                    figures.backend,
                    n,
                    f"{1 / off:,.0f}/s",
                    f"{1 / on:,.0f}/s",
                    f"{off * 1e6:,.0f}",
                    f"{on * 1e6:,.0f}",
                    f"{on / off:.2f}x",
                ]
            )
    print_table(
        "profile reads (ProfileService.read, in process): audit on vs off",
        ["backend", "threads", "off reads/s", "on reads/s", "off µs/read", "on µs/read", "on / off"],
        read_rows,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--appends", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=1500)
    args = parser.parse_args(argv)
    backends = parse_backends(args.backends)
    Header(
        "audit log",
        {"appends": args.appends, "threads": args.threads, "people": args.people, "reads": args.reads},
    ).print(backends)
    appends = [bench_appends(b, args.appends, args.threads) for b in backends]
    reads = [bench_reads(b, args.people, args.reads, args.threads) for b in backends]
    report(appends, reads)


if __name__ == "__main__":
    main()
