"""Engine, units of work and migrations for SQLite (embedded default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from cdp.errors import ConfigurationError, DatabaseUnavailable

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)
"""A connection lost or refused (a restart, a failover) or SQLite's busy timeout: transient, so callers
may retry. Both SQLAlchemy's wrapped errors and the drivers' own (raised on :meth:`Database.raw_write`'s
cursor, which SQLAlchemy does not wrap)."""


ALIVE_BYPASS_SECONDS = 0.5
"""A pooled connection used less than this long ago is handed out without a ping (HikariCP's
``aliveBypassWindowMs`` rule, same default)."""


def safe_url(url: str | URL) -> str:
    """The URL with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


class Database:
    """One engine plus two kinds of unit of work: ``transaction()`` for writes, ``read()`` for reads.

    On SQLite every writer starts with ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy
    timeout instead of failing half-way with "database is locked"; readers use WAL snapshots and never
    block writers.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 10_000,
        sqlite_cache_mib: int = 32,
        sqlite_mmap_mib: int = 1024,
        sqlite_wal_autocheckpoint: int = 1000,
        ping_after_idle_seconds: float = ALIVE_BYPASS_SECONDS,
    ) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigurationError("database URL cannot be parsed") from None
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file:"):
                raise ConfigurationError("use a file path for SQLite (an in-memory database loses all data)")
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot create the directory for {safe_url(parsed)}: {exc.strerror}"
                ) from None
            kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
        elif parsed.get_backend_name() == "postgresql":
            if parsed.get_driver_name() not in ("psycopg", ""):
                raise ConfigurationError("PostgreSQL URLs must use psycopg 3: postgresql+psycopg://...")
            parsed = parsed.set(drivername="postgresql+psycopg")
            self.url = parsed
            # A schema is chosen in the URL itself: ...?options=-csearch_path%3Dmyschema
            kwargs["connect_args"] = {"connect_timeout": 5}
        else:
            raise ConfigurationError(
                f"unsupported database {parsed.get_backend_name()!r}; use sqlite:/// or postgresql+psycopg://"
            )
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigurationError(
                f"database URL {safe_url(parsed)} is not usable: {_short(exc)}"
            ) from None
        if self.is_sqlite:
            _configure_sqlite(
                self.engine, busy_timeout_ms, sqlite_cache_mib, sqlite_mmap_mib, sqlite_wal_autocheckpoint
            )
        else:
            _ping_when_idle(self.engine, ping_after_idle_seconds)
        self._immediate = self.engine.execution_options(cdp_begin="IMMEDIATE")
        self._writer = sessionmaker(bind=self._immediate, expire_on_commit=False)
        self._reader = sessionmaker(bind=self.engine, expire_on_commit=False)
        # Hot-path reads are single statements: each is its own snapshot, so they need no BEGIN /
        # ROLLBACK round trips (two of a profile read's five on PostgreSQL).
        self._plain = self.engine.execution_options(
            **({"cdp_begin": "NONE"} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"})
        )
        self._borrowed: ContextVar[Connection | None] = ContextVar(f"cdp_connection_{id(self)}", default=None)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write unit of work: commits when the block ends, rolls everything back if it raises."""
        with self._writer.begin() as session:
            yield session

    @contextmanager
    def raw_write(self, *, single_statement: bool = False) -> Iterator[Any]:
        """A DBAPI cursor inside a write transaction, for the one statement on every request's path
        (the audit append), where SQLAlchemy's per-execution machinery cost more than the insert itself.
        Same locking as :meth:`transaction` (``BEGIN IMMEDIATE`` on SQLite); commits when the block ends,
        rolls back if it raises. Callers pass parameters already converted for the driver.

        Inside :meth:`connect` the write runs on the connection the request already holds, not a second
        one from the pool. There, ``single_statement=True`` — the block runs exactly one statement,
        atomic by itself — lets PostgreSQL's autocommit connection commit it without BEGIN and COMMIT
        round trips; SQLite still takes its write lock up front (``BEGIN IMMEDIATE``), which an
        autocommit statement would not."""
        borrowed = self._borrowed.get()
        if borrowed is not None:
            with self._write_on(borrowed, single_statement and not self.is_sqlite) as cursor:
                yield cursor
            return
        fairy = self.engine.raw_connection()
        try:
            cursor = fairy.cursor()
            if self.is_sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                fairy.rollback()
                raise
            fairy.commit()
            cursor.close()
        finally:
            fairy.close()

    @contextmanager
    def _write_on(self, connection: Connection, autocommit_statement: bool) -> Iterator[Any]:
        """A write transaction on the DBAPI connection under a :meth:`connect` connection (autocommit to
        SQLAlchemy, which therefore has no transaction of its own open on it). Always ends the
        transaction it began; a connection whose rollback fails is invalidated, not reused."""
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if not autocommit_statement:
                cursor.execute("BEGIN IMMEDIATE" if self.is_sqlite else "BEGIN")
            try:
                yield cursor
            except BaseException:
                if not autocommit_statement:
                    try:
                        cursor.execute("ROLLBACK")
                    except Exception:
                        connection.invalidate()
                raise
            if not autocommit_statement:
                cursor.execute("COMMIT")
        finally:
            cursor.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A plain autocommit connection for hot-path reads that need no ORM unit of work (the
        per-request token check, profile reads): the same pool as :meth:`read`, a fraction of the
        per-call overhead. Each statement sees its own snapshot; use :meth:`read` for several reads that
        must agree with each other.

        Nested calls in the same context (thread or task) share the outermost connection, so a request
        that checks its token and then reads a profile checks out one connection, not two."""
        current = self._borrowed.get()
        if current is not None:
            yield current
            return
        with self._plain.connect() as connection:
            token = self._borrowed.set(connection)
            try:
                yield connection
            finally:
                self._borrowed.reset(token)

    def checkpoint_wal(self) -> None:
        """SQLite: copy the write-ahead log back into the database file now, PASSIVE (waits for no reader
        or writer, copies what it can). The sequencer calls it after each tick, so the HTTP workers —
        whose own threshold is high (``sqlite_server_wal_autocheckpoint``) — do not pay for it inside a
        request. Nothing to do on PostgreSQL."""
        if not self.is_sqlite:
            return
        with self.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()

    def ping(self) -> None:
        """Raise DatabaseUnavailable with one readable line if the database cannot be used."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except DBAPIError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to database {safe_url(self.url)}: {_short(exc)}"
            ) from None

    def dispose(self) -> None:
        self.engine.dispose()


