"""kill -9 during an erasure and during a retention sweep, repeated: every person is either fully
erased or untouched, never half, the platform-wide invariants (tests/invariants.py) hold after every kill,
and a re-run finishes the job.

The worker is a real separate process (tests/dsr/crash_worker.py) killed with SIGKILL at growing delays
after it starts working, so early trials die while planning and later ones inside the destruction."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cdp.access.gate import Actor
from cdp.db.models import BlindIndexEntry, ErasureJob, Interaction, RetentionSweep, SourceRecord, Subject
from cdp.dsr.service import DsrService
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from tests.crash import run_worker
from tests.dsr.world import World, seed_world
from tests.invariants import RECORD_CIPHERTEXTS, InvariantReport, assert_platform_invariants

REPO = Path(__file__).resolve().parents[2]
DELAYS = (0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0)


def _run_worker(platform: Platform, *args: str, kill_after: float | None) -> bool:
    """The DSR worker (erase / sweep) on this platform; see :func:`tests.crash.run_worker`."""
    settings = platform.settings
    return run_worker(
        "tests.dsr.crash_worker",
        [args[0], str(settings.data_dir), str(settings.database_url), *args[1:]],
        kill_after=kill_after,
        timeout=120,
    )


def _ingest_history(platform: Platform, tmp_path: Path, source: str, account: str, count: int) -> None:
    lines = ["DocNo,AccountNo,DocDate,DocType,Amount,Currency,Text"]
    lines += [
        f"X-{i},{account},2024-{1 + i % 12:02d}-{1 + i % 28:02d},invoice,{i}.50,GBP,Invoice {i}"
        for i in range(count)
    ]
    path = tmp_path / f"{source}-history.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = IngestService(platform.db, platform.vault, resolve=False).ingest_file(
        source, path, kind="interactions"
    )
    assert summary.rejected == 0, summary.rejections


def _state_of(
    platform: Platform, records: tuple[uuid.UUID, ...], subjects: list[uuid.UUID]
) -> dict[str, int]:
    with platform.db.read() as session:

        def count(model: type, column: Any, ids: tuple[uuid.UUID, ...] | list[uuid.UUID]) -> int:
            return int(
                session.execute(select(func.count()).select_from(model).where(column.in_(ids))).scalar_one()
            )

        return {
            "records": count(SourceRecord, SourceRecord.id, records),
            "index": count(BlindIndexEntry, BlindIndexEntry.record_id, records),
            "interactions": count(Interaction, Interaction.record_id, records),
            "keys": int(
                session.execute(
                    select(func.count())
                    .select_from(Subject)
                    .where(Subject.id.in_(subjects), Subject.wrapped_key.is_not(None))
                ).scalar_one()
            ),
        }


def _assert_invariants(platform: Platform, *, records: int, shredded: int) -> InvariantReport:
    """The platform-wide invariants (tests/invariants.py) after a kill or a finished run, with proof that
    they looked: every remaining record was decrypted, exactly the destroyed subjects' keys are shredded."""
    report = assert_platform_invariants(platform)
    assert (report.records, report.subjects_shredded) == (records, shredded)
    assert report.decrypted_by_table["source_record"] >= records * RECORD_CIPHERTEXTS
    assert report.audit_entries > 0
    return report


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> World:
    return seed_world(platform, tmp_path)


