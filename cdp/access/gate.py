"""The access gate: the one place that decides what a reader may see of a customer, field by field.

Every profile read passes here before anything is decrypted: the reader's role policy, the purpose
they named (data minimization) and the customer's consent for that purpose each get a say, and the
first refusal wins. The result names, for every field, how it is disclosed and, when not in clear,
the rule that decided it — so no reader is left guessing why a field is masked or missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from cdp.access.policy import PROFILE_FIELDS, FieldDecision, FieldPolicy, Mode, Reason, RolePolicy
from cdp.errors import CdpError


class AccessDenied(CdpError):
    """The reader may not make this read at all (wrong role or purpose); the message is safe to show."""


class UnknownPurpose(CdpError):
    """The read named a purpose the policy does not define."""

    def __init__(self, purpose: str, known: Collection[str]) -> None:
        super().__init__(f"unknown purpose; purposes: {', '.join(sorted(known))}")
        self.purpose = purpose


@dataclass(frozen=True)
class Actor:
    """Who is reading, as the gate needs to know it: one role, a department for department-scoped
    roles, and for a customer the record they signed in with (their own profile is that record's)."""

    principal: str
    role: str
    department: str | None = None
    customer_record_id: uuid.UUID | None = None


class ConsentCheck(Protocol):
    """The consent ledger's say in a read: which of ``fields`` the customer's consent for ``purpose``
    withholds, each with the rule that withholds it."""

    def withheld(self, entity_id: uuid.UUID, purpose: str, fields: Collection[str]) -> Mapping[str, str]: ...


class NoConsentLedger:
    """The consent hook before a consent ledger is wired in: role policy and purpose alone decide.

    The consent capability replaces this with the ledger's current state; the gate already reports a
    consent refusal as ``reason: consent`` like any other."""

    def withheld(self, entity_id: uuid.UUID, purpose: str, fields: Collection[str]) -> Mapping[str, str]:
        return {}


@dataclass(frozen=True)
class Disclosure:
    """The gate's answer for one read: the role's policy and a decision per requested field."""

    role: RolePolicy
    purpose: str
    decisions: Mapping[str, FieldDecision]

    def mode(self, field: str) -> Mode:
        decision = self.decisions.get(field)
        return decision.mode if decision is not None else Mode.DENIED

    @property
    def disclosed(self) -> list[str]:
        return [name for name, decision in self.decisions.items() if decision.disclosed]

    @property
    def redactions(self) -> list[FieldDecision]:
        """Every field not shown in clear, with its reason, in response order."""
        return [decision for decision in self.decisions.values() if decision.mode is not Mode.CLEAR]


class AccessGate:
    def __init__(self, policy: FieldPolicy, consent: ConsentCheck | None = None) -> None:
        self.policy = policy
        self.consent: ConsentCheck = consent or NoConsentLedger()

    def admit(self, actor: Actor, purpose: str) -> RolePolicy:
        """May this reader read profiles for this purpose at all? Checked before any lookup."""
        if purpose not in self.policy.purposes:
            raise UnknownPurpose(purpose, self.policy.purposes)
        role = self.policy.role(actor.role)
        if role is None or not role.fields:
            raise AccessDenied(f"role {actor.role} may not read customer profiles")
        if purpose not in role.purposes:
            allowed = ", ".join(sorted(role.purposes)) or "none"
            raise AccessDenied(
                f"role {actor.role} may not read for purpose {purpose}; its purposes: {allowed}"
            )
        if role.department_scoped and not actor.department:
            raise AccessDenied(f"role {actor.role} needs a department")
        if role.self_only and actor.customer_record_id is None:
            raise AccessDenied(f"role {actor.role} reads only its own profile")
        return role

    def disclose(
        self,
        actor: Actor,
        purpose: str,
        entity_id: uuid.UUID,
        fields: Collection[str] = PROFILE_FIELDS,
    ) -> Disclosure:
        """Decide every field for this read: role policy, then purpose, then consent."""
        role = self.admit(actor, purpose)
        decisions = dict(self.policy.decide_all(actor.role, purpose, tuple(fields)))
        candidates = [field for field, decision in decisions.items() if decision.disclosed]
        for field, rule in self.consent.withheld(entity_id, purpose, candidates).items():
            if field in decisions and decisions[field].disclosed:
                decisions[field] = FieldDecision(field, Mode.DENIED, Reason.CONSENT, rule)
        return Disclosure(role, purpose, decisions)
