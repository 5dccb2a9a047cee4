"""``GET /v1/keys/status``: only auditors (``audit:read``) see the keys' status, the status tells the
truth about KEK versions, crypto-shredding and signing keys, the read is audited, and nothing secret —
no KEK, no blind-index key, no signing key's private or public half — is ever in the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from api import create_app
from cdp.audit import AuditService
from cdp.audit.queries import search
from cdp.config import Settings
from cdp.db.models import AuditSigningKey, SigningKey
from cdp.platform import Platform
from cdp.vault import rotation
from cdp.vault.subjects import SubjectStore
from tests.api.tokens import service_token

URL = "/v1/keys/status"


@dataclass
class KeysApi:
    platform: Platform
    client: FlaskClient
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: str) -> str:
        """A client-credentials token of a machine client with ``role`` and all the scopes it may hold."""
        if role not in self.tokens:
            department = "support" if role == "support_agent" else None
            self.tokens[role] = service_token(self.platform, self.client, role, department=department)
        return self.tokens[role]

    def status(self, role: str | None) -> tuple[int, dict[str, object]]:
        headers = {"Authorization": f"Bearer {self.token(role)}"} if role else {}
        answer = self.client.get(URL, headers=headers)
        return answer.status_code, answer.get_json()


@pytest.fixture
def keys_api(tmp_path: Path) -> Iterator[KeysApi]:
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp"))
    try:
        app = create_app(platform=platform)
        yield KeysApi(platform, app.test_client())
    finally:
        platform.close()


def test_without_a_token_the_status_is_refused_with_401(keys_api: KeysApi) -> None:
    status, body = keys_api.status(None)
    assert status == 401
    assert "keks" not in body


def test_a_role_without_audit_read_is_refused_with_403(keys_api: KeysApi) -> None:
    status, body = keys_api.status("support_agent")
    assert status == 403
    assert "keks" not in body


@pytest.mark.parametrize("role", ["compliance_officer", "dpo", "admin"])
def test_auditor_roles_read_the_status(keys_api: KeysApi, role: str) -> None:
    status, body = keys_api.status(role)
    assert status == 200, body
    assert body["active_kek_version"] == 1


def test_status_counts_data_keys_per_kek_shredded_subjects_and_names_the_signers(keys_api: KeysApi) -> None:
    platform = keys_api.platform
    with platform.db.transaction() as session:
        store = SubjectStore(session, platform.vault.keys)
        made = [store.create()[0] for _ in range(3)]
    with platform.db.transaction() as session:
        SubjectStore(session, platform.vault.keys).shred([made[0]])
    keys_api.token("compliance_officer")  # signs a token: the signing key exists from here on
    AuditService(platform.db, platform.vault, platform.settings.issuer).seal_and_checkpoint()
    expected = rotation.status(platform.db, platform.vault)

    status, body = keys_api.status("compliance_officer")

    assert status == 200, body
    assert body["keks"] == [
        {
            "version": 1,
            "state": "active",
            "active": True,
            "data_keys": expected.keks[0][2],
            "created_at": body["keks"][0]["created_at"],  # type: ignore[index]
        }
    ]
    assert body["shredded_subjects"] == expected.shredded_subjects >= 1
    assert body["pending_rewrap"] == 0 and body["rotation_in_progress"] is False
    with platform.db.read() as session:
        kids = list(session.execute(select(SigningKey.kid)).scalars())
        checkpoint_ids = list(session.execute(select(AuditSigningKey.key_id)).scalars())
    assert [key["kid"] for key in body["token_signing_keys"]] == kids  # type: ignore[union-attr]
    assert [key["key_id"] for key in body["checkpoint_signing_keys"]] == checkpoint_ids  # type: ignore[union-attr]
    assert all(key["signing"] for key in body["token_signing_keys"])  # type: ignore[union-attr]


def test_status_shows_a_rotation_in_progress_and_the_decrypt_only_kek(keys_api: KeysApi) -> None:
    platform = keys_api.platform
    with platform.db.transaction() as session:
        SubjectStore(session, platform.vault.keys).create()
    platform.vault.keks.create_version()  # a new active KEK; nothing rewrapped yet

    status, body = keys_api.status("dpo")

    assert status == 200, body
    states = {kek["version"]: (kek["state"], kek["active"]) for kek in body["keks"]}  # type: ignore[union-attr]
    assert states == {1: ("decrypt_only", False), 2: ("active", True)}
    assert body["active_kek_version"] == 2
    assert body["rotation_in_progress"] is True and body["pending_rewrap"] >= 1  # type: ignore[operator]


def test_reading_the_status_is_audited_once_as_key_status(keys_api: KeysApi) -> None:
    status, _ = keys_api.status("compliance_officer")
    assert status == 200
    entries = search(keys_api.platform.db, action="key.status", limit=10).items
    assert [(entry.outcome, entry.role) for entry in entries] == [("success", "compliance_officer")]
    assert entries[0].details["active_kek_version"] == 1


def test_the_answer_holds_no_key_material(keys_api: KeysApi) -> None:
    platform = keys_api.platform
    keys_api.token("compliance_officer")
    AuditService(platform.db, platform.vault, platform.settings.issuer).seal_and_checkpoint()
    keyring = json.loads(platform.settings.keyring_path.read_text())
    secrets = [kek["key"] for kek in keyring["keks"]] + [keyring["blind_index_key"]]
    with platform.db.read() as session:
        for jwk in session.execute(select(SigningKey.public_jwk)).scalars():
            parts = json.loads(jwk)
            secrets += [parts["x"], parts["y"]]
        secrets += list(session.execute(select(AuditSigningKey.public_key)).scalars())
    assert len(secrets) >= 5

    status, body = keys_api.status("compliance_officer")

    assert status == 200
    text = json.dumps(body)
    assert body["checkpoint_signing_keys"] and body["token_signing_keys"]
    assert not [secret for secret in secrets if secret in text]
    assert "PRIVATE KEY" not in text and "enc_private" not in text and '"key"' not in text
