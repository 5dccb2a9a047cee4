"""Persistence of the authorization code grant on SQLite and PostgreSQL: codes, sign-ins (token
families) and refresh tokens kept as hashes and used once; the per-request token check in one
statement; pruning; and the registration rules of sign-in apps."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from cdp.access.clients import ClientRepository, check_redirect_uri
from cdp.access.grants import (
    REVOKED_REFRESH_REUSE,
    GrantStore,
    ResourceOwner,
    current_owner,
    family_id_for_code,
    parse_principal,
    token_hash,
)
from cdp.access.roles import PolicyError
from cdp.access.tokens import TokenRegistry, token_usable
from cdp.access.users import UserRepository
from cdp.db.models import (
    OAuthAuthorizationCode,
    OAuthRefreshToken,
    OAuthTokenFamily,
    RevokedToken,
    SourceRecord,
    Subject,
)
from cdp.db.types import utcnow
from cdp.platform import Platform

CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def app_client(platform: Platform, audience: str = "staff", *, public: bool = False) -> str:
    with platform.db.transaction() as session:
        client, _ = ClientRepository(session).create(
            name="app",
            role=audience,
            scopes=["sources:read"] if audience == "staff" else ["self:read"],
            grant="authorization_code",
            redirect_uris=["https://app.example/cb"],
            public=public,
        )
    return client.client_id


def staff_user(platform: Platform, username: str = "alice") -> uuid.UUID:
    with platform.db.transaction() as session:
        user, _ = UserRepository(session, platform.vault, platform.settings).create(
            username=username,
            password="correct horse battery staple",
            role="support_agent",
            scopes=["sources:read"],
        )
    return user.id


def save_code(
    platform: Platform, client_id: str, principal: str, code: str = "c" * 43, ttl: int = 60
) -> None:
    with platform.db.transaction() as session:
        GrantStore(session).save_code(
            code,
            client_id=client_id,
            principal=principal,
            redirect_uri="https://app.example/cb",
            scope="sources:read",
            code_challenge=CHALLENGE,
            code_challenge_method="S256",
            ttl_seconds=ttl,
        )


def start_family(
    platform: Platform, client_id: str, principal: str, ttl: int = 3600
) -> tuple[uuid.UUID, str]:
    with platform.db.transaction() as session:
        store = GrantStore(session)
        family = store.start_family(
            family_id=uuid.uuid4(),
            client_id=client_id,
            principal=principal,
            scope="sources:read",
            ttl_seconds=ttl,
        )
        return family.id, store.issue_refresh_token(family)


@contextmanager
def statements(platform: Platform) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA", "SELECT 1")):
            seen.append(statement)

    event.listen(platform.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(platform.db.engine, "before_cursor_execute", record)


# -- codes --------------------------------------------------------------------------------------------


def test_a_code_is_stored_as_a_hash_and_consumed_once(platform: Platform) -> None:
    client_id = app_client(platform)
    code = "k" * 43
    save_code(platform, client_id, "user:" + str(uuid.uuid4()), code)
    with platform.db.read() as session:
        row = session.execute(select(OAuthAuthorizationCode)).scalar_one()
        stored = GrantStore(session).find_code(code)
    assert row.code_hash == token_hash(code) and code.encode() not in row.code_hash
    assert stored is not None and stored.used_at is None and not stored.is_expired()
    assert stored.get_redirect_uri() == "https://app.example/cb" and stored.get_scope() == "sources:read"
    assert stored.family_id == family_id_for_code(row.code_hash)
    with platform.db.transaction() as session:
        assert GrantStore(session).consume_code(stored) is True
    with platform.db.transaction() as session:
        assert GrantStore(session).consume_code(stored) is False
    with platform.db.read() as session:
        again = GrantStore(session).find_code(code)
    assert again is not None and again.used_at is not None
    with platform.db.read() as session:
        assert GrantStore(session).find_code("x" * 43) is None


def test_concurrent_redemptions_of_one_code_or_refresh_token_succeed_once(platform: Platform) -> None:
    client_id = app_client(platform)
    save_code(platform, client_id, "user:" + str(uuid.uuid4()), "r" * 43)
    _, refresh_token = start_family(platform, client_id, "user:" + str(uuid.uuid4()))
    with platform.db.read() as session:
        code = GrantStore(session).find_code("r" * 43)
        token = GrantStore(session).find_refresh_token(refresh_token)
    assert code is not None and token is not None
    barrier = threading.Barrier(6)

    def redeem(kind: str) -> bool:
        barrier.wait()
        with platform.db.transaction() as session:
            store = GrantStore(session)
            return store.consume_code(code) if kind == "code" else store.use_refresh_token(token)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(redeem, ["code", "refresh"] * 3))
    assert sum(results[0::2]) == 1 and sum(results[1::2]) == 1


def test_only_s256_challenges_are_stored(platform: Platform) -> None:
    with platform.db.transaction() as session, pytest.raises(ValueError, match="S256"):
        GrantStore(session).save_code(
            "c" * 43,
            client_id="cdp-x",
            principal="user:x",
            redirect_uri="https://app.example/cb",
            scope="sources:read",
            code_challenge=CHALLENGE,
            code_challenge_method="plain",
            ttl_seconds=60,
        )


def test_the_family_id_of_a_code_is_stable_and_reveals_nothing_of_the_code() -> None:
    digest = token_hash("c" * 43)
    assert family_id_for_code(digest) == family_id_for_code(digest)
    assert family_id_for_code(digest) != family_id_for_code(token_hash("d" * 43))
    assert family_id_for_code(digest).bytes not in digest and family_id_for_code(digest).version == 4


# -- families and refresh tokens ----------------------------------------------------------------------


def test_refresh_tokens_rotate_once_and_revoking_the_family_covers_them(platform: Platform) -> None:
    client_id = app_client(platform)
    family_id, token = start_family(platform, client_id, "user:" + str(uuid.uuid4()))
    with platform.db.read() as session:
        stored = GrantStore(session).find_refresh_token(token)
    assert stored is not None and stored.usable and stored.get_scope() == "sources:read"
    assert stored.family.id == family_id and stored.expires_at == stored.family.expires_at
    with platform.db.transaction() as session:
        assert GrantStore(session).use_refresh_token(stored) is True
        assert GrantStore(session).use_refresh_token(stored) is False
    with platform.db.transaction() as session:
        store = GrantStore(session)
        assert store.revoke_family(family_id, REVOKED_REFRESH_REUSE) is True
        assert store.revoke_family(family_id, "revoked") is False  # the first reason stays
    with platform.db.read() as session:
        family = GrantStore(session).family(family_id)
        found = GrantStore(session).find_refresh_token(token)
    assert family is not None and family.revoked_reason == REVOKED_REFRESH_REUSE and not family.usable
    assert found is not None and not found.usable


def test_revoke_principal_ends_every_sign_in_of_one_person(platform: Platform) -> None:
    client_id = app_client(platform)
    person, other = "user:" + str(uuid.uuid4()), "user:" + str(uuid.uuid4())
    mine = [start_family(platform, client_id, person)[0] for _ in range(2)]
    theirs, _ = start_family(platform, client_id, other)
    with platform.db.transaction() as session:
        assert GrantStore(session).revoke_principal(person) == 2
    with platform.db.read() as session:
        store = GrantStore(session)
        assert all(not store.family(f).usable for f in mine)  # type: ignore[union-attr]
        assert store.family(theirs).usable  # type: ignore[union-attr]


def test_the_current_owner_follows_the_account(platform: Platform) -> None:
    user_id = staff_user(platform)
    with platform.db.read() as session:
        owner = current_owner(session, f"user:{user_id}")
    assert owner == ResourceOwner.staff(user_id, "support_agent", None, frozenset({"sources:read"}))
    with platform.db.transaction() as session:
        UserRepository(session, platform.vault, platform.settings).disable("alice")
    with platform.db.read() as session:
        assert current_owner(session, f"user:{user_id}") is None
        assert current_owner(session, f"user:{uuid.uuid4()}") is None
        assert current_owner(session, f"customer:{uuid.uuid4()}") is None
        assert current_owner(session, "cdp-some-client") is None


def test_a_customer_owner_exists_while_their_record_can_be_read(platform: Platform, tmp_path: Any) -> None:
    from datetime import date

    from cdp.sources.ingest import IngestService
    from tests.sources.test_ingest import CRM_HEADER, CRM_MAPPING, CRM_ROWS

    service = IngestService(platform.db, platform.vault, today=date(2026, 3, 1), resolve=False)
    service.register_source(CRM_MAPPING)
    path = tmp_path / "crm.csv"
    path.write_text(CRM_HEADER + CRM_ROWS[0], encoding="utf-8")
    service.ingest_file("crm", path)
    with platform.db.read() as session:
        record_id, subject_id = session.execute(select(SourceRecord.id, SourceRecord.subject_id)).one()
        owner = current_owner(session, f"customer:{record_id}")
    assert owner == ResourceOwner.customer(record_id)
    assert owner.role == "customer" and owner.scopes == {"self:read", "self:write"}
    with platform.db.transaction() as session:  # crypto-shredded: erased people sign in no more
        session.execute(update(Subject).where(Subject.id == subject_id).values(wrapped_key=None))
    with platform.db.read() as session:
        assert current_owner(session, f"customer:{record_id}") is None


def test_principals_parse_strictly() -> None:
    ident = uuid.uuid4()
    assert parse_principal(f"user:{ident}") == ("user", ident)
    assert parse_principal(f"customer:{ident}") == ("customer", ident)
    for bad in ("cdp-abc", "user:", "user:not-a-uuid", f"admin:{ident}", str(ident)):
        assert parse_principal(bad) is None


# -- the per-request check ----------------------------------------------------------------------------


class _DriverRecorder:
    """A connection whose DBAPI cursors record each statement they run: the check runs on the driver,
    below SQLAlchemy's events."""

    def __init__(self, connection: Any, seen: list[str]) -> None:
        self.dialect = connection.dialect
        self.connection = self
        self._dbapi = connection.connection
        self._seen = seen

    def cursor(self) -> Any:
        cursor = self._dbapi.cursor()
        seen = self._seen

        class _Recording:
            def execute(self, sql: str, *args: Any) -> Any:
                seen.append(sql)
                return cursor.execute(sql, *args)

            def __getattr__(self, name: str) -> Any:
                return getattr(cursor, name)

        return _Recording()


