"""The authorization endpoint, ``GET``/``POST /oauth/authorize``: the pages people sign in on.

Authlib validates the authorization request (:func:`api.oauth.authorization_server`): a known, enabled
client, ``response_type=code``, a redirect URI registered for it *exactly*, PKCE with S256 and scopes
the client was registered for. While the client or its redirect URI is in doubt, errors are shown on a
page here and never redirected (RFC 6749 §4.1.2.1 — no open redirector); after that, they go back to
the client with ``error`` and the client's ``state``.

What the page asks for depends on the client's audience (:mod:`cdp.access.clients`):

* a **staff** app: username, password and, when enrolled, a TOTP code (:func:`cdp.access.users.sign_in`,
  which counts failures towards the account lockout);
* a **customer** app: an email address, then the one-time code sent to it
  (:class:`cdp.access.customers.CustomerSignIn`); the login id travels in a hidden field.

Every POST that checks credentials leaves an audit entry: ``auth.login`` (success as the person,
refusal as anonymous with a reason code and, for a known staff account, its id) and ``auth.login_code``
for asking for a code. They hold ids, reason codes and the client id, never what was typed; the code
request's entry is the same whether or not the address is a customer's.

The authorization request's parameters travel in hidden fields and every POST is validated again from
scratch, so nothing is kept on the server between the steps and a tampered field fails like a bad link.
On success a code is stored (its hash) and the browser is sent to the redirect URI with ``code``,
``state`` and ``iss`` (RFC 9207, so a client talking to several servers can tell who answered).

No CSRF token, by design: the server keeps no session or cookie a forged POST could ride on, and each
POST carries the credentials themselves. A forged sign-in (an attacker's account in a victim's browser)
ends at the client, which refuses a ``state`` it did not issue, and the code is useless without the
attacker's PKCE verifier. Clickjacking is refused by ``frame-ancestors 'none'``.

Pages are Jinja templates with autoescaping; each response has its own CSP (the JSON default does not
apply to HTML): no scripts at all, inline styles only with a per-response nonce, forms posting only
here — and to the validated redirect URI's origin, because browsers apply ``form-action`` to the
redirect that follows a form submission.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, render_template, request

from api.auditing import audit_actor
from api.context import current_platform, current_request_id
from api.oauth import OAuthClient, authorization_server
from cdp.access.clients import Client, redirect_origin
from cdp.access.customers import CustomerSignIn, InvalidEmail, TooManyRequests, verify_customer_code
from cdp.access.grants import ResourceOwner
from cdp.access.roles import SCOPES
from cdp.access.users import PASSWORD_MAX_LENGTH, SignInFailed, sign_in
from cdp.audit import AuditActor, AuditEvent, Outcome, acting_as, record, record_now
from cdp.audit.context import rebind_actor

log = logging.getLogger(__name__)
blp = Blueprint("signin", __name__)

# The authorization request parameters carried from page to page; nothing else is echoed.
OAUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)
MAX_USERNAME_LENGTH = 64
MAX_FIELD_LENGTH = 320

STAFF_FAILED = "Sign-in failed. Check your username, password and code, then try again."
CODE_FAILED = "That code did not work. Check it and try again, or ask for a new one."
INVALID_EMAIL = "Enter a valid email address."
TOO_MANY_CODES = "Too many codes were requested for this address. Use one you have or wait a few minutes."
START_AGAIN = "Your sign-in expired. Enter your email address again."

_ERROR_MESSAGES = {
    "invalid_client": "This application is unknown or has been disabled.",
    "invalid_request": "The sign-in link is not valid: its redirect address is missing or not registered "
    "for this application, or a parameter is missing or repeated.",
    "unsupported_response_type": "The sign-in link is not valid: it does not ask for an authorization "
    "code from a registered application.",
}


# -- responses ----------------------------------------------------------------------------------------


def _csp(nonce: str, form_target: str | None) -> str:
    forms = f"'self' {form_target}" if form_target else "'none'"
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; form-action {forms}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def _page(template: str, status: int = 200, *, form_target: str | None = None, **context: Any) -> Response:
    nonce = secrets.token_urlsafe(16)
    body = render_template(template, csp_nonce=nonce, **context)
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _csp(nonce, form_target)
    return response


def _error_page(error: OAuth2Error) -> Response:
    """An authorization request that cannot be answered at the client: explain, never redirect."""
    message = _ERROR_MESSAGES.get(error.error, "The sign-in request is not valid.")
    return _page("signin_error.html", 400, message=message, error_code=error.error)


def _to_client(response: Response) -> Response:
    """Add ``iss`` (RFC 9207) to a redirect back to the client, success or error alike."""
    if response.status_code == 302 and response.location:
        response.location = add_params_to_uri(
            response.location, [("iss", current_platform().settings.issuer)]
        )
    return response


# -- the endpoint -------------------------------------------------------------------------------------


class _Request:
    """The validated authorization request and what the pages need of it."""

    def __init__(self, grant: Any) -> None:
        self.grant = grant
        oauth_client: OAuthClient = grant.request.client
        self.client: Client = oauth_client.client
        values = request.values
        self.params: Sequence[tuple[str, str]] = [
            (name, values[name]) for name in OAUTH_PARAMS if values.get(name)
        ]
        self.scopes = [(s, SCOPES[s]) for s in sorted((grant.request.scope or "").split()) if s in SCOPES]
        self.redirect_origin = redirect_origin(grant.redirect_uri)

    def page(self, template: str, status: int = 200, **context: Any) -> Response:
        return _page(
            template,
            status,
            form_target=self.redirect_origin,
            client_name=self.client.name,
            oauth_params=self.params,
            scopes=self.scopes,
            **context,
        )

    def finish(self, owner: ResourceOwner | None) -> Response:
        """Issue the code (or, with None, tell the client the person declined) and redirect."""
        response = authorization_server().create_authorization_response(grant_user=owner, grant=self.grant)
        assert isinstance(response, Response)
        return _to_client(response)


# -- audit --------------------------------------------------------------------------------------------


def _record_login(auth: _Request, outcome: Outcome, subjects: tuple[str, ...] = (), **details: str) -> None:
    """Record a sign-in attempt. Only ids and reason codes: never the typed username, address or code,
    which may be someone else's or a password typed into the wrong field."""
    event = AuditEvent(
        "auth.login", outcome, subjects=subjects, details={**details, "client_id": auth.client.client_id}
    )
    record_now(current_platform().db, event)


