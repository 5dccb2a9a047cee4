"""Source mappings: how one line-of-business system's columns become canonical attributes.

A mapping is data (TOML), registered with the source, so onboarding a new system is configuration, not
code. Example::

    name = "crm"
    line_of_business = "sales"          # sales | support | billing | marketing
    default_country = "GB"              # region for national phone numbers, country when absent
    date_formats = ["%d/%m/%Y", "%Y-%m-%d"]
    datetime_formats = ["%Y-%m-%dT%H:%M:%S%z", "%d/%m/%Y %H:%M"]
    encoding = "utf-8"
    csv_delimiter = ","
    email_plus_addressing = "keep"      # keep | strip   (the matching key always strips)

    [records]
    ignore = ["InternalNotes"]          # dropped on purpose; other unmapped columns quarantine the row
    [records.fields]                    # column -> canonical attribute, source_record_id, last_activity_at
    LeadId = "source_record_id"
    FirstName = "first_name"
    EMail = "email"
    [records.attributes]                # column -> name inside the encrypted free-form attributes
    Segment = "segment"

    [records.consent.marketing_email]   # optional: a column carrying the customer's say for a purpose
    column = "OptIn"                    # true/yes/1/y grant, false/no/0/n withdraw, empty: no event
    channel = "email"
    at = "OptInAt"                      # optional: when (datetime_formats); otherwise the ingest time
    # values = { subscribed = "grant", unsubscribed = "withdraw", bounced = "none" }   # optional vocabulary

    [interactions]                      # optional: the same source's contact history
    ignore = []
    [interactions.fields]
    TicketId = "interaction_id"
    CustomerRef = "source_record_id"    # the customer record this interaction belongs to
    Opened = "occurred_at"
    Channel = "channel"
    Subject = "summary"
    [interactions.defaults]             # values for canonical fields the file does not carry
    channel = "email"
    direction = "inbound"
    [interactions.values.channel]       # source vocabulary -> canonical vocabulary
    "E-Mail" = "email"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cdp.consent.catalog import ConsentCatalog
from cdp.db.models import CANONICAL_FIELDS
from cdp.errors import CdpError

LINES_OF_BUSINESS = ("sales", "support", "billing", "marketing")
RECORD_TARGETS = frozenset({"source_record_id", "last_activity_at", *CANONICAL_FIELDS})
CHANNELS = ("email", "letter", "phone", "web", "chat", "in_person")
DIRECTIONS = ("inbound", "outbound")
INTERACTION_TARGETS = frozenset(
    {
        "interaction_id",
        "source_record_id",
        "occurred_at",
        "channel",
        "direction",
        "kind",
        "department",
        "summary",
        "content",
        "outcome",
        "amount",
        "currency",
    }
)
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "cp1252")


class MappingError(CdpError):
    """A mapping document is invalid; the message names the offending key."""


@dataclass(frozen=True)
class SectionMapping:
    fields: dict[str, str]
    """column -> canonical target"""
    attributes: dict[str, str] = field(default_factory=dict)
    """column -> free attribute name (kept encrypted)"""
    ignore: frozenset[str] = frozenset()
    defaults: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    """canonical target -> {source value: canonical value}"""

    def column_for(self, target: str) -> str | None:
        for column, mapped in self.fields.items():
            if mapped == target:
                return column
        return None


@dataclass(frozen=True)
class ConsentColumn:
    """A records column that carries the customer's say about one consent purpose on one channel."""

    purpose: str
    channel: str
    column: str
    at: str | None = None
    """Column with when the customer said it; without one, the ingest time is used."""
    values: tuple[tuple[str, str], ...] = ()
    """The source's own vocabulary (lower-cased) → ``grant`` | ``withdraw`` | ``none``; replaces the
    yes/no defaults when given, and any other value quarantines the row."""


