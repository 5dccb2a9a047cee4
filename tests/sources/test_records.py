"""Source records through the vault, on SQLite and PostgreSQL: round trips, no plaintext at rest,
tamper and swap detection, crypto-shredding."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, make_url, select, update

from cdp.db.models import ENCRYPTED_RECORD_FIELDS, BlindIndexEntry, Source, SourceRecord, Subject
from cdp.platform import Platform
from cdp.sources.records import CustomerRecord, RecordRepository, SourceRepository
from cdp.vault import DecryptionError, SubjectShredded
from cdp.vault.subjects import SubjectStore

CANARIES = {
    "first_name": "Quintessa",
    "last_name": "Zwetschgenbaum",
    "full_name": "Quintessa Xylophonia Zwetschgenbaum",
    "email": "quintessa.canary+vault@example.org",
    "phone": "+44 7700 900123",
    "street_number": "221Q",  # not hex-like: "221b" would match random UUID text
    "address_line1": "Canarywharf Lane",
    "address_line2": "Flat Thirteen",
    "city": "Llanfairpwllgwyngyll",
    "postcode": "SW1A 9ZZ",
    "state": "Gwyneddshire",
    "country": "GB",
    "national_id": "QQ123456C",
}


def canary_record(source_record_id: str = "CANARY-0001") -> CustomerRecord:
    return CustomerRecord(
        source_record_id=source_record_id,
        date_of_birth=date(1961, 7, 14),
        attributes={"loyalty_code": "ZEBRACANARY77", "vip": True},
        **CANARIES,
    )


def _add(platform: Platform, record: CustomerRecord, source: str = "crm") -> uuid.UUID:
    with platform.db.transaction() as session:
        source_id = SourceRepository(session).get_or_add(source, "sales")
        lookups = {"email": [record.email] if record.email else []}
        if record.last_name:
            lookups["last_name"] = [record.last_name.casefold()]
        return RecordRepository(session, platform.vault).add(source_id, record, lookups)


def _read(platform: Platform, record_id: uuid.UUID) -> CustomerRecord:
    with platform.db.read() as session:
        return RecordRepository(session, platform.vault).get(record_id).data


def test_record_round_trips_every_field(platform: Platform) -> None:
    original = canary_record()
    record_id = _add(platform, original)
    assert _read(platform, record_id) == original


def test_sparse_record_round_trips_with_nones(platform: Platform) -> None:
    sparse = CustomerRecord(source_record_id="NL-1", email="only@example.com")
    assert _read(platform, _add(platform, sparse, "newsletter")) == sparse


def test_lookup_by_blind_index_and_natural_key(platform: Platform) -> None:
    record_id = _add(platform, canary_record())
    with platform.db.read() as session:
        repo = RecordRepository(session, platform.vault)
        assert repo.find("email", CANARIES["email"]) == [record_id]
        assert repo.find("email", "someone.else@example.org") == []
        source_id = SourceRepository(session).id_of("crm")
        assert repo.find_by_natural_key(source_id, "CANARY-0001") == record_id
        assert repo.find_by_natural_key(source_id, "CANARY-0002") is None


def test_record_repr_never_shows_personal_data() -> None:
    shown = repr(canary_record())
    assert all(value not in shown for value in CANARIES.values() if len(value) > 2)


def _needles() -> list[bytes]:
    values = [*CANARIES.values(), "ZEBRACANARY77", "CANARY-0001", "1961-07-14"]
    needles = []
    for value in values:
        if len(value) < 4:
            continue
        for variant in {value, value.casefold()}:
            raw = variant.encode()
            needles += [raw, raw.hex().encode()]
    return needles


def _dump_postgres(platform: Platform) -> bytes:
    url = make_url(platform.settings.database_url)
    options = url.query.get("options")
    dsn = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    dump = bytearray()
    with psycopg.connect(dsn, options=options) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()
        assert schema is not None
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema[0],)
            )
        ]
        assert "source_record" in tables
        for table in tables:
            for fmt in ("text", "binary"):
                with conn.cursor().copy(f'COPY "{table}" TO STDOUT (FORMAT {fmt})') as copy:
                    for chunk in copy:
                        dump += bytes(chunk)
    return bytes(dump)


def _dump_sqlite(platform: Platform) -> bytes:
    database = Path(make_url(platform.settings.database_url).database or "")
    return b"".join(p.read_bytes() for p in database.parent.iterdir() if p.is_file())


def _raw_storage(platform: Platform) -> bytes:
    return _dump_sqlite(platform) if platform.db.is_sqlite else _dump_postgres(platform)


def test_canary_plaintext_never_reaches_storage(platform: Platform) -> None:
    for n in range(3):
        _add(platform, canary_record(f"CANARY-000{n + 1}"))
    # Positive control: a value stored in a plaintext column IS found, so the scan really sees the data.
    with platform.db.transaction() as session:
        SourceRepository(session).add("controlsourcecanary", "sales")
    raw = _raw_storage(platform)
    assert b"controlsourcecanary" in raw
    hits = [needle for needle in _needles() if needle in raw]
    assert hits == []


def _first_two_records(platform: Platform) -> tuple[uuid.UUID, uuid.UUID]:
    first = _add(platform, canary_record("A-1"))
    second = _add(platform, CustomerRecord("A-2", first_name="Other", email="other@example.com"))
    return first, second


def test_ciphertext_copied_between_rows_fails_to_decrypt(platform: Platform) -> None:
    first, second = _first_two_records(platform)
    with platform.db.transaction() as session:
        stolen = session.execute(select(SourceRecord.enc_email).where(SourceRecord.id == first)).scalar_one()
        session.execute(update(SourceRecord).where(SourceRecord.id == second).values(enc_email=stolen))
    with pytest.raises(DecryptionError, match=r"source_record\.email of record"):
        _read(platform, second)
    assert _read(platform, first).email == CANARIES["email"]


def test_ciphertext_copied_between_fields_of_one_row_fails(platform: Platform) -> None:
    first, _ = _first_two_records(platform)
    with platform.db.transaction() as session:
        session.execute(
            update(SourceRecord).where(SourceRecord.id == first).values(enc_city=SourceRecord.enc_email)
        )
    with pytest.raises(DecryptionError, match=r"source_record\.city"):
        _read(platform, first)


def test_swapped_rows_between_subjects_fail(platform: Platform) -> None:
    """Moving a whole row under another subject (subject_id swap) must not decrypt."""
    first, second = _first_two_records(platform)
    with platform.db.transaction() as session:
        subjects = dict(session.execute(select(SourceRecord.id, SourceRecord.subject_id)).all())
        session.execute(
            update(SourceRecord).where(SourceRecord.id == first).values(subject_id=subjects[second])
        )
    with pytest.raises(DecryptionError):
        _read(platform, first)


def test_swapped_wrapped_keys_fail_to_unwrap(platform: Platform) -> None:
    first, second = _first_two_records(platform)
    with platform.db.transaction() as session:
        rows = session.execute(
            select(SourceRecord.id, Subject.id, Subject.wrapped_key).join(
                Subject, Subject.id == SourceRecord.subject_id
            )
        ).all()
        keys = {record_id: (subject_id, blob) for record_id, subject_id, blob in rows}
        session.execute(
            update(Subject).where(Subject.id == keys[first][0]).values(wrapped_key=keys[second][1])
        )
    with pytest.raises(DecryptionError, match="wrapped data key failed authentication"):
        _read(platform, first)


def test_tampered_ciphertext_in_the_database_fails(platform: Platform) -> None:
    first, _ = _first_two_records(platform)
    with platform.db.transaction() as session:
        blob = session.execute(select(SourceRecord.enc_phone).where(SourceRecord.id == first)).scalar_one()
        flipped = blob[:-1] + bytes([blob[-1] ^ 0x80])
        session.execute(update(SourceRecord).where(SourceRecord.id == first).values(enc_phone=flipped))
    with pytest.raises(DecryptionError):
        _read(platform, first)


def test_crypto_shred_makes_one_subject_unreadable_and_leaves_others(platform: Platform) -> None:
    first, second = _first_two_records(platform)
    with platform.db.read() as session:
        victim = RecordRepository(session, platform.vault).get(first).subject_id
        _read(platform, first)  # warm the key cache: shredding must still win over it
    with platform.db.transaction() as session:
        assert SubjectStore(session, platform.vault.keys).shred([victim]) == 1
    with pytest.raises(SubjectShredded):
        _read(platform, first)
    assert _read(platform, second).first_name == "Other"
    with platform.db.read() as session:
        assert RecordRepository(session, platform.vault).find("email", CANARIES["email"]) == []
        row = session.execute(select(Subject).where(Subject.id == victim)).scalar_one()
        assert row.wrapped_key is None and row.shredded_at is not None
    with platform.db.transaction() as session:
        assert SubjectStore(session, platform.vault.keys).shred([victim]) == 0


def test_failed_unit_of_work_leaves_no_partial_record(platform: Platform) -> None:
    with pytest.raises(RuntimeError), platform.db.transaction() as session:
        source_id = SourceRepository(session).add("billing", "billing")
        RecordRepository(session, platform.vault).add(source_id, canary_record())
        raise RuntimeError("crash after the insert, before commit")
    with platform.db.read() as session:
        counts = [
            session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Subject, SourceRecord, BlindIndexEntry, Source)
        ]
    assert counts == [0, 0, 0, 0]


def test_every_encrypted_column_is_covered_by_the_record_type() -> None:
    columns = {c.name for c in SourceRecord.__table__.columns if c.name.startswith("enc_")}
    assert columns == {f"enc_{name}" for name in ENCRYPTED_RECORD_FIELDS} | {"enc_normalized"}
