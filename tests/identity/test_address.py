"""Addresses: line parsing, street match form, postcodes per country, country names and codes."""

from __future__ import annotations

import re

import pycountry
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.identity.normalize import (
    AddressParts,
    NormalizationError,
    normalize_country,
    normalize_postcode,
    normalize_street,
    parse_address_line,
)


@pytest.mark.parametrize(
    ("raw", "number", "street", "unit"),
    [
        ("12 Main St", "12", "Main St", None),
        ("12B Main St", "12B", "Main St", None),
        ("12-14 Main St", "12-14", "Main St", None),
        ("1 E Main St", "1", "E Main St", None),  # East, not house 1E
        ("42nd Street", None, "42nd Street", None),
        ("Flat 3, 12 High Street", "12", "High Street", "3"),
        ("Flat 3 12 High Street", "12", "High Street", "3"),
        ("12 Main St Apt 4B", "12", "Main St", "4B"),
        ("12 Main St, Apt. 4B", "12", "Main St", "4B"),
        ("500 Oak Ave #12", "500", "Oak Ave", "12"),
        ("500 Oak Ave Suite 200", "500", "Oak Ave", "200"),
        ("Unit 7, 3 Smith Rd", "3", "Smith Rd", "7"),
        ("12 bis rue de la Paix", "12BIS", "rue de la Paix", None),
        ("Hauptstraße 5", "5", "Hauptstraße", None),
        ("Hauptstr. 5a", "5A", "Hauptstr.", None),
        ("Hauptstr. 5 a", "5A", "Hauptstr.", None),
        ("Kerkstraat 12-14", "12-14", "Kerkstraat", None),
        ("Berliner Str. 12, Wohnung 5", "12", "Berliner Str.", "5"),
        ("C/ Mayor, 3", "3", "C/ Mayor", None),
        ("C/ Mayor, nº 3", "3", "C/ Mayor", None),
        ("Calle Mayor 3, 2º B", "3", "Calle Mayor", "2 B"),
        ("Calle Luna 7, 3º izq", "7", "Calle Luna", "3 IZQ"),
        ("Piso 2, Puerta B, Calle Luna 7", "7", "Calle Luna", "2 B"),
        ("Calle Mayor s/n", None, "Calle Mayor", None),
        ("Rue Ste Catherine 10", "10", "Rue Ste Catherine", None),
        ("PO Box 123", None, "PO Box 123", None),
        ("Postfach 10 20 30", None, "Postfach 10 20 30", None),
        ("Main Street", None, "Main Street", None),
        ("12", "12", None, None),
        ("Flat 3", None, None, "3"),
    ],
)
def test_parse_address_line_known_answers(
    raw: str, number: str | None, street: str | None, unit: str | None
) -> None:
    assert parse_address_line(raw) == AddressParts(street_number=number, street=street, unit=unit)


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("12 Main St.", None, "12 main street"),
        ("12 Main Street", None, "12 main street"),
        ("10 Downing St", "GB", "10 downing street"),
        ("St John's Rd", None, "saint johns road"),
        ("Mt Pleasant Ave", None, "mount pleasant avenue"),
        ("5th Ave", None, "5th avenue"),
        ("Sunset Blvd", None, "sunset boulevard"),
        ("Elm Ln", None, "elm lane"),
        ("Park Dr", None, "park drive"),
        ("Hauptstr. 5", None, "hauptstrasse 5"),
        ("Hauptstraße 5", "DE", "hauptstrasse 5"),
        ("Hauptstrasse 5", None, "hauptstrasse 5"),
        ("HAUPTSTRASSE 5", None, "hauptstrasse 5"),
        ("Berliner Str. 12", None, "berliner strasse 12"),
        ("Berliner Straße 12", None, "berliner strasse 12"),
        ("Karl-Marx-Str. 12-14", None, "karlmarxstrasse 12 14"),
        ("Karl-Marx-Straße 12-14", None, "karlmarxstrasse 12 14"),
        ("Kerkstr. 5", "NL", "kerkstraat 5"),
        ("Kerkstraat 5", "NL", "kerkstraat 5"),
        ("C/ Mayor, 3", None, "calle mayor 3"),
        ("C/Mayor 3", None, "calle mayor 3"),
        ("C/ Mayor, nº 3", None, "calle mayor 3"),
        ("Calle Mayor nº3", None, "calle mayor 3"),
        ("Calle Mayor, 3", None, "calle mayor 3"),
        ("Av. de la Constitución 5", None, "avenida de la constitucion 5"),
        ("Avda. de la Constitución 5", "ES", "avenida de la constitucion 5"),
        ("Avenida de la Constitución 5", "ES", "avenida de la constitucion 5"),
        ("Pza. Mayor 1", None, "plaza mayor 1"),
        ("Ctra. de Valencia km 7", None, "carretera de valencia km 7"),
        ("Av. Foch", "FR", "avenue foch"),
        ("12 bd Haussmann", "FR", "12 boulevard haussmann"),
        ("12 r. de Rivoli", "FR", "12 rue de rivoli"),
        ("C Street NW", None, "c street nw"),
    ],
)
def test_normalize_street_known_answers(raw: str, country: str | None, expected: str) -> None:
    assert normalize_street(raw, country) == expected


