"""Roles and the scopes each may hold — policy as data, deny by default.

A scope names an operation (``ingest``, ``profiles:read`` …). A principal gets a scope only if its role
allows it *and* it was granted explicitly; an unknown role or scope is refused, never ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

from cdp.errors import CdpError

SCOPES: dict[str, str] = {
    "ingest": "Send customer records and interactions from a source",
    "sources:read": "List sources, ingestion runs and quarantined rows (reasons only, never values)",
    "sources:manage": "Register sources and their mappings, retry or discard quarantined rows",
    "profiles:read": "Read customer profiles through the access gate",
    "profiles:write": "Correct customer data",
    "analytics:read": "Run segments and analytics on consented data (aggregates only)",
    "analytics:manage": "Define, change and delete segment definitions",
    "audit:read": "Search and export the audit log",
    "dsr:manage": "Handle data-subject requests: open on a customer's behalf, approve, reject, carry out",
    "retention:manage": "Place and release legal holds, run retention sweeps, read destruction certificates",
    "work:manage": "Work a department queue: list, assign and close routed requests and complaints",
    "consent:manage": "Record consent on a customer's behalf",
    "self:read": "A customer reads their own data",
    "self:write": "A customer manages their own consents and requests",
    "identity:read": "See how records were resolved: entities' record ids, match explanations and the "
    "review queue — weights and labels, never values",
    "identity:manage": "Merge and split entities by hand",
}

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "department_agent": frozenset(
        {"ingest", "sources:read", "profiles:read", "profiles:write", "work:manage"}
    ),
    "support_agent": frozenset({"ingest", "sources:read", "profiles:read", "work:manage"}),
    "marketing_analyst": frozenset({"analytics:read", "analytics:manage", "profiles:read"}),
    "compliance_officer": frozenset({"audit:read", "sources:read", "profiles:read", "identity:read"}),
    "dpo": frozenset(
        {
            "audit:read",
            "dsr:manage",
            "retention:manage",
            "work:manage",
            "consent:manage",
            "sources:read",
            "profiles:read",
            "identity:read",
        }
    ),
    "admin": frozenset({"ingest", "sources:read", "sources:manage", "audit:read", "identity:read"}),
    "data_steward": frozenset({"identity:read", "identity:manage", "sources:read"}),
    "customer": frozenset({"self:read", "self:write"}),
}
"""Upper bound of what each role may be granted. ``admin`` administers the platform; it does not read
customer profiles (separation of duties). ``data_steward`` fixes identity resolution by hand — merges and
splits on record ids and match evidence — without reading profiles either."""

DEPARTMENTS = ("sales", "support", "billing", "marketing", "compliance", "it")
SERVICE_ROLES = frozenset(ROLE_SCOPES) - {"customer"}
"""Roles a client-credentials (machine) client may have."""


class PolicyError(CdpError):
    """A role, scope or department that the policy does not allow."""


def check_grantable(role: str, scopes: Iterable[str], department: str | None) -> frozenset[str]:
    """Validate a role / scope / department combination for a new principal; returns the scope set."""
    if role not in ROLE_SCOPES:
        raise PolicyError(f"unknown role {role!r}; roles: {', '.join(sorted(ROLE_SCOPES))}")
    wanted = frozenset(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise PolicyError(f"unknown scope(s): {', '.join(unknown)}")
    beyond = sorted(wanted - ROLE_SCOPES[role])
    if beyond:
        raise PolicyError(f"role {role} may not hold scope(s): {', '.join(beyond)}")
    if not wanted:
        raise PolicyError("grant at least one scope")
    if role == "department_agent" and department is None:
        raise PolicyError("a department_agent must belong to a department (--department)")
    if department is not None and department not in DEPARTMENTS:
        raise PolicyError(f"unknown department {department!r}; departments: {', '.join(DEPARTMENTS)}")
    return wanted