def test_token_usable_checks_jti_client_user_and_sign_in_in_one_statement(platform: Platform) -> None:
    client_id = app_client(platform)
    user_id = staff_user(platform)
    family_id, _ = start_family(platform, client_id, f"user:{user_id}")

    def usable(jti: str = "j1", client: str = client_id, **kwargs: Any) -> bool:
        with platform.db.connect() as connection:
            return token_usable(connection, jti, client, **kwargs)

    on_driver: list[str] = []
    with statements(platform) as through_sqlalchemy, platform.db.connect() as connection:
        assert token_usable(
            _DriverRecorder(connection, on_driver), "j1", client_id, user_id=user_id, family_id=family_id
        )
    assert through_sqlalchemy == [] and len(on_driver) == 1, (through_sqlalchemy, on_driver)
    assert not usable(user_id=uuid.uuid4(), family_id=family_id)  # unknown user
    assert not usable(user_id=user_id, family_id=uuid.uuid4())  # unknown (e.g. pruned) sign-in
    assert not usable(client="cdp-nobody", user_id=user_id, family_id=family_id)

    with platform.db.transaction() as session:
        TokenRegistry(session).revoke("j1", client_id, utcnow() + timedelta(minutes=5))
    assert not usable(user_id=user_id, family_id=family_id)
    assert usable("j2", user_id=user_id, family_id=family_id)

    with platform.db.transaction() as session:
        GrantStore(session).revoke_family(family_id, "revoked")
    assert not usable("j2", user_id=user_id, family_id=family_id)
    assert usable("j2", user_id=user_id)  # a token without sid is unaffected (clients' tokens)

    with platform.db.transaction() as session:
        UserRepository(session, platform.vault, platform.settings).disable("alice")
    assert not usable("j2", user_id=user_id)
    assert usable("j2")

    with platform.db.transaction() as session:
        ClientRepository(session).disable(client_id)
    assert not usable("j2")


