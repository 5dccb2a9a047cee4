"""Hostile input for every public normalizer: a clean value or NormalizationError — nothing else, fast.

Sources send emoji, RTL text and bidi overrides, NUL bytes, 10 kB fields and undecodable bytes (lone
surrogates after ``errors="surrogateescape"``). Ingestion quarantines on NormalizationError; any other
exception, a hang, or an error message quoting the value (personal data into logs) is a bug.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings

from cdp.identity import normalize as norm
from tests.identity.inputs import HOSTILE, hostile_text

TODAY = date(2026, 6, 15)
DATE_FORMATS = ["%d/%m/%Y", "%Y-%m-%d", "%d/%m/%y"]

FUNCTIONS: dict[str, Callable[[str], Any]] = {
    "clean_text": norm.clean_text,
    "clean_text_short": lambda v: norm.clean_text(v, max_length=8),
    "normalize_email": norm.normalize_email,
    "normalize_email_strip": lambda v: norm.normalize_email(v, plus_addressing="strip", gmail_dots=True),
    "normalize_phone_gb": lambda v: norm.normalize_phone(v, default_region="GB"),
    "normalize_phone_us": lambda v: norm.normalize_phone(v, default_region="US"),
    "normalize_phone_hostile_region": lambda v: norm.normalize_phone("020 7946 0958", default_region=v),
    "phone_is_placeholder": norm.phone_is_placeholder,
    "normalize_name": norm.normalize_name,
    "generational_suffix": norm.generational_suffix,
    "name_match_key": norm.name_match_key,
    "name_match_keys": norm.name_match_keys,
    "nickname_keys": norm.nickname_keys,
    "split_full_name": norm.split_full_name,
    "phonetic_key": norm.phonetic_key,
    "parse_address_line": norm.parse_address_line,
    "normalize_street": norm.normalize_street,
    "normalize_street_nl": lambda v: norm.normalize_street(v, "NL"),
    "normalize_street_hostile_country": lambda v: norm.normalize_street("Hauptstr. 5", v),
    "normalize_postcode_gb": lambda v: norm.normalize_postcode(v, "GB"),
    "normalize_postcode_us": lambda v: norm.normalize_postcode(v, "US"),
    "normalize_postcode_de": lambda v: norm.normalize_postcode(v, "DE"),
    "normalize_postcode_none": lambda v: norm.normalize_postcode(v, None),
    "normalize_postcode_hostile_country": lambda v: norm.normalize_postcode("SW1A 1AA", v),
    "normalize_country": norm.normalize_country,
    "parse_date": lambda v: norm.parse_date(v, DATE_FORMATS),
    "parse_date_of_birth": lambda v: norm.parse_date_of_birth(v, DATE_FORMATS, today=TODAY),
    "normalize_national_id": lambda v: norm.normalize_national_id(v, "US"),
    "normalize_national_id_hostile_country": lambda v: norm.normalize_national_id("AB123457C", v),
}

ALL_PUBLIC_STRING_FUNCTIONS = {
    "clean_text",
    "normalize_email",
    "normalize_phone",
    "phone_is_placeholder",
    "normalize_name",
    "generational_suffix",
    "name_match_key",
    "name_match_keys",
    "nickname_keys",
    "split_full_name",
    "phonetic_key",
    "parse_address_line",
    "normalize_street",
    "normalize_postcode",
    "normalize_country",
    "parse_date",
    "parse_date_of_birth",
    "normalize_national_id",
}


def test_every_public_string_function_is_under_hostile_test() -> None:
    exported = {name for name in norm.__all__ if callable(getattr(norm, name)) and name[0].islower()}
    assert exported - {"day_month_swapped"} == ALL_PUBLIC_STRING_FUNCTIONS
    covered = {name for name in ALL_PUBLIC_STRING_FUNCTIONS if any(key.startswith(name) for key in FUNCTIONS)}
    assert covered == ALL_PUBLIC_STRING_FUNCTIONS


def _check(fn: Callable[[str], Any], value: str) -> None:
    try:
        fn(value)
    except norm.NormalizationError as err:
        assert str(err) == norm.MESSAGES[err.reason]  # fixed text: the value cannot be in it
        assert err.__cause__ is None
        assert err.__context__ is None
        assert err.args == (norm.MESSAGES[err.reason],)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_hostile_values_give_clean_result_or_normalization_error_quickly(name: str) -> None:
    for value in HOSTILE:
        shown = repr(value[:24]) + (f"... ({len(value)} chars)" if len(value) > 24 else "")
        started = time.perf_counter()
        try:
            _check(FUNCTIONS[name], value)
        except Exception as exc:
            raise AssertionError(f"{name} failed on {shown}") from exc
        assert time.perf_counter() - started < 1.0, f"{name} took over a second on {shown}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@settings(max_examples=60, deadline=1000)
@given(value=hostile_text)
def test_arbitrary_text_only_ever_raises_normalization_error(name: str, value: str) -> None:
    _check(FUNCTIONS[name], value)


@pytest.mark.parametrize(
    "name", ["clean_text", "normalize_name", "name_match_key", "normalize_street", "normalize_national_id"]
)
@settings(max_examples=80, deadline=1000)
@given(value=hostile_text)
def test_string_normalizers_are_idempotent_on_arbitrary_text(name: str, value: str) -> None:
    fn = FUNCTIONS[name]
    try:
        once = fn(value)
    except norm.NormalizationError:
        return
    if once is not None:
        assert fn(once) == once


def test_normalized_outputs_of_hostile_input_are_clean() -> None:
    for value in HOSTILE:
        for name in ("clean_text", "normalize_name", "normalize_street", "name_match_key"):
            try:
                out = FUNCTIONS[name](value)
            except norm.NormalizationError:
                continue
            if out is None:
                continue
            assert "\x00" not in out
            assert not any("\ud800" <= ch <= "\udfff" for ch in out)
            assert not any(ch in out for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b")
            assert out == out.strip()
            out.encode("utf-8")  # always storable


def test_messages_never_quote_distinctive_pii() -> None:
    secrets = {
        "normalize_email": "maria.garcia82@@example.com",
        "normalize_phone_gb": "maria garcia 0791",
        "normalize_postcode_gb": "MARIAGARCIA",
        "normalize_country": "Garcialand",
        "parse_date": "31/02/1985",
        "parse_date_of_birth": "1900-01-01",
        "normalize_national_id": "078-05-1120",
        "normalize_name": "Mr.",
    }
    for name, secret in secrets.items():
        with pytest.raises(norm.NormalizationError) as info:
            FUNCTIONS[name](secret)
        rendered = f"{info.value} {info.value!r} {info.value.args}"
        assert secret not in rendered
        assert "garcia" not in rendered.casefold()