@dataclass(frozen=True)
class SourceMapping:
    name: str
    line_of_business: str
    records: SectionMapping
    interactions: SectionMapping | None = None
    default_country: str | None = None
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    datetime_formats: tuple[str, ...] = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")
    encoding: str = "utf-8"
    csv_delimiter: str = ","
    email_plus_addressing: str = "keep"
    description: str = ""
    consent: tuple[ConsentColumn, ...] = ()

    @classmethod
    def from_toml(cls, text: str, *, origin: str = "mapping") -> SourceMapping:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MappingError(f"{origin} is not valid TOML: {exc}") from None
        return cls.from_dict(document, origin=origin)

    @classmethod
    def from_file(cls, path: Path) -> SourceMapping:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"cannot read mapping {path}: {exc}") from None
        return cls.from_toml(text, origin=str(path))

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, origin: str = "mapping") -> SourceMapping:
        known = {
            "name",
            "line_of_business",
            "description",
            "default_country",
            "date_formats",
            "datetime_formats",
            "encoding",
            "csv_delimiter",
            "email_plus_addressing",
            "records",
            "interactions",
        }
        _no_unknown(document, known, origin)
        name = _string(document, "name", origin)
        if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64 or not name.isascii():
            raise MappingError(f"{origin}: name must be 1-64 ASCII letters, digits, '-' or '_'")
        line_of_business = _string(document, "line_of_business", origin)
        if line_of_business not in LINES_OF_BUSINESS:
            raise MappingError(f"{origin}: line_of_business must be one of {', '.join(LINES_OF_BUSINESS)}")
        encoding = str(document.get("encoding", "utf-8")).lower()
        if encoding not in ENCODINGS:
            raise MappingError(f"{origin}: encoding must be one of {', '.join(ENCODINGS)}")
        delimiter = str(document.get("csv_delimiter", ","))
        if len(delimiter) != 1:
            raise MappingError(f"{origin}: csv_delimiter must be one character")
        plus = str(document.get("email_plus_addressing", "keep"))
        if plus not in ("keep", "strip"):
            raise MappingError(f"{origin}: email_plus_addressing must be 'keep' or 'strip'")
        country = document.get("default_country")
        if country is not None and (
            not isinstance(country, str) or len(country) != 2 or not country.isalpha()
        ):
            raise MappingError(f"{origin}: default_country must be an ISO 3166 alpha-2 code")
        raw_records = document.get("records")
        consent: tuple[ConsentColumn, ...] = ()
        if isinstance(raw_records, dict) and "consent" in raw_records:
            consent = _consent(raw_records["consent"], origin)
            raw_records = {k: v for k, v in raw_records.items() if k != "consent"}
        records = _section(raw_records, "records", RECORD_TARGETS, origin)
        if consent:
            # Consent columns are read by ingestion, not stored as attributes: the row must not be
            # quarantined as carrying an unmapped column.
            known = set(records.fields) | set(records.attributes) | records.ignore
            extra = {c.column for c in consent} | {c.at for c in consent if c.at}
            records = replace(records, ignore=records.ignore | frozenset(extra - known))
        if records.column_for("source_record_id") is None:
            raise MappingError(f"{origin}: [records.fields] must map a column to source_record_id")
        interactions = None
        if "interactions" in document:
            interactions = _section(document["interactions"], "interactions", INTERACTION_TARGETS, origin)
            for required in ("source_record_id", "occurred_at"):
                if interactions.column_for(required) is None:
                    raise MappingError(f"{origin}: [interactions.fields] must map a column to {required}")
            _check_vocabulary(interactions, "channel", CHANNELS, origin)
            _check_vocabulary(interactions, "direction", DIRECTIONS, origin)
        return cls(
            name=name,
            line_of_business=line_of_business,
            description=str(document.get("description", "")),
            records=records,
            interactions=interactions,
            default_country=country.upper() if isinstance(country, str) else None,
            date_formats=_formats(document, "date_formats", cls.date_formats, origin),
            datetime_formats=_formats(document, "datetime_formats", cls.datetime_formats, origin),
            encoding=encoding,
            csv_delimiter=delimiter,
            email_plus_addressing=plus,
            consent=consent,
        )


