"""normalize_email: syntax via email-validator, storage policy vs matching key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.identity.normalize import NormalizationError, NormalizedEmail, normalize_email
from tests.identity.inputs import fullwidth


@pytest.mark.parametrize(
    ("raw", "display", "canonical", "match_key"),
    [
        ("maria@example.com", "maria@example.com", "maria@example.com", "maria@example.com"),
        (
            "Maria.Garcia+news@Example.COM",
            "Maria.Garcia+news@example.com",
            "maria.garcia+news@example.com",
            "maria.garcia@example.com",
        ),
        ("  MARIA@EXAMPLE.ORG  ", "MARIA@example.org", "maria@example.org", "maria@example.org"),
        (
            "J.O.H.N.Smith+promo@GoogleMail.com",
            "J.O.H.N.Smith+promo@googlemail.com",
            "j.o.h.n.smith+promo@googlemail.com",
            "johnsmith@gmail.com",
        ),
        ("john.smith@gmail.com", "john.smith@gmail.com", "john.smith@gmail.com", "johnsmith@gmail.com"),
        # dots only fold at Gmail: elsewhere j.smith and jsmith are different mailboxes
        ("j.smith@example.com", "j.smith@example.com", "j.smith@example.com", "j.smith@example.com"),
        # IDN: Unicode and punycode spellings of one domain store the same
        ("user@münchen.de", "user@münchen.de", "user@münchen.de", "user@münchen.de"),
        ("user@xn--mnchen-3ya.de", "user@münchen.de", "user@münchen.de", "user@münchen.de"),
        ("user@MÜNCHEN.DE", "user@münchen.de", "user@münchen.de", "user@münchen.de"),
        ("josé@example.es", "josé@example.es", "josé@example.es", "josé@example.es"),
        # accepted wrappers
        ("Maria Garcia <maria@example.com>", "maria@example.com", "maria@example.com", "maria@example.com"),
        ("mailto:maria@example.com", "maria@example.com", "maria@example.com", "maria@example.com"),
        (fullwidth("maria@example.com"), "maria@example.com", "maria@example.com", "maria@example.com"),
        ("mar\u200bia@example.com", "maria@example.com", "maria@example.com", "maria@example.com"),
        # a tag with no base is not a tag
        ("+news@example.com", "+news@example.com", "+news@example.com", "+news@example.com"),
    ],
)
def test_email_known_answers(raw: str, display: str, canonical: str, match_key: str) -> None:
    assert normalize_email(raw) == NormalizedEmail(display, canonical, match_key)


def test_plus_addressing_strip_policy_changes_storage_not_match_key() -> None:
    kept = normalize_email("Maria+shop@example.com")
    stripped = normalize_email("Maria+shop@example.com", plus_addressing="strip")
    assert kept.canonical == "maria+shop@example.com"
    assert stripped.canonical == "maria@example.com"
    assert kept.match_key == stripped.match_key == "maria@example.com"
    assert stripped.display == "Maria+shop@example.com"


def test_gmail_dots_policy_folds_storage_and_unifies_googlemail() -> None:
    result = normalize_email("J.Smith+x@googlemail.com", plus_addressing="strip", gmail_dots=True)
    assert result.canonical == "jsmith@gmail.com"
    assert normalize_email("j.smith@gmail.com", gmail_dots=True).canonical == "jsmith@gmail.com"
    # the Gmail rule never applies to other domains
    assert normalize_email("j.smith@example.com", gmail_dots=True).canonical == "j.smith@example.com"


def test_namesakes_differing_in_digits_keep_different_keys() -> None:
    assert (
        normalize_email("maria.garcia82@example.com").match_key
        != normalize_email("maria.garcia63@example.com").match_key
    )


def test_same_mailbox_variants_share_one_match_key() -> None:
    variants = [
        "john.smith@gmail.com",
        "JohnSmith@gmail.com",
        "j.o.h.n.s.m.i.t.h+newsletter@googlemail.com",
        "John.Smith+a+b@GMAIL.COM",
    ]
    assert {normalize_email(v).match_key for v in variants} == {"johnsmith@gmail.com"}


@pytest.mark.parametrize(
    "raw",
    [
        "maria.garcia82@",
        "@example.com",
        "maria",
        "maria@@example.com",
        "maria@localhost",
        "maria@example",
        "maria@example.test",
        "maria@example.invalid",
        "a..b@example.com",
        ".maria@example.com",
        "maria.@example.com",
        "maria garcia@example.com",
        "maria@exa mple.com",
        '"maria garcia"@example.com',
        "maria@[192.168.0.1]",
        "maria@-example.com",
        "maria@example..com",
        "x" * 65 + "@example.com",
        "maria@" + "a" * 64 + ".com",
        "<>",
    ],
)
def test_invalid_emails_raise_invalid_email(raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_email(raw)
    assert info.value.reason == "invalid_email"
    assert raw not in str(info.value)


def test_blank_email_is_empty_not_invalid() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_email("   ")
    assert info.value.reason == "empty"


def test_unknown_plus_policy_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="plus_addressing") as info:
        normalize_email("maria@example.com", plus_addressing="drop")  # type: ignore[arg-type]
    assert not isinstance(info.value, NormalizationError)


@given(
    st.emails(),
    st.sampled_from(["keep", "strip"]),
    st.booleans(),
)
def test_email_forms_are_idempotent(raw: str, plus: str, dots: bool) -> None:
    try:
        first = normalize_email(raw, plus_addressing=plus, gmail_dots=dots)  # type: ignore[arg-type]
    except NormalizationError:
        return
    again = normalize_email(first.canonical, plus_addressing=plus, gmail_dots=dots)  # type: ignore[arg-type]
    assert again.canonical == first.canonical
    assert again.match_key == first.match_key
    assert normalize_email(first.display).display == first.display
    assert normalize_email(first.match_key).match_key == first.match_key
    assert first.canonical == first.canonical.lower()
