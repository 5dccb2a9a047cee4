"""From a raw source row to a validated, normalized record or interaction — or a reason to reject it.

Pure functions over the mapping and the normalizers: no database, no keys. Every rejection carries a
reason code and a detail that names columns and rules, never values (details end up in the quarantine
listing and in logs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from cdp.db.models import CANONICAL_FIELDS, CHANNELS
from cdp.identity import normalize as norm
from cdp.identity.memo import name_match_key as _name_match_key
from cdp.identity.memo import name_match_keys as _name_match_keys
from cdp.identity.memo import nickname_keys as _nickname_keys
from cdp.identity.memo import normalize_country as _normalize_country
from cdp.identity.memo import normalize_name as _normalize_name
from cdp.identity.memo import normalize_postcode as _normalize_postcode
from cdp.identity.memo import normalize_street as _normalize_street
from cdp.identity.memo import parse_address_line as _parse_address_line
from cdp.identity.memo import phonetic_key as _phonetic_key
from cdp.identity.memo import split_full_name as _split_full_name
from cdp.sources.mapping import DIRECTIONS, SectionMapping, SourceMapping
from cdp.sources.records import CustomerRecord

T = TypeVar("T")
_SAFE_COLUMN = re.compile(r"^[A-Za-z0-9 _.\-/()#]{1,48}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_VALUE_LENGTH = 4096


class Rejected(Exception):
    """A row cannot be ingested. ``reason`` is a stable code; ``detail`` is safe to show and log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def safe_column(name: object) -> str:
    """A column name fit for messages: JSON keys are data too, so odd ones are not echoed."""
    text = str(name)
    return text if _SAFE_COLUMN.match(text) and "@" not in text else "<unprintable column name>"


@dataclass
class PreparedRecord:
    record: CustomerRecord
    normalized: dict[str, Any]
    lookup_keys: dict[str, list[str]]
    last_activity_at: datetime | None
    content: bytes
    """Canonical serialization of the mapped values, for the change fingerprint."""


@dataclass
class PreparedInteraction:
    source_record_id: str
    interaction_id: str | None
    occurred_at: datetime
    channel: str
    direction: str
    kind: str
    department: str
    details: dict[str, Any] = field(default_factory=dict)
    content: bytes = b""


def _check_columns(values: dict[str, Any], section: SectionMapping) -> None:
    known = set(section.fields) | set(section.attributes) | section.ignore
    unknown = [name for name in values if name not in known]
    if unknown:
        shown = ", ".join(safe_column(n) for n in unknown[:5])
        raise Rejected("unknown_column", f"column(s) not in the mapping: {shown}")


def _text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool | dict | list):
        raise Rejected("invalid_value", f"column {safe_column(column)} must be text or a number")
    try:
        cleaned: str | None = norm.clean_text(str(value), max_length=MAX_VALUE_LENGTH)
        return cleaned
    except norm.NormalizationError as exc:
        raise Rejected(exc.reason, f"column {safe_column(column)}: {exc.reason.replace('_', ' ')}") from None


def _mapped(values: dict[str, Any], section: SectionMapping) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for column, target in section.fields.items():
        raw = values.get(column)
        text = _text(raw, column)
        if text is not None and target in section.values:
            text = section.values[target].get(text, text)
        out[target] = text
    for target, default in section.defaults.items():
        if out.get(target) is None:
            out[target] = default
    return out


def _attributes(values: dict[str, Any], section: SectionMapping) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for column, name in section.attributes.items():
        raw = values.get(column)
        if raw is None:
            continue
        if isinstance(raw, str):
            attributes[name] = _text(raw, column)
        elif isinstance(raw, bool | int | float | dict | list):
            attributes[name] = raw
        else:
            attributes[name] = _text(raw, column)
    return attributes


