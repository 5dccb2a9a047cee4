"""Typed access to what a request works with: the platform and the request id.

Views and handlers go through these accessors rather than ``current_app.extensions`` or ``flask.g``
directly, so the keys live in one place and the types survive ``mypy --strict``.
"""

from __future__ import annotations

import re
import uuid
from typing import cast

from flask import current_app, g, request

from cdp.platform import Platform

EXTENSION_KEY = "cdp"
REQUEST_ID_HEADER = "X-Request-ID"

# Tight on purpose: the id is echoed in headers and bodies and written to logs, so it must not be able
# to carry markup, log-injection characters or, being short, anything much at all.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def current_platform() -> Platform:
    """The platform the app was created with."""
    return cast(Platform, current_app.extensions[EXTENSION_KEY])


def choose_request_id(incoming: str | None) -> str:
    """Keep a caller's id (a proxy's or a client's, to correlate logs) only if it is well formed."""
    if incoming is not None and _VALID_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def current_request_id() -> str:
    """This request's id, chosen on first use, so error handlers have one even if a hook failed."""
    request_id = g.get("request_id")
    if not isinstance(request_id, str):
        request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id = request_id
    return request_id
