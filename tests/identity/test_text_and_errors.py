"""clean_text and the NormalizationError contract every normalizer relies on."""

from __future__ import annotations

import pickle
import traceback

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.identity.normalize import MESSAGES, NormalizationError, clean_text, normalize_email, parse_date
from tests.identity.inputs import SURROGATE_ESCAPED, fullwidth


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Maria   Garcia  ", "Maria Garcia"),
        ("Maria\tGarcia\r\n", "Maria Garcia"),
        ("Maria\u00a0Garcia", "Maria Garcia"),  # no-break space
        ("Maria\u3000Garcia", "Maria Garcia"),  # ideographic space
        ("Mar\u200bia", "Maria"),  # zero-width space
        ("Mar\u00adia", "Maria"),  # soft hyphen
        ("\ufeffMaria", "Maria"),  # BOM at the start of a CSV field
        ("\u202eairaM\u202c", "airaM"),  # bidi override removed, text itself untouched
        ("\u2066Maria\u2069", "Maria"),  # bidi isolate
        (fullwidth("maria@example.com"), "maria@example.com"),  # full width → ASCII (NFKC)
        ("e\u0301", "é"),  # decomposed → composed
        ("ﬁnn", "finn"),  # ligature
        ("Müller", "Müller"),  # diacritics are kept in the stored form
        ("😀 Maria", "😀 Maria"),  # emoji is text, not junk
    ],
)
def test_clean_text_normalizes_unicode_and_whitespace(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\t\n", "\u200b\u200b", "\ufeff"])
def test_clean_text_returns_none_for_blank(raw: str) -> None:
    assert clean_text(raw) is None


@pytest.mark.parametrize("raw", ["a\x00b", "\x00", "x\x1by", "x\x7fy", "x\x90y", "x\x1cy"])
def test_clean_text_rejects_control_characters(raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        clean_text(raw)
    assert info.value.reason == "control_characters"


@pytest.mark.parametrize("raw", [SURROGATE_ESCAPED, "\ud800", "abc\udfff"])
def test_clean_text_rejects_lone_surrogates_as_invalid_encoding(raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        clean_text(raw)
    assert info.value.reason == "invalid_encoding"


def test_clean_text_enforces_max_length_after_cleaning() -> None:
    assert clean_text("x" * 10) == "x" * 10
    assert clean_text("  " + "x" * 10 + "  ", max_length=10) == "x" * 10
    with pytest.raises(NormalizationError) as info:
        clean_text("x" * 11, max_length=10)
    assert info.value.reason == "too_long"


def test_clean_text_rejects_huge_values_without_processing_them() -> None:
    with pytest.raises(NormalizationError) as info:
        clean_text("x" * 1_000_000)
    assert info.value.reason == "too_long"


def test_clean_text_rejects_non_text() -> None:
    with pytest.raises(NormalizationError) as info:
        clean_text(b"bytes")  # type: ignore[arg-type]
    assert info.value.reason == "not_text"


@given(st.text())
def test_clean_text_is_idempotent(raw: str) -> None:
    try:
        once = clean_text(raw)
    except NormalizationError:
        return
    if once is not None:
        assert clean_text(once) == once


@given(st.text())
def test_clean_text_output_has_no_invisible_or_edge_whitespace(raw: str) -> None:
    try:
        out = clean_text(raw)
    except NormalizationError:
        return
    if out is not None:
        assert out == out.strip()
        assert "  " not in out
        assert not any(ch in out for ch in "\u200b\u200e\u200f\u202a\u202e\u2066\u2069\ufeff\x00")


def test_error_carries_reason_and_a_fixed_message() -> None:
    err = NormalizationError("invalid_phone")
    assert err.reason == "invalid_phone"
    assert str(err) == MESSAGES["invalid_phone"]
    assert isinstance(err, ValueError)


def test_error_survives_pickling_for_worker_processes() -> None:
    err = pickle.loads(pickle.dumps(NormalizationError("placeholder_date")))  # noqa: S301 - own object
    assert isinstance(err, NormalizationError)
    assert err.reason == "placeholder_date"
    assert str(err) == MESSAGES["placeholder_date"]


def test_library_errors_are_not_chained_so_tracebacks_hold_no_pii() -> None:
    secret = "maria.garcia82@@example.com"
    with pytest.raises(NormalizationError) as info:
        normalize_email(secret)
    err = info.value
    assert err.__cause__ is None
    assert err.__context__ is None
    rendered = "".join(traceback.format_exception(err))
    assert "maria" not in rendered
    assert "maria" not in repr(err)
    assert all("maria" not in str(arg) for arg in err.args)


def test_date_errors_do_not_quote_the_value() -> None:
    # strptime's own message is "time data '31/02/1985' does not match format ..."
    value = "31/02/" + str(1900 + 85)  # built at run time: the traceback quotes this test's source lines
    with pytest.raises(NormalizationError) as info:
        parse_date(value, ["%d/%m/%Y"])
    err = info.value
    assert err.reason == "impossible_date"
    assert err.__context__ is None
    assert "1985" not in "".join(traceback.format_exception(err))
