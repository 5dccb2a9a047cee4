"""Plaintext canaries: a customer with unmistakable made-up details goes through the whole platform — HTTP
ingest (with a bad row that is quarantined), identity resolution, staff reads, failing requests that carry
the details in their input, another customer's export, the canary's own export and erasure — and the
details are then searched for, as bytes, everywhere they must not be: the database files (before and
after erasure), every other file under the data and temp directories, every log record, everything
printed, every error response and the other customer's export. The canary's own export and a staff read
must contain them (so the search is known to work).
"""

from __future__ import annotations

import io
import logging
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api import create_app
from cdp.config import Settings
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.records import RecordRepository, SourceRepository
from tests.api.tokens import customer_token, service_token
from tests.sources.test_ingest import CRM_MAPPING

CANARY_ROW = {
    "LeadId": "L-900",
    "FirstName": "Zyqwarth",
    "LastName": "Quillfeatherby",
    "EMail": "zyqwarth.quillfeatherby@example.org",
    "Mobile": "07812 428917",
    "DOB": "03/04/1977",
    "Street": "41 Brackenwhistle Lane",
    "PostCode": "YO10 5DD",
    "Town": "Yarnborough",
    "LastContact": "2025-03-01 09:30",
    "Segment": "gold",
}
OTHER_ROW = {
    "LeadId": "L-901",
    "FirstName": "John",
    "LastName": "Smith",
    "EMail": "john.smith@example.com",
    "Mobile": "+44 7400 123456",
    "DOB": "01/02/1980",
    "Street": "3 Mill Rd",
    "PostCode": "M1 1AE",
    "Town": "Manchester",
}
BAD_CANARY_ROW = {
    **CANARY_ROW,
    "LeadId": "L-902",
    "EMail": "zyqwarth.quillfeatherby@@broken",
    "DOB": "31/02/1977",
}
NEEDLES = ("Zyqwarth", "Quillfeatherby", "quillfeatherby@", "Brackenwhistle", "Yarnborough", "428917")
"""What no file, log or foreign response may contain, searched case-insensitively as UTF-8 bytes."""


def hits(blob: bytes) -> list[str]:
    lowered = blob.lower()
    return [needle for needle in NEEDLES if needle.lower().encode() in lowered]


@dataclass
class Journey:
    platform: Platform
    client: FlaskClient
    data_dir: Path
    temp_dir: Path
    errors: list[bytes] = field(default_factory=list)
    other_export: bytes = b""
    own_export: bytes = b""
    staff_read: bytes = b""


def _token(
    journey_client: FlaskClient, platform: Platform, role: str, scopes: list[str], **extra: str
) -> str:
    return service_token(platform, journey_client, role, scopes=scopes, name=f"canary {role}", **extra)


def _download(client: FlaskClient, token: str) -> bytes:
    asked = client.post(
        "/v1/me/requests", json={"kind": "access"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert asked.status_code == 201, asked.get_json()
    archive = client.get(asked.get_json()["download"]["url"])
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.data)) as opened:
        return archive.data + b"".join(opened.read(name) for name in opened.namelist())


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    root = tmp_path_factory.mktemp("canary")
    temp_dir = root / "tmp"
    temp_dir.mkdir()
    previous_temp = tempfile.tempdir
    tempfile.tempdir = str(temp_dir)
    platform, _ = Platform.initialize(Settings(data_dir=root / "cdp"))
    platform = Platform(
        replace(platform.settings, dsr_erasure_requires_approval=False), platform.db, platform.vault
    )
    IngestService(platform.db, platform.vault).register_source(CRM_MAPPING)
    app = create_app(platform=platform)
    client = app.test_client()
    try:
        yield Journey(platform, client, root / "cdp", temp_dir)
    finally:
        platform.close()
        tempfile.tempdir = previous_temp


