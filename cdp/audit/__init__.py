"""The tamper-evident audit log: append in the operation's transaction, seal into a hash chain,
sign checkpoints, verify — see ARCHITECTURE.md ("Audit") and docs/audit-verification.md."""

from cdp.audit.context import acting_as, current_actor, current_scope
from cdp.audit.events import ACTIONS, ActorKind, AuditActor, AuditError, AuditEvent, Outcome
from cdp.audit.log import record, record_now
from cdp.audit.service import AuditService

__all__ = [
    "ACTIONS",
    "ActorKind",
    "AuditActor",
    "AuditError",
    "AuditEvent",
    "AuditService",
    "Outcome",
    "acting_as",
    "current_actor",
    "current_scope",
    "record",
    "record_now",
]
