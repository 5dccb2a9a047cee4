"""normalize_phone: every national format to E.164 through phonenumbers; junk rejected."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cdp.identity.normalize import NormalizationError, normalize_phone, phone_is_placeholder
from tests.identity.inputs import fullwidth


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        # United Kingdom
        ("020 7946 0958", "GB", "+442079460958"),
        ("(020) 7946-0958", "GB", "+442079460958"),
        ("+44 (0)20 7946 0958", "GB", "+442079460958"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("07911 123456", "GB", "+447911123456"),
        ("+44 7911 123456", "GB", "+447911123456"),
        # United States
        ("(212) 736-5000", "US", "+12127365000"),
        ("212.736.5000", "US", "+12127365000"),
        ("1-212-736-5000", "US", "+12127365000"),
        ("+1 415 867 5309", "US", "+14158675309"),
        ("212-736-5000 ext. 123", "US", "+12127365000"),
        ("212-736-5000 x123", "US", "+12127365000"),
        ("tel:+1-212-736-5000", "US", "+12127365000"),
        ("1-800-FLOWERS", "US", "+18003569377"),
        # Germany
        ("030 123456", "DE", "+4930123456"),
        ("+49 (0)30 1234567", "DE", "+49301234567"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("0049 151 23456789", "DE", "+4915123456789"),
        ("030/1234567", "DE", "+49301234567"),
        # Spain
        ("612 34 56 78", "ES", "+34612345678"),
        ("+34 912 345 678", "ES", "+34912345678"),
        ("0034 912 345 678", "ES", "+34912345678"),
        ("91 234 56 78", "ES", "+34912345678"),
        # France
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("06.12.34.56.78", "FR", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "FR", "+33612345678"),
        ("0033 1 42 68 53 00", "FR", "+33142685300"),
        # Netherlands
        ("06-12345678", "NL", "+31612345678"),
        ("020 123 4567", "NL", "+31201234567"),
        ("+31 (0)20 123 4567", "NL", "+31201234567"),
        # International prefix used under a region whose own prefix is not 00
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("00 34 612 34 56 78", "US", "+34612345678"),
        # A foreign number with + ignores the default region
        ("+34 612 34 56 78", "GB", "+34612345678"),
        # Full-width digits and stray invisible characters
        (fullwidth("+44 20 7946 0958"), "GB", "+442079460958"),
        ("020\u200b7946\u00a00958", "GB", "+442079460958"),
        # region given in lower case
        ("020 7946 0958", "gb", "+442079460958"),
    ],
)
def test_phone_known_answers(raw: str, region: str, e164: str) -> None:
    assert normalize_phone(raw, default_region=region) == e164


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("000-000-0000", "US"),
        ("555-555-5555", "US"),
        ("123-456-7890", "US"),
        ("(212) 555-0134", "US"),  # 555-01XX is reserved for fiction
        ("+1 202 555 0100", "US"),
        ("07777 777777", "GB"),
        ("07000 000000", "GB"),
        ("0000000000", "GB"),
        ("600 000 000", "ES"),
        ("06 00 00 00 00", "FR"),
        ("12", "GB"),
        ("0123", "DE"),
        ("123456789012345678", "DE"),
        ("abc", "GB"),
        ("+", "GB"),
        ("+999 1234 5678", "GB"),
        ("020 7946 0958", "ZZ"),  # national format without a usable region
        ("020 7946 0958", "XX"),
    ],
)
def test_invalid_and_placeholder_phones_raise_invalid_phone(raw: str, region: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_phone(raw, default_region=region)
    assert info.value.reason == "invalid_phone"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("000-000-0000", True),
        ("0000000000", True),
        ("555-555-5555", True),
        ("1234567890", True),
        ("0987654321", True),
        ("07777 777777", True),
        ("+44 7777 777777", True),
        ("0044 7000 000000", True),
        ("+1 202 555 0100", True),
        ("020 7946 0958", False),
        ("+44 20 7946 0958", False),
        ("(212) 736-5000", False),
        ("12", False),
        ("", False),
        ("no phone", False),
    ],
)
def test_phone_is_placeholder_known_answers(raw: str, expected: bool) -> None:
    assert phone_is_placeholder(raw) is expected


def test_blank_phone_is_empty() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_phone(" ", default_region="GB")
    assert info.value.reason == "empty"


@given(
    st.sampled_from(["GB", "US", "DE", "ES", "FR", "NL", "IT", "CA", "AU", "MX"]),
    st.sampled_from([phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE]),
    st.integers(min_value=0, max_value=9999),
)
def test_valid_numbers_round_trip_through_every_format(region: str, kind: int, tail: int) -> None:
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    assert example is not None
    national = phonenumbers.national_significant_number(example)
    candidate = phonenumbers.parse(f"+{example.country_code}{national[:-4]}{tail:04d}", None)
    assume(phonenumbers.is_valid_number(candidate))
    assume(
        not phone_is_placeholder(phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164))
    )
    e164 = phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
    for fmt in (
        phonenumbers.PhoneNumberFormat.NATIONAL,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.E164,
        phonenumbers.PhoneNumberFormat.RFC3966,
    ):
        written = phonenumbers.format_number(candidate, fmt)
        assert normalize_phone(written, default_region=region) == e164
    # idempotent, and independent of the default region once in E.164
    assert normalize_phone(e164, default_region="ZZ") == e164
    assert normalize_phone("00" + e164[1:], default_region=region if region != "US" else "GB") == e164
