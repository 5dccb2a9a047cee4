"""Signing in to a web app, the browser session, and the per-session API token.

The flow (RFC 6749 §4.1 with PKCE, RFC 9700's recommendations for a browser-based app's backend):

1. ``GET <app>/login`` starts a *pending* server-side session holding a fresh PKCE verifier and
   ``state`` (:mod:`cdp.access.websessions`), sets its cookie and sends the browser to
   ``/oauth/authorize`` — the sign-in pages of :mod:`api.signin` (password and TOTP for staff, an
   emailed one-time code for customers).
2. ``GET <app>/callback`` checks ``iss`` (RFC 9207) and ``state`` (constant time), redeems the code at
   ``/oauth/token`` with the verifier, verifies the access token like any API request would, and binds
   the session to that sign-in under a *new* cookie secret. The browser is redirected to the app, so
   the code never stays in its address bar or history.
3. Every page calls the API with the session's access token (:mod:`web.gateway`), refreshed through the
   refresh token shortly before it expires (rotation: the old refresh token is spent).
4. ``POST <app>/logout`` revokes the refresh token — the whole sign-in — and deletes the session.

Cookies: ``__Host-`` prefixed, ``Secure``, ``HttpOnly``, ``SameSite=Strict``, path ``/``, a session cookie
(no ``Max-Age``): the server decides when a session ends. Every POST must carry the session's CSRF token
(an HMAC of the cookie secret, so it is never stored and is worthless without the cookie) and, when the
browser sends one, an ``Origin`` of this server. No personal data ever goes into a URL: searches and
changes are POSTs, and pages address customers by opaque ids.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Blueprint, current_app, g, redirect, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as BaseResponse

from api.context import current_platform
from api.oauth import TokenRejected, verify_access_token
from cdp.access.clients import ClientRepository
from cdp.access.websessions import ActiveSession, WebSessions
from cdp.db.models import OAuthTokenFamily
from web import gateway
from web.apps import WebApp
from web.gateway import ApiResult

P = ParamSpec("P")
R = TypeVar("R")

REFRESH_MARGIN_SECONDS = 30
_CLIENTS_KEY = "cdp_web_clients"
_refresh_locks: dict[uuid.UUID, threading.Lock] = {}
_refresh_locks_guard = threading.Lock()


class SignedOut(Exception):
    """The session ended while a page was using it (its sign-in was revoked, or a refresh failed)."""


# -- the app's OAuth client ---------------------------------------------------------------------------


def client_id_for(app: WebApp) -> str:
    """The web app's public OAuth client for this issuer, registered on first use (first-party, PKCE).
    Found again by name and exact redirect URI, so a restart or a second worker reuses it."""
    platform = current_platform()
    issuer = platform.settings.issuer
    cache: dict[tuple[str, str], str] = current_app.extensions.setdefault(_CLIENTS_KEY, {})
    key = (app.name, issuer)
    if key in cache:
        return cache[key]
    redirect_uri = app.redirect_uri(issuer)
    with platform.db.transaction() as session:
        clients = ClientRepository(session)
        found = next(
            (
                c
                for c in clients.all()
                if c.name == app.client_name and c.active and c.redirect_uris == (redirect_uri,)
            ),
            None,
        )
        if found is None:
            found, _ = clients.create(
                name=app.client_name,
                role=app.audience,
                scopes=app.scopes,
                grant="authorization_code",
                redirect_uris=[redirect_uri],
                public=True,
            )
    cache[key] = found.client_id
    return found.client_id


# -- the session --------------------------------------------------------------------------------------


def current_web_session() -> ActiveSession | None:
    found = g.get("web_session")
    return found if isinstance(found, ActiveSession) else None


def _secret() -> str:
    return str(g.get("web_secret") or "")


def csrf_token() -> str:
    web_session = current_web_session()
    if web_session is None:
        return ""
    return hmac.new(_secret().encode(), b"csrf:" + web_session.id.bytes, hashlib.sha256).hexdigest()


_COOKIE_ATTRIBUTES: dict[str, Any] = {"secure": True, "httponly": True, "samesite": "Strict", "path": "/"}


def _set_cookie(response: BaseResponse, app: WebApp, secret: str) -> BaseResponse:
    response.set_cookie(app.cookie, secret, **_COOKIE_ATTRIBUTES)
    return response


def clear_cookie(response: BaseResponse, app: WebApp) -> BaseResponse:
    response.delete_cookie(app.cookie, **_COOKIE_ATTRIBUTES)
    return response


def load_session(app: WebApp) -> None:
    """``before_request`` of an app's blueprint: the session behind the cookie, if it is live."""
    g.web_session = None
    secret = request.cookies.get(app.cookie, "")
    if not secret:
        return
    platform = current_platform()
    with platform.db.read() as session:
        found = WebSessions(session, platform.vault).find(app.name, secret, touch=False)
    if found is not None and found.touch_due:
        with platform.db.transaction() as session:
            WebSessions(session, platform.vault).touch(found.id)
    if found is not None:
        g.web_session = found
        g.web_secret = secret


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # older browsers omit it on same-origin POSTs; the CSRF token still applies
    issuer = urlsplit(current_platform().settings.issuer)
    here = urlsplit(request.host_url)
    return origin in (f"{issuer.scheme}://{issuer.netloc}", f"{here.scheme}://{here.netloc}")


