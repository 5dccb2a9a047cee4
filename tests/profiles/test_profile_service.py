"""Purpose-bound profile and timeline reads through the access gate, on SQLite and PostgreSQL: what each
reader sees, what is never decrypted for them, and why every hidden field is hidden."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cdp.access.gate import AccessDenied, AccessGate, Actor, UnknownPurpose
from cdp.access.policy import FieldPolicy
from cdp.platform import Platform
from cdp.profiles.service import ProfileNotFound, ProfileService
from cdp.vault.cipher import FieldCipher
from tests.profiles.fixtures import Customers, seed_customers

SUPPORT = Actor("client:support", "support_agent")
MARKETING = Actor("client:marketing", "marketing_analyst")
SALES_AGENT = Actor("client:sales", "department_agent", "sales")
SUPPORT_DESK_AGENT = Actor("client:helpdesk", "department_agent", "support")


@pytest.fixture
def customers(platform: Platform, tmp_path: Path) -> Customers:
    return seed_customers(platform, tmp_path)


@pytest.fixture
def profiles(platform: Platform) -> ProfileService:
    return ProfileService(platform.db, platform.vault, AccessGate(FieldPolicy.default()))


@pytest.fixture
def decrypted_fields(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every field name the vault decrypts during the test, to prove what is never opened."""
    seen: list[str] = []
    original = FieldCipher.decrypt_many

    def spy(self: FieldCipher, table: str, record_id: str, blobs: Mapping[str, bytes]) -> Any:
        seen.extend(blobs)
        return original(self, table, record_id, blobs)

    original_one = FieldCipher.decrypt

    def spy_one(self: FieldCipher, table: str, record_id: str, field: str, blob: bytes) -> Any:
        seen.append(f"{table}.{field}")
        return original_one(self, table, record_id, field, blob)

    monkeypatch.setattr(FieldCipher, "decrypt_many", spy)
    monkeypatch.setattr(FieldCipher, "decrypt", spy_one)
    yield seen


def redaction(view: dict[str, Any], field: str) -> dict[str, str]:
    return next(r for r in view["redactions"] if r["field"] == field)


def test_support_agent_sees_the_merged_profile_with_masked_identifiers(
    profiles: ProfileService, customers: Customers
) -> None:
    view = profiles.read(SUPPORT, customers.maria, "support").to_dict()
    attributes = view["attributes"]
    assert attributes["first_name"]["value"] == "Maria" and attributes["first_name"]["support"] == 2
    assert attributes["email"] == {
        "value": "maria.garcia@example.com",
        "mode": "clear",
        "source": attributes["email"]["source"],
        "record_id": attributes["email"]["record_id"],
        "strategy": attributes["email"]["strategy"],
        "support": 2,
    }
    assert attributes["date_of_birth"] == {
        **attributes["date_of_birth"],
        "value": "1961-**-**",
        "mode": "masked",
    }
    assert attributes["national_id"]["value"] == "***456C"
    assert {r["source"] for r in view["records"]} == {"crm", "helpdesk"}
    assert redaction(view, "national_id") == {
        "field": "national_id",
        "mode": "masked",
        "reason": "role_policy",
        "rule": "roles.support_agent.fields.national_id = masked",
    }
    assert redaction(view, "attributes")["mode"] == "omitted"
    assert view["policy_version"] == 1 and view["purpose"] == "support"


def test_fields_a_reader_may_not_see_are_never_decrypted(
    profiles: ProfileService, customers: Customers, decrypted_fields: list[str]
) -> None:
    view = profiles.read(MARKETING, customers.maria, "marketing").to_dict()
    assert set(view["attributes"]) == {
        "first_name",
        "last_name",
        "date_of_birth",
        "email",
        "city",
        "postcode",
    }
    assert view["attributes"]["email"]["value"] == "m***@example.com"
    assert view["attributes"]["last_name"]["value"] == "G***"
    never = {"phone", "national_id", "address_line1", "street_number", "attributes", "full_name"}
    assert decrypted_fields and not never & set(decrypted_fields)
    assert all(redaction(view, name)["mode"] == "omitted" for name in ("phone", "national_id"))


def test_purpose_limits_fields_even_when_the_role_may_see_them(
    profiles: ProfileService, customers: Customers
) -> None:
    view = profiles.read(SUPPORT, customers.maria, "identity_verification").to_dict()
    assert "address_line1" not in view["attributes"] and "postcode" in view["attributes"]
    assert redaction(view, "address_line1") == {
        "field": "address_line1",
        "mode": "omitted",
        "reason": "purpose",
        "rule": "purposes.identity_verification.needs has no address_line1",
    }


