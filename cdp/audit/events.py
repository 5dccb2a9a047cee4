"""What an audit entry says: the catalog of actions, outcomes, actors and the event itself.

An entry names people only by ids (customer, record, subject, user, client) and data only by field
names; the values never enter the audit log. That keeps the log outside the reach of erasure: an entry
about an erased customer stays true and verifiable while revealing nothing of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cdp.errors import CdpError


class AuditError(CdpError):
    """The audit log refused or could not record an entry."""


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    """Authorization refused it: wrong role, purpose, scope, token, password or code."""
    NOT_FOUND = "not_found"
    """It named a customer or record that does not exist or the actor may not know of."""
    FAILED = "failed"
    """Allowed, but it did not complete (bad input, a conflict, an error)."""


class ActorKind(StrEnum):
    CLIENT = "client"
    USER = "user"
    CUSTOMER = "customer"
    OPERATOR = "operator"
    """Someone at the command line on the server (``cdp`` CLI): trusted with the keys, still accountable."""
    SYSTEM = "system"
    ANONYMOUS = "anonymous"
    """A caller that did not authenticate (a rejected token, a failed sign-in)."""


ACTIONS: dict[str, str] = {
    # customer data
    "profile.read": "Read a customer's 360-degree profile",
    "profile.search": "Look customers up by exact email, phone or name (blind indexes)",
    "timeline.read": "Read a customer's contact history",
    "records.ingest": "Ingest customer records from a source",
    "interactions.ingest": "Ingest interactions from a source",
    "quarantine.read": "List quarantined rows (reasons only)",
    "quarantine.reprocess": "Re-process quarantined rows",
    "sources.read": "List sources",
    "sources.register": "Register or change a source and its mapping",
    # identity resolution
    "identity.read": "Look up the entity of a record",
    "identity.explain": "Read match evidence (weights and labels, never values)",
    "identity.review": "Read the review queue",
    "identity.merge": "Merge two records' entities by hand",
    "identity.split": "Split records out of an entity by hand",
    "identity.resolve": "Run batch identity resolution",
    # authentication and authorization
    "auth.token": "Issue an access token",
    "auth.token_rejected": "Present an invalid, expired or revoked access token",
    "auth.scope_denied": "Call an operation the token's scopes do not cover",
    "auth.revoke": "Revoke a token",
    "auth.introspect": "Introspect a token",
    "auth.login": "Sign in (staff password and TOTP, or customer one-time code)",
    "auth.login_code": "Ask for a customer sign-in code",
    # administration
    "client.create": "Register an OAuth client",
    "client.disable": "Disable an OAuth client",
    "user.create": "Create a staff user",
    "user.disable": "Disable a staff user",
    "user.enable": "Enable a staff user",
    "user.credentials": "Set a staff user's password or second factor",
    "key.rotate": "Rotate key-encryption keys",
    "key.status": "Read the status of the keys (versions, states, counts; never key material)",
    "key.signing_rotate": "Rotate the token or checkpoint signing key",
    "policy.activate": "Start enforcing a field policy version",
    # consent
    "consent.record": "Record a consent event (grant, withdraw, expire)",
    "consent.read": "Read a customer's consent state or history",
    "consent.counts": "Read consent counts per purpose",
    "consent.recompute": "A merge or split changed which consents hold for the customers involved",
    # data-subject requests, erasure and retention
    "dsr.request": "Open a data-subject request (access/export or erasure)",
    "dsr.read": "Read data-subject requests",
    "dsr.verify": "Verify a data-subject requester (sign-in or one-time code)",
    "dsr.approve": "Approve an erasure request",
    "dsr.reject": "Reject a data-subject request, with a reason",
    "dsr.export": "Build a data-subject export",
    "dsr.export.download": "Download a data-subject export (single use)",
    "dsr.export.expire": "Shred data-subject exports nobody downloaded in time",
    "dsr.erase": "Erase a customer (crypto-shred, delete, suppress, pseudonymize what the law keeps)",
    "dsr.receipt": "Read or verify an erasure receipt or destruction certificate",
    "retention.sweep": "Destroy records past their retention period",
    "retention.read": "Read retention policies, holds or sweeps",
    "retention.hold": "Place a legal hold",
    "retention.release": "Release a legal hold",
    "suppression.match": "An ingested row matched an erased person and was quarantined",
    # analytics on consented data (aggregates only)
    "analytics.run": "Run an analysis or evaluate a segment on the customers the purpose covers",
    "analytics.segments": "Create, change or delete a segment definition",
    "analytics.read": "List segment definitions or read a segment's size over time",
    # routing of requests and complaints
    "work.route": "Route a request or complaint to a department queue",
    "work.read": "Read a department queue",
    "work.assign": "Assign a work item",
    "work.escalate": "Escalate an overdue work item",
    "work.close": "Close a work item",
    # the audit log itself
    "audit.search": "Search audit entries",
    "audit.report": "Read an access report",
    "audit.export": "Export audit entries",
    "audit.status": "Read the chain status",
    "audit.verify": "Verify the audit chain",
    "audit.checkpoint": "Sign a checkpoint of the audit chain",
    "audit.prune": "Delete audit entries past their retention",
    "audit.transparency": "A customer lists who accessed their data",
}
"""Every action the log knows; recording anything else is a programming error, caught in tests."""

READ_ACTIONS = frozenset({"profile.read", "timeline.read"})
"""Accesses to a customer's personal data that the customer can see in their access log."""

_SUBJECT_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")


@dataclass(frozen=True)
class AuditActor:
    """Who is accountable: a principal id (never a name or email), its kind, role and department."""

    principal: str
    kind: ActorKind
    role: str | None = None
    department: str | None = None

    @classmethod
    def system(cls, name: str = "cdp") -> AuditActor:
        return cls(f"system:{name}", ActorKind.SYSTEM)

    @classmethod
    def operator(cls, name: str) -> AuditActor:
        return cls(f"operator:{name}", ActorKind.OPERATOR, role="operator")

    @classmethod
    def anonymous(cls) -> AuditActor:
        return cls("anonymous", ActorKind.ANONYMOUS)


@dataclass(frozen=True)
class AuditEvent:
    """One operation to record. ``subjects`` are ids of customers (entities), records or data subjects;
    ``fields`` are attribute names; ``details`` carry counts, reason codes and names of things, never
    personal values."""

    action: str
    outcome: Outcome = Outcome.SUCCESS
    purpose: str | None = None
    subjects: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    """JSON values without floats (their text form is not canonical); checked when recorded."""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise AuditError(f"unknown audit action {self.action!r}")
        for subject in self.subjects:
            if not _SUBJECT_ID.fullmatch(subject):
                raise AuditError("audit subjects are ids: letters, digits and . _ : @ - only")
