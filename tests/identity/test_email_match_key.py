"""The fast paths of the match keys (email, phone) must agree with full validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.identity import normalize as norm

_atom = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_+-", min_size=1, max_size=12)
_label = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,8}[a-z0-9])?", fullmatch=True)
_tld = st.sampled_from(["com", "de", "co.uk", "fr", "es", "test", "local", "io", "museum", "xn--p1ai"])


def _slow(value: str) -> str | None:
    try:
        return norm.normalize_email(value).match_key
    except norm.NormalizationError:
        return None


def _fast(value: str) -> str | None:
    try:
        return norm.email_match_key(value)
    except norm.NormalizationError:
        return None


@settings(max_examples=400, deadline=None)
@given(
    local=st.lists(_atom, min_size=1, max_size=3), labels=st.lists(_label, min_size=1, max_size=3), tld=_tld
)
def test_fast_path_agrees_with_full_validation(local: list[str], labels: list[str], tld: str) -> None:
    address = f"{'.'.join(local)}@{'.'.join([*labels, tld])}"
    assert _fast(address) == _slow(address)


@pytest.mark.parametrize(
    "address",
    [
        "maria.garcia+shop@gmail.com",
        "m.a.r.i.a@googlemail.com",
        "Maria.Garcia@Example.ORG",
        "jose@müller.de",
        "someone@xn--mller-kva.de",
        "a@localhost",
        "x@host.test",
        "mailto:ada@example.com",
        "Ada <ada@example.com>",
        "a" * 65 + "@example.com",
        "-dash@example.com",
        "+tag@example.com",
        "0@00--0.com",
    ],
)
def test_fast_path_agrees_on_awkward_addresses(address: str) -> None:
    assert _fast(address) == _slow(address)


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+44 7584 959608", "GB"),
        ("020 7946 0958", "GB"),
        ("06 12 34 56 78", "FR"),
        ("0721/3657344", "DE"),
        ("+1 803-778-2927", "US"),
        ("0044 20 7946 0958", "US"),
        ("(0)30 123456", "DE"),
        ("612 345 678", "ES"),
    ],
)
def test_phone_match_key_equals_normalize_phone_for_valid_numbers(number: str, region: str) -> None:
    try:
        expected = norm.normalize_phone(number, default_region=region)
    except norm.NormalizationError:
        pytest.skip("not a valid number in this region")
    assert norm.phone_match_key(number, default_region=region) == expected


@pytest.mark.parametrize("junk", ["000-000-0000", "1111111111", "+1 555-0123"])
def test_phone_match_key_refuses_filler(junk: str) -> None:
    with pytest.raises(norm.NormalizationError):
        norm.phone_match_key(junk, default_region="US")