def test_kill_9_during_an_erasure_leaves_the_customer_fully_erased_or_untouched(
    platform: Platform, world: World, tmp_path: Path
) -> None:
    _ingest_history(platform, tmp_path, "billing", "B-1", 1500)  # a long destruction to land kills in
    with platform.db.read() as session:
        subjects = list(
            session.execute(
                select(SourceRecord.subject_id).where(SourceRecord.id.in_(world.maria_records))
            ).scalars()
        )
        everyone = session.execute(select(func.count()).select_from(SourceRecord)).scalar_one()
    untouched = _state_of(platform, world.maria_records, subjects)
    assert untouched["interactions"] > 1500
    erased = {"records": 0, "index": 0, "interactions": 0, "keys": 0}
    record = world.customers.maria_crm_record
    settings = platform.settings.with_overrides(dsr_erasure_requires_approval=False)
    request = DsrService.for_platform(Platform(settings, platform.db, platform.vault)).open_self_service(
        Actor(f"customer:{record}", "customer", None, record), "erasure"
    )
    seen_planned_but_untouched = 0
    finished = False
    for delay in DELAYS:
        finished = _run_worker(platform, "erase", str(request.id), kill_after=delay)
        state = _state_of(platform, world.maria_records, subjects)
        assert state in (untouched, erased), f"half-erased after a kill at {delay}s: {state}"
        gone = len(subjects) if state == erased else 0
        _assert_invariants(platform, records=everyone - gone, shredded=gone)
        with platform.db.read() as session:
            jobs = session.execute(select(ErasureJob.status)).scalars().all()
        if state == untouched and jobs == ["planned"]:
            seen_planned_but_untouched += 1
        if state == erased:
            break
    if not finished and _state_of(platform, world.maria_records, subjects) != erased:
        _run_worker(platform, "erase", str(request.id), kill_after=None)
    assert _state_of(platform, world.maria_records, subjects) == erased
    assert DsrService.for_platform(platform).get(request.id).status == "completed"
    final = _assert_invariants(platform, records=everyone - len(subjects), shredded=len(subjects))
    assert final.receipts_verified == 1  # the erasure receipt
    assert seen_planned_but_untouched >= 1, "no kill landed between the plan and the destruction's commit"


def _expiring_leads(platform: Platform, tmp_path: Path, count: int) -> tuple[uuid.UUID, ...]:
    mapping = (REPO / "cdp/demo/mappings/newsletter.toml").read_text(encoding="utf-8")
    IngestService(platform.db, platform.vault).register_source(mapping)
    rows = [
        "subscriber_id,email,first_name,country,last_engaged,list_id,signup_date,signup_source,opt_in,status"
    ]
    rows += [
        f"S-{i},lead{i}@example.net,Lee,GB,2016-05-01,1,2015-01-01,web,yes,subscribed" for i in range(count)
    ]
    path = tmp_path / "leads.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = IngestService(platform.db, platform.vault, resolve=False).ingest_file("newsletter", path)
    assert summary.inserted == count, summary.rejections
    with platform.db.read() as session:
        return tuple(session.execute(select(SourceRecord.id)).scalars())


def test_kill_9_during_a_retention_sweep_destroys_whole_records_and_a_rerun_finishes_with_one_certificate(
    platform: Platform, tmp_path: Path
) -> None:
    records = _expiring_leads(platform, tmp_path, 1200)
    with platform.db.read() as session:
        by_record = {
            row.id: row.subject_id
            for row in session.execute(select(SourceRecord.id, SourceRecord.subject_id))
        }

    def check_whole() -> int:
        """Every lead is whole or gone; returns how many are gone."""
        gone = 0
        with platform.db.read() as session:
            present = set(session.execute(select(SourceRecord.id)).scalars())
            indexed = set(session.execute(select(BlindIndexEntry.record_id)).scalars())
            keyed = set(session.execute(select(Subject.id).where(Subject.wrapped_key.is_not(None))).scalars())
        for record_id in records:
            states = (record_id in present, record_id in indexed, by_record[record_id] in keyed)
            assert states in ((True, True, True), (False, False, False)), f"half-destroyed record: {states}"
            gone += not states[0]
        return gone

    kills = 0
    for delay in DELAYS[2:]:
        if _run_worker(platform, "sweep", "0.2", kill_after=delay):
            break
        kills += 1
        gone = check_whole()
        _assert_invariants(platform, records=len(records) - gone, shredded=gone)
        with platform.db.read() as session:
            if session.execute(select(RetentionSweep.status)).scalars().all() == ["completed"]:
                break  # killed after its last commit, on the way out
        time.sleep(0.3)  # the dead worker's lease runs out; the next one takes the sweep over
    else:
        _run_worker(platform, "sweep", "0.2", kill_after=None)
    assert check_whole() == len(records)
    final = _assert_invariants(platform, records=0, shredded=len(records))
    assert final.receipts_verified == 1  # the sweep's one certificate
    with platform.db.read() as session:
        sweeps = session.execute(select(RetentionSweep.status, RetentionSweep.counts)).all()
    assert kills >= 1
    assert [status for status, _ in sweeps] == ["completed"], "a resumed sweep is the same sweep"
    assert '"records": 1200' in sweeps[0].counts
