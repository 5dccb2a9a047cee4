"""The Database wrapper: SQLite tuning, write transactions, and clear errors for bad URLs."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from cdp.db import ALIVE_BYPASS_SECONDS, Database, safe_url
from cdp.db.driver import DriverStatement
from cdp.db.models import Source, SourceRecord, table_of
from cdp.db.types import utcnow
from cdp.errors import ConfigurationError, DatabaseUnavailable
from cdp.platform import Platform
from tests.conftest import _libpq_dsn, postgres_base_url


class Boom(Exception):
    pass


_ENC_FIELDS = [
    c.name.removeprefix("enc_") for c in SourceRecord.__table__.columns if c.name.startswith("enc_")
]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'db' / 'test.db'}", busy_timeout_ms=10_000)
    yield db
    db.dispose()


def _pragma(db: Database, name: str) -> object:
    with db.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


# --- SQLite connection settings ---------------------------------------------------------------------


def test_sqlite_creates_the_database_directory(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a' / 'b' / 'cdp.db'}")
    try:
        db.ping()
    finally:
        db.dispose()

    assert (tmp_path / "a" / "b" / "cdp.db").is_file()


def test_sqlite_uses_wal_journal(sqlite_db: Database) -> None:
    assert str(_pragma(sqlite_db, "journal_mode")).lower() == "wal"


def test_sqlite_enforces_foreign_keys(sqlite_db: Database) -> None:
    assert _pragma(sqlite_db, "foreign_keys") == 1


def test_sqlite_busy_timeout_is_the_configured_one(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=4321)
    try:
        assert _pragma(db, "busy_timeout") == 4321
    finally:
        db.dispose()


def test_sqlite_page_cache_and_memory_map_are_the_configured_ones(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", sqlite_cache_mib=48, sqlite_mmap_mib=256)
    try:
        assert _pragma(db, "cache_size") == -48 * 1024
        assert _pragma(db, "mmap_size") == 256 * 1024 * 1024
    finally:
        db.dispose()


def test_sqlite_wal_checkpoint_threshold_is_the_configured_one(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", sqlite_wal_autocheckpoint=5000)
    try:
        assert _pragma(db, "wal_autocheckpoint") == 5000
    finally:
        db.dispose()


def test_sqlite_checkpoint_copies_the_log_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = Database(f"sqlite:///{path}", sqlite_wal_autocheckpoint=100_000)
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        db.checkpoint_wal()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (?)", [("x" * 1000,) for _ in range(300)])
        before = path.stat().st_size

        db.checkpoint_wal()

        assert path.stat().st_size > before + 200 * 1000
    finally:
        db.dispose()


def test_sqlite_secure_delete_is_on(sqlite_db: Database) -> None:
    assert _pragma(sqlite_db, "secure_delete") == 1


def test_sqlite_settings_apply_to_reader_and_writer_sessions(sqlite_db: Database) -> None:
    names = ("journal_mode", "foreign_keys", "busy_timeout", "secure_delete")
    with sqlite_db.read() as session:
        read = [session.execute(text(f"PRAGMA {n}")).scalar() for n in names]
    with sqlite_db.transaction() as session:
        written = [session.execute(text(f"PRAGMA {n}")).scalar() for n in names]

    assert read == written == ["wal", 1, 10_000, 1]


def test_foreign_keys_are_enforced_on_every_back_end(platform: Platform) -> None:
    missing = uuid.uuid4()
    with pytest.raises(IntegrityError), platform.db.transaction() as session:
        session.add(
            SourceRecord(
                source_id=missing,
                subject_id=missing,
                natural_key=b"k" * 32,
                **{f"enc_{f}": b"x" for f in _ENC_FIELDS},
            )
        )


# --- write transactions -----------------------------------------------------------------------------


def test_sqlite_write_transaction_takes_the_write_lock_at_begin(sqlite_db: Database, tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: even a writer that has only read so far already holds the write lock."""
    with sqlite_db.transaction() as session:
        session.execute(text("SELECT 1")).scalar()
        other = sqlite3.connect(sqlite_db.url.database, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()


def test_sqlite_reader_does_not_block_a_writer(sqlite_db: Database) -> None:
    with sqlite_db.read() as session:
        session.execute(text("SELECT 1")).scalar()
        other = sqlite3.connect(sqlite_db.url.database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()


def test_concurrent_sqlite_read_modify_write_transactions_lose_nothing(sqlite_db: Database) -> None:
    with sqlite_db.transaction() as session:
        session.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        session.execute(text("INSERT INTO counter (id, n) VALUES (1, 0)"))

    rounds, workers = 50, 2
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                with sqlite_db.transaction() as session:
                    n = session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
                    time.sleep(0.0002)  # widen the window between read and write
                    session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(t.is_alive() for t in threads)
    assert errors == []
    with sqlite_db.read() as session:
        assert session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one() == rounds * workers


def test_failing_transaction_writes_nothing(platform: Platform) -> None:
    with pytest.raises(Boom), platform.db.transaction() as session:
        session.add(Source(name="crm", line_of_business="sales"))
        session.flush()  # the row reached the database inside the transaction ...
        session.execute(text("UPDATE source SET line_of_business = 'x'"))
        raise Boom

    with platform.db.read() as session:  # ... and is gone after the rollback
        assert session.scalar(select(func.count()).select_from(Source)) == 0


def test_successful_transaction_commits(platform: Platform) -> None:
    with platform.db.transaction() as session:
        session.add(Source(name="crm", line_of_business="sales"))

    with platform.db.read() as session:
        assert session.scalars(select(Source.name)).all() == ["crm"]


def test_failed_transaction_does_not_poison_the_next_one(platform: Platform) -> None:
    with pytest.raises(IntegrityError), platform.db.transaction() as session:
        session.add(Source(name="dup", line_of_business="a"))
        session.add(Source(name="dup", line_of_business="b"))

    with platform.db.transaction() as session:
        session.add(Source(name="dup", line_of_business="c"))

    with platform.db.read() as session:
        assert session.scalars(select(Source.line_of_business)).all() == ["c"]


# --- raw writes on the request's own connection ------------------------------------------------------


def _checkouts(db: Database) -> list[object]:
    seen: list[object] = []
    event.listen(db.engine, "checkout", lambda *args: seen.append(args[0]))
    return seen


def _sources(db: Database) -> list[str]:
    with db.engine.connect() as other:  # a connection of its own: sees only what was committed
        return sorted(other.execute(select(Source.name)).scalars())


@pytest.mark.parametrize("single_statement", [True, False])
def test_a_raw_write_inside_connect_commits_on_the_held_connection(
    platform: Platform, single_statement: bool
) -> None:
    db = platform.db
    checkouts = _checkouts(db)
    columns = ["id", "name", "line_of_business", "created_at"]
    statement = DriverStatement(insert(table_of(Source)), db.engine.dialect, columns)
    row = {"id": uuid.uuid4(), "name": "crm", "line_of_business": "sales", "created_at": utcnow()}

    with db.connect() as held:
        with db.raw_write(single_statement=single_statement) as cursor:
            cursor.execute(statement.sql, statement.parameters(row))
        assert _sources(db) == ["crm"]  # committed before the block that holds the connection ends
        assert held.execute(select(Source.name)).scalars().all() == ["crm"]

    assert len(checkouts) == 2  # the held connection, and _sources' own: none for the write


@pytest.mark.parametrize("single_statement", [True, False])
def test_a_failed_raw_write_inside_connect_leaves_nothing_and_the_connection_usable(
    platform: Platform, single_statement: bool
) -> None:
    db = platform.db
    with db.connect() as held:
        with pytest.raises(Boom), db.raw_write(single_statement=single_statement) as cursor:
            cursor.execute("UPDATE source SET name = 'x'")  # no rows: fine, then the caller fails
            raise Boom
        driver_integrity_error = db.engine.dialect.loaded_dbapi.IntegrityError
        with pytest.raises(driver_integrity_error), db.raw_write(single_statement=single_statement) as cursor:
            cursor.execute("INSERT INTO entity_member (record_id, entity_id) VALUES (NULL, NULL)")
        assert held.execute(select(func.count()).select_from(Source)).scalar_one() == 0

    with db.transaction() as session:  # no transaction was left open on the pooled connection
        session.add(Source(name="crm", line_of_business="sales"))
    assert _sources(db) == ["crm"]


# --- PostgreSQL: ping only connections that sat idle --------------------------------------------------


def _count_pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    pings: list[object] = []
    real_ping = db.engine.dialect.do_ping

    def counting_ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return bool(real_ping(dbapi_connection))

    monkeypatch.setattr(db.engine.dialect, "do_ping", counting_ping)
    return pings


@pytest.mark.postgres
def test_a_connection_reused_within_the_window_is_not_pinged(
    postgres_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window no scheduling hiccup on a busy runner reaches.
    db = Database(postgres_schema_url, ping_after_idle_seconds=30)
    pings = _count_pings(db, monkeypatch)
    for _ in range(5):  # new, then reused at once: alive without asking
        with db.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    db.dispose()
    assert pings == []


@pytest.mark.postgres
def test_a_connection_left_idle_past_the_window_is_pinged_once(
    postgres_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ALIVE_BYPASS_SECONDS == 0.5  # the default, HikariCP's
    db = Database(postgres_schema_url, ping_after_idle_seconds=0.05)
    pings = _count_pings(db, monkeypatch)
    with db.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    time.sleep(0.2)
    with db.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    db.dispose()
    assert len(pings) == 1


@pytest.mark.postgres
def test_a_pooled_connection_killed_while_idle_is_replaced_without_failing_the_request(
    postgres_schema_url: str,
) -> None:
    db = Database(postgres_schema_url)
    with db.connect() as connection:
        backend_pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    with psycopg.connect(_libpq_dsn(postgres_base_url()), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
    time.sleep(ALIVE_BYPASS_SECONDS + 0.1)

    with db.connect() as connection:  # the ping finds it dead; the pool connects again
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != backend_pid
    db.dispose()


# --- bad URLs ---------------------------------------------------------------------------------------


def test_unparseable_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot be parsed"):
        Database("this is not a url")


@pytest.mark.parametrize("url", ["mysql://u@host/db", "mssql+pyodbc://u@host/db", "oracle://u@h/d"])
def test_unsupported_database_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="unsupported database"):
        Database(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"])
def test_in_memory_sqlite_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="file path"):
        Database(url)


@pytest.mark.parametrize("url", ["postgresql+psycopg2://u@h/d", "postgresql+asyncpg://u@h/d"])
def test_postgresql_driver_other_than_psycopg3_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="psycopg"):
        Database(url)


def test_plain_postgresql_url_uses_psycopg3() -> None:
    db = Database("postgresql://u@127.0.0.1:1/x")
    try:
        assert db.url.drivername == "postgresql+psycopg"
    finally:
        db.dispose()


def test_unreachable_postgresql_is_database_unavailable() -> None:
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/x")
    try:
        with pytest.raises(DatabaseUnavailable, match="cannot connect"):
            db.ping()
    finally:
        db.dispose()


def test_unreachable_postgresql_error_never_shows_the_password() -> None:
    db = Database("postgresql+psycopg://u:s3cretpw@127.0.0.1:1/x")
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            db.ping()
    finally:
        db.dispose()

    message = str(caught.value)
    assert "s3cretpw" not in message
    assert "127.0.0.1" in message  # still says which server
    assert "\n" not in message


def test_safe_url_masks_the_password() -> None:
    masked = safe_url("postgresql+psycopg://u:s3cretpw@db.example:5432/cdp")

    assert "s3cretpw" not in masked
    assert masked == "postgresql+psycopg://u:***@db.example:5432/cdp"


def test_safe_url_of_garbage_does_not_echo_it() -> None:
    assert safe_url("u:s3cretpw garbage") == "<unparseable database URL>"


def test_sqlite_directory_that_cannot_be_created_is_database_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(DatabaseUnavailable, match="cannot create the directory"):
        Database(f"sqlite:///{blocker / 'sub' / 'cdp.db'}")