def check_csrf() -> bool:
    presented = request.form.get("csrf_token", "")
    expected = csrf_token()
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode()) and _same_origin()


def notify(message: str, level: str = "info") -> None:
    """A notice shown once on the next page (Post/Redirect/Get)."""
    web_session = current_web_session()
    if web_session is None:
        return
    web_session.state.setdefault("notices", []).append({"message": message, "level": level})
    _save(web_session)


def take_notices() -> list[dict[str, str]]:
    web_session = current_web_session()
    if web_session is None or not web_session.state.get("notices"):
        return []
    notices = list(web_session.state.pop("notices"))
    _save(web_session)
    return notices


def stash(key: str, value: Any) -> None:
    """Keep a small value in the encrypted session state (e.g. a one-time download link)."""
    web_session = current_web_session()
    if web_session is None:
        return
    if value is None:
        web_session.state.pop(key, None)
    else:
        web_session.state[key] = value
    _save(web_session)


def _save(web_session: ActiveSession) -> None:
    platform = current_platform()
    with platform.db.transaction() as session:
        WebSessions(session, platform.vault).save(web_session)


def end_session() -> None:
    web_session = current_web_session()
    if web_session is None:
        return
    platform = current_platform()
    with platform.db.transaction() as session:
        WebSessions(session, platform.vault).end(web_session.id)
    g.web_session = None


# -- the API token ------------------------------------------------------------------------------------


def _lock_for(session_id: uuid.UUID) -> threading.Lock:
    with _refresh_locks_guard:
        lock = _refresh_locks.get(session_id)
        if lock is None:
            if len(_refresh_locks) > 10_000:
                _refresh_locks.clear()
            lock = _refresh_locks[session_id] = threading.Lock()
        return lock


def _token_state(tokens: dict[str, Any]) -> dict[str, Any]:
    return {
        "access_token": tokens["access_token"],
        "refresh_token": tokens.get("refresh_token"),
        "access_expires_at": time.time() + float(tokens.get("expires_in", 0)),
    }


def _access_token(app: WebApp) -> str:
    web_session = current_web_session()
    if web_session is None or web_session.pending:
        raise SignedOut()
    if web_session.state.get("access_expires_at", 0) - time.time() > REFRESH_MARGIN_SECONDS:
        return str(web_session.state["access_token"])
    with _lock_for(web_session.id):
        platform = current_platform()
        with platform.db.transaction() as session:
            fresh = WebSessions(session, platform.vault).find(app.name, _secret())
        if fresh is None:
            raise SignedOut()
        if fresh.state.get("access_expires_at", 0) - time.time() > REFRESH_MARGIN_SECONDS:
            web_session.state = fresh.state  # another request refreshed it meanwhile
            return str(fresh.state["access_token"])
        result = gateway.call(
            "POST",
            "/oauth/token",
            form={
                "grant_type": "refresh_token",
                "refresh_token": str(fresh.state.get("refresh_token") or ""),
                "client_id": client_id_for(app),
            },
        )
        if not result.ok or not isinstance(result.body, dict):
            end_session()
            raise SignedOut()
        fresh.state.update(_token_state(result.body))
        web_session.state = fresh.state
        _save(web_session)
        return str(web_session.state["access_token"])


def api(
    app: WebApp,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    query: dict[str, Any] | None = None,
) -> ApiResult:
    """Call the API as the signed-in person. A token the API refuses (the sign-in was revoked, the
    account disabled) ends the session."""
    result = gateway.call(method, path, token=_access_token(app), json_body=json_body, query=query)
    if result.status == 401:
        end_session()
        raise SignedOut()
    return result


def scopes() -> frozenset[str]:
    web_session = current_web_session()
    if web_session is None:
        return frozenset()
    return frozenset(web_session.state.get("scopes", ()))


# -- the routes every app has -------------------------------------------------------------------------


