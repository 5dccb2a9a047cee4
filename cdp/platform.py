"""The wiring of one running platform: settings, database and vault, opened and checked together.

The CLI, the HTTP app and the benchmarks all start from :meth:`Platform.open`, so a bad configuration
fails the same way everywhere: one :class:`~cdp.errors.CdpError` with a message that says what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp.config import Settings
from cdp.db import Database
from cdp.db.migrate import current_revision, head_revision, upgrade
from cdp.errors import DatabaseUnavailable
from cdp.vault import Vault
from cdp.vault.keyring import FileKeyring


@dataclass
class Platform:
    settings: Settings
    db: Database
    vault: Vault

    @classmethod
    def open(cls, settings: Settings, *, require_migrated: bool = True) -> Platform:
        vault = Vault.from_settings(settings)
        db = _database(settings)
        db.ping()
        if require_migrated and current_revision(db) != head_revision():
            db.dispose()
            raise DatabaseUnavailable("the database schema is not up to date; run `cdp init`")
        return cls(settings, db, vault)

    @classmethod
    def initialize(cls, settings: Settings) -> tuple[Platform, bool]:
        """Create the key file if the keyring is file-based and has none, then migrate the database.
        Idempotent. Returns the platform and whether a new key file was created."""
        probe = _database(settings)
        try:
            probe.ping()  # before any key is made: a bad database URL must not leave a stray key file
        finally:
            probe.dispose()
        created = False
        if settings.keyring_kind == "file" and not settings.keyring_path.exists():
            FileKeyring.create(settings.keyring_path)
            created = True
        platform = cls.open(settings, require_migrated=False)
        upgrade(platform.db)
        return platform, created

    def close(self) -> None:
        self.db.dispose()


def _database(settings: Settings) -> Database:
    """The database as ``settings`` configure it (URL, SQLite locking, cache, memory map, checkpoints)."""
    return Database(
        settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        sqlite_cache_mib=settings.sqlite_cache_mib,
        sqlite_mmap_mib=settings.sqlite_mmap_mib,
        sqlite_wal_autocheckpoint=settings.sqlite_wal_autocheckpoint,
    )
