"""Over HTTP, ingestion and identity operations leave exactly the entries the services and views record,
under the calling client and the request's X-Request-ID (on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import create_app
from cdp.access.clients import ClientRepository
from cdp.demo.seed import seed
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from tests.sources.test_ingest import CRM_MAPPING
from tests.sources.test_ingest_audit import Entry, audit_entries, record_ids

ROWS = [
    {"LeadId": "H-1", "FirstName": "Hana", "EMail": "hana@example.com"},
    {"LeadId": "H-2", "FirstName": "Ivo", "EMail": "ivo@example.com"},
    {"LeadId": "H-3", "FirstName": "Jun", "EMail": "not-an-email"},
]
REASON = "Hana told us on the phone that ivo@example.com is her second address"
GRANTS = {"admin": ("ingest", "sources:read"), "data_steward": ("identity:read", "identity:manage")}


@dataclass
class Http:
    platform: Platform
    client: FlaskClient
    _tokens: dict[str, tuple[str, str]] = field(default_factory=dict)

    def client_and_token(self, role: str) -> tuple[str, str]:
        """(client id, access token) of a client credentials client of ``role`` (see GRANTS)."""
        if role not in self._tokens:
            with self.platform.db.transaction() as session:
                client, secret = ClientRepository(session).create(
                    name=f"audit test {role}", role=role, scopes=GRANTS[role], grant="client_credentials"
                )
            response = self.client.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
            )
            assert response.status_code == 200, response.text
            self._tokens[role] = (client.client_id, response.json["access_token"])  # type: ignore[index]
        return self._tokens[role]

    def call(self, method: str, path: str, role: str, **kwargs: Any) -> TestResponse:
        _, token = self.client_and_token(role)
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": kwargs.pop("request_id")}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def ingest(self, path: str, body: Any, request_id: str) -> TestResponse:
        return self.call("POST", path, "admin", json=body, request_id=request_id)

    def steward(self, method: str, path: str, request_id: str, **kwargs: Any) -> TestResponse:
        return self.call(method, path, "data_steward", request_id=request_id, **kwargs)


@pytest.fixture
def http(platform: Platform) -> Http:
    return Http(platform, create_app(platform=platform).test_client())


@pytest.fixture
def crm(platform: Platform) -> None:
    IngestService(platform.db, platform.vault).register_source(CRM_MAPPING)


@pytest.fixture
def people(platform: Platform, tmp_path: Path) -> IdentityService:
    seed(platform.db, platform.vault, work_dir=tmp_path, people=15, seed_value=3)
    return IdentityService(platform.db, platform.vault)


def of_request(platform: Platform, request_id: str) -> list[Entry]:
    return [e for e in audit_entries(platform) if e.request_id == request_id]


def only_entry(platform: Platform, request_id: str, action: str, actor: str) -> Entry:
    """The request's single entry of its own; it must be of ``action`` and name ``actor``. A merge or split
    that changes which consents hold also records ``consent.recompute`` (tests/consent/test_merge_split.py);
    the seeded newsletter subscribers carry consent, so that entry may come along here."""
    [entry] = [e for e in of_request(platform, request_id) if e.action != "consent.recompute"]
    assert (entry.action, entry.actor) == (action, actor)
    return entry


def outcome(platform: Platform, entry: Entry) -> str:
    from cdp.db.models import AuditEntry

    with platform.db.read() as session:
        found = session.get(AuditEntry, entry.id)
        assert found is not None
        return found.outcome


# --- ingestion ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("crm")
def test_posting_records_records_one_entry_with_the_written_records(http: Http, platform: Platform) -> None:
    response = http.ingest("/v1/sources/crm/records", {"rows": ROWS}, "req-ingest-1")
    assert response.status_code == 200, response.text
    client_id, _ = http.client_and_token("admin")
    entry = only_entry(platform, "req-ingest-1", "records.ingest", client_id)
    ids = record_ids(platform)
    assert sorted(entry.subjects) == sorted([ids["H-1"], ids["H-2"]])
    assert entry.details == {
        "source": "crm",
        "run_id": response.json["run_id"],  # type: ignore[index]
        "inserted": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
    }
    assert "hana" not in entry.raw.lower() and "not-an-email" not in entry.raw

    again = http.ingest("/v1/sources/crm/records", {"rows": ROWS}, "req-ingest-2")
    assert again.status_code == 200, again.text
    repeat = only_entry(platform, "req-ingest-2", "records.ingest", client_id)
    assert repeat.subjects == [] and repeat.details["unchanged"] == 2


@pytest.mark.usefixtures("crm")
def test_an_ingest_that_fails_after_a_committed_chunk_records_the_failure_too(
    http: Http, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.ingest

    small_chunks = IngestService(platform.db, platform.vault, chunk_size=2, today=date(2026, 11, 23))
    monkeypatch.setattr(api.ingest, "_service", lambda: small_chunks)
    original = IngestService._advance

    def fail_on_second_chunk(self: IngestService, session: Any, run_id: Any, last: int, counts: Any) -> None:
        original(self, session, run_id, last, counts)
        if last > 2:
            raise RuntimeError("storage went away")

    monkeypatch.setattr(IngestService, "_advance", fail_on_second_chunk)
    response = http.ingest("/v1/sources/crm/records", {"rows": ROWS}, "req-ingest-fail")
    assert response.status_code == 500
    committed, failure = of_request(platform, "req-ingest-fail")
    ids = record_ids(platform)
    assert sorted(committed.subjects) == sorted(ids.values()) and set(ids) == {"H-1", "H-2"}
    assert failure.action == "records.ingest" and failure.subjects == []
    assert failure.details == {"source": "crm", "status": 500}
    assert (outcome(platform, committed), outcome(platform, failure)) == ("success", "failed")


@pytest.mark.usefixtures("crm")
def test_listing_sources_and_quarantine_records_their_counts(http: Http, platform: Platform) -> None:
    http.ingest("/v1/sources/crm/records", {"rows": ROWS}, "req-seed")
    client_id, _ = http.client_and_token("admin")
    assert http.call("GET", "/v1/sources", "admin", request_id="req-sources").status_code == 200
    assert only_entry(platform, "req-sources", "sources.read", client_id).details == {"sources": 1}
    query = {"source": "crm", "reason": "invalid_email Hana"}
    listed = http.call("GET", "/v1/quarantine", "admin", request_id="req-q", query_string=query)
    assert listed.status_code == 200, listed.text
    entry = only_entry(platform, "req-q", "quarantine.read", client_id)
    assert entry.details == {"entries": 0, "source": "crm", "reason_filter": True}
    assert "Hana" not in entry.raw


# --- identity ----------------------------------------------------------------------------------------


def test_posting_a_merge_records_one_entry_under_the_client_and_request(
    http: Http, platform: Platform, people: IdentityService
) -> None:
    first, second = (min(g, key=str) for g in sorted(people.partition(), key=len)[:2])
    before = {str(people.entity_of(first)), str(people.entity_of(second))}
    body = {"record_a": str(first), "record_b": str(second), "reason": REASON}
    response = http.steward("POST", "/v1/identity/merges", "req-merge-1", json=body)
    assert response.status_code == 201, response.text
    client_id, _ = http.client_and_token("data_steward")
    entry = only_entry(platform, "req-merge-1", "identity.merge", client_id)
    merged = response.json["entity_id"]  # type: ignore[index]
    assert set(entry.subjects) == {str(first), str(second), merged, *before}
    assert entry.details["reason_given"] is True
    assert "Hana" not in entry.raw and "ivo@" not in entry.raw and "phone" not in entry.raw

    members = [str(m) for m in people.members(uuid.UUID(merged))]
    split = http.steward(
        "POST",
        f"/v1/identity/entities/{merged}/splits",
        "req-split-1",
        json={"record_ids": [str(second)], "reason": REASON},
    )
    assert split.status_code == 201, split.text
    entry = only_entry(platform, "req-split-1", "identity.split", client_id)
    assert set(entry.subjects) == {merged, *members, *split.json["entity_ids"]}  # type: ignore[index]


def test_a_merge_that_fails_records_no_success(
    http: Http, platform: Platform, people: IdentityService
) -> None:
    first = min(people.partition()[0], key=str)
    body = {"record_a": str(first), "record_b": str(uuid.uuid4()), "reason": REASON}
    response = http.steward("POST", "/v1/identity/merges", "req-merge-404", json=body)
    assert response.status_code == 404, response.text
    client_id, _ = http.client_and_token("data_steward")
    entry = only_entry(platform, "req-merge-404", "identity.merge", client_id)
    assert outcome(platform, entry) == "not_found" and entry.subjects == []


def test_identity_reads_record_the_ids_they_reveal(
    http: Http, platform: Platform, people: IdentityService
) -> None:
    group = sorted(max(people.partition(), key=len), key=str)
    entity = str(people.entity_of(group[0]))
    client_id, _ = http.client_and_token("data_steward")

    assert http.steward("GET", f"/v1/identity/records/{group[0]}/entity", "req-read").status_code == 200
    read = only_entry(platform, "req-read", "identity.read", client_id)
    assert set(read.subjects) == {entity, *(str(r) for r in group)}
    assert read.details == {"records": len(group)}

    assert http.steward("GET", f"/v1/identity/entities/{entity}/explanation", "req-why").status_code == 200
    why = only_entry(platform, "req-why", "identity.explain", client_id)
    assert set(why.subjects) == {entity, *(str(r) for r in group)}

    pair = {"record_a": str(group[0]), "record_b": str(group[1])}
    answer = http.steward("GET", "/v1/identity/explanations", "req-pair", query_string=pair)
    assert answer.status_code == 200, answer.text
    assert set(only_entry(platform, "req-pair", "identity.explain", client_id).subjects) == set(pair.values())

    review = http.steward("GET", "/v1/identity/review", "req-review")
    assert review.status_code == 200, review.text
    entry = only_entry(platform, "req-review", "identity.review", client_id)
    assert entry.subjects == [] and entry.details == {"items": len(review.json["items"])}  # type: ignore[index]
