"""The baseline of ``bench.http_reads``: the customer read without token validation, policy and decryption.

    gunicorn --pythonpath <repo> 'bench.plain_read_app:create_app()'   (env: CDP_DATABASE_URL,
                                                                          BENCH_PLAIN_COLUMNS)

``GET /v1/customers/<entity id>`` runs the same SQL as the authorized read
(:meth:`cdp.sources.records.RecordRepository.disclose_members`: the entity's member records through
``entity_member``, joined to their source and subject, shredded subjects skipped) over the same engine
settings (:class:`cdp.db.Database`: pool, SQLite pragmas), fetching the same ciphertext columns, and
returns the rows as JSON with the ciphertexts base64-encoded. No bearer token is checked, no policy is
consulted, nothing is decrypted, no golden profile is composed: what is left is the floor an authorized
read cannot go below on the same server, database and data.

``BENCH_PLAIN_COLUMNS`` names the ``source_record`` ciphertext columns to fetch (comma-separated, e.g.
``enc_source_record_id,enc_email``) — the benchmark passes those the authorized read fetches for its
role and purpose; every ``enc_*`` column when unset.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy import Select, select

from cdp.db import Database
from cdp.db.models import EntityMember, Source, SourceRecord, Subject


def _columns(table: Any, raw: str) -> list[Any]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        names = [column.name for column in table.columns if column.name.startswith("enc_")]
    unknown = [name for name in names if not name.startswith("enc_") or name not in table.c]
    if unknown:
        raise RuntimeError(f"BENCH_PLAIN_COLUMNS names unknown ciphertext columns: {', '.join(unknown)}")
    return [table.c[name] for name in names]


def member_query(columns: list[Any]) -> Select[Any]:
    """The authorized read's member query: same joins, order and shredded-subject filter; the caller adds
    the entity."""
    table = SourceRecord.__table__
    return (
        select(
            table.c.id,
            table.c.subject_id,
            table.c.updated_at,
            table.c.last_activity_at,
            *columns,
            Source.name.label("source_name"),
            Source.line_of_business,
            Subject.key_version,
            Subject.kek_version,
            Subject.wrapped_key,
        )
        .join(EntityMember, EntityMember.record_id == table.c.id)
        .join(Source, Source.id == table.c.source_id)
        .join(Subject, Subject.id == table.c.subject_id)
        .where(Subject.wrapped_key.is_not(None))
        .order_by(table.c.id)
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def create_app(database_url: str | None = None, columns: str | None = None) -> Flask:
    url = database_url or os.environ.get("CDP_DATABASE_URL", "")
    if not url:
        raise RuntimeError("set CDP_DATABASE_URL to the database to read")
    db = Database(url)
    table = SourceRecord.__table__
    base = member_query(_columns(table, columns or os.environ.get("BENCH_PLAIN_COLUMNS", "")))
    app = Flask(__name__)

    @app.get("/v1/customers/<customer_id>")
    def read_customer(customer_id: str) -> Response | tuple[Response, int]:
        try:
            entity_id = uuid.UUID(customer_id)
        except ValueError:
            return jsonify({"error": "not a UUID"}), 404
        query = base.where(EntityMember.entity_id == entity_id)
        with db.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        if not rows:
            return jsonify({"error": "no such customer"}), 404
        return jsonify(
            {"id": str(entity_id), "records": [{k: _jsonable(v) for k, v in row.items()} for row in rows]}
        )

    @app.get("/readyz")
    def readyz() -> Response:
        db.ping()
        return jsonify({"status": "ready"})

    return app
