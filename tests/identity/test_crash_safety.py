"""kill -9 during a batch identity resolution, repeated at growing delays on both back ends: the customers
are either exactly those before it (each record alone, as ingestion left them without a model) or those of
a whole resolution — never a mix, never match edges without their clusters, never a record in two
customers — the audit log holds a resolution entry exactly when it landed, the platform-wide invariants
(tests/invariants.py: audit chain, every ciphertext opens, nothing half-erased) hold after every kill, and
a re-run finishes the job."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.db.models import AuditEntry, EntityMember, MatchEdge, SourceRecord
from cdp.demo.seed import seed
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from tests.crash import run_worker
from tests.invariants import RECORD_CIPHERTEXTS, assert_platform_invariants

DELAYS = (0.0, 0.05, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0)

pytestmark = pytest.mark.slow


def _resolve_in_a_worker(platform: Platform, kill_after: float | None) -> bool:
    """resolve_all in another process, killed ``kill_after`` s after it is ready (None: let it finish)."""
    settings = platform.settings
    return run_worker(
        "tests.identity.crash_worker",
        [str(settings.data_dir), str(settings.database_url)],
        kill_after=kill_after,
    )


def _state(platform: Platform) -> tuple[frozenset[frozenset[str]], int, int]:
    """(the customers as sets of record ids, stored match edges, identity.resolve audit entries)."""
    with platform.db.read() as session:
        groups: dict[str, set[str]] = {}
        for entity_id, record_id in session.execute(select(EntityMember.entity_id, EntityMember.record_id)):
            groups.setdefault(str(entity_id), set()).add(str(record_id))
        edges = session.execute(select(func.count()).select_from(MatchEdge)).scalar_one()
        entries = session.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "identity.resolve")
        ).scalar_one()
    return frozenset(frozenset(g) for g in groups.values()), int(edges), int(entries)


def test_kill_9_during_resolution_leaves_the_old_customers_or_a_whole_new_resolution(
    platform: Platform, tmp_path: Path
) -> None:
    seed(platform.db, platform.vault, work_dir=tmp_path, people=150, seed_value=7, resolve=False)
    with platform.db.read() as session:
        records = session.execute(select(func.count()).select_from(SourceRecord)).scalar_one()
    before, edges, entries = _state(platform)
    assert sum(len(g) for g in before) == records and (edges, entries) == (0, 0)
    platform.db.dispose()  # the worker writes; this process only looks between trials

    landed = False
    for delay in DELAYS:
        finished = _resolve_in_a_worker(platform, kill_after=delay)
        customers, edges, entries = _state(platform)
        assert sum(len(g) for g in customers) == records, f"records lost or doubled after {delay} s"
        assert assert_platform_invariants(platform).records == records, f"after a kill at {delay} s"
        if customers == before:
            assert (edges, entries) == (0, 0), f"half a resolution after a kill at {delay} s"
            assert not finished
        else:
            assert edges > 0 and entries == 1, f"customers changed without their resolution at {delay} s"
            assert len(customers) < len(before)
            landed = True
            break
    if not landed:  # every trial was killed before its commit: a re-run must finish the job
        assert _resolve_in_a_worker(platform, kill_after=None)
        customers, edges, entries = _state(platform)
        assert customers != before and edges > 0 and entries == 1
    final = assert_platform_invariants(platform)  # seals and verifies the audit chain too
    assert final.records == records and final.audit_entries > 0
    assert final.decrypted_by_table["source_record"] >= records * RECORD_CIPHERTEXTS
    assert len(IdentityService(platform.db, platform.vault).partition()) == len(customers)
