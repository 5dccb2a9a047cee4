"""Which field policy is in force, on the record: a policy change is an audited event.

The policy is configuration shipped with the code (``field_policy.toml``), so it changes when a server
starts with a new one. Each serving process checks at start-up whether the audit log already names this
policy's content digest and records ``policy.activate`` if not — so the log shows when each version of
the rules began to apply, and responses carry the version that applied to them.
"""

from __future__ import annotations

from sqlalchemy import exists, select

from cdp.access.policy import FieldPolicy
from cdp.audit import AuditEvent, record_now
from cdp.audit.queries import about_subjects
from cdp.db import Database
from cdp.db.models import AuditEntry


def policy_subject(policy: FieldPolicy) -> str:
    return f"field-policy:{policy.digest[:32]}"


def record_policy_in_force(db: Database, policy: FieldPolicy) -> bool:
    """Record ``policy.activate`` unless this policy content is already on record. Returns whether it
    recorded. Two workers starting together may both record it; the log then says so twice."""
    subject = policy_subject(policy)
    with db.read() as session:
        known = session.execute(
            select(exists().where(AuditEntry.action == "policy.activate", about_subjects([subject])))
        ).scalar_one()
    if known:
        return False
    record_now(
        db,
        AuditEvent(
            "policy.activate",
            subjects=(subject,),
            details={"policy": "field_policy", "version": policy.version, "digest": policy.digest},
        ),
    )
    return True