def test_street_spellings_of_one_address_meet() -> None:
    spellings = ["Hauptstr. 5", "Hauptstraße 5", "HAUPTSTRASSE 5", "Hauptstrasse  5"]
    assert len({normalize_street(s) for s in spellings}) == 1
    spanish = ["C/ Mayor, nº 3", "Calle Mayor 3", "CALLE MAYOR, 3", "c/mayor 3"]
    assert len({normalize_street(s) for s in spanish}) == 1


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        # United Kingdom
        ("SW1A 1AA", "GB", "SW1A 1AA"),
        ("sw1a1aa", "GB", "SW1A 1AA"),
        (" sw1a   1aa ", "GB", "SW1A 1AA"),
        ("M1 1AE", "GB", "M1 1AE"),
        ("B338TH", "GB", "B33 8TH"),
        ("EC1A 1BB", "United Kingdom", "EC1A 1BB"),
        # United States: lost leading zeros restored, ZIP+4 kept
        ("02134", "US", "02134"),
        ("2134", "US", "02134"),
        ("501", "US", "00501"),
        ("02134-1234", "US", "02134-1234"),
        ("2134-1234", "US", "02134-1234"),
        ("021341234", "US", "02134-1234"),
        ("MA 02134", "US", "02134"),
        ("90210", "USA", "90210"),
        # Germany
        ("10115", "DE", "10115"),
        ("1067", "DE", "01067"),
        ("D-10115", "DE", "10115"),
        ("DE-01067", "Deutschland", "01067"),
        # Spain
        ("28013", "ES", "28013"),
        ("8001", "ES", "08001"),
        ("E-08001", "ES", "08001"),
        # France
        ("75008", "FR", "75008"),
        ("1000", "FR", "01000"),
        ("F-75008", "FR", "75008"),
        # Italy, Australia, Norway: several zeros can go
        ("100", "IT", "00100"),
        ("800", "AU", "0800"),
        ("150", "NO", "0150"),
        # Netherlands, Canada, Ireland, Sweden, Poland, Portugal
        ("1234AB", "NL", "1234 AB"),
        ("1234 ab", "NL", "1234 AB"),
        ("k1a0b1", "CA", "K1A 0B1"),
        ("K1A 0B1", "CA", "K1A 0B1"),
        ("a65f4e2", "IE", "A65 F4E2"),
        ("11455", "SE", "114 55"),
        ("00950", "PL", "00-950"),
        ("1000-001", "PT", "1000-001"),
        # Unknown or missing country: upper-case letters and digits only
        ("a1-b2", None, "A1B2"),
        ("ab 12", "Narnia", "AB12"),
        ("12345", None, "12345"),
    ],
)
def test_normalize_postcode_known_answers(raw: str, country: str | None, expected: str) -> None:
    assert normalize_postcode(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("SW1A", "GB"),
        ("12345", "GB"),
        ("1234", "NL"),
        ("0123 AB", "NL"),
        ("123456", "US"),
        ("12", "US"),
        ("ABCDE", "US"),
        ("123", "DE"),
        ("00123", "DE"),
        ("123456", "DE"),
        ("60000", "ES"),  # no province 60
        ("D1A 1A1", "CA"),  # D is never used in Canadian postcodes
        ("ABC", "FR"),
        ("1234567890123", None),
    ],
)
def test_invalid_postcodes_raise_invalid_postcode(raw: str, country: str | None) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_postcode(raw, country)
    assert info.value.reason == "invalid_postcode"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        ("Deutschland", "DE"),
        ("Allemagne", "DE"),
        ("Alemania", "DE"),
        ("Duitsland", "DE"),
        ("Bundesrepublik Deutschland", "DE"),
        ("ES", "ES"),
        ("ESP", "ES"),
        ("Spain", "ES"),
        ("España", "ES"),
        ("ESPAÑA", "ES"),
        ("Espana", "ES"),
        ("Spanien", "ES"),
        ("Espagne", "ES"),
        ("GB", "GB"),
        ("GBR", "GB"),
        ("UK", "GB"),
        ("U.K.", "GB"),
        ("United Kingdom", "GB"),
        ("Great Britain", "GB"),
        ("England", "GB"),
        ("Scotland", "GB"),
        ("Reino Unido", "GB"),
        ("Vereinigtes Königreich", "GB"),
        ("Royaume-Uni", "GB"),
        ("US", "US"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("United States", "US"),
        ("United States of America", "US"),
        ("Estados Unidos", "US"),
        ("EE.UU.", "US"),
        ("NL", "NL"),
        ("Netherlands", "NL"),
        ("The Netherlands", "NL"),
        ("Nederland", "NL"),
        ("Holland", "NL"),
        ("Niederlande", "NL"),
        ("Países Bajos", "NL"),
        ("FR", "FR"),
        ("France", "FR"),
        ("Frankreich", "FR"),
        ("Francia", "FR"),
        ("Italia", "IT"),
        ("Österreich", "AT"),
        ("Schweiz", "CH"),
        ("Czech Republic", "CZ"),
        ("Czechia", "CZ"),
        ("Russia", "RU"),
        ("South Korea", "KR"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("EL", "GR"),
        ("  france  ", "FR"),
    ],
)
def test_normalize_country_known_answers(raw: str, expected: str) -> None:
    assert normalize_country(raw) == expected


