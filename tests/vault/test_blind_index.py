from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.vault.blind_index import TOKEN_BYTES, BlindIndexer


def test_same_value_same_token_and_deterministic_across_instances() -> None:
    key = os.urandom(32)
    assert BlindIndexer(key).token("email", "a@example.com") == BlindIndexer(key).token(
        "email", "a@example.com"
    )


def test_token_depends_on_key_kind_and_value() -> None:
    indexer = BlindIndexer(os.urandom(32))
    token = indexer.token("email", "a@example.com")
    assert len(token) == TOKEN_BYTES
    assert token != indexer.token("email", "b@example.com")
    assert token != indexer.token("phone", "a@example.com")
    assert token != BlindIndexer(os.urandom(32)).token("email", "a@example.com")


def test_token_reveals_nothing_of_the_value() -> None:
    assert b"example" not in BlindIndexer(os.urandom(32)).token("email", "a@example.com")


@pytest.mark.parametrize("kind", ["", "Email", "e-mail", "x" * 33, "name;drop"])
def test_invalid_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValueError):
        BlindIndexer(os.urandom(32)).token(kind, "v")


@given(st.text(), st.text())
def test_distinct_values_give_distinct_tokens(a: str, b: str) -> None:
    indexer = BlindIndexer(b"k" * 32)
    assert (indexer.token("name", a) == indexer.token("name", b)) == (a == b)
