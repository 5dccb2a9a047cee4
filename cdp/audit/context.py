"""Who the current unit of work acts for, so services record entries without threading an actor through
every signature.

The HTTP layer sets the scope once per request (from the verified token) and the CLI once per command
(the operator); code that runs outside both records as the system. The scope also counts what was
recorded, so the HTTP layer can refuse to answer a protected request that recorded nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from cdp.audit.events import AuditActor


@dataclass
class AuditScope:
    actor: AuditActor
    request_id: str | None = None
    recorded: list[str] = field(default_factory=list)
    """Actions recorded in this scope, in order (some inside transactions that may yet roll back)."""
    committed: list[str] = field(default_factory=list)
    """Actions recorded by :func:`~cdp.audit.log.record_now`: committed whatever happens next."""


_SCOPE: ContextVar[AuditScope | None] = ContextVar("cdp_audit_scope", default=None)
_SYSTEM = AuditActor.system()


@contextmanager
def acting_as(actor: AuditActor, request_id: str | None = None) -> Iterator[AuditScope]:
    scope = AuditScope(actor, request_id)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def current_scope() -> AuditScope | None:
    return _SCOPE.get()


def current_actor() -> AuditActor:
    scope = _SCOPE.get()
    return scope.actor if scope is not None else _SYSTEM


def rebind_actor(actor: AuditActor) -> None:
    """Name the actor once it is known (a sign-in learns who it is half-way through a request)."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.actor = actor
