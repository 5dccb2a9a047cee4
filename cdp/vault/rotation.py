"""KEK rotation: rewrap every data key under a new KEK, online, in batches, resumable.

Each batch is its own transaction, guarded by the old KEK version, so a process killed at any moment
leaves every data key wrapped under either the old or the new KEK — both still in the keyring — and a
re-run simply carries on. Field ciphertexts never change: only the 60-byte wrapped keys do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from cdp.db import Database
from cdp.vault import Vault
from cdp.vault.subjects import KeyVersionCount, SubjectStore

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RotationResult:
    target_kek_version: int
    resumed: bool
    rewrapped: int
    seconds: float
    """Time spent rewrapping (excluding the settle pause before retiring old KEKs)."""
    retired: list[int]


@dataclass(frozen=True)
class KeyStatus:
    active_kek_version: int
    keks: list[tuple[int, str, int]]
    """(version, state, data keys wrapped under it)"""
    shredded_subjects: int
    pending_rewrap: int


def status(db: Database, vault: Vault) -> KeyStatus:
    with db.read() as session:
        store = SubjectStore(session, vault.keys)
        counts = store.count_by_kek_version()
        active = vault.keks.active_version()
        pending = store.pending_rewrap(active)
    by_version = {c.kek_version: c.subjects for c in counts}
    known = {info.version for info in vault.keks.versions()}
    keks = [(info.version, info.state, by_version.get(info.version, 0)) for info in vault.keks.versions()]
    keks += [(v, "missing", n) for v, n in by_version.items() if v is not None and v not in known]
    return KeyStatus(active, keks, by_version.get(None, 0), pending)


def rotate(
    db: Database,
    vault: Vault,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
    retire_old: bool = True,
    settle_seconds: float | None = None,
) -> RotationResult:
    """Rotate to a new KEK, or finish an interrupted rotation to the current active one.

    A rotation is "in progress" when some data key is not under the active KEK; then no new KEK is made.
    When done, KEK versions that no data key references are retired (their material destroyed) — after
    a settle period long enough for other processes to reload the keyring, and a final recount.
    """
    started = time.perf_counter()
    with db.read() as session:
        pending = SubjectStore(session, vault.keys).pending_rewrap(vault.keks.active_version())
    resumed = pending > 0
    if not resumed:
        vault.keks.create_version()
    target = vault.keks.active_version()

    rewrapped = _rewrap_all(db, vault, target, batch_size, progress)
    seconds = time.perf_counter() - started
    retired: list[int] = []
    if retire_old:
        settle = (
            settle_seconds if settle_seconds is not None else getattr(vault.keks, "RELOAD_INTERVAL", 0.0) * 2
        )
        if settle:
            time.sleep(settle)
        rewrapped += _rewrap_all(db, vault, target, batch_size, None)
        retired = retire_unreferenced(db, vault)
    return RotationResult(target, resumed, rewrapped, seconds, retired)


def _rewrap_all(db: Database, vault: Vault, target: int, batch_size: int, progress: Progress | None) -> int:
    with db.read() as session:
        total = SubjectStore(session, vault.keys).pending_rewrap(target)
    done = 0
    if progress:
        progress(0, total)
    after: uuid.UUID | None = None
    while True:
        with db.transaction() as session:
            changed, after = SubjectStore(session, vault.keys).rewrap_batch(target, batch_size, after)
        if not changed:
            return done
        done += changed
        if progress:
            progress(done, max(total, done))


def retire_unreferenced(db: Database, vault: Vault) -> list[int]:
    """Retire every decrypt-only KEK that no data key references. Counted inside a write transaction
    so no concurrent writer can add a reference between the count and the retirement."""
    retired = []
    with db.transaction() as session:
        if not db.is_sqlite:
            # SQLite's BEGIN IMMEDIATE already excludes writers; PostgreSQL needs the table lock.
            session.execute(text("LOCK TABLE subject IN SHARE MODE"))
        counts: list[KeyVersionCount] = SubjectStore(session, vault.keys).count_by_kek_version()
        referenced = {c.kek_version for c in counts if c.subjects}
        for info in vault.keks.versions():
            if info.state == "decrypt_only" and info.version not in referenced:
                vault.keks.retire(info.version)
                retired.append(info.version)
    return retired
