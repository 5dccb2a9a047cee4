"""The OAuth 2 authorization server (Authlib) and the resource protector for the API.

Endpoints (the sign-in pages of ``/oauth/authorize`` live in :mod:`api.signin`):

* ``POST /oauth/token`` —
  - ``client_credentials`` (RFC 6749 §4.4) for machine clients, authenticated with
    ``client_secret_basic`` or ``client_secret_post``;
  - ``authorization_code`` (§4.1) with PKCE (RFC 7636), ``S256`` only and required of every client,
    public or confidential (RFC 9700 §2.1.1). Confidential clients authenticate as above, public ones
    with ``none`` (client id only — PKCE is what binds the code to them). A code is single use and
    short-lived (``authorization_code_ttl_seconds``); a second use fails and revokes the sign-in issued
    from it (§4.1.2);
  - ``refresh_token`` (§6) with rotation (RFC 9700 §4.14.2): every refresh marks the presented token
    used and returns a new one of the same sign-in; the scope may only shrink. Presenting a used
    refresh token again, or one issued to another client, revokes the whole sign-in.
  Every token is an RFC 9068 JWT access token signed ES256; tokens of a person carry ``sub``
  ``user:<uuid>`` or ``customer:<record uuid>``, their role and department and ``sid``, the sign-in
  (token family) they belong to.
* ``POST /oauth/revoke`` (RFC 7009): access tokens by ``jti``; refresh tokens revoke their whole sign-in.
  Public clients may revoke their own tokens (auth ``none``).
* ``POST /oauth/introspect`` (RFC 7662), for confidential clients. Only access tokens are introspected;
  a refresh token is reported ``{"active": false}`` (it means nothing to a resource server).
* ``GET /.well-known/oauth-authorization-server`` (RFC 8414) and ``GET /oauth/jwks.json``.

No implicit or password grant exists. Access tokens are short-lived (``access_token_ttl_seconds``). Every
protected request verifies the signature (ES256 only — ``none`` and HMAC algorithms are refused),
``typ`` ``at+jwt``, issuer, audience, expiry, then in one indexed query that the token is not revoked,
its client is enabled, its staff user (if any) is enabled and its sign-in (``sid``) is not revoked — so
all of these take effect on the next request. A refused bearer token answers an RFC 9457 problem with the
RFC 6750 challenge in ``WWW-Authenticate`` and ``error`` (``invalid_token``, ``insufficient_scope``) /
``error_description`` members; the token endpoint's errors are RFC 6749's.

Every request to the token, revocation and introspection endpoints leaves one audit entry
(``auth.token``, ``auth.revoke``, ``auth.introspect``), recorded after the grant's own rows are committed
and before the response leaves: on success as the principal (the client, or for a person's token
``user:<uuid>`` / ``customer:<uuid>``), on refusal with the OAuth error code — as the client if it
authenticated, else anonymous — and ``family_revoked`` when a replay revoked a sign-in. Entries name
client ids, grant types, scopes and sign-in ids; never a secret, a token, a code or an unknown presented
client id. The metadata and JWKS documents are public and not audited.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, Literal, ParamSpec, TypeVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jws import extract_compact
from werkzeug.exceptions import HTTPException

from api.auditing import audit_actor, ensure_recorded, outcome_of, record_request
from api.context import current_platform, current_request_id
from api.errors import problem_response
from cdp.access.clients import Client, ClientRepository, secret_matches
from cdp.access.grants import (
    REVOKED_CODE_REUSE,
    REVOKED_PRINCIPAL,
    REVOKED_REFRESH_REUSE,
    REVOKED_SIGN_OUT,
    REVOKED_WRONG_CLIENT,
    S256,
    GrantStore,
    ResourceOwner,
    StoredCode,
    StoredRefreshToken,
    current_owner,
    parse_principal,
)
from cdp.access.roles import SCOPES
from cdp.access.tokens import TokenRegistry, token_usable
from cdp.audit import ACTIONS, AuditActor, AuditEvent, Outcome, acting_as, record_now
from cdp.audit.context import rebind_actor
from cdp.vault.signing import ALG, SigningKeys

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)
blp = Blueprint("oauth", __name__)
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
"""How confidential clients authenticate."""
PUBLIC_AUTH_METHOD = "none"
"""How public clients "authenticate" at the token and revocation endpoints: client id only."""
TOKEN_AUTH_METHODS = (*AUTH_METHODS, PUBLIC_AUTH_METHOD)
GRANT_TYPES_SUPPORTED = ("authorization_code", "client_credentials", "refresh_token")


# -- clients ------------------------------------------------------------------------------------------


class OAuthClient(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a registered client."""

    def __init__(self, client: Client, secret_hash: bytes | None) -> None:
        self.client = client
        self._secret_hash = secret_hash

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        # No default: every authorization request names its redirect URI, matched exactly.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(sorted(self.client.scopes))
        return " ".join(s for s in scope_to_list(scope) if s in self.client.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string comparison with a registered URI (RFC 9700 §2.1): no prefix, pattern or
        normalization, which is where open redirectors come from."""
        return redirect_uri in self.client.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(self._secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client.public:
            # Token and revocation only: introspection is for resource servers, which hold secrets.
            return method == PUBLIC_AUTH_METHOD and endpoint in ("token", "revocation")
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.client.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.client.grant_types


def _query_client(client_id: str) -> OAuthClient | None:
    with current_platform().db.read() as session:
        found = ClientRepository(session).with_secret_hash(client_id)
    if found is None:
        return None
    _note_client(found[0].client_id)
    if not found[0].active:
        return None
    return OAuthClient(*found)


def _save_token(token: dict[str, Any], request: Any) -> None:
    """JWT access tokens are self-contained, and the grants store refresh tokens themselves (with the
    sign-in they belong to, in the same transaction as the code or token they replace)."""


@dataclass(frozen=True)
class SignIn:
    """The ``user`` Authlib hands the token generator for a person's tokens: who, which sign-in, and the
    refresh token already stored for it."""

    owner: ResourceOwner
    family_id: uuid.UUID
    refresh_token: str = field(repr=False)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = set(scope_to_list(self.request.payload.scope) or [])
        if requested - self.request.client.client.scopes:
            raise InvalidScopeError()


class RequiredS256(CodeChallenge):  # type: ignore[misc]
    """PKCE required of every authorization request, S256 only (RFC 9700 §2.1.1). Authlib's
    :class:`CodeChallenge` accepts a request without a challenge and defaults a missing method to
    ``plain``; both are refused here, so every stored code carries an S256 challenge and the token
    endpoint then always demands the matching ``code_verifier``."""

    DEFAULT_CODE_CHALLENGE_METHOD = S256
    SUPPORTED_CODE_CHALLENGE_METHOD = [S256]
    CODE_CHALLENGE_METHODS = {S256: compare_s256_code_challenge}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge and code_challenge_method=S256")
        if data.get("code_challenge_method") != S256:
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


def _revoke_and_refuse(family_id: uuid.UUID, principal: str, reason: str, message: str) -> InvalidGrantError:
    """Revoke a sign-in (in its own transaction, committed before the error is raised) and return the
    error to raise."""
    with current_platform().db.transaction() as session:
        revoked = GrantStore(session).revoke_family(family_id, reason)
    if revoked:
        _family_revoked(family_id, principal, reason)
    return InvalidGrantError(message)


def _family_revoked(family_id: uuid.UUID, principal: str, reason: str) -> None:
    """Log a sign-in this request revoked and note it for the request's audit entry, with the person
    whose sign-in it was as the subject (a revocation for reuse is what an investigation looks for)."""
    log.warning("sign-in %s revoked: %s", family_id, reason)
    exchange = _exchange()
    if exchange is not None:
        exchange.subjects.add(principal)
        exchange.details.update(family_revoked=True, revoked_reason=reason, sid=str(family_id))


def _token_scope(granted: str, owner: ResourceOwner) -> str:
    """The granted scope narrowed to what the person holds now (their grants may have shrunk)."""
    return " ".join(sorted(set(granted.split()) & owner.scopes))


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """RFC 6749 §4.1 with the RFC 9700 rules: exact redirect URIs, PKCE S256, single-use codes."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(TOKEN_AUTH_METHODS)

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        # Authlib silently drops scopes the client was not registered for; ask for them and you are told.
        requested = set(scope_to_list(self.request.payload.scope) or [])
        if requested - self.request.client.client.scopes:
            raise InvalidScopeError(redirect_uri=redirect_uri)
        return redirect_uri

    def generate_authorization_code(self) -> str:
        return secrets.token_urlsafe(32)

    def create_authorization_response(self, redirect_uri: str, grant_user: Any) -> Any:
        """Issue a code for a signed-in person (``grant_user``, a :class:`ResourceOwner`; None = the
        person declined). The scope is what was asked (or the client's, if nothing was) narrowed to the
        person's own scopes; if nothing is left, access is denied rather than a useless code issued."""
        if isinstance(grant_user, ResourceOwner):
            scope = _token_scope(self.request.scope or "", grant_user)
            if not scope:
                raise AccessDeniedError(
                    "The account holds none of the requested scopes", redirect_uri=redirect_uri
                )
            self.request.scope = scope
        return super().create_authorization_response(redirect_uri, grant_user)

    def save_authorization_code(self, code: str, request: Any) -> None:
        platform = current_platform()
        owner: ResourceOwner = request.user
        data = request.payload.data
        with platform.db.transaction() as session:
            GrantStore(session).save_code(
                code,
                client_id=request.client.get_client_id(),
                principal=owner.principal,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope,
                code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"],
                ttl_seconds=platform.settings.authorization_code_ttl_seconds,
            )

    def query_authorization_code(self, code: str, client: OAuthClient) -> StoredCode | None:
        """The code if it is this client's, unused and unexpired. A used one is a replay — the code
        leaked or the client misbehaves — so the sign-in issued from it is revoked."""
        with current_platform().db.read() as session:
            stored = GrantStore(session).find_code(code)
        if stored is None or stored.client_id != client.get_client_id():
            return None
        if stored.used_at is not None:
            raise _revoke_and_refuse(
                stored.family_id, stored.principal, REVOKED_CODE_REUSE, "The code was already used"
            )
        if stored.is_expired():
            return None
        return stored

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Runs after the PKCE verifier was checked. Redeems the code (a conditional update, so of two
        concurrent redemptions one loses — and revokes) and starts the sign-in in one transaction."""
        client: OAuthClient = self.request.client
        code: StoredCode = self.request.authorization_code
        settings = current_platform().settings
        refused: InvalidGrantError | None = None
        with current_platform().db.transaction() as session:
            store = GrantStore(session)
            owner = current_owner(session, code.principal)
            scope = _token_scope(code.scope, owner) if owner else ""
            if not store.consume_code(code):
                if store.revoke_family(code.family_id, REVOKED_CODE_REUSE):
                    _family_revoked(code.family_id, code.principal, REVOKED_CODE_REUSE)
                refused = InvalidGrantError("The code was already used")
            elif owner is None or not scope:
                refused = InvalidGrantError("The account can no longer sign in")
            else:
                family = store.start_family(
                    family_id=code.family_id,
                    client_id=client.get_client_id(),
                    principal=owner.principal,
                    scope=scope,
                    ttl_seconds=settings.refresh_token_ttl_seconds,
                )
                refresh_token = store.issue_refresh_token(family)
        if refused is not None:
            raise refused
        assert owner is not None
        token = self.generate_token(
            user=SignIn(owner, family.id, refresh_token), scope=scope, include_refresh_token=True
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    """RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(TOKEN_AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> StoredRefreshToken | None:
        """The stored token if it may be used by the authenticated client. A used token presented again
        (reuse: someone holds a copy) or a token presented by another client (it leaked) revokes the
        whole sign-in: the attacker's and the victim's tokens alike stop working."""
        client: OAuthClient = self.request.client
        with current_platform().db.read() as session:
            stored = GrantStore(session).find_refresh_token(refresh_token)
        if stored is None:
            return None
        family = stored.family
        if not stored.check_client(client):
            raise _revoke_and_refuse(
                family.id, family.principal, REVOKED_WRONG_CLIENT, "The refresh token is invalid"
            )
        if stored.used_at is not None:
            raise _revoke_and_refuse(
                family.id, family.principal, REVOKED_REFRESH_REUSE, "The refresh token was already used"
            )
        return stored if stored.usable else None

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: OAuthClient = self.request.client
        stored: StoredRefreshToken = self.request.refresh_token
        family = stored.family
        refused: OAuth2Error | None = None
        with current_platform().db.transaction() as session:
            store = GrantStore(session)
            owner = current_owner(session, family.principal)
            scope = _token_scope(self.request.payload.scope or family.scope, owner) if owner else ""
            if owner is None:
                if store.revoke_family(family.id, REVOKED_PRINCIPAL):
                    _family_revoked(family.id, family.principal, REVOKED_PRINCIPAL)
                refused = InvalidGrantError("The account can no longer sign in")
            elif not scope:
                # Checked before rotating: the client keeps a working refresh token.
                refused = InvalidScopeError()
            elif not store.use_refresh_token(stored):
                if store.revoke_family(family.id, REVOKED_REFRESH_REUSE):
                    _family_revoked(family.id, family.principal, REVOKED_REFRESH_REUSE)
                refused = InvalidGrantError("The refresh token was already used")
            else:
                new_refresh_token = store.issue_refresh_token(family)
        if refused is not None:
            raise refused
        assert owner is not None
        token = self.generate_token(
            user=SignIn(owner, family.id, new_refresh_token), scope=scope, include_refresh_token=True
        )
        log.debug("refreshed sign-in %s for client %s", family.id, client.get_client_id())
        return 200, token, self.TOKEN_RESPONSE_HEADER


# -- signing ------------------------------------------------------------------------------------------


@dataclass
class _KeyCache:
    """Signing and verification keys, reloaded at most every few seconds (rotation is rare; a
    verification miss on an unknown ``kid`` forces a reload)."""

    loaded_at: float = 0.0
    signer_kid: str = ""
    signer: ECKey | None = None
    public: KeySet | None = None
    verified: OrderedDict[tuple[str, str, str], dict[str, Any]] = field(default_factory=OrderedDict)
    """Claims of tokens whose signature and claims were verified, by (token, issuer, audience): a
    service reuses its token for minutes, and the signature check was a fifth of a read. Expiry is
    checked on every use and revocation is never cached (see :func:`verify_access_token`)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, force: bool = False) -> None:
        if not force and self.signer is not None and time.monotonic() - self.loaded_at < 5:
            return
        platform = current_platform()
        ttl = timedelta(seconds=platform.settings.access_token_ttl_seconds)
        with platform.db.transaction() as session:
            keys = SigningKeys(session, platform.vault)
            material = keys.active()
            published = keys.published(ttl)
        kids = {key["kid"] for key in published}
        with self.lock:
            if self.public is not None and kids != {k.kid for k in self.public.keys}:
                self.verified.clear()  # a key left the published set: its tokens verify again
            self.signer_kid, self.signer = material.kid, material.private_key
            self.public = KeySet.import_key_set({"keys": published})
            self.loaded_at = time.monotonic()

    def remembered(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        with self.lock:
            claims = self.verified.get(key)
            if claims is not None and claims["exp"] <= time.time():
                del self.verified[key]
                return None
            return claims

    def remember(self, key: tuple[str, str, str], claims: dict[str, Any]) -> None:
        with self.lock:
            self.verified[key] = claims
            while len(self.verified) > VERIFIED_TOKENS_CACHED:
                self.verified.popitem(last=False)


VERIFIED_TOKENS_CACHED = 10_000


def _keys() -> _KeyCache:
    cache = current_app.extensions.setdefault("cdp_signing_keys", _KeyCache())
    assert isinstance(cache, _KeyCache)
    return cache


class JWTAccessTokenGenerator(BearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 access tokens: ``typ: at+jwt``, ES256. A machine client's token carries the client's
    role and department; a person's (``user`` is a :class:`SignIn`) carries theirs, their principal as
    ``sub`` and the sign-in as ``sid``. Refresh tokens come from the grant, already stored."""

    def __init__(self) -> None:
        super().__init__(self._access_token, self._refresh_token, self._expires_in)

    @staticmethod
    def _expires_in(client: OAuthClient, grant_type: str) -> int:
        return current_platform().settings.access_token_ttl_seconds

    @staticmethod
    def _refresh_token(client: OAuthClient, grant_type: str, user: Any, scope: str) -> str:
        assert isinstance(user, SignIn), "refresh tokens are issued for sign-ins only"
        return user.refresh_token

    @staticmethod
    def _access_token(client: OAuthClient, grant_type: str, user: Any, scope: str) -> str:
        settings = current_platform().settings
        keys = _keys()
        keys.refresh()
        now = int(time.time())
        claims: dict[str, Any] = {
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
        department = client.client.department
        if isinstance(user, SignIn):
            claims["sub"] = user.owner.principal
            claims["roles"] = [user.owner.role]
            claims["sid"] = str(user.family_id)
            department = user.owner.department
        if department:
            claims["department"] = department
        header = {"alg": ALG, "typ": "at+jwt", "kid": keys.signer_kid}
        assert keys.signer is not None
        return jwt.encode(header, claims, keys.signer, algorithms=[ALG])


# -- verification -------------------------------------------------------------------------------------


class TokenRejected(Exception):
    """A bearer token that must not be honoured; the message is a safe RFC 6750 description."""


PrincipalKind = Literal["client", "user", "customer"]


@dataclass(frozen=True)
class Principal:
    """Who a verified access token speaks for.

    ``kind`` is ``client`` for a machine client (``subject`` = its client id), ``user`` for a member of
    staff (``subject`` = ``user:<uuid>``) and ``customer`` for a customer (``subject`` =
    ``customer:<source record uuid>``); the last two came through a sign-in app (``client_id``) and
    carry the sign-in they belong to (``family_id``, the ``sid`` claim)."""

    client_id: str
    subject: str
    roles: tuple[str, ...]
    department: str | None
    scopes: frozenset[str]
    jti: str
    expires_at: datetime
    family_id: str | None = None
    kind: PrincipalKind = "client"

    @property
    def customer_record_id(self) -> uuid.UUID | None:
        """The source record a customer signed in as; None for staff and clients."""
        if self.kind != "customer":
            return None
        parsed = parse_principal(self.subject)
        return parsed[1] if parsed else None

    @property
    def user_id(self) -> uuid.UUID | None:
        """The staff user behind the token; None for customers and clients."""
        if self.kind != "user":
            return None
        parsed = parse_principal(self.subject)
        return parsed[1] if parsed else None

    # Authlib's introspection endpoint asks the token object these two questions.
    def is_expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)

    def is_revoked(self) -> bool:
        return False  # verify_access_token has already refused revoked tokens


def _subject_of(claims: dict[str, Any]) -> tuple[PrincipalKind, uuid.UUID | None, uuid.UUID | None]:
    """(kind, staff user id, sign-in id) of verified claims. A person's token must name a well-formed
    principal and its sign-in; a client's must be about the client itself."""
    subject = str(claims["sub"])
    sid = claims.get("sid")
    parsed = parse_principal(subject)
    if parsed is None:
        if subject != claims["client_id"] or sid is not None:
            raise TokenRejected("The access token's subject is invalid")
        return "client", None, None
    try:
        family_id = uuid.UUID(str(sid)) if sid is not None else None
    except ValueError:
        family_id = None
    if family_id is None:
        raise TokenRejected("The access token's subject is invalid")
    kind, ident = parsed
    return kind, (ident if kind == "user" else None), family_id


def verify_access_token(token: str, *, check_usable: bool = True) -> Principal:
    platform = current_platform()
    settings = platform.settings
    keys = _keys()
    keys.refresh()
    cache_key = (token, settings.issuer, settings.api_audience)
    claims = keys.remembered(cache_key)
    if claims is None:
        claims = _verified_claims(token, keys, settings.issuer, settings.api_audience)
        keys.remember(cache_key, claims)
    kind, user_id, family_id = _subject_of(claims)
    if check_usable:
        with platform.db.connect() as connection:
            usable = token_usable(
                connection, claims["jti"], claims["client_id"], user_id=user_id, family_id=family_id
            )
        if not usable:
            raise TokenRejected("The access token was revoked or its client or user disabled")
    return Principal(
        client_id=claims["client_id"],
        subject=claims["sub"],
        roles=tuple(claims.get("roles", ())),
        department=claims.get("department"),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        jti=claims["jti"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        family_id=str(family_id) if family_id else None,
        kind=kind,
    )


def _verified_claims(token: str, keys: _KeyCache, issuer: str, audience: str) -> dict[str, Any]:
    """Signature (ES256 only), ``typ``, issuer, audience, expiry and the essential claims; raises
    :class:`TokenRejected` with a safe description."""
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
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
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
    if not isinstance(decoded.claims.get("exp"), int | float):
        raise TokenRejected("The access token is expired or not meant for this API")
    return dict(decoded.claims)


def _bearer_error(status: int, error: str, description: str, scope: str | None = None) -> Response:
    """An RFC 6750 refusal as an RFC 9457 problem (like every other error of the API): the challenge in
    ``WWW-Authenticate``, and ``error`` / ``error_description`` as extension members for OAuth clients."""
    challenge = f'Bearer realm="cdp", error="{error}", error_description="{description}"'
    if scope:
        challenge += f', scope="{scope}"'
    return problem_response(
        status,
        detail=description,
        headers={"WWW-Authenticate": challenge},
        extensions={"error": error, "error_description": description},
    )


def require_scope(scope: str, action: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Protect a view: a valid, unrevoked access token of an enabled client holding ``scope``.

    ``action`` is the audit action of the operation (:data:`cdp.audit.ACTIONS`). The request runs in an
    audit scope for the token's principal; a rejected token or a missing scope is recorded, and so is
    the operation itself if the view did not record it (see :mod:`api.auditing`)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")

    def decorator(view: Callable[P, R]) -> Callable[P, R | Response]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            with acting_as(AuditActor.anonymous(), current_request_id()):
                return _protected_call(scope, action, view, *args, **kwargs)

        return wrapper

    return decorator


def _protected_call(
    scope: str, action: str, view: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R | Response:
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        record_request("auth.token_rejected", Outcome.DENIED, reason="missing", operation=action)
        response = _bearer_error(401, "invalid_request", "Bearer access token required")
        response.headers["WWW-Authenticate"] = 'Bearer realm="cdp"'
        return response
    # One pooled connection serves the token check, the view's plain reads and the audit append.
    with current_platform().db.connect():
        try:
            principal = verify_access_token(token.strip())
        except TokenRejected as exc:
            record_request("auth.token_rejected", Outcome.DENIED, reason="invalid", operation=action)
            return _bearer_error(401, "invalid_token", str(exc))
        rebind_actor(audit_actor(principal.subject, principal.kind, principal.roles, principal.department))
        if scope not in principal.scopes:
            record_request("auth.scope_denied", Outcome.DENIED, scope=scope, operation=action)
            return _bearer_error(403, "insufficient_scope", f"This request needs the {scope} scope", scope)
        g.principal = principal
        try:
            result = view(*args, **kwargs)
        except Exception as exc:
            ensure_recorded(action, outcome_of(exc), getattr(exc, "status", getattr(exc, "code", 500)))
            raise
        ensure_recorded(action, Outcome.SUCCESS)
        return result


def current_principal() -> Principal:
    principal = g.get("principal")
    assert isinstance(principal, Principal), "view is not protected by require_scope"
    return principal


# -- revocation and introspection ---------------------------------------------------------------------


def _find_refresh_token(token_string: str) -> StoredRefreshToken | None:
    with current_platform().db.read() as session:
        return GrantStore(session).find_refresh_token(token_string)


class JWTRevocation(RevocationEndpoint):  # type: ignore[misc]
    """Access tokens are revoked by ``jti``; a refresh token revokes its sign-in, and with it every
    access and refresh token of that sign-in (RFC 7009 §2.1)."""

    CLIENT_AUTH_METHODS = list(TOKEN_AUTH_METHODS)

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> Principal | StoredRefreshToken | None:
        def access() -> Principal | None:
            try:
                return verify_access_token(token_string, check_usable=False)
            except TokenRejected:
                return None

        if token_type_hint == "refresh_token":  # noqa: S105 - a hint name, not a secret
            return _find_refresh_token(token_string) or access()
        return access() or _find_refresh_token(token_string)

    def authenticate_token(self, request: Any, client: OAuthClient) -> Principal | StoredRefreshToken | None:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        # RFC 7009 §2.1: a client may only revoke its own tokens; others are silently ignored.
        if isinstance(token, Principal) and token.client_id == client.get_client_id():
            return token
        if isinstance(token, StoredRefreshToken) and token.check_client(client):
            return token
        return None

    def revoke_token(self, token: Principal | StoredRefreshToken, request: Any) -> None:
        sid: str | None
        with current_platform().db.transaction() as session:
            if isinstance(token, StoredRefreshToken):
                GrantStore(session).revoke_family(token.family.id, REVOKED_SIGN_OUT)
                kind, principal, sid = "refresh_token", token.family.principal, str(token.family.id)
            else:
                TokenRegistry(session).revoke(token.jti, token.client_id, token.expires_at)
                kind, principal, sid = "access_token", token.subject, token.family_id
        exchange = _exchange()
        if exchange is not None:
            exchange.details.update(revoked=True, token_type=kind, **({"sid": sid} if sid else {}))
            if parse_principal(principal) is not None:
                exchange.subjects.add(principal)


class JWTIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    """Access tokens only: refresh tokens are reported inactive — they mean nothing to a resource
    server, and answering for them would only help someone holding a stolen one."""

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
        exchange = _exchange()
        if exchange is not None:
            exchange.details["active"] = True
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
            **({"sid": token.family_id} if token.family_id else {}),
        }


# -- audit --------------------------------------------------------------------------------------------


@dataclass
class _Exchange:
    """What one request to the token, revocation or introspection endpoint did, noted by the server's
    hooks while Authlib works through it and recorded once, after the response is made.

    Authlib answers a refusal with an error response rather than an exception, and who the caller is
    (the client, or the person a token is issued for) is only known deep inside it, so the view alone
    could tell neither; the hooks below tell it both."""

    action: str
    client_id: str | None = None
    """A registered client's id once the request named one; an unknown presented id is never kept (it
    is whatever the caller typed)."""
    actor: AuditActor | None = None
    """The authenticated client, then (for a person's token) the person; None while anonymous."""
    details: dict[str, str | bool] = field(default_factory=dict)
    subjects: set[str] = field(default_factory=set)
    error: str | None = None
    """The OAuth error code of a refusal (or ``server_error`` / ``http_<status>`` of a failure)."""
    outcome: Outcome | None = None
    """Set for a failure; otherwise success, or denied when there is an error."""

    def event(self, grant_type: str | None) -> AuditEvent:
        details: dict[str, str | bool] = {}
        if grant_type is not None:
            details["grant_type"] = grant_type
        if self.client_id is not None:
            details["client_id"] = self.client_id
        if self.error is not None:
            details["error"] = self.error
        details.update(self.details)
        outcome = self.outcome or (Outcome.SUCCESS if self.error is None else Outcome.DENIED)
        return AuditEvent(self.action, outcome, subjects=tuple(sorted(self.subjects)), details=details)


_EXCHANGE = "cdp_oauth_exchange"


def _exchange() -> _Exchange | None:
    exchange = g.get(_EXCHANGE)
    return exchange if isinstance(exchange, _Exchange) else None


def _note_client(client_id: str) -> None:
    exchange = _exchange()
    if exchange is not None:
        exchange.client_id = client_id


def _client_actor(client: Client) -> AuditActor:
    """A client as the accountable actor. A sign-in app's ``role`` is its audience, not a role it acts
    in, so only a machine client's role is named."""
    roles = (client.role,) if client.audience is None else ()
    return audit_actor(client.client_id, "client", roles, client.department)


def _audited_exchange(
    action: str, respond: Callable[[], Response], **defaults: str | bool
) -> ResponseReturnValue:
    """Answer an endpoint request and record ``action`` with what the hooks noted: success, the refusal
    (``denied``, with the OAuth error code) or an unexpected failure. Token rows are committed by the
    grants before this records; the response leaves only after the entry is committed."""
    with acting_as(AuditActor.anonymous(), current_request_id()):
        exchange = _Exchange(action, details=dict(defaults))
        setattr(g, _EXCHANGE, exchange)
        try:
            response = respond()
        except Exception as exc:
            status = exc.code if isinstance(exc, HTTPException) and exc.code else 500
            exchange.error = "server_error" if status >= 500 else f"http_{status}"
            exchange.outcome = outcome_of(exc)
            _record_exchange(exchange)
            raise
        finally:
            g.pop(_EXCHANGE, None)
        if exchange.error is None and response.status_code >= 400:
            exchange.error = f"http_{response.status_code}"
        _record_exchange(exchange)
        return response


def _record_exchange(exchange: _Exchange) -> None:
    grant_type = None
    if exchange.action == "auth.token":
        presented = request.form.get("grant_type", "")
        grant_type = presented if presented in GRANT_TYPES_SUPPORTED else "unsupported"
    actor = exchange.actor if exchange.actor is not None else AuditActor.anonymous()
    record_now(current_platform().db, exchange.event(grant_type), actor=actor)


class _AuditedAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server with three hooks that tell the audit entry of a request who authenticated,
    whom a token was issued to, and why a request was refused."""

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> OAuthClient:
        client: OAuthClient = super().authenticate_client(request, methods, endpoint)
        exchange = _exchange()
        if exchange is not None:
            exchange.client_id = client.client.client_id
            exchange.actor = _client_actor(client.client)
        return client

    def generate_token(
        self,
        grant_type: str,
        client: OAuthClient,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = super().generate_token(
            grant_type, client, user, scope, expires_in, include_refresh_token
        )
        exchange = _exchange()
        if exchange is not None:
            exchange.details["scope"] = str(token.get("scope") or "")
            if isinstance(user, SignIn):
                owner = user.owner
                exchange.actor = audit_actor(owner.principal, owner.kind, (owner.role,), owner.department)
                exchange.details["sid"] = str(user.family_id)
        return token

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        exchange = _exchange()
        if exchange is not None:
            exchange.error = str(error.error)
        response: Response = super().handle_error_response(request, error)
        return response


# -- wiring -------------------------------------------------------------------------------------------


def create_authorization_server(app: Flask) -> AuthorizationServer:
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", sorted(SCOPES))
    server = _AuditedAuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator("default", JWTAccessTokenGenerator())
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(AuthorizationCodeGrant, [RequiredS256(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(JWTRevocation)
    server.register_endpoint(JWTIntrospection)
    app.extensions["cdp_oauth_server"] = server
    return server


def authorization_server() -> AuthorizationServer:
    """The app's Authlib server (for the authorization endpoint's pages in :mod:`api.signin`)."""
    server = current_app.extensions["cdp_oauth_server"]
    assert isinstance(server, AuthorizationServer)
    return server


_server = authorization_server


@blp.post("/oauth/token")
def issue_token() -> ResponseReturnValue:
    return _audited_exchange("auth.token", lambda: _server().create_token_response())


@blp.post("/oauth/revoke")
def revoke_token() -> ResponseReturnValue:
    """RFC 7009 answers 200 whether or not a token was revoked; the audit entry says which."""
    return _audited_exchange(
        "auth.revoke",
        lambda: _server().create_endpoint_response(JWTRevocation.ENDPOINT_NAME),
        revoked=False,
    )


@blp.post("/oauth/introspect")
def introspect_token() -> ResponseReturnValue:
    return _audited_exchange(
        "auth.introspect",
        lambda: _server().create_endpoint_response(JWTIntrospection.ENDPOINT_NAME),
        active=False,
    )


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
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/oauth/jwks.json",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "grant_types_supported": list(GRANT_TYPES_SUPPORTED),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": [S256],
            "authorization_response_iss_parameter_supported": True,
            "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
            "revocation_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
            "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": sorted(SCOPES),
        }
    )
