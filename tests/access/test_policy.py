"""The field policy as data: loading refuses anything that could silently widen access, decisions deny
by default, and masks reveal only what they promise."""

from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.access.masking import mask
from cdp.access.policy import (
    PROFILE_FIELDS,
    FieldPolicy,
    Mode,
    PolicyConfigError,
    Reason,
)
from cdp.access.roles import ROLE_SCOPES

POLICY = FieldPolicy.default()

MINIMAL_ROLES = "\n".join(f"[roles.{role}]" for role in sorted(ROLE_SCOPES))


def load(extra: str, roles: str = MINIMAL_ROLES) -> FieldPolicy:
    return FieldPolicy.from_toml(f"version = 1\n{extra}\n{roles}\n")


def test_default_policy_covers_every_role_the_platform_knows() -> None:
    assert set(POLICY.roles) == set(ROLE_SCOPES)
    assert POLICY.version >= 1


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("version = 0", "version: must be a positive integer"),
        ("version = 1\n[roles.wizard]\n" + MINIMAL_ROLES, "roles.wizard: unknown role"),
        ("version = 1\n[roles.admin]\n", "every role needs a policy"),
        (
            "version = 1\n[purposes.p]\nneeds = ['shoe_size']\n" + MINIMAL_ROLES,
            "purposes.p.needs[0]: unknown attribute 'shoe_size'",
        ),
        ("version = 1\nsurprise = true\n" + MINIMAL_ROLES, "surprise: unknown key"),
    ],
)
def test_invalid_documents_are_refused_with_the_key_path(document: str, message: str) -> None:
    with pytest.raises(PolicyConfigError, match=re.escape(message)):
        FieldPolicy.from_toml(document)


def test_unknown_mode_attribute_and_purpose_in_a_role_are_refused() -> None:
    roles = MINIMAL_ROLES.replace("[roles.admin]", "[roles.admin]\n[roles.admin.fields]\nemail = 'visible'")
    with pytest.raises(PolicyConfigError, match=r"roles\.admin\.fields\.email: must be one of clear, masked"):
        load("", roles)
    roles = MINIMAL_ROLES.replace("[roles.admin]", "[roles.admin]\n[roles.admin.fields]\nshoe = 'clear'")
    with pytest.raises(PolicyConfigError, match=r"roles\.admin\.fields\.shoe: unknown attribute"):
        load("", roles)
    roles = MINIMAL_ROLES.replace("[roles.admin]", "[roles.admin]\npurposes = ['fun']")
    with pytest.raises(PolicyConfigError, match=r"roles.admin.purposes\[0\]: unknown purpose 'fun'"):
        load("", roles)


def test_a_contact_history_cannot_be_half_shown() -> None:
    roles = MINIMAL_ROLES.replace(
        "[roles.admin]", "[roles.admin]\n[roles.admin.fields]\ninteraction_content = 'masked'"
    )
    with pytest.raises(PolicyConfigError, match="cannot be masked"):
        load("", roles)


def test_an_attribute_a_role_does_not_list_is_denied_by_role_policy() -> None:
    decision = POLICY.decide("marketing_analyst", "marketing", "phone")
    assert decision.mode is Mode.DENIED and decision.reason is Reason.ROLE_POLICY
    assert decision.rule == "roles.marketing_analyst.fields has no phone (default deny)"


def test_role_policy_is_applied_before_purpose_and_masking_survives_purpose() -> None:
    masked = POLICY.decide("marketing_analyst", "marketing", "email")
    assert masked.mode is Mode.MASKED and masked.rule == "roles.marketing_analyst.fields.email = masked"
    unneeded = POLICY.decide("support_agent", "identity_verification", "address_line1")
    assert unneeded.mode is Mode.DENIED and unneeded.reason is Reason.PURPOSE
    assert unneeded.rule == "purposes.identity_verification.needs has no address_line1"
    assert POLICY.decide("support_agent", "support", "email").mode is Mode.CLEAR


def test_unknown_roles_purposes_and_fields_are_denied() -> None:
    assert POLICY.decide("wizard", "support", "email").mode is Mode.DENIED
    assert POLICY.decide("support_agent", "curiosity", "email").mode is Mode.DENIED
    assert POLICY.decide("support_agent", "marketing", "email").mode is Mode.DENIED  # not its purpose
    assert POLICY.decide("dpo", "dsr", "password").mode is Mode.DENIED


def test_platform_operators_read_nothing() -> None:
    for role in ("admin", "data_steward"):
        assert not POLICY.roles[role].fields and not POLICY.roles[role].purposes


@given(
    role=st.sampled_from([*ROLE_SCOPES, "wizard", ""]),
    purpose=st.sampled_from([*POLICY.purposes, "curiosity"]),
    field=st.sampled_from([*PROFILE_FIELDS, "ssn"]),
)
def test_a_field_is_disclosed_only_when_role_purpose_and_field_all_allow_it(
    role: str, purpose: str, field: str
) -> None:
    decision = POLICY.decide(role, purpose, field)
    policy = POLICY.roles.get(role)
    allowed = (
        policy is not None
        and purpose in policy.purposes
        and field in POLICY.purposes[purpose].needs
        and policy.mode(field) is not Mode.DENIED
    )
    assert decision.disclosed == allowed
    if decision.disclosed:
        assert decision.mode is policy.mode(field)  # type: ignore[union-attr]
    if decision.mode is not Mode.CLEAR:
        assert decision.reason is not None and decision.rule


@pytest.mark.parametrize(
    ("field", "value", "masked"),
    [
        ("email", "maria.garcia@example.com", "m***@example.com"),
        ("phone", "+44 7911 123456", "***3456"),
        ("national_id", "QQ123456C", "***456C"),
        ("date_of_birth", date(1961, 7, 14), "1961-**-**"),
        ("postcode", "SW1A 1AA", "SW1A ***"),
        ("postcode", "75008", "75***"),
        ("address_line1", "High Street", "***"),
        ("first_name", "Maria", "M***"),
        ("phone", "1234", "***"),
        ("email", "not-an-email", "***"),
        ("attributes", {"segment": "gold"}, {"segment": "***"}),
    ],
)
def test_masks_show_only_what_they_promise(field: str, value: object, masked: object) -> None:
    assert mask(field, value) == masked
    assert mask(field, None) is None
