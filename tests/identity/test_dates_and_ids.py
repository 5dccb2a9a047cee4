"""Dates (declared formats, impossible, implausible, placeholders, day/month swaps) and national ids."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.identity.normalize import (
    MAX_AGE_YEARS,
    PLACEHOLDER_DATES,
    NormalizationError,
    day_month_swapped,
    normalize_national_id,
    parse_date,
    parse_date_of_birth,
)
from tests.identity.inputs import fullwidth

TODAY = date(2026, 6, 15)
EU = ["%d/%m/%Y", "%d.%m.%Y", "%Y-%m-%d"]
US = ["%m/%d/%Y", "%Y-%m-%d"]


@pytest.mark.parametrize(
    ("raw", "formats", "expected"),
    [
        ("04/03/1985", EU, date(1985, 3, 4)),
        ("04/03/1985", US, date(1985, 4, 3)),  # the same text, another source, another day
        ("4/3/1985", EU, date(1985, 3, 4)),
        ("04.03.1985", EU, date(1985, 3, 4)),
        ("1985-03-04", EU, date(1985, 3, 4)),
        ("1985-03-04", US, date(1985, 3, 4)),
        (" 1985-03-04 ", EU, date(1985, 3, 4)),
        ("29/02/2024", EU, date(2024, 2, 29)),
        ("4 Mar 1985", ["%d %b %Y"], date(1985, 3, 4)),
        ("March 4, 1985", ["%B %d, %Y"], date(1985, 3, 4)),
        ("19850304", ["%Y%m%d"], date(1985, 3, 4)),
        ("1985-03-04T10:30:00", ["%Y-%m-%dT%H:%M:%S"], date(1985, 3, 4)),
        (fullwidth("1985-03-04"), EU, date(1985, 3, 4)),  # full-width digits
        ("1900-01-01", EU, date(1900, 1, 1)),  # a placeholder is still a date in general
    ],
)
def test_parse_date_uses_declared_formats_in_order(raw: str, formats: list[str], expected: date) -> None:
    assert parse_date(raw, formats) == expected


@pytest.mark.parametrize(
    ("raw", "formats"),
    [
        ("31/02/1985", EU),
        ("30/02/2000", EU),
        ("29/02/2023", EU),
        ("31/04/1985", EU),
        ("02/31/1985", US),
        ("1985-02-30", EU),
    ],
)
def test_impossible_calendar_dates_raise_impossible_date(raw: str, formats: list[str]) -> None:
    with pytest.raises(NormalizationError) as info:
        parse_date(raw, formats)
    assert info.value.reason == "impossible_date"


@pytest.mark.parametrize(
    ("raw", "formats"),
    [
        ("13/13/1985", EU),
        ("1985/03/04", EU),
        ("04-03-1985", EU),
        ("04/03/85", EU),
        ("yesterday", EU),
        ("0000-00-00", EU),
        ("04/03/1985 junk", EU),
        ("", EU),
    ],
)
def test_unparseable_dates_raise_unparseable_date(raw: str, formats: list[str]) -> None:
    with pytest.raises(NormalizationError) as info:
        parse_date(raw, formats)
    assert info.value.reason == ("empty" if not raw else "unparseable_date")


def test_a_malformed_declared_format_is_a_mapping_bug_not_a_data_error() -> None:
    with pytest.raises(ValueError, match="format") as info:
        parse_date("04/03/1985", ["%Q/%m/%Y"])
    assert not isinstance(info.value, NormalizationError)
    with pytest.raises(ValueError, match="formats") as info:
        parse_date("04/03/1985", [])
    assert not isinstance(info.value, NormalizationError)


@pytest.mark.parametrize(
    "raw", ["1900-01-01", "01/01/1900", "1901-01-01", "1970-01-01", "01.01.1970", "0001-01-01", "9999-12-31"]
)
def test_placeholder_birth_dates_raise_placeholder_date(raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        parse_date_of_birth(raw, EU, today=TODAY)
    assert info.value.reason == "placeholder_date"


@pytest.mark.parametrize("raw", ["2026-06-16", "2030-01-01", "1905-06-15", "1800-05-05"])
def test_future_and_over_120_birth_dates_raise_implausible_date(raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        parse_date_of_birth(raw, EU, today=TODAY)
    assert info.value.reason == "implausible_date"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("04/03/1985", date(1985, 3, 4)),
        ("2026-06-15", TODAY),  # born today
        ("1906-06-15", date(1906, 6, 15)),  # 120 today
        ("1905-06-16", date(1905, 6, 16)),  # 120 until tomorrow
        ("1970-01-02", date(1970, 1, 2)),  # near a placeholder is fine
        ("01/02/35", date(1935, 2, 1)),  # two-digit year in the future → last century
        ("01/02/05", date(2005, 2, 1)),
    ],
)
def test_plausible_birth_dates_parse(raw: str, expected: date) -> None:
    assert parse_date_of_birth(raw, [*EU, "%d/%m/%y"], today=TODAY) == expected


def test_two_digit_29_february_that_was_not_leap_a_century_earlier() -> None:
    # "29/02/28" is 2028 (future, leap); 1928 was also leap → accepted
    assert parse_date_of_birth("29/02/28", ["%d/%m/%y"], today=TODAY) == date(1928, 2, 29)
    # 2000-02-29 read with %y is not in the future: no century shift
    assert parse_date_of_birth("29/02/00", ["%d/%m/%y"], today=TODAY) == date(2000, 2, 29)


def test_day_month_swapped() -> None:
    assert day_month_swapped(date(1985, 3, 4), date(1985, 4, 3))
    assert day_month_swapped(date(1985, 12, 1), date(1985, 1, 12))
    assert not day_month_swapped(date(1985, 3, 3), date(1985, 3, 3))  # same date is agreement, not a swap
    assert not day_month_swapped(date(1985, 3, 4), date(1986, 4, 3))
    assert not day_month_swapped(date(1985, 3, 4), date(1985, 3, 5))
    assert not day_month_swapped(date(1985, 3, 24), date(1985, 3, 24))


@given(st.dates())
def test_day_month_swap_is_symmetric_and_detects_every_swap(d: date) -> None:
    if d.day <= 12 and d.day != d.month:
        swapped = date(d.year, d.day, d.month)
        assert day_month_swapped(d, swapped)
        assert day_month_swapped(swapped, d)
    assert not day_month_swapped(d, d)


@given(
    st.dates(min_value=date(1000, 1, 1)),
    st.sampled_from(["%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d", "%d.%m.%Y", "%Y%m%d", "%d %b %Y", "%B %d, %Y"]),
)
def test_parse_date_round_trips_its_own_format(d: date, fmt: str) -> None:
    assert parse_date(d.strftime(fmt), [fmt]) == d


@given(st.dates(), st.sampled_from(["%d/%m/%Y", "%Y-%m-%d", "%d/%m/%y"]))
def test_birth_dates_are_plausible_or_rejected(d: date, fmt: str) -> None:
    try:
        born = parse_date_of_birth(d.strftime(fmt) if d.year >= 1000 else d.isoformat(), [fmt], today=TODAY)
    except NormalizationError as err:
        assert err.reason in {"placeholder_date", "implausible_date", "unparseable_date", "impossible_date"}
        return
    assert born <= TODAY
    assert born.year >= TODAY.year - MAX_AGE_YEARS - 1
    assert born not in PLACEHOLDER_DATES


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("123-45-6780", "US", "123456780"),
        ("536 90 4399", "US", "536904399"),
        ("12.345.679-Z", "ES", "12345679Z"),
        ("x2345671l", "ES", "X2345671L"),
        ("QQ 12 34 57 C", "GB", "QQ123457C"),
        ("1702 1985 0417", "DE", "170219850417"),
        ("1 85 03 75 115 005 42", "FR", "1850375115005 42".replace(" ", "")),
        ("AB/193/4567", None, "AB1934567"),
    ],
)
def test_normalize_national_id_compacts(raw: str, country: str | None, expected: str) -> None:
    assert normalize_national_id(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("000-00-0000", "US"),
        ("111-11-1111", "US"),
        ("999999999", "US"),
        ("123-45-6789", "US"),
        ("078-05-1120", "US"),  # the Woolworth wallet card
        ("12345678Z", "ES"),  # the sample DNI
        ("XXXXXXXX", None),
        ("N/A", None),
        ("abc", None),  # too short to identify anyone
        ("AB#123456", None),
        ("ÄÖÜ12345", None),
        ("1" * 40, None),
    ],
)
def test_junk_national_ids_raise_invalid_national_id(raw: str, country: str | None) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_national_id(raw, country)
    assert info.value.reason == "invalid_national_id"


@given(st.text(st.sampled_from("0123456789ABCXYZ -./"), max_size=20), st.sampled_from(["US", "ES", None]))
def test_normalize_national_id_is_idempotent(raw: str, country: str | None) -> None:
    try:
        once = normalize_national_id(raw, country)
    except NormalizationError:
        return
    assert normalize_national_id(once, country) == once