def _code_request(auth: _Request, outcome: Outcome = Outcome.SUCCESS, **details: str) -> AuditEvent:
    """The entry of a customer asking for a code: the same for an address that is a customer's and one
    that is not (no subject, no address), so the audit log cannot be used to tell the two apart."""
    return AuditEvent("auth.login_code", outcome, details={**details, "client_id": auth.client.client_id})


# -- the endpoint -------------------------------------------------------------------------------------


@blp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    """Runs anonymous until a sign-in succeeds; only the POSTs that check credentials are audited."""
    with acting_as(AuditActor.anonymous(), current_request_id()):
        return _authorize()


def _authorize() -> Response:
    server = authorization_server()
    try:
        grant = server.get_consent_grant(end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri:  # client and redirect URI are valid: the client hears about it
            response = server.handle_error_response(None, error)
            assert isinstance(response, Response)
            return _to_client(response)
        return _error_page(error)
    auth = _Request(grant)
    audience = auth.client.audience
    if audience not in ("staff", "customer"):
        return _error_page(OAuth2Error(error="unauthorized_client"))
    template = "signin_staff.html" if audience == "staff" else "signin_email.html"
    if request.method == "GET":
        return auth.page(template)
    action = request.form.get("action", "")
    if action == "cancel":
        return auth.finish(None)
    if audience == "staff":
        return _staff(auth)
    if action == "restart":
        return auth.page("signin_email.html")
    if request.form.get("step") == "code":
        return _customer_code(auth)
    return _customer_email(auth)


def _field(name: str) -> str:
    return request.form.get(name, "")


def _staff(auth: _Request) -> Response:
    username, password, totp = _field("username").strip(), _field("password"), _field("totp").strip()
    platform = current_platform()
    try:
        if not username or len(username) > MAX_USERNAME_LENGTH or len(password) > PASSWORD_MAX_LENGTH:
            raise SignInFailed("unknown_user")
        user = sign_in(platform.db, platform.vault, platform.settings, username, password, totp or None)
    except SignInFailed as exc:
        log.info("staff sign-in refused for client %s: %s", auth.client.client_id, exc.reason)
        account = (f"user:{exc.user_id}",) if exc.user_id is not None else ()
        _record_login(auth, Outcome.DENIED, account, reason=exc.reason)
        return auth.page(
            "signin_staff.html", 401, error=STAFF_FAILED, username=username[:MAX_USERNAME_LENGTH]
        )
    owner = ResourceOwner.staff(user.id, user.role, user.department, user.scopes)
    rebind_actor(audit_actor(owner.principal, owner.kind, (owner.role,), owner.department))
    _record_login(
        auth, Outcome.SUCCESS, (owner.principal,), method="password+totp" if user.totp_enabled else "password"
    )
    return auth.finish(owner)


def _customer_email(auth: _Request) -> Response:
    email = _field("email").strip()
    platform = current_platform()
    try:
        if not email or len(email) > MAX_FIELD_LENGTH:
            raise InvalidEmail()
        with platform.db.transaction() as session:
            login_id = CustomerSignIn(session, platform.vault, platform.settings).request_code(email)
            record(session, _code_request(auth))
    except InvalidEmail:
        record_now(platform.db, _code_request(auth, Outcome.FAILED, reason="invalid_email"))
        return auth.page("signin_email.html", 400, error=INVALID_EMAIL)
    except TooManyRequests:
        record_now(platform.db, _code_request(auth, Outcome.DENIED, reason="too_many_requests"))
        return auth.page("signin_email.html", 429, error=TOO_MANY_CODES)
    return auth.page("signin_code.html", login_id=str(login_id))


def _customer_code(auth: _Request) -> Response:
    try:
        login_id = uuid.UUID(_field("login_id"))
    except ValueError:
        _record_login(auth, Outcome.DENIED, reason="invalid_login_id")
        return auth.page("signin_email.html", 400, error=START_AGAIN)
    code = _field("code")
    platform = current_platform()
    try:
        if not code.strip() or len(code) > MAX_FIELD_LENGTH:
            raise SignInFailed("bad_code")
        identity = verify_customer_code(platform.db, platform.vault, platform.settings, login_id, code)
    except SignInFailed as exc:
        log.info("customer sign-in refused for client %s: %s", auth.client.client_id, exc.reason)
        _record_login(auth, Outcome.DENIED, reason=exc.reason)
        return auth.page("signin_code.html", 401, error=CODE_FAILED, login_id=str(login_id))
    owner = ResourceOwner.customer(identity.record_id)
    rebind_actor(audit_actor(owner.principal, owner.kind, (owner.role,), owner.department))
    _record_login(auth, Outcome.SUCCESS, (str(identity.record_id),), method="email_code")
    return auth.finish(owner)
