"""Stored exports, on SQLite and PostgreSQL: encrypted at rest under a key of their own, fetched exactly
once by a secret token, then crypto-shredded; unknown, expired and used tokens are refused alike, and the
expiry job shreds what nobody fetched — and nothing else."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cdp.access.gate import AccessGate, Actor
from cdp.access.policy import FieldPolicy
from cdp.db.models import AuditEntry, DsrRequest, ExportArchive, Subject
from cdp.db.types import utcnow
from cdp.dsr.archives import ArchiveStore, DownloadUnavailable, token_hash
from cdp.dsr.export import ExportBuilder, ExportBundle
from cdp.platform import Platform
from cdp.profiles.service import ProfileService
from tests.profiles.fixtures import seed_customers

CONTENT = b"PK-not-really-a-zip: Maria Garcia, maria.garcia@example.com, QQ123456C"
TTL = timedelta(hours=24)


def _bundle(content: bytes = CONTENT) -> ExportBundle:
    return ExportBundle(content, hashlib.sha256(content).hexdigest(), {})


def _request(platform: Platform, entity_id: uuid.UUID | None = None) -> uuid.UUID:
    request_id = uuid.uuid4()
    now = utcnow()
    with platform.db.transaction() as session:
        session.add(
            DsrRequest(
                id=request_id,
                kind="access",
                status="in_progress",
                entity_id=entity_id or uuid.uuid4(),
                record_id=uuid.uuid4(),
                channel="on_behalf",
                opened_by="user:dpo-1",
                received_at=now,
                due_at=now + timedelta(days=30),
                updated_at=now,
            )
        )
    return request_id


def _store(platform: Platform, request_id: uuid.UUID, bundle: ExportBundle | None = None,
           ttl: timedelta = TTL) -> tuple[uuid.UUID, str]:  # fmt: skip
    with platform.db.transaction() as session:
        return ArchiveStore(session, platform.vault).store(request_id, bundle or _bundle(), ttl=ttl)


def _redeem(platform: Platform, token: str, now: datetime | None = None) -> tuple[uuid.UUID, bytes]:
    with platform.db.transaction() as session:
        info, content = ArchiveStore(session, platform.vault).redeem(token, now=now)
    return info.id, content


def _row(platform: Platform, archive_id: uuid.UUID) -> tuple[ExportArchive, Subject]:
    with platform.db.read() as session:
        row = session.get(ExportArchive, archive_id)
        assert row is not None
        subject = session.get(Subject, row.subject_id)
        assert subject is not None
        session.expunge_all()
    return row, subject


def _refusal(platform: Platform, token: str, now: datetime | None = None) -> str:
    with pytest.raises(DownloadUnavailable) as caught:
        _redeem(platform, token, now)
    return str(caught.value)


def test_an_archive_is_stored_encrypted_and_only_the_tokens_hash_is_kept(platform: Platform) -> None:
    archive_id, token = _store(platform, _request(platform))
    row, subject = _row(platform, archive_id)
    assert row.enc_archive is not None and CONTENT not in row.enc_archive and b"Maria" not in row.enc_archive
    assert row.token_hash == hashlib.sha256(token.encode()).digest() == token_hash(token)
    assert token.encode() not in row.token_hash and len(token) >= 43
    assert row.size == len(CONTENT) and row.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert row.expires_at - row.created_at == TTL
    assert subject.wrapped_key is not None and row.downloaded_at is None


def test_a_token_redeems_once_and_then_the_archive_is_crypto_shredded(platform: Platform) -> None:
    request_id = _request(platform)
    archive_id, token = _store(platform, request_id)
    with platform.db.transaction() as session:
        info, content = ArchiveStore(session, platform.vault).redeem(token)
    assert content == CONTENT
    assert info.id == archive_id and info.request_id == request_id and info.downloaded_at is not None
    row, subject = _row(platform, archive_id)
    assert row.enc_archive is None and row.downloaded_at is not None
    assert subject.wrapped_key is None and subject.shredded_at is not None
    _refusal(platform, token)


def test_unknown_expired_and_used_tokens_are_refused_with_one_message(platform: Platform) -> None:
    _, used = _store(platform, _request(platform))
    _redeem(platform, used)
    _, expiring = _store(platform, _request(platform), ttl=timedelta(minutes=5))
    later = utcnow() + timedelta(minutes=6)
    messages = {
        _refusal(platform, used),
        _refusal(platform, expiring, now=later),
        _refusal(platform, "unknown-" + "x" * 35),
        _refusal(platform, ""),
        _refusal(platform, "x" * 10_000),
    }
    assert len(messages) == 1
    # The same link, redeemed before its expiry, works: only the time refused it above.
    assert _redeem(platform, expiring)[1] == CONTENT


def test_a_download_whose_transaction_rolls_back_leaves_the_link_usable(platform: Platform) -> None:
    archive_id, token = _store(platform, _request(platform))
    with pytest.raises(RuntimeError), platform.db.transaction() as session:
        ArchiveStore(session, platform.vault).redeem(token)
        raise RuntimeError("the response could not be sent")
    assert _row(platform, archive_id)[0].enc_archive is not None
    assert _redeem(platform, token)[1] == CONTENT


def test_two_concurrent_redemptions_hand_the_archive_out_once(platform: Platform) -> None:
    _, token = _store(platform, _request(platform))
    claimed = threading.Event()
    release = threading.Event()
    results: list[object] = []

    def first() -> None:
        with platform.db.transaction() as session:
            results.append(ArchiveStore(session, platform.vault).redeem(token)[1])
            claimed.set()
            release.wait(10)

    def second() -> None:
        claimed.wait(10)
        try:
            results.append(_redeem(platform, token)[1])
        except DownloadUnavailable as exc:
            results.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    claimed.wait(10)
    time.sleep(0.5)  # let the second redemption reach the database and wait on the first's lock
    release.set()
    for thread in threads:
        thread.join(20)
    assert results[0] == CONTENT
    assert len(results) == 2 and isinstance(results[1], DownloadUnavailable)


def test_expire_shreds_expired_undownloaded_archives_only(platform: Platform) -> None:
    expired_id, expired_token = _store(platform, _request(platform), ttl=timedelta(minutes=5))
    live_id, live_token = _store(platform, _request(platform), ttl=timedelta(days=2))
    downloaded_id, downloaded_token = _store(platform, _request(platform), ttl=timedelta(minutes=5))
    _redeem(platform, downloaded_token)
    later = utcnow() + timedelta(hours=1)
    with platform.db.transaction() as session:
        assert ArchiveStore(session, platform.vault).expire(now=later) == 1
    with platform.db.transaction() as session:
        assert ArchiveStore(session, platform.vault).expire(now=later) == 0  # idempotent
    expired, expired_subject = _row(platform, expired_id)
    assert expired.enc_archive is None and expired_subject.wrapped_key is None
    assert expired.downloaded_at is None
    downloaded, _ = _row(platform, downloaded_id)
    assert downloaded.downloaded_at is not None and downloaded.downloaded_at < later
    live, live_subject = _row(platform, live_id)
    assert live.enc_archive is not None and live_subject.wrapped_key is not None
    _refusal(platform, expired_token)
    assert _redeem(platform, live_token, now=later)[1] == CONTENT


def test_a_download_is_audited_with_ids_only(platform: Platform) -> None:
    entity_id = uuid.uuid4()
    request_id = _request(platform, entity_id)
    archive_id, token = _store(platform, request_id)
    _redeem(platform, token)
    with platform.db.read() as session:
        (entry,) = session.execute(
            select(AuditEntry).where(AuditEntry.action == "dsr.export.download")
        ).scalars()
    assert set(json.loads(entry.subjects)) == {str(entity_id), str(archive_id)}
    assert json.loads(entry.details)["request_id"] == str(request_id)
    assert token not in entry.details + entry.subjects and "Maria" not in entry.details


def test_a_real_export_survives_the_round_trip(platform: Platform, tmp_path: Path) -> None:
    customers = seed_customers(platform, tmp_path)
    profiles = ProfileService(platform.db, platform.vault, AccessGate(FieldPolicy.default()))
    bundle = ExportBuilder(platform.db, platform.vault, profiles).build(
        Actor("user:dpo", "dpo"), customers.maria
    )
    _, token = _store(platform, _request(platform, customers.maria), bundle)
    _, content = _redeem(platform, token, now=datetime.now(UTC))
    assert content == bundle.content
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(content)).read("manifest.json"))
    assert manifest["customer_id"] == str(customers.maria) and manifest["counts"]["records"] == 2
