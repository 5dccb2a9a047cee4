"""Web sessions: only a hash of the cookie secret and KEK-wrapped state are stored, a session follows its
sign-in (revoked family → no session), idles out, and a pending session's secret dies on activation."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from cdp.access.grants import GrantStore
from cdp.access.websessions import IDLE_TIMEOUT, PENDING_TTL, WebSessions, secret_hash
from cdp.db.models import WebSession
from cdp.db.types import utcnow
from cdp.platform import Platform

TOKEN = "eyJ-an-access-token-that-must-never-be-stored-in-the-clear"


def _family(platform: Platform) -> uuid.UUID:
    family_id = uuid.uuid4()
    with platform.db.transaction() as session:
        GrantStore(session).start_family(
            family_id=family_id,
            client_id="cdp-web",
            principal=f"customer:{uuid.uuid4()}",
            scope="self:read",
            ttl_seconds=3600,
        )
    return family_id


def _active(platform: Platform) -> tuple[str, uuid.UUID, uuid.UUID]:
    family_id = _family(platform)
    with platform.db.transaction() as session:
        sessions = WebSessions(session, platform.vault)
        pending_secret, session_id = sessions.start("privacy", {"verifier": "v", "state": "s"})
        pending = sessions.find("privacy", pending_secret)
        assert pending is not None and pending.pending
        secret = sessions.activate(
            pending,
            family_id=family_id,
            principal="customer:x",
            expires_at=utcnow() + timedelta(hours=1),
            state={"access_token": TOKEN},
        )
    return secret, session_id, family_id


def test_only_the_secret_hash_and_wrapped_state_are_stored(platform: Platform) -> None:
    secret, session_id, _ = _active(platform)
    with platform.db.read() as session:
        row = session.get(WebSession, session_id)
        assert row is not None
        assert row.secret_hash == secret_hash(secret) and secret.encode() not in row.secret_hash
        assert TOKEN.encode() not in row.enc_state
        found = WebSessions(session, platform.vault).find("privacy", secret)
    assert found is not None and found.state == {"access_token": TOKEN} and not found.pending


def test_activation_replaces_the_pending_secret(platform: Platform) -> None:
    with platform.db.transaction() as session:
        sessions = WebSessions(session, platform.vault)
        pending_secret, _ = sessions.start("privacy", {"state": "s"})
        pending = sessions.find("privacy", pending_secret)
        assert pending is not None
        secret = sessions.activate(
            pending,
            family_id=_family_in(session),
            principal="customer:x",
            expires_at=utcnow() + timedelta(hours=1),
            state={},
        )
        assert secret != pending_secret
        assert sessions.find("privacy", pending_secret) is None
        assert sessions.find("privacy", secret) is not None


def _family_in(session: object) -> uuid.UUID:
    family_id = uuid.uuid4()
    GrantStore(session).start_family(  # type: ignore[arg-type]
        family_id=family_id, client_id="cdp-web", principal="customer:x", scope="self:read", ttl_seconds=600
    )
    return family_id


def test_a_session_is_bound_to_its_app(platform: Platform) -> None:
    secret, _, _ = _active(platform)
    with platform.db.read() as session:
        assert WebSessions(session, platform.vault).find("console", secret) is None


def test_revoking_the_sign_in_ends_the_session(platform: Platform) -> None:
    secret, _, family_id = _active(platform)
    with platform.db.transaction() as session:
        GrantStore(session).revoke_family(family_id, "sign_out")
    with platform.db.read() as session:
        assert WebSessions(session, platform.vault).find("privacy", secret) is None


def test_an_idle_session_ends_and_is_purged(platform: Platform) -> None:
    secret, session_id, _ = _active(platform)
    later = utcnow() + IDLE_TIMEOUT + timedelta(seconds=1)
    with platform.db.transaction() as session:
        sessions = WebSessions(session, platform.vault)
        assert sessions.find("privacy", secret, now=later) is None
        assert sessions.purge(now=later) == 1
        assert session.get(WebSession, session_id) is None


def test_a_pending_session_expires_quickly(platform: Platform) -> None:
    with platform.db.transaction() as session:
        sessions = WebSessions(session, platform.vault)
        secret, _ = sessions.start("staff", {})
        assert sessions.find("staff", secret, now=utcnow() + PENDING_TTL + timedelta(seconds=1)) is None


def test_state_copied_to_another_row_does_not_open(platform: Platform) -> None:
    secret_a, id_a, _ = _active(platform)
    secret_b, id_b, _ = _active(platform)
    with platform.db.transaction() as session:
        blob = session.execute(select(WebSession.enc_state).where(WebSession.id == id_a)).scalar_one()
        session.execute(update(WebSession).where(WebSession.id == id_b).values(enc_state=blob))
    with platform.db.read() as session:
        sessions = WebSessions(session, platform.vault)
        assert sessions.find("privacy", secret_b) is None
        assert sessions.find("privacy", secret_a) is not None


def test_ending_every_session_of_a_principal(platform: Platform) -> None:
    _active(platform)
    _active(platform)
    with platform.db.transaction() as session:
        assert WebSessions(session, platform.vault).end_principal("customer:x") == 2


def test_finding_without_touch_leaves_the_row_and_says_when_a_touch_is_due(platform: Platform) -> None:
    secret, session_id, _ = _active(platform)
    later = utcnow() + timedelta(minutes=5)
    with platform.db.transaction() as session:
        sessions = WebSessions(session, platform.vault)
        found = sessions.find("privacy", secret, now=later, touch=False)
        assert found is not None and found.touch_due
        row = session.get(WebSession, session_id)
        assert row is not None and row.last_seen_at < later
        sessions.touch(session_id, now=later)
        assert row.last_seen_at == later
        again = sessions.find("privacy", secret, now=later + timedelta(seconds=1), touch=False)
        assert again is not None and not again.touch_due