def _no_unknown(document: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(document) - known)
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _string(document: Mapping[str, Any], key: str, origin: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise MappingError(f"{origin}: {key} must be a non-empty string")
    return value


def _str_table(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise MappingError(f"{where} must be a table of strings")
    return dict(value)


def _formats(document: Mapping[str, Any], key: str, default: tuple[str, ...], origin: str) -> tuple[str, ...]:
    value = document.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and "%" in v for v in value):
        raise MappingError(f"{origin}: {key} must be a non-empty list of strptime formats")
    return tuple(value)


def _section(raw: Any, name: str, targets: frozenset[str], origin: str) -> SectionMapping:
    where = f"{origin} [{name}]"
    if not isinstance(raw, dict):
        raise MappingError(f"{where} is missing or not a table")
    _no_unknown(raw, {"fields", "attributes", "ignore", "defaults", "values"}, where)
    fields_ = _str_table(raw.get("fields"), f"{where}.fields")
    bad = sorted(t for t in fields_.values() if t not in targets)
    if bad:
        raise MappingError(f"{where}.fields: unknown target(s) {', '.join(bad)}")
    duplicated = sorted({t for t in fields_.values() if list(fields_.values()).count(t) > 1})
    if duplicated:
        raise MappingError(f"{where}.fields: several columns map to {', '.join(duplicated)}")
    attributes = _str_table(raw.get("attributes"), f"{where}.attributes")
    ignore = raw.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(c, str) for c in ignore):
        raise MappingError(f"{where}.ignore must be a list of column names")
    overlap = sorted(set(fields_) & set(attributes) | (set(fields_) | set(attributes)) & set(ignore))
    if overlap:
        raise MappingError(f"{where}: column(s) mapped twice: {', '.join(overlap)}")
    defaults = _str_table(raw.get("defaults"), f"{where}.defaults")
    bad = sorted(t for t in defaults if t not in targets)
    if bad:
        raise MappingError(f"{where}.defaults: unknown target(s) {', '.join(bad)}")
    values_raw = raw.get("values", {})
    if not isinstance(values_raw, dict):
        raise MappingError(f"{where}.values must be a table")
    values = {target: _str_table(table, f"{where}.values.{target}") for target, table in values_raw.items()}
    bad = sorted(t for t in values if t not in targets)
    if bad:
        raise MappingError(f"{where}.values: unknown target(s) {', '.join(bad)}")
    return SectionMapping(fields_, attributes, frozenset(ignore), defaults, values)


def _check_vocabulary(section: SectionMapping, target: str, allowed: tuple[str, ...], origin: str) -> None:
    produced = set(section.values.get(target, {}).values())
    if target in section.defaults:
        produced.add(section.defaults[target])
    bad = sorted(produced - set(allowed))
    if bad:
        raise MappingError(
            f"{origin} [interactions]: {target} must be one of {', '.join(allowed)}; got {bad}"
        )


def _consent(raw: Any, origin: str) -> tuple[ConsentColumn, ...]:
    """``[records.consent.<purpose>]`` tables, checked against the consent catalog so a typo cannot
    silently drop customers' opt-ins."""
    where = f"{origin} [records.consent]"
    if not isinstance(raw, dict):
        raise MappingError(f"{where} must be a table of purposes")
    catalog = ConsentCatalog.default()
    out: list[ConsentColumn] = []
    for purpose, table in raw.items():
        key = f"{origin} [records.consent.{purpose}]"
        found = catalog.purpose(purpose)
        if found is None:
            raise MappingError(
                f"{key}: unknown consent purpose; purposes: {', '.join(sorted(catalog.purposes))}"
            )
        if not isinstance(table, dict):
            raise MappingError(f"{key} must be a table")
        _no_unknown(table, {"column", "channel", "at", "values"}, key)
        column = table.get("column")
        if not isinstance(column, str) or not column:
            raise MappingError(f"{key}.column must be a non-empty string")
        channel = table.get("channel")
        if not isinstance(channel, str) or channel not in found.channels:
            raise MappingError(f"{key}.channel must be one of {', '.join(found.channels)}")
        at = table.get("at")
        if at is not None and (not isinstance(at, str) or not at):
            raise MappingError(f"{key}.at must be a non-empty string")
        values = table.get("values", {})
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and k.strip() and v in ("grant", "withdraw", "none") for k, v in values.items()
        ):
            raise MappingError(f'{key}.values maps source values to "grant", "withdraw" or "none"')
        vocabulary = tuple(sorted((k.strip().lower(), v) for k, v in values.items()))
        out.append(ConsentColumn(purpose, channel, column, at, vocabulary))
    return tuple(out)
