"""Many writers append while several sequencers seal at once: the chain stays one line — every entry
sealed exactly once, seq contiguous, and the whole chain verifies.

The PostgreSQL case uses real OS processes (spawned, so nothing is shared but the database); the thread
case runs on both back ends, which on SQLite exercises BEGIN IMMEDIATE as the chain lock.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.audit import AuditEvent, AuditService, record_now
from cdp.audit.sequencer import seal
from cdp.audit.verify import verify_chain
from cdp.config import Settings
from cdp.db import Database
from cdp.db.models import AuditEntry
from cdp.platform import Platform

APPENDERS = 4
SEALERS = 2
PER_APPENDER = 200


def _append(url: str, worker: int, count: int) -> None:
    db = Database(url)
    try:
        for i in range(count):
            record_now(db, AuditEvent("sources.read", details={"worker": worker, "i": i}))
    finally:
        db.dispose()


def _seal_until(url: str, done: Event, progress: Synchronized[int], sealed: Queue[int]) -> None:
    """Seal in small batches until told to stop; publish and report how many entries this process sealed."""
    db = Database(url)
    total = 0
    try:
        while not done.is_set():
            sealed_now = seal(db, batch_size=50).sealed
            total += sealed_now
            progress.value = total
            if not sealed_now:
                time.sleep(0.005)
        total += seal(db, batch_size=50).sealed
    finally:
        db.dispose()
        sealed.put(total)


def _until_every_sealer_has_sealed(url: str, progress: list[Synchronized[int]]) -> int:
    """Keep a trickle of entries coming until each sequencer has won at least one race for the chain.

    Under the optimistic sequencer one process can lose every race while the appenders run; the test
    is about sequencers really competing, so it waits for that instead of hoping for it. Returns how
    many extra entries it appended."""
    db = Database(url)
    extra = 0
    deadline = time.monotonic() + 30
    try:
        while not all(counter.value for counter in progress) and time.monotonic() < deadline:
            record_now(db, AuditEvent("sources.read", details={"worker": "trickle", "i": extra}))
            extra += 1
            time.sleep(0.01)
    finally:
        db.dispose()
    return extra


def _assert_one_linear_chain(platform: Platform, appended: int, sealed_by_sequencers: int) -> None:
    final = AuditService(platform.db, platform.vault, "https://cdp.example.test").seal()
    assert sealed_by_sequencers + final.sealed == appended, "an entry was sealed twice or not at all"
    with platform.db.read() as session:
        seqs = session.execute(select(AuditEntry.seq).order_by(AuditEntry.seq)).scalars().all()
        distinct_ids = session.execute(select(func.count(func.distinct(AuditEntry.id)))).scalar_one()
    assert seqs == list(range(1, appended + 1))
    assert distinct_ids == appended
    report = verify_chain(platform.db, {})
    assert report.ok, report.first_problem
    assert (report.entries, report.head_seq, report.pending) == (appended, appended, 0)


@pytest.mark.postgres
def test_processes_appending_and_sealing_at_once_build_one_contiguous_chain(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp", database_url=postgres_schema_url))
    try:
        context = multiprocessing.get_context("spawn")
        done = context.Event()
        sealed: Queue[int] = context.Queue()
        progress = [context.Value("q", 0) for _ in range(SEALERS)]
        sealers = [
            context.Process(target=_seal_until, args=(postgres_schema_url, done, counter, sealed))
            for counter in progress
        ]
        appenders = [
            context.Process(target=_append, args=(postgres_schema_url, worker, PER_APPENDER))
            for worker in range(APPENDERS)
        ]
        started = time.monotonic()
        for process in sealers + appenders:
            process.start()
        for process in appenders:
            process.join(timeout=60)
        extra = _until_every_sealer_has_sealed(postgres_schema_url, progress)
        done.set()
        totals = [sealed.get(timeout=60) for _ in sealers]
        for process in sealers:
            process.join(timeout=60)
        assert all(p.exitcode == 0 for p in sealers + appenders), [p.exitcode for p in sealers + appenders]
        assert all(totals), f"a sequencer never got a turn: {totals}"
        assert time.monotonic() - started < 90

        _assert_one_linear_chain(platform, APPENDERS * PER_APPENDER + extra, sum(totals))
    finally:
        platform.close()


def test_threads_appending_and_sealing_at_once_build_one_contiguous_chain(platform: Platform) -> None:
    done = threading.Event()
    totals: list[int] = []
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for i in range(100):
                record_now(platform.db, AuditEvent("sources.read", details={"worker": worker, "i": i}))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def sealer() -> None:
        total = 0
        try:
            while not done.is_set():
                total += seal(platform.db, batch_size=20).sealed
        except BaseException as exc:
            errors.append(exc)
        totals.append(total)

    sealing = threading.Thread(target=sealer)
    appending = [threading.Thread(target=append, args=(worker,)) for worker in range(2)]
    sealing.start()
    for thread in appending:
        thread.start()
    for thread in appending:
        thread.join(timeout=60)
    done.set()
    sealing.join(timeout=60)

    assert not errors, errors
    _assert_one_linear_chain(platform, 200, sum(totals))
