"""Customer search through the blind indexes, on SQLite and PostgreSQL: the input is normalized exactly
as ingestion normalizes it, only exact keys match, nothing is decrypted to answer, a department sees only
its own customers, and bad input is refused without repeating it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.profiles.search import CustomerSearch, InvalidSearch, SearchQuery
from cdp.vault.cipher import FieldCipher
from tests.profiles.fixtures import Customers, seed_customers


@pytest.fixture
def customers(platform: Platform, tmp_path: Path) -> Customers:
    return seed_customers(platform, tmp_path)


@pytest.fixture
def finder(platform: Platform) -> CustomerSearch:
    return CustomerSearch(platform.db, platform.vault)


@pytest.fixture
def decrypted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every field the vault decrypts while the test runs."""
    seen: list[str] = []
    many, one = FieldCipher.decrypt_many, FieldCipher.decrypt

    def spy_many(self: FieldCipher, table: str, record_id: str, blobs: Mapping[str, bytes]) -> Any:
        seen.extend(blobs)
        return many(self, table, record_id, blobs)

    def spy_one(self: FieldCipher, table: str, record_id: str, field: str, blob: bytes) -> Any:
        seen.append(field)
        return one(self, table, record_id, field, blob)

    monkeypatch.setattr(FieldCipher, "decrypt_many", spy_many)
    monkeypatch.setattr(FieldCipher, "decrypt", spy_one)
    yield seen


def ids(finder: CustomerSearch, line_of_business: str | None = None, **query: str) -> list[Any]:
    return [
        hit.entity_id for hit in finder.search(SearchQuery(**query), line_of_business=line_of_business).hits
    ]


def test_an_email_is_found_as_ingestion_matched_it_without_decrypting_anything(
    customers: Customers, finder: CustomerSearch, decrypted: list[str]
) -> None:
    result = finder.search(SearchQuery(email="  MARIA.Garcia+orders@example.COM "))
    assert decrypted == []
    assert [hit.to_dict() for hit in result.hits] == [
        {
            "id": str(customers.maria),
            "matched": ["email"],
            "records": 2,
            "sources": ["crm", "helpdesk"],
            "lines_of_business": ["sales", "support"],
        }
    ]
    assert result.searched == ("email",) and not result.capped
    assert ids(finder, email="maria.garcia@example.org") == []  # exact keys only


def test_a_phone_number_is_found_in_national_and_international_form(
    customers: Customers, finder: CustomerSearch
) -> None:
    assert ids(finder, phone="07911 123456") == [customers.maria]  # national, read as GB by default
    assert ids(finder, phone="+44 (0)7911-123456", region="FR") == [customers.maria]
    assert ids(finder, phone="+44 7400 123456") == [customers.john]
    assert ids(finder, phone="07400 654321") == []


def test_a_name_search_needs_both_names_on_one_record_and_folds_accents(
    customers: Customers, finder: CustomerSearch
) -> None:
    assert ids(finder, first_name="maría", last_name="GARCIA") == [customers.maria]
    assert ids(finder, last_name="García") == [customers.maria]
    assert ids(finder, first_name="John", last_name="Smith") == [customers.john]
    assert ids(finder, first_name="Maria", last_name="Smith") == []  # both names exist, not together
    hit = finder.search(SearchQuery(first_name="Ana", last_name="Silva")).hits[0]
    assert hit.entity_id == customers.ana and hit.matched == ("first_name", "last_name")
    assert hit.sources == ("helpdesk",) and hit.records == 1


def test_a_department_finds_only_the_customers_it_holds_and_sees_only_its_records(
    customers: Customers, finder: CustomerSearch
) -> None:
    support = finder.search(SearchQuery(last_name="Garcia"), line_of_business="support").hits
    assert [(h.entity_id, h.records, h.sources) for h in support] == [(customers.maria, 1, ("helpdesk",))]
    assert ids(finder, "sales", last_name="Silva") == []
    assert ids(finder, "support", last_name="Silva") == [customers.ana]


def test_results_are_capped_and_say_so(platform: Platform, customers: Customers) -> None:
    identity = IdentityService(platform.db, platform.vault)
    identity.split(customers.maria, [customers.maria_helpdesk_record], actor="test", reason="two people")
    everyone = CustomerSearch(platform.db, platform.vault).search(
        SearchQuery(email="maria.garcia@example.com")
    )
    assert len(everyone.hits) == 2 and not everyone.capped
    capped = CustomerSearch(platform.db, platform.vault, limit=1).search(
        SearchQuery(email="maria.garcia@example.com")
    )
    assert len(capped.hits) == 1 and capped.capped and capped.to_dict()["limit"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"email": "maria.garcia at example"}, "email"),
        ({"phone": "not a phone 12"}, "phone"),
        ({"phone": "07911 123456", "region": "Britain"}, "region"),
        ({"first_name": "Maria"}, "last_name"),
        ({"email": "maria.garcia@example.com", "last_name": "Garcia"}, "query"),
        ({"email": "   "}, "query"),
    ],
)
def test_bad_input_is_refused_with_a_message_that_does_not_repeat_it(
    customers: Customers, finder: CustomerSearch, query: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidSearch) as refused:
        finder.search(SearchQuery(**query))
    assert refused.value.field == field
    for value in query.values():
        if value.strip():
            assert value not in str(refused.value)
    assert "maria" not in repr(SearchQuery(**query)).lower()
