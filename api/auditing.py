"""The HTTP layer's side of the audit log: who a request acts for, and the guarantee that every
protected operation leaves an entry.

:func:`api.oauth.require_scope` opens an audit scope for the verified principal and names the
operation's action. Services record the entries that matter inside their own transactions (a profile
read with its subjects and fields, a merge with its records); if a view recorded nothing, the scope
records the action itself before the response leaves — success, or the refusal or failure that ended
the request. Either way, a protected request never completes unaudited.
"""

from __future__ import annotations

import logging

from werkzeug.exceptions import HTTPException

from api.context import current_platform
from api.errors import Problem
from cdp.access.roles import ROLE_SCOPES
from cdp.audit import ActorKind, AuditActor, AuditEvent, Outcome, current_scope, record_now

logger = logging.getLogger(__name__)

_KINDS = {"client": ActorKind.CLIENT, "user": ActorKind.USER, "customer": ActorKind.CUSTOMER}


def audit_actor(subject: str, kind: str, roles: tuple[str, ...], department: str | None) -> AuditActor:
    """A token's principal as the audit log names it: ids and role, never a person's name."""
    role = roles[0] if len(roles) == 1 and roles[0] in ROLE_SCOPES else None
    return AuditActor(subject, _KINDS.get(kind, ActorKind.CLIENT), role, department)


def outcome_of(exc: BaseException) -> Outcome:
    status = exc.status if isinstance(exc, Problem) else exc.code if isinstance(exc, HTTPException) else 500
    if status in (401, 403):
        return Outcome.DENIED
    if status == 404:
        return Outcome.NOT_FOUND
    return Outcome.FAILED


def record_request(action: str, outcome: Outcome, **details: str | int) -> None:
    """Record ``action`` for the current request in a transaction of its own."""
    record_now(current_platform().db, AuditEvent(action, outcome, details=details))


def ensure_recorded(action: str, outcome: Outcome, status: int | None = None) -> None:
    """Record ``action`` unless the view already recorded what happened in this request's scope.

    After a success, anything the view recorded counts (its transactions committed). After a failure,
    only entries already committed on their own count: one recorded inside the failed operation's
    transaction rolled back with it."""
    scope = current_scope()
    if scope is not None and (scope.committed if outcome is not Outcome.SUCCESS else scope.recorded):
        return
    if status is None:
        record_request(action, outcome)
    else:
        record_request(action, outcome, status=status)