# -- pruning ------------------------------------------------------------------------------------------


def test_prune_deletes_expired_codes_sign_ins_refresh_tokens_and_revocations(platform: Platform) -> None:
    client_id = app_client(platform)
    save_code(platform, client_id, "user:a", "a" * 43)
    save_code(platform, client_id, "user:b", "b" * 43)
    old_family, _ = start_family(platform, client_id, "user:a")
    live_family, _ = start_family(platform, client_id, "user:b")
    with platform.db.transaction() as session:
        past = utcnow() - timedelta(seconds=1)
        session.execute(
            update(OAuthAuthorizationCode)
            .where(OAuthAuthorizationCode.code_hash == token_hash("a" * 43))
            .values(expires_at=past)
        )
        session.execute(
            update(OAuthTokenFamily).where(OAuthTokenFamily.id == old_family).values(expires_at=past)
        )
        registry = TokenRegistry(session)
        registry.revoke("old", client_id, past)
        registry.revoke("new", client_id, utcnow() + timedelta(minutes=5))
    with platform.db.transaction() as session:
        counts = TokenRegistry(session).prune()
    assert counts == {"revoked_tokens": 1, "authorization_codes": 1, "refresh_tokens": 1, "token_families": 1}
    with platform.db.read() as session:
        assert session.execute(select(func.count()).select_from(OAuthAuthorizationCode)).scalar_one() == 1
        assert list(session.execute(select(OAuthTokenFamily.id)).scalars()) == [live_family]
        assert list(session.execute(select(OAuthRefreshToken.family_id)).scalars()) == [live_family]
        assert list(session.execute(select(RevokedToken.jti)).scalars()) == ["new"]
    with platform.db.transaction() as session:
        assert sum(TokenRegistry(session).prune().values()) == 0