def signed_in(app: WebApp) -> Callable[[Callable[P, ResponseReturnValue]], Callable[P, ResponseReturnValue]]:
    """Pages that need a sign-in. Without one, GETs go to the app's front page (which offers the
    sign-in); POSTs are refused. Every POST must pass the CSRF check."""

    def decorator(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            from web.pages import render

            web_session = current_web_session()
            if web_session is None or web_session.pending:
                if request.method == "GET":
                    return redirect(f"{app.prefix}/", 303)
                return render(app, "web/message.html", 403, heading="Signed out", message=SIGNED_OUT)
            if request.method == "POST" and not check_csrf():
                return render(app, "web/message.html", 403, heading="Not accepted", message=CSRF_FAILED)
            try:
                return view(*args, **kwargs)
            except SignedOut:
                response = render(app, "web/message.html", 401, heading="Signed out", message=SIGNED_OUT)
                return clear_cookie(response, app)

        return wrapper

    return decorator


SIGNED_OUT = "Your session has ended. Sign in again to continue."
CSRF_FAILED = "This form was not accepted: it is out of date or did not come from this site. Reload the page."
SIGN_IN_EXPIRED = "Your sign-in took too long or was started elsewhere. Start again."


def web_blueprint(app: WebApp) -> Blueprint:
    """The blueprint of one web app, with its sign-in, callback and sign-out routes."""
    blueprint = Blueprint(f"web_{app.name}", __name__, url_prefix=app.prefix, template_folder="templates")
    blueprint.before_request(lambda: load_session(app))

    @blueprint.get("/login")
    def login() -> ResponseReturnValue:
        verifier = secrets.token_urlsafe(48)
        state = secrets.token_urlsafe(24)
        platform = current_platform()
        client_id = client_id_for(app)
        with platform.db.transaction() as session:
            secret, _ = WebSessions(session, platform.vault).start(
                app.name, {"verifier": verifier, "state": state}
            )
        url = add_params_to_uri(
            f"{platform.settings.issuer}/oauth/authorize",
            [
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", app.redirect_uri(platform.settings.issuer)),
                ("scope", " ".join(app.scopes)),
                ("state", state),
                ("code_challenge", create_s256_code_challenge(verifier)),
                ("code_challenge_method", "S256"),
            ],
        )
        response = redirect(url, 303)
        return _set_cookie(response, app, secret)

    @blueprint.get("/callback")
    def callback() -> ResponseReturnValue:
        return _callback(app)

    @blueprint.post("/logout")
    def logout() -> ResponseReturnValue:
        from web.pages import render

        web_session = current_web_session()
        if web_session is not None and not web_session.pending:
            if not check_csrf():
                return render(app, "web/message.html", 403, heading="Not accepted", message=CSRF_FAILED)
            refresh_token = web_session.state.get("refresh_token")
            if refresh_token:
                gateway.call(
                    "POST",
                    "/oauth/revoke",
                    form={
                        "token": str(refresh_token),
                        "token_type_hint": "refresh_token",
                        "client_id": client_id_for(app),
                    },
                )
        end_session()
        response = render(
            app, "web/message.html", heading="Signed out", message="You are signed out.", offer_sign_in=True
        )
        return clear_cookie(response, app)

    return blueprint


def _callback(app: WebApp) -> ResponseReturnValue:
    from web.pages import render

    def refuse(message: str, status: int = 400) -> BaseResponse:
        end_session()
        response = render(
            app, "web/message.html", status, heading="Not signed in", message=message, offer_sign_in=True
        )
        return clear_cookie(response, app)

    web_session = current_web_session()
    if web_session is None or not web_session.pending:
        return refuse(SIGN_IN_EXPIRED)
    platform = current_platform()
    expected_state = str(web_session.state.get("state", ""))
    presented_state = request.args.get("state", "")
    if not hmac.compare_digest(presented_state.encode(), expected_state.encode()):
        return refuse(SIGN_IN_EXPIRED)
    if request.args.get("iss") != platform.settings.issuer:
        return refuse("The sign-in answer did not come from this server. Start again.")
    if request.args.get("error"):
        cancelled = request.args.get("error") == "access_denied"
        return refuse("You cancelled the sign-in." if cancelled else SIGN_IN_EXPIRED)
    code = request.args.get("code", "")
    client_id = client_id_for(app)
    result = gateway.call(
        "POST",
        "/oauth/token",
        form={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri(platform.settings.issuer),
            "client_id": client_id,
            "code_verifier": str(web_session.state.get("verifier", "")),
        },
    )
    if not result.ok or not isinstance(result.body, dict) or "access_token" not in result.body:
        return refuse(SIGN_IN_EXPIRED)
    tokens = result.body
    try:
        principal = verify_access_token(str(tokens["access_token"]))
    except TokenRejected:
        return refuse(SIGN_IN_EXPIRED)
    expected_kind = "customer" if app.audience == "customer" else "user"
    if principal.kind != expected_kind or principal.family_id is None:
        return refuse(SIGN_IN_EXPIRED)
    family_id = uuid.UUID(principal.family_id)
    state = {
        **_token_state(tokens),
        "scopes": sorted(principal.scopes),
        "roles": list(principal.roles),
        "department": principal.department,
        "subject": principal.subject,
    }
    with platform.db.read() as session:
        family = session.get(OAuthTokenFamily, family_id)
        family_expires_at = family.expires_at if family is not None else None
    if family_expires_at is None:
        return refuse(SIGN_IN_EXPIRED)
    with platform.db.transaction() as session:
        secret = WebSessions(session, platform.vault).activate(
            web_session,
            family_id=family_id,
            principal=principal.subject,
            expires_at=family_expires_at,
            state=state,
        )
    response = redirect(f"{app.prefix}/", 303)
    return _set_cookie(response, app, secret)
