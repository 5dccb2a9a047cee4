"""The access gate: the policy's remembered decisions never carry one customer's consent into another's
read, and always equal the field-by-field decisions."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping

from cdp.access.gate import AccessGate, Actor
from cdp.access.policy import PROFILE_FIELDS, FieldPolicy, Mode, Reason
from cdp.access.roles import ROLE_SCOPES

WITHHOLDING = uuid.uuid4()


class _WithholdsEmailFromOneCustomer:
    def withheld(self, entity_id: uuid.UUID, purpose: str, fields: Collection[str]) -> Mapping[str, str]:
        if entity_id == WITHHOLDING and "email" in fields:
            return {"email": "consent.email withdrawn"}
        return {}


def test_remembered_decisions_equal_deciding_each_field_for_every_role_and_purpose() -> None:
    policy = FieldPolicy.default()
    for role in [*ROLE_SCOPES, "wizard"]:
        for purpose in [*policy.purposes, "curiosity"]:
            remembered = policy.decide_all(role, purpose, PROFILE_FIELDS)
            assert dict(remembered) == {f: policy.decide(role, purpose, f) for f in PROFILE_FIELDS}
            assert policy.decide_all(role, purpose, PROFILE_FIELDS) is remembered


def test_consent_withheld_for_one_customer_does_not_reach_the_next_customers_read() -> None:
    gate = AccessGate(FieldPolicy.default(), _WithholdsEmailFromOneCustomer())
    reader = Actor("agent", "support_agent")

    withheld = gate.disclose(reader, "support", WITHHOLDING)
    other = gate.disclose(reader, "support", uuid.uuid4())

    assert withheld.decisions["email"].mode is Mode.DENIED
    assert withheld.decisions["email"].reason is Reason.CONSENT
    assert other.mode("email") is Mode.CLEAR
    assert gate.policy.decide_all("support_agent", "support", PROFILE_FIELDS)["email"].mode is Mode.CLEAR
