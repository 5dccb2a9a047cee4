"""The OAuth 2 authorization server (Authlib) and the resource protector for the API.

* ``POST /oauth/token`` — client credentials (RFC 6749 §4.4), client authenticated with
  ``client_secret_basic`` or ``client_secret_post``; issues RFC 9068 JWT access tokens signed ES256.
* ``POST /oauth/revoke`` (RFC 7009) and ``POST /oauth/introspect`` (RFC 7662), client-authenticated.
* ``GET /.well-known/oauth-authorization-server`` (RFC 8414) and ``GET /oauth/jwks.json``.

Tokens are short-lived (``access_token_ttl_seconds``). Every protected request verifies the signature
(ES256 only — ``none`` and HMAC algorithms are refused), ``typ`` ``at+jwt``, issuer, audience, expiry, then
checks that the token is not revoked and its client is not disabled, so both take effect immediately.
Errors follow RFC 6749/6750 (``invalid_token``, ``insufficient_scope`` with ``WWW-Authenticate``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jws import extract_compact

from api.context import current_platform
from cdp.access.clients import Client, ClientRepository, secret_matches
from cdp.access.roles import SCOPES
from cdp.access.tokens import TokenRegistry
from cdp.vault.signing import ALG, SigningKeys

P = ParamSpec("P")
R = TypeVar("R")

blp = Blueprint("oauth", __name__)
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


# -- clients ------------------------------------------------------------------------------------------


class OAuthClient(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a registered client."""

    def __init__(self, client: Client, secret_hash: bytes | None) -> None:
        self.client = client
        self._secret_hash = secret_hash

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(sorted(self.client.scopes))
        return " ".join(s for s in scope_to_list(scope) if s in self.client.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(self._secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.client.grant_types


def _query_client(client_id: str) -> OAuthClient | None:
    with current_platform().db.read() as session:
        found = ClientRepository(session).with_secret_hash(client_id)
    if found is None or not found[0].active:
        return None
    return OAuthClient(*found)


def _save_token(token: dict[str, Any], request: Any) -> None:
    """JWT access tokens are self-contained; nothing to store (client credentials issue no refresh)."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = set(scope_to_list(self.request.payload.scope) or [])
        if requested - self.request.client.client.scopes:
            raise InvalidScopeError()


# -- signing ------------------------------------------------------------------------------------------


@dataclass
class _KeyCache:
    """Signing and verification keys, reloaded at most every few seconds (rotation is rare; a
    verification miss on an unknown ``kid`` forces a reload)."""

    loaded_at: float = 0.0
    signer_kid: str = ""
    signer: ECKey | None = None
    public: KeySet | None = None

    def refresh(self, force: bool = False) -> None:
        if not force and self.signer is not None and time.monotonic() - self.loaded_at < 5:
            return
        platform = current_platform()
        ttl = timedelta(seconds=platform.settings.access_token_ttl_seconds)
        with platform.db.transaction() as session:
            keys = SigningKeys(session, platform.vault)
            material = keys.active()
            published = keys.published(ttl)
        self.signer_kid, self.signer = material.kid, material.private_key
        self.public = KeySet.import_key_set({"keys": published})
        self.loaded_at = time.monotonic()


def _keys() -> _KeyCache:
    cache = current_app.extensions.setdefault("cdp_signing_keys", _KeyCache())
    assert isinstance(cache, _KeyCache)
    return cache


class JWTAccessTokenGenerator(BearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 access tokens: ``typ: at+jwt``, ES256, with the client's role and department."""

    def __init__(self) -> None:
        super().__init__(self._access_token, None, self._expires_in)

    @staticmethod
    def _expires_in(client: OAuthClient, grant_type: str) -> int:
        return current_platform().settings.access_token_ttl_seconds

    @staticmethod
    def _access_token(client: OAuthClient, grant_type: str, user: Any, scope: str) -> str:
        settings = current_platform().settings
        keys = _keys()
        keys.refresh()
        now = int(time.time())
        claims = {
            "iss": settings.issuer,
            "sub": client.client.client_id,
            "aud": settings.api_audience,
            "client_id": client.client.client_id,
            "iat": now,
            "exp": now + settings.access_token_ttl_seconds,
            "jti": secrets.token_urlsafe(16),
            "scope": scope,
            "roles": [client.client.role],
        }
        if client.client.department:
            claims["department"] = client.client.department
        header = {"alg": ALG, "typ": "at+jwt", "kid": keys.signer_kid}
        assert keys.signer is not None
        return jwt.encode(header, claims, keys.signer, algorithms=[ALG])


# -- verification -------------------------------------------------------------------------------------


class TokenRejected(Exception):
    """A bearer token that must not be honoured; the message is a safe RFC 6750 description."""


@dataclass(frozen=True)
class Principal:
    client_id: str
    subject: str
    roles: tuple[str, ...]
    department: str | None
    scopes: frozenset[str]
    jti: str
    expires_at: datetime

    # Authlib's introspection endpoint asks the token object these two questions.
    def is_expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)

    def is_revoked(self) -> bool:
        return False  # verify_access_token has already refused revoked tokens


def verify_access_token(token: str, *, check_usable: bool = True) -> Principal:
    platform = current_platform()
    settings = platform.settings
    keys = _keys()
    keys.refresh()
    try:
        header_kid = extract_compact(token.encode("ascii")).protected.get("kid")
    except (JoseError, ValueError, UnicodeEncodeError):
        raise TokenRejected("The access token is malformed") from None
    assert keys.public is not None
    if header_kid not in {k.kid for k in keys.public.keys}:
        keys.refresh(force=True)
    try:
        decoded = jwt.decode(token, keys.public, algorithms=[ALG])
    except (JoseError, ValueError):
        raise TokenRejected("The access token is invalid") from None
    if decoded.header.get("typ") != "at+jwt":
        raise TokenRejected("The token is not an access token")
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": settings.issuer},
        aud={"essential": True, "value": settings.api_audience},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
        sub={"essential": True},
        client_id={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError:
        raise TokenRejected("The access token is expired or not meant for this API") from None
    claims = decoded.claims
    if check_usable:
        with platform.db.read() as session:
            if not TokenRegistry(session).is_usable(claims["jti"], claims["client_id"]):
                raise TokenRejected("The access token was revoked or its client disabled")
    return Principal(
        client_id=claims["client_id"],
        subject=claims["sub"],
        roles=tuple(claims.get("roles", ())),
        department=claims.get("department"),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        jti=claims["jti"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )


def _bearer_error(status: int, error: str, description: str, scope: str | None = None) -> Response:
    challenge = f'Bearer realm="cdp", error="{error}", error_description="{description}"'
    if scope:
        challenge += f', scope="{scope}"'
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["WWW-Authenticate"] = challenge
    return response


def require_scope(scope: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Protect a view: a valid, unrevoked access token of an enabled client holding ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorator(view: Callable[P, R]) -> Callable[P, R | Response]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            header = request.headers.get("Authorization", "")
            kind, _, token = header.partition(" ")
            if kind.lower() != "bearer" or not token.strip():
                response = _bearer_error(401, "invalid_request", "Bearer access token required")
                response.headers["WWW-Authenticate"] = 'Bearer realm="cdp"'
                return response
            try:
                principal = verify_access_token(token.strip())
            except TokenRejected as exc:
                return _bearer_error(401, "invalid_token", str(exc))
            if scope not in principal.scopes:
                return _bearer_error(
                    403, "insufficient_scope", f"This request needs the {scope} scope", scope
                )
            g.principal = principal
            return view(*args, **kwargs)

        return wrapper

    return decorator


def current_principal() -> Principal:
    principal = g.get("principal")
    assert isinstance(principal, Principal), "view is not protected by require_scope"
    return principal


# -- revocation and introspection ---------------------------------------------------------------------


class JWTRevocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Principal | None:
        try:
            return verify_access_token(token_string, check_usable=False)
        except TokenRejected:
            return None

    def authenticate_token(self, request: Any, client: OAuthClient) -> Principal | None:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        # RFC 7009 §2.1: a client may only revoke its own tokens; others are silently ignored.
        if token is not None and token.client_id == client.get_client_id():
            return token
        return None

    def revoke_token(self, token: Principal, request: Any) -> None:
        with current_platform().db.transaction() as session:
            TokenRegistry(session).revoke(token.jti, token.client_id, token.expires_at)


class JWTIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Principal | None:
        try:
            return verify_access_token(token_string)
        except TokenRejected:
            return None

    def check_permission(self, token: Principal, client: OAuthClient, request: Any) -> bool:
        # A client may introspect its own tokens; auditors' clients may introspect any.
        return token.client_id == client.get_client_id() or "audit:read" in client.client.scopes

    def introspect_token(self, token: Principal) -> dict[str, Any]:
        settings = current_platform().settings
        return {
            "active": True,
            "client_id": token.client_id,
            "sub": token.subject,
            "scope": " ".join(sorted(token.scopes)),
            "token_type": "Bearer",
            "exp": int(token.expires_at.timestamp()),
            "iss": settings.issuer,
            "aud": settings.api_audience,
            "jti": token.jti,
            "roles": list(token.roles),
            **({"department": token.department} if token.department else {}),
        }


# -- wiring -------------------------------------------------------------------------------------------


def create_authorization_server(app: Flask) -> AuthorizationServer:
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", sorted(SCOPES))
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator("default", JWTAccessTokenGenerator())
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(JWTRevocation)
    server.register_endpoint(JWTIntrospection)
    app.extensions["cdp_oauth_server"] = server
    return server


def _server() -> AuthorizationServer:
    server = current_app.extensions["cdp_oauth_server"]
    assert isinstance(server, AuthorizationServer)
    return server


@blp.post("/oauth/token")
def issue_token() -> ResponseReturnValue:
    return _server().create_token_response()  # type: ignore[no-any-return]


@blp.post("/oauth/revoke")
def revoke_token() -> ResponseReturnValue:
    return _server().create_endpoint_response(JWTRevocation.ENDPOINT_NAME)  # type: ignore[no-any-return]


@blp.post("/oauth/introspect")
def introspect_token() -> ResponseReturnValue:
    return _server().create_endpoint_response(JWTIntrospection.ENDPOINT_NAME)  # type: ignore[no-any-return]


@blp.get("/oauth/jwks.json")
def jwks() -> ResponseReturnValue:
    keys = _keys()
    keys.refresh()
    assert keys.public is not None
    response = jsonify(keys.public.as_dict(private=False))
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@blp.get("/.well-known/oauth-authorization-server")
def metadata() -> ResponseReturnValue:
    issuer = current_platform().settings.issuer
    return jsonify(
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/oauth/jwks.json",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": sorted(SCOPES),
        }
    )