def _ping_when_idle(engine: Engine, bypass_seconds: float) -> None:
    """Pessimistic disconnect handling without a round trip on every checkout: ``pool_pre_ping`` cost
    every PostgreSQL request one (a server under load reuses each connection within milliseconds). A
    connection idle for longer is pinged; a dead one raises ``DisconnectionError``, on which the pool
    replaces it and tries again (up to three times), so a restarted server still costs no request."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["cdp_checked_in_at"] = time.monotonic()  # just connected: alive

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["cdp_checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        checked_in_at = record.info.get("cdp_checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at >= bypass_seconds:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except engine.dialect.loaded_dbapi.Error:
                raise sqlalchemy.exc.DisconnectionError("the pooled connection is gone") from None


def _configure_sqlite(
    engine: Engine, busy_timeout_ms: int, cache_mib: int, mmap_mib: int, wal_autocheckpoint: int
) -> None:
    """Per connection: WAL, NORMAL sync, foreign keys, busy timeout, secure delete, the WAL checkpoint
    threshold, and a page cache plus memory map sized for indexes that outgrow SQLite's 2 MB default
    (random-key inserts into a large blind index otherwise read a page from the OS for almost every row)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")
        cursor.execute(f"PRAGMA mmap_size={int(mmap_mib) * 1024 * 1024}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("cdp_begin", "DEFERRED")
        if mode == "NONE":  # autocommit reads (Database.connect)
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
