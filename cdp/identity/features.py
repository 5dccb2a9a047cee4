"""Match features: the few normalized strings per record that blocking and comparison look at.

Resolution never sees raw source values. Each record is reduced to :data:`MATCH_COLUMNS` — folded
name keys, ISO dates, E.164 phones, email match keys (plus tags and Gmail dots folded), compact national
ids, normalized postcodes and streets — so that every comparison compares like with like, whichever
source and format the value came from.

Two ways in:

* :func:`features_from_normalized` — records already in the vault: ingestion stored their normalized
  forms (see :mod:`cdp.sources.prepare`), so this is a cheap projection.
* :class:`RawFeatureExtractor` — rows of an external file (``cdp resolve-file``): the same normalizers,
  but *lenient*: a value that fails to normalize becomes null for matching (and is counted), because a
  resolver must place every input row in some cluster rather than reject it.

Values on the junk list of :class:`~cdp.identity.settings.MergeProtection` are nulled here, before any
blocking, so junk can never link two people.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from functools import lru_cache
from typing import Any, Final

from cdp.identity import memo
from cdp.identity import normalize as norm

MATCH_COLUMNS: Final = (
    "first_name",
    "last_name",
    "date_of_birth",
    "email",
    "phone",
    "national_id",
    "postcode",
    "city",
    "street",
    "street_number",
    "address_line2",
    "state",
    "country",
)
"""Base match features, all ``str | None``."""

_CACHE: Final = memo.CACHE_SIZE
_name_key = memo.name_match_key
_country = memo.normalize_country
_postcode = memo.normalize_postcode
_address = memo.parse_address_line
_street = memo.normalize_street
_split_full_name = memo.split_full_name


def _street_match(street: str | None) -> str | None:
    """Street key without spaces: "ainsworth street" and "ainsworthstreet" are one street to a matcher."""
    if not street:
        return None
    return street.replace(" ", "") or None


def _lenient(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (norm.NormalizationError, ValueError):
        return None


def features_from_normalized(
    normalized: Mapping[str, Any], *, state: str | None = None
) -> dict[str, str | None]:
    """Project the normalized forms stored at ingestion onto :data:`MATCH_COLUMNS`."""

    def key(name: str) -> str | None:
        value = normalized.get(name)
        return _lenient(_name_key, value) if value else None

    return {
        "first_name": key("first_name"),
        "last_name": key("last_name"),
        "date_of_birth": normalized.get("date_of_birth"),
        "email": normalized.get("email_match"),
        "phone": normalized.get("phone"),
        "national_id": normalized.get("national_id"),
        "postcode": normalized.get("postcode"),
        "city": normalized.get("city"),
        "street": _street_match(normalized.get("street_key")),
        "street_number": _lenient(_name_key, normalized["street_number"])
        if normalized.get("street_number")
        else None,
        "address_line2": None,
        "state": state.casefold().strip() or None if state else None,
        "country": normalized.get("country"),
    }


class RawFeatureExtractor:
    """Normalize raw canonical values (as a file gives them) into match features, leniently.

    ``failures`` counts, per column and reason, the values that could not be normalized and were
    treated as missing — the resolve-file report shows it, without any of the values themselves.
    """

    def __init__(
        self,
        *,
        date_formats: Sequence[str] = ("%Y-%m-%d",),
        default_country: str | None = None,
        today: date | None = None,
    ) -> None:
        self.date_formats = tuple(date_formats)
        self.default_country = default_country
        self.today = today or date.today()
        self.failures: Counter[str] = Counter()
        self._dob = lru_cache(maxsize=_CACHE)(self._parse_dob)
        self._email = lru_cache(maxsize=_CACHE)(self._email_key)
        self._phone = lru_cache(maxsize=_CACHE)(self._phone_key)
        self._national_id = lru_cache(maxsize=_CACHE)(self._national_id_key)

    def _fail(self, column: str, reason: str) -> None:
        self.failures[f"{column}:{reason}"] += 1

    def _attempt(self, column: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except norm.NormalizationError as exc:
            self._fail(column, exc.reason)
        except ValueError:
            self._fail(column, "invalid")
        return None

    def _parse_dob(self, text: str) -> str | None:
        parsed = self._attempt(
            "date_of_birth", norm.parse_date_of_birth, text, self.date_formats, today=self.today
        )
        return parsed.isoformat() if parsed else None

    def _email_key(self, text: str) -> str | None:
        key: str | None = self._attempt("email", norm.email_match_key, text)
        return key

    def _phone_key(self, text: str, region: str) -> str | None:
        # phone_match_key refuses filler digits and fictional numbers itself; no separate placeholder pass.
        result: str | None = self._attempt("phone", norm.phone_match_key, text, default_region=region)
        return result

    def _national_id_key(self, text: str, country: str | None) -> str | None:
        result: str | None = self._attempt("national_id", norm.normalize_national_id, text, country)
        return result

    def _name(self, column: str, text: str | None) -> str | None:
        if not text:
            return None
        result: str | None = self._attempt(column, _name_key, text)
        return result

    def extract(self, raw: Mapping[str, str | None]) -> dict[str, str | None]:
        """Features of one row given as ``canonical attribute -> raw text`` (missing keys are null)."""

        def text(name: str) -> str | None:
            value = raw.get(name)
            if value is None:
                return None
            value = value.strip()
            return value or None

        country_text = text("country") or self.default_country
        country = self._attempt("country", _country, country_text) if country_text else None

        given, family = text("first_name"), text("last_name")
        full = text("full_name")
        if full and (given is None or family is None):
            with contextlib.suppress(norm.NormalizationError, ValueError):
                split_given, split_family = _split_full_name(full)
                given = given or split_given
                family = family or split_family

        street = None
        street_number = text("street_number")
        line1 = text("address_line1")
        if line1:
            parts = self._attempt("address_line1", _address, line1)
            if parts is not None:
                if parts.street:
                    street = _street_match(self._attempt("address_line1", _street, parts.street, country))
                street_number = street_number or parts.street_number

        postcode = None
        postcode_text = text("postcode")
        if postcode_text:
            postcode = _lenient(_postcode, postcode_text, country) or " ".join(postcode_text.upper().split())

        dob_text = text("date_of_birth")
        email_text = text("email")
        phone_text = text("phone")
        national_id_text = text("national_id")
        state = text("state")
        return {
            "first_name": self._name("first_name", given),
            "last_name": self._name("last_name", family),
            "date_of_birth": self._dob(dob_text) if dob_text else None,
            "email": self._email(email_text) if email_text else None,
            "phone": self._phone(phone_text, country or "GB") if phone_text else None,
            "national_id": self._national_id(national_id_text, country) if national_id_text else None,
            "postcode": postcode,
            "city": self._name("city", text("city")),
            "street": street,
            "street_number": self._name("street_number", street_number),
            "address_line2": self._name("address_line2", text("address_line2")),
            "state": state.casefold() if state else None,
            "country": country,
        }
