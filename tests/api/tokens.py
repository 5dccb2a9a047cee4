"""Access tokens for tests that need a signed-in customer without driving the browser sign-in."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable

from flask.testing import FlaskClient
from joserfc import jwt

from cdp.access.clients import ClientRepository
from cdp.access.grants import GrantStore
from cdp.access.roles import ROLE_SCOPES
from cdp.platform import Platform
from cdp.vault.signing import ALG, SigningKeys


def customer_token(platform: Platform, record_id: uuid.UUID) -> str:
    """A signed-in customer's token (``self:read self:write``): a sign-in of a customer app, signed by
    the server's own key as the authorization code grant would issue it."""
    scope = "self:read self:write"
    with platform.db.transaction() as session:
        app_client, _ = ClientRepository(session).create(
            name="privacy centre",
            role="customer",
            scopes=scope.split(),
            grant="authorization_code",
            redirect_uris=["http://127.0.0.1:9/callback"],
            public=True,
        )
        family_id = uuid.uuid4()
        GrantStore(session).start_family(
            family_id=family_id,
            client_id=app_client.client_id,
            principal=f"customer:{record_id}",
            scope=scope,
            ttl_seconds=600,
        )
        material = SigningKeys(session, platform.vault).active()
    now = int(time.time())
    claims = {
        "iss": platform.settings.issuer,
        "sub": f"customer:{record_id}",
        "aud": platform.settings.api_audience,
        "client_id": app_client.client_id,
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
        "scope": scope,
        "roles": ["customer"],
        "sid": str(family_id),
    }
    return jwt.encode({"alg": ALG, "typ": "at+jwt", "kid": material.kid}, claims, material.private_key)


def service_token(
    platform: Platform,
    client: FlaskClient,
    role: str,
    *,
    department: str | None = None,
    scopes: Iterable[str] | None = None,
    name: str | None = None,
) -> str:
    """A department service's token, issued for real: a client-credentials client with ``role`` (and by
    default every scope the role may hold) is registered, and ``/oauth/token`` is asked for its token."""
    with platform.db.transaction() as session:
        registered, secret = ClientRepository(session).create(
            name=name or f"{role} client",
            role=role,
            department=department,
            scopes=ROLE_SCOPES[role] if scopes is None else scopes,
            grant="client_credentials",
        )
    answer = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(registered.client_id, str(secret))
    )
    assert answer.status_code == 200, answer.get_json()
    return str(answer.get_json()["access_token"])