def _record(platform: Platform, source_record_id: str) -> object:
    with platform.db.read() as session:
        source_id = SourceRepository(session).id_of("crm")
        found = RecordRepository(session, platform.vault).find_by_natural_key(source_id, source_record_id)
    assert found is not None
    return found


def _database_bytes(platform: Platform) -> bytes:
    with platform.db.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(platform.db.url.database or "")
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_canary_details_never_reach_files_logs_errors_or_another_customers_export(
    journey: Journey, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    platform, client = journey.platform, journey.client
    feed = _token(client, platform, "department_agent", ["ingest"], department="sales")
    ingest = {"Authorization": f"Bearer {feed}"}
    staff = {"Authorization": f"Bearer {_token(client, platform, 'support_agent', ['profiles:read'])}"}

    sent = client.post(
        "/v1/sources/crm/records", json={"rows": [CANARY_ROW, OTHER_ROW, BAD_CANARY_ROW]}, headers=ingest
    )
    assert sent.status_code in (200, 201, 202), sent.get_json()
    journey.errors.append(sent.data)  # the summary names the quarantined row's reasons, never its values
    canary_record, other_record = _record(platform, "L-900"), _record(platform, "L-901")
    entity = IdentityService(platform.db, platform.vault).entity_of(canary_record)  # type: ignore[arg-type]

    read = client.get(f"/v1/customers/{entity}?purpose=support", headers=staff)
    assert read.status_code == 200
    journey.staff_read = read.data
    for method, path, body in [
        ("POST", "/v1/customers/search", {"email": "zyqwarth.quillfeatherby@@broken"}),
        ("POST", "/v1/customers/search", {"phone": "Zyqwarth 428917 Brackenwhistle"}),
        ("POST", "/v1/customers/search", {"first_name": "Zyqwarth" * 60, "last_name": "Quillfeatherby"}),
        ("POST", "/v1/sources/crm/records", {"rows": "Zyqwarth Quillfeatherby, 41 Brackenwhistle Lane"}),
        (
            "POST",
            "/v1/sources/crm/records",
            {"rows": [{"LeadId": "L-903", "EMail": "Zyqwarth@@Yarnborough"}]},
        ),
        ("GET", f"/v1/customers/{entity}?purpose=Zyqwarth", None),
    ]:
        answer = client.open(path, method=method, json=body, headers=ingest if "sources" in path else staff)
        journey.errors.append(answer.data)
    broken = client.post(
        "/v1/customers/search",
        data=b'{"email": "zyqwarth.quillfeatherby@example.org"',
        headers=staff,
        content_type="application/json",
    )
    assert broken.status_code == 400
    journey.errors.append(broken.data)

    journey.other_export = _download(client, customer_token(platform, other_record))  # type: ignore[arg-type]
    canary_token = customer_token(platform, canary_record)  # type: ignore[arg-type]
    journey.own_export = _download(client, canary_token)
    before_erasure = _database_bytes(platform)
    erased = client.post(
        "/v1/me/requests", json={"kind": "erasure"}, headers={"Authorization": f"Bearer {canary_token}"}
    )
    assert erased.status_code == 201, erased.get_json()
    after_erasure = _database_bytes(platform)

    assert hits(journey.own_export) and hits(journey.staff_read), (
        "the search must find the canary where it belongs"
    )
    assert hits(before_erasure) == [], "plaintext in the database file (fields are encrypted)"
    assert hits(after_erasure) == []
    for error in journey.errors:
        assert hits(error) == [], error[:300]
    assert hits(journey.other_export) == [], "another customer's export holds the canary"
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records).encode()
    assert hits(logged) == [], "a log record holds the canary"
    printed = capfd.readouterr()
    assert hits((printed.out + printed.err).encode()) == [], "something printed holds the canary"
    for directory in (journey.data_dir, journey.temp_dir):
        for path in directory.rglob("*"):
            if path.is_file():
                assert hits(path.read_bytes()) == [], f"{path.relative_to(directory)} holds the canary"