# -- registering sign-in apps -------------------------------------------------------------------------


def test_sign_in_apps_are_registered_for_an_audience(platform: Platform) -> None:
    with platform.db.transaction() as session:
        repo = ClientRepository(session)
        staff_app, secret = repo.create(
            name="back office",
            role="staff",
            scopes=["profiles:read", "audit:read"],
            grant="authorization_code",
            redirect_uris=["https://office.example/cb", "http://127.0.0.1:8765/cb"],
        )
        portal, no_secret = repo.create(
            name="privacy centre",
            role="customer",
            scopes=["self:read", "self:write"],
            grant="authorization_code",
            redirect_uris=["https://privacy.example/cb"],
            public=True,
        )
    assert secret and no_secret is None
    assert staff_app.audience == "staff" and not staff_app.public and staff_app.client_type == "confidential"
    assert staff_app.redirect_uris == ("https://office.example/cb", "http://127.0.0.1:8765/cb")
    assert staff_app.grant_types == {"authorization_code", "refresh_token"}
    assert portal.public and portal.audience == "customer" and portal.client_type == "public"
    with platform.db.read() as session:
        stored = ClientRepository(session).with_secret_hash(portal.client_id)
    assert stored is not None and stored[1] is None and stored[0] == portal


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "support_agent"}, "audience"),
        ({"role": "customer", "scopes": ["profiles:read"]}, "may not hold"),
        ({"role": "staff", "scopes": ["self:read"]}, "may not hold"),
        ({"role": "staff", "scopes": []}, "at least one scope"),
        ({"role": "staff", "department": "sales"}, "no department"),
        ({"redirect_uris": []}, "at least one redirect URI"),
        ({"redirect_uris": ["http://app.example/cb"]}, "loopback"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "fragment"),
        ({"redirect_uris": ["/relative/cb"]}, "absolute"),
        ({"redirect_uris": ["https://user@app.example/cb"]}, "user information"),
        ({"redirect_uris": ["https://app.example/a b"]}, "without spaces"),
        ({"redirect_uris": [f"https://app.example/{i}" for i in range(11)]}, "at most"),
    ],
)
def test_sign_in_app_registration_rules(platform: Platform, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "name": "app",
        "role": "staff",
        "scopes": ["sources:read"],
        "grant": "authorization_code",
        "redirect_uris": ["https://app.example/cb"],
        **kwargs,
    }
    with platform.db.transaction() as session, pytest.raises(PolicyError, match=message):
        ClientRepository(session).create(**arguments)


def test_machine_clients_stay_confidential_and_have_no_redirect_uris(platform: Platform) -> None:
    with platform.db.transaction() as session:
        repo = ClientRepository(session)
        with pytest.raises(PolicyError, match="confidential"):
            repo.create(
                name="job", role="support_agent", scopes=["ingest"], grant="client_credentials", public=True
            )
        with pytest.raises(PolicyError, match="no redirect"):
            repo.create(
                name="job",
                role="support_agent",
                scopes=["ingest"],
                grant="client_credentials",
                redirect_uris=["https://app.example/cb"],
            )
        with pytest.raises(PolicyError, match="cannot use"):
            repo.create(name="job", role="staff", scopes=["ingest"], grant="client_credentials")
        machine, secret = repo.create(
            name="job", role="support_agent", scopes=["ingest"], grant="client_credentials"
        )
    assert secret and machine.audience is None and machine.redirect_uris == () and not machine.public


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "https://app.example:8443/cb?tenant=1",
        "http://127.0.0.1:9/cb",
        "http://[::1]/cb",
        "http://localhost:3000/cb",
    ],
)
def test_good_redirect_uris(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "https:///cb",
        "ftp://app.example/cb",
        "https://app.example:99999/cb",
        "https://app;evil.example/cb",
        'https://app.example/"',
        "http://10.0.0.1/cb",
        "https://app.example/\u00e9",
    ],
)
def test_bad_redirect_uris(uri: str) -> None:
    with pytest.raises(PolicyError):
        check_redirect_uri(uri)
