"""Statements on the DBAPI cursor send and return exactly what SQLAlchemy would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import bindparam, insert, select, text

from cdp.audit.sequencer import seal
from cdp.db.driver import DriverStatement, DriverStatements, dbapi_cursor
from cdp.db.models import AuditEntry, table_of
from cdp.platform import Platform

_ENTRIES = table_of(AuditEntry)
_ROW = {
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "recorded_at": datetime(2026, 11, 24, 9, 30, 0, tzinfo=UTC),  # no microseconds: the format's edge
    "action": "sources.read",
    "outcome": "success",
    "actor": "system:test",
    "actor_kind": "system",
    "subjects": "[]",
    "fields": "[]",
    "details": "{}",
}


def test_a_row_inserted_on_the_driver_is_stored_as_sqlalchemy_stores_it(platform: Platform) -> None:
    statement = DriverStatement(insert(_ENTRIES), platform.db.engine.dialect, list(_ROW))
    with platform.db.raw_write() as cursor:
        cursor.execute(statement.sql, statement.parameters(_ROW))
    twin = {**_ROW, "id": uuid.uuid4()}
    with platform.db.transaction() as session:
        session.execute(insert(_ENTRIES), twin)

    with platform.db.engine.connect() as connection:
        stored = (
            connection.execute(
                text("SELECT CAST(recorded_at AS TEXT) FROM audit_entry WHERE action = 'sources.read'")
            )
            .scalars()
            .all()
        )
    assert len(stored) == 2 and stored[0] == stored[1], stored


def test_a_query_on_the_driver_returns_what_sqlalchemy_mappings_return(platform: Platform) -> None:
    with platform.db.transaction() as session:
        session.execute(insert(_ENTRIES), _ROW)
    seal(platform.db)
    query = select(_ENTRIES).where(_ENTRIES.c.id == bindparam("entry_id"))
    compiled = DriverStatements(query).for_dialect(platform.db.engine.dialect)

    with platform.db.connect() as connection:
        expected = [dict(row) for row in connection.execute(query, {"entry_id": _ROW["id"]}).mappings()]
        with dbapi_cursor(connection) as cursor:
            got = compiled.mappings(cursor, {"entry_id": _ROW["id"]})

    assert got == expected
    assert isinstance(got[0]["id"], uuid.UUID)
    assert got[0]["recorded_at"] == _ROW["recorded_at"] and got[0]["sealed_at"].tzinfo is not None


def test_a_value_the_statement_carries_itself_is_sent_unless_the_caller_gives_one(platform: Platform) -> None:
    with platform.db.transaction() as session:
        for action in ("a.first", "b.second", "c.third"):
            session.execute(insert(_ENTRIES), {**_ROW, "id": uuid.uuid4(), "action": action})
    newest_first = select(_ENTRIES.c.action).order_by(_ENTRIES.c.action.desc()).limit(2)
    compiled = DriverStatements(newest_first).for_dialect(platform.db.engine.dialect)

    with platform.db.connect() as connection, dbapi_cursor(connection) as cursor:
        carried = compiled.mappings(cursor, {})
        first = compiled.first(cursor, {})

    assert [row["action"] for row in carried] == ["c.third", "b.second"]  # the LIMIT 2 it was built with
    assert first == ("c.third",)