def test_department_agent_sees_only_what_their_department_holds(
    profiles: ProfileService, customers: Customers
) -> None:
    sales = profiles.read(SALES_AGENT, customers.maria, "sales").to_dict()
    assert [r["source"] for r in sales["records"]] == ["crm"]
    assert sales["attributes"]["phone"]["value"] == "07911 123456"  # the CRM's, not the helpdesk's
    assert sales["attributes"]["attributes"]["value"] == {"crm": {"segment": "gold"}}
    desk = profiles.read(SUPPORT_DESK_AGENT, customers.maria, "support").to_dict()
    assert [r["source"] for r in desk["records"]] == ["helpdesk"]
    assert "city" not in desk["attributes"]  # only the CRM knows the address
    with pytest.raises(ProfileNotFound):
        profiles.read(SALES_AGENT, customers.ana, "sales")  # a helpdesk-only customer


def test_a_role_cannot_read_for_a_purpose_it_does_not_have(
    profiles: ProfileService, customers: Customers
) -> None:
    with pytest.raises(AccessDenied, match="may not read for purpose marketing"):
        profiles.read(SUPPORT, customers.maria, "marketing")
    with pytest.raises(UnknownPurpose, match="unknown purpose"):
        profiles.read(SUPPORT, customers.maria, "curiosity")
    for role in ("admin", "data_steward", "wizard"):
        with pytest.raises(AccessDenied):
            profiles.read(Actor("x", role), customers.maria, "support")


def test_unknown_customer_is_not_found(profiles: ProfileService, customers: Customers) -> None:
    with pytest.raises(ProfileNotFound):
        profiles.read(SUPPORT, uuid.uuid4(), "support")


def test_a_customer_reads_their_own_profile_and_nobody_elses(
    profiles: ProfileService, customers: Customers
) -> None:
    maria = Actor(
        f"customer:{customers.maria_helpdesk_record}", "customer", None, customers.maria_helpdesk_record
    )
    own = profiles.own_entity(maria)
    assert own == customers.maria
    view = profiles.read(maria, own, "self_service").to_dict()
    assert view["attributes"]["national_id"]["value"] == "QQ123456C" and not view["redactions"]
    with pytest.raises(ProfileNotFound):
        profiles.read(maria, customers.john, "self_service")
    with pytest.raises(AccessDenied):
        profiles.read(Actor("customer:?", "customer"), own, "self_service")  # no record: no self


def test_consent_refusal_is_reported_as_consent(platform: Platform, customers: Customers) -> None:
    class NoEmailMarketing:
        def withheld(self, entity_id: uuid.UUID, purpose: str, fields: Collection[str]) -> Mapping[str, str]:
            return {"email": "consent marketing_email withdrawn"} if purpose == "marketing" else {}

    service = ProfileService(
        platform.db, platform.vault, AccessGate(FieldPolicy.default(), NoEmailMarketing())
    )
    view = service.read(MARKETING, customers.maria, "marketing").to_dict()
    assert "email" not in view["attributes"]
    assert redaction(view, "email") == {
        "field": "email",
        "mode": "omitted",
        "reason": "consent",
        "rule": "consent marketing_email withdrawn",
    }


def test_timeline_merges_every_source_newest_first_and_paginates(
    profiles: ProfileService, customers: Customers
) -> None:
    first = profiles.timeline(SUPPORT, customers.maria, "support", limit=3)
    assert [i.occurred_at.isoformat()[:10] for i in first.items] == ["2025-07-01", "2025-06-10", "2025-01-15"]
    assert {i.source for i in first.items} == {"crm", "helpdesk"}
    assert (
        first.items[0].content is not None and first.items[0].content["content"] == "Please refund order 42"
    )
    assert first.next_cursor is not None
    rest = profiles.timeline(SUPPORT, customers.maria, "support", limit=3, cursor=first.next_cursor)
    assert [i.occurred_at.isoformat()[:10] for i in rest.items] == ["2024-03-01"] and rest.next_cursor is None


def test_timeline_without_content_never_decrypts_it(
    profiles: ProfileService, customers: Customers, decrypted_fields: list[str]
) -> None:
    view = profiles.timeline(MARKETING, customers.maria, "marketing").to_dict()
    assert len(view["items"]) == 4 and all("content" not in item for item in view["items"])
    assert redaction(view, "interaction_content")["reason"] == "role_policy"
    assert not [name for name in decrypted_fields if "details" in name]


def test_department_agent_timeline_holds_only_their_departments_interactions(
    profiles: ProfileService, customers: Customers
) -> None:
    view = profiles.timeline(SALES_AGENT, customers.maria, "sales")
    assert {item.department for item in view.items} == {"sales"} and len(view.items) == 2
    with pytest.raises(ProfileNotFound):
        profiles.timeline(SALES_AGENT, customers.ana, "sales")


def test_timeline_refused_when_the_purpose_does_not_need_contact_history(
    profiles: ProfileService, customers: Customers
) -> None:
    with pytest.raises(AccessDenied, match="contact history is not available"):
        profiles.timeline(SUPPORT, customers.maria, "identity_verification")
