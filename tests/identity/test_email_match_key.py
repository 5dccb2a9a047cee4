"""The fast path of email_match_key must give exactly what full validation gives."""

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
