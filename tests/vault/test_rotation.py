"""KEK rotation on both back ends: online, resumable after a real SIGKILL, old KEK retired only when
nothing references it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from cdp.platform import Platform
from cdp.sources.records import CustomerRecord, RecordRepository, SourceRepository
from cdp.vault import rotation
from cdp.vault.subjects import SubjectStore
from tests.invariants import RECORD_CIPHERTEXTS, assert_platform_invariants

# Runs in a child process that kills itself with SIGKILL at a chosen point of a rotation:
#   after_batches N  -> right after the N-th batch committed
#   mid_batch N      -> inside a batch, after N rewraps, before that batch's commit
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from cdp.config import load_settings
    from cdp.platform import Platform
    from cdp.vault import rotation
    from cdp.vault.subject_keys import SubjectKeys

    mode, n = sys.argv[1], int(sys.argv[2])
    platform = Platform.open(load_settings())
    if mode == "mid_batch":
        original, calls = SubjectKeys.rewrap, [0]
        def rewrap(self, *args):
            calls[0] += 1
            if calls[0] > n:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, *args)
        SubjectKeys.rewrap = rewrap
    batches = [0]
    def progress(done, total):
        if mode == "after_batches" and done:
            batches[0] += 1
            if batches[0] >= n:
                os.kill(os.getpid(), signal.SIGKILL)
    rotation.rotate(platform.db, platform.vault, batch_size=25, progress=progress, settle_seconds=0)
    print("rotation finished without being killed")
    """
)


def _populate(platform: Platform, count: int) -> list[uuid.UUID]:
    with platform.db.transaction() as session:
        source_id = SourceRepository(session).add("crm", "sales")
        items = [
            (
                CustomerRecord(f"R-{i}", first_name=f"Name{i}", email=f"p{i}@example.com"),
                {"email": [f"p{i}@example.com"]},
            )
            for i in range(count)
        ]
        return RecordRepository(session, platform.vault).add_many(source_id, items)


def _assert_all_readable(platform: Platform, ids: list[uuid.UUID]) -> None:
    fresh = Platform.open(platform.settings)  # new process view: empty key cache, keyring from disk
    try:
        with fresh.db.read() as session:
            records = RecordRepository(session, fresh.vault).get_many(ids)
        assert [r.data.first_name for r in records] == [f"Name{i}" for i in range(len(ids))]
    finally:
        fresh.close()


def _assert_invariants(platform: Platform, records: int) -> None:
    """The platform-wide invariants (tests/invariants.py), seen from a fresh keyring: every data key,
    under the old KEK or the new, unwraps, and every record's ciphertexts open."""
    report = assert_platform_invariants(platform)
    assert report.records == report.data_keys_unwrapped == records
    assert report.decrypted_by_table["source_record"] >= records * RECORD_CIPHERTEXTS


def _kek_counts(platform: Platform) -> dict[int | None, int]:
    with platform.db.read() as session:
        return {
            c.kek_version: c.subjects
            for c in SubjectStore(session, platform.vault.keys).count_by_kek_version()
        }


def test_rotation_rewraps_everything_and_retires_the_old_kek(platform: Platform) -> None:
    ids = _populate(platform, 120)
    result = rotation.rotate(platform.db, platform.vault, batch_size=50, settle_seconds=0)
    assert (result.target_kek_version, result.rewrapped, result.resumed) == (2, 120, False)
    assert result.retired == [1]
    assert _kek_counts(platform) == {2: 120}
    _assert_all_readable(platform, ids)
    status = rotation.status(platform.db, platform.vault)
    assert status.keks == [(1, "retired", 0), (2, "active", 120)]
    assert status.pending_rewrap == 0


def test_reads_keep_working_during_rotation(platform: Platform) -> None:
    ids = _populate(platform, 60)
    seen: list[int] = []

    def read_midway(done: int, total: int) -> None:
        with platform.db.read() as session:
            seen.append(len(RecordRepository(session, platform.vault).get_many(ids)))

    rotation.rotate(platform.db, platform.vault, batch_size=20, progress=read_midway, settle_seconds=0)
    assert seen and all(n == 60 for n in seen)


def test_old_kek_is_kept_while_something_references_it(platform: Platform) -> None:
    _populate(platform, 10)
    rotation.rotate(platform.db, platform.vault, batch_size=50, retire_old=False)
    platform.vault.keks.create_version()  # v3 active; nothing rewrapped yet, so v2 is still referenced
    assert rotation.retire_unreferenced(platform.db, platform.vault) == [1]
    assert [(k.version, k.state) for k in platform.vault.keks.versions()] == [
        (1, "retired"),
        (2, "decrypt_only"),
        (3, "active"),
    ]


def test_shredded_subjects_are_skipped_by_rotation(platform: Platform) -> None:
    ids = _populate(platform, 5)
    with platform.db.transaction() as session:
        victim = RecordRepository(session, platform.vault).get(ids[0]).subject_id
        SubjectStore(session, platform.vault.keys).shred([victim])
    result = rotation.rotate(platform.db, platform.vault, settle_seconds=0)
    assert result.rewrapped == 4
    assert _kek_counts(platform) == {None: 1, 2: 4}


def _child_env(platform: Platform) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env["CDP_DATABASE_URL"] = platform.settings.database_url
    env["CDP_KEYRING"] = platform.settings.keyring
    return env


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "point"), [("after_batches", 2), ("mid_batch", 60)])
def test_rotation_killed_midway_resumes_and_completes(platform: Platform, mode: str, point: int) -> None:
    ids = _populate(platform, 150)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(point)],
        env=_child_env(platform),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    counts = _kek_counts(platform)
    assert counts.get(2, 0) in (50, 75), counts  # killed with 2 or 3 batches of 25 committed
    assert counts[1] + counts[2] == 150
    _assert_all_readable(platform, ids)  # half-rotated state is fully readable
    _assert_invariants(platform, 150)

    reopened = Platform.open(platform.settings)
    try:
        result = rotation.rotate(reopened.db, reopened.vault, batch_size=25, settle_seconds=0)
        assert result.resumed and result.target_kek_version == 2
        assert result.rewrapped == counts[1]
        assert _kek_counts(reopened) == {2: 150}
        assert result.retired == [1]
    finally:
        reopened.close()
    _assert_all_readable(platform, ids)
    _assert_invariants(platform, 150)