@pytest.mark.parametrize("raw", ["Narnia", "XX", "ZZZ", "Atlantis", "123", "E"])
def test_unknown_countries_raise_unknown_country(raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_country(raw)
    assert info.value.reason == "unknown_country"


@pytest.mark.parametrize("country", list(pycountry.countries), ids=lambda c: c.alpha_2)
def test_every_iso_country_resolves_from_its_codes_and_name(country: pycountry.db.Country) -> None:
    assert normalize_country(country.alpha_2) == country.alpha_2
    assert normalize_country(country.alpha_3) == country.alpha_2
    assert normalize_country(country.name) == country.alpha_2


postcode_text = st.text(st.sampled_from("0123456789ABCDEFGHJKLMNPRSTVWXYZabcdefgh -"), max_size=12)


@given(
    postcode_text, st.sampled_from(["GB", "US", "DE", "ES", "FR", "NL", "CA", "IE", "SE", "PL", "PT", None])
)
def test_normalize_postcode_is_idempotent(raw: str, country: str | None) -> None:
    try:
        once = normalize_postcode(raw, country)
    except NormalizationError:
        return
    assert normalize_postcode(once, country) == once
    assert once == once.upper()


@given(st.text(max_size=60), st.sampled_from([None, "GB", "DE", "ES", "FR", "NL"]))
def test_normalize_street_is_idempotent_and_plain(raw: str, country: str | None) -> None:
    try:
        once = normalize_street(raw, country)
    except NormalizationError:
        return
    assert re.fullmatch(r"[a-z0-9]+(?: [a-z0-9]+)*", once)
    assert normalize_street(once, country) == once


@given(st.text(max_size=60))
def test_parse_address_line_parts_are_clean(raw: str) -> None:
    try:
        parts = parse_address_line(raw)
    except NormalizationError:
        return
    assert parts.street_number is None or re.fullmatch(r"[0-9A-Z/\-]+", parts.street_number)
    for value in (parts.street, parts.unit):
        assert value is None or (value == value.strip(" ,;") and value)