def _call(column: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except norm.NormalizationError as exc:
        raise Rejected(exc.reason, f"column {safe_column(column)}: {exc.reason.replace('_', ' ')}") from None


SOFT_DATE_REASONS = frozenset({"placeholder_date", "implausible_date"})


def _soft(
    quality: list[str], soft: Collection[str], column: str, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T | None:
    """Run a normalizer whose failure for the ``soft`` reasons is a data-quality flag (the value is kept
    as given but not used for matching) rather than a rejected row."""
    try:
        return fn(*args, **kwargs)
    except norm.NormalizationError as exc:
        if exc.reason not in soft:
            detail = f"column {safe_column(column)}: {exc.reason.replace('_', ' ')}"
            raise Rejected(exc.reason, detail) from None
        quality.append(exc.reason)
        return None


def parse_datetime(value: str, formats: tuple[str, ...], column: str) -> datetime:
    for fmt in formats:
        try:
            parsed = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(
            "unparseable_date", f"column {safe_column(column)} matches no declared format"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _map_row(
    values: dict[str, Any], section: SectionMapping
) -> tuple[dict[str, str | None], dict[str, str], str]:
    """Apply a section's mapping; returns the mapped values, target → column, and the record id."""
    _check_columns(values, section)
    mapped = _mapped(values, section)
    column = {target: col for col, target in section.fields.items()}
    record_id = mapped.get("source_record_id")
    if not record_id:
        raise Rejected("missing_record_id", f"column {safe_column(column['source_record_id'])} is empty")
    return mapped, column, record_id


def prepare_record(values: dict[str, Any], mapping: SourceMapping, *, today: date) -> PreparedRecord:
    mapped, column, record_id = _map_row(values, mapping.records)

    fields_: dict[str, Any] = {name: mapped.get(name) for name in CANONICAL_FIELDS}
    normalized: dict[str, Any] = {}
    keys: dict[str, list[str]] = {}

    quality: list[str] = []
    dob_text = fields_["date_of_birth"]
    dob: date | None = None
    if dob_text is not None:
        # Unparseable or impossible dates reject the row; a placeholder (1900-01-01) or implausible date
        # is kept as the source gave it but never used for matching — junk must not link people.
        stated = _call(column["date_of_birth"], norm.parse_date, dob_text, mapping.date_formats)
        fields_["date_of_birth"] = stated
        dob = _soft(
            quality,
            SOFT_DATE_REASONS,
            column["date_of_birth"],
            norm.parse_date_of_birth,
            dob_text,
            mapping.date_formats,
            today=today,
        )
        normalized["date_of_birth"] = dob.isoformat() if dob else None

    country_text = fields_["country"] or mapping.default_country
    country = (
        _call(column.get("country", "country"), _normalize_country, country_text) if country_text else None
    )
    normalized["country"] = country

    if fields_["email"] is not None:
        email = _call(
            column["email"],
            norm.normalize_email,
            fields_["email"],
            plus_addressing=mapping.email_plus_addressing,
        )
        normalized["email"] = email.canonical
        normalized["email_match"] = email.match_key
        keys["email"] = [email.match_key]

    if fields_["phone"] is not None:
        if norm.phone_is_placeholder(fields_["phone"]):
            quality.append("junk_phone")
        else:
            region = country or mapping.default_country or "GB"
            phone = _call(column["phone"], norm.normalize_phone, fields_["phone"], default_region=region)
            normalized["phone"] = phone
            keys["phone"] = [phone]

    given, family = fields_["first_name"], fields_["last_name"]
    if fields_["full_name"] is not None and (given is None or family is None):
        split_given, split_family = _call(column["full_name"], _split_full_name, fields_["full_name"])
        given = given or split_given
        family = family or split_family
    if given is not None:
        normalized["first_name"] = _call("first_name", _normalize_name, given)
        normalized["first_name_keys"] = sorted(_call("first_name", _name_match_keys, given))
        normalized["nickname_keys"] = sorted(_call("first_name", _nickname_keys, given))
        keys["first_name"] = normalized["first_name_keys"]
    if family is not None:
        normalized["last_name"] = _call("last_name", _normalize_name, family)
        family_keys = sorted(_call("last_name", _name_match_keys, family))
        normalized["last_name_keys"] = family_keys
        keys["last_name"] = family_keys
        phonetic = _call("last_name", _phonetic_key, family)
        normalized["last_name_phonetic"] = phonetic
        if phonetic and dob is not None:
            keys["phonetic_birth_year"] = [f"{phonetic}:{dob.year}"]

    if fields_["address_line1"] is not None:
        parts = _call(column["address_line1"], _parse_address_line, fields_["address_line1"])
        normalized["street"] = parts.street
        if parts.street:
            street_column = column["address_line1"]
            normalized["street_key"] = _soft(
                quality, {"empty"}, street_column, _normalize_street, parts.street
            )
        normalized["street_number"] = fields_["street_number"] or parts.street_number
        normalized["unit"] = parts.unit
    elif fields_["street_number"] is not None:
        normalized["street_number"] = fields_["street_number"]

    if fields_["postcode"] is not None:
        # A postcode that fails its country's format is usually right for another country (the
        # source's default country was assumed): keep a cleaned form for blocking, flag it.
        postcode = _soft(
            quality,
            {"invalid_postcode"},
            column["postcode"],
            _normalize_postcode,
            fields_["postcode"],
            country,
        )
        if postcode is None:
            postcode = " ".join(fields_["postcode"].upper().split())
        normalized["postcode"] = postcode
        keys["postcode"] = [f"{country or ''}:{postcode}"]
        initial = (normalized.get("first_name_keys") or [""])[0][:1]
        if initial:
            keys["postcode_initial"] = [f"{country or ''}:{postcode}:{initial}"]

    if fields_["city"] is not None:
        normalized["city"] = _call("city", _name_match_key, fields_["city"])

    if fields_["national_id"] is not None:
        national_id = _soft(
            quality,
            {"invalid_national_id"},
            column["national_id"],
            norm.normalize_national_id,
            fields_["national_id"],
            country,
        )
        if national_id is not None:
            normalized["national_id"] = national_id
            keys["national_id"] = [f"{country or ''}:{national_id}"]

    if dob is not None:
        keys["date_of_birth"] = [dob.isoformat()]

    if quality:
        normalized["quality"] = sorted(set(quality))

    last_activity = None
    if mapped.get("last_activity_at"):
        last_activity = parse_datetime(
            str(mapped["last_activity_at"]), mapping.datetime_formats, "last_activity_at"
        )

    attributes = _attributes(values, mapping.records)
    record = CustomerRecord(source_record_id=record_id, attributes=attributes, **fields_)
    content = json.dumps(
        {
            "fields": {k: (v.isoformat() if isinstance(v, date) else v) for k, v in fields_.items()},
            "attributes": attributes,
            "last_activity_at": last_activity.isoformat() if last_activity else None,
        },
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    ).encode("utf-8", errors="surrogatepass")
    return PreparedRecord(record, normalized, keys, last_activity, content)


def prepare_interaction(values: dict[str, Any], mapping: SourceMapping) -> PreparedInteraction:
    section = mapping.interactions
    if section is None:
        raise Rejected("no_interaction_mapping", f"source {mapping.name} has no [interactions] mapping")
    mapped, column, record_id = _map_row(values, section)
    occurred_text = mapped.get("occurred_at")
    if not occurred_text:
        raise Rejected("missing_timestamp", f"column {safe_column(column['occurred_at'])} is empty")
    occurred_at = parse_datetime(occurred_text, mapping.datetime_formats, column["occurred_at"])

    channel = (mapped.get("channel") or "").lower()
    if channel not in CHANNELS:
        raise Rejected(
            "invalid_channel", f"channel must be one of {', '.join(CHANNELS)} (see [interactions.values])"
        )
    direction = (mapped.get("direction") or "inbound").lower()
    if direction not in DIRECTIONS:
        raise Rejected("invalid_direction", "direction must be inbound or outbound")
    kind = (mapped.get("kind") or "contact").lower().replace(" ", "_").replace("-", "_")
    if not _KIND.match(kind):
        raise Rejected("invalid_kind", "kind must be a short lower-case word")
    department = (mapped.get("department") or mapping.line_of_business).lower()
    if not _KIND.match(department):
        raise Rejected("invalid_department", "department must be a short lower-case word")

    amount_text = mapped.get("amount")
    amount = None
    if amount_text is not None:
        decimal_text = amount_text.replace(" ", "")
        if "," in decimal_text and "." not in decimal_text:
            decimal_text = decimal_text.replace(",", ".")  # European decimal comma
        try:
            amount = Decimal(decimal_text)
        except InvalidOperation:
            raise Rejected(
                "invalid_amount", f"column {safe_column(column['amount'])} is not a number"
            ) from None
        if not amount.is_finite():
            raise Rejected("invalid_amount", f"column {safe_column(column['amount'])} is not a finite number")
    currency = mapped.get("currency")
    if currency is not None and not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise Rejected("invalid_currency", "currency must be an ISO 4217 code")

    details: dict[str, Any] = {
        "interaction_id": mapped.get("interaction_id"),
        "summary": mapped.get("summary"),
        "content": mapped.get("content"),
        "outcome": mapped.get("outcome"),
        "amount": str(amount) if amount is not None else None,
        "currency": currency.upper() if currency else None,
        "attributes": _attributes(values, section),
    }
    prepared = PreparedInteraction(
        source_record_id=record_id,
        interaction_id=mapped.get("interaction_id"),
        occurred_at=occurred_at,
        channel=channel,
        direction=direction,
        kind=kind,
        department=department,
        details=details,
    )
    prepared.content = json.dumps(
        {
            "at": occurred_at.isoformat(),
            "channel": channel,
            "direction": direction,
            "kind": kind,
            "department": department,
            "record": record_id,
            **details,
        },
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    ).encode("utf-8", errors="surrogatepass")
    return prepared
