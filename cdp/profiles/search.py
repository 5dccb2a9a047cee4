"""Find customers by an exact email, phone number or name — through the blind indexes only.

A staff member starts from what the caller tells them ("my email is …"), so the department view needs a
lookup. Plaintext columns are encrypted per subject and cannot be scanned (and must not be: a scan would
decrypt everyone to find one person), so a search normalizes its input *exactly as ingestion does*
(:mod:`cdp.sources.prepare`) and looks up the keyed blind-index token of the result
(:meth:`cdp.sources.records.RecordRepository.find`). Only exact matches of the match forms can be found;
there is no prefix or fuzzy search, by design.

What a search returns names no values: per customer (resolved entity), its id, which kinds of key matched,
how many records it has and which sources / lines of business hold them. Reading the customer's data is a
separate, purpose-bound profile read through the access gate.

Input errors carry a fixed sentence per kind of key, never the value the person typed.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.db import Database
from cdp.db.models import EntityMember, Source, SourceRecord
from cdp.errors import CdpError
from cdp.identity import normalize as norm
from cdp.identity.memo import name_match_keys
from cdp.sources.records import RecordRepository
from cdp.vault import Vault

MAX_RESULTS = 25
DEFAULT_REGION = "GB"
MAX_INPUT = 320
_REGION = re.compile(r"^[A-Z]{2}$")
KINDS = ("email", "phone", "first_name", "last_name")
_CHUNK = 500


class InvalidSearch(CdpError, ValueError):
    """The search input cannot be turned into a lookup key. The message is fixed per kind of key (it
    names the field, never the value), so it is safe to show, log and put in a problem detail."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SearchHit:
    """One customer a search found: ids, counts and system names only."""

    entity_id: uuid.UUID
    matched: tuple[str, ...]
    """Kinds of key that matched (``email``, ``phone``, ``first_name``, ``last_name``)."""
    records: int
    """Member records of the customer (those the searcher may know of)."""
    sources: tuple[str, ...]
    lines_of_business: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.entity_id),
            "matched": list(self.matched),
            "records": self.records,
            "sources": list(self.sources),
            "lines_of_business": list(self.lines_of_business),
        }


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    searched: tuple[str, ...]
    """The kinds of key the search used (for the audit entry: never the values)."""
    capped: bool = False
    """More customers matched than :data:`MAX_RESULTS`; only the first ones are returned."""
    limit: int = MAX_RESULTS

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [hit.to_dict() for hit in self.hits],
            "searched": list(self.searched),
            "count": len(self.hits),
            "capped": self.capped,
            "limit": self.limit,
        }


@dataclass(frozen=True)
class SearchQuery:
    """One kind of lookup: an email, a phone number (with the region for national formats), or a name
    (last name, optionally with the first name)."""

    email: str | None = None
    phone: str | None = None
    region: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    def __repr__(self) -> str:
        # Queries end up in tracebacks; their repr must never show what was searched for.
        present = [name for name in ("email", "phone", "first_name", "last_name") if getattr(self, name)]
        return f"SearchQuery(<redacted>, fields={present})"

    def lookup_keys(self) -> dict[str, frozenset[str]]:
        """The blind-index kind → normalized values, built exactly as ingestion builds them."""
        email, phone = _present(self.email), _present(self.phone)
        first, last = _present(self.first_name), _present(self.last_name)
        kinds = sum(1 for kind in (email, phone, first or last) if kind is not None)
        if kinds == 0:
            raise InvalidSearch("query", "Give an email address, a phone number or a last name.")
        if kinds > 1:
            raise InvalidSearch("query", "Search by one kind of key at a time: email, phone or name.")
        if email is not None:
            return {"email": frozenset({_email_key(email)})}
        if phone is not None:
            return {"phone": frozenset({_phone_key(phone, self.region)})}
        if last is None:
            raise InvalidSearch("last_name", "A first name alone is too broad: add the last name.")
        keys = {"last_name": _name_keys("last_name", last)}
        if first is not None:
            keys["first_name"] = _name_keys("first_name", first)
        return keys


def _present(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_INPUT * 4:
        raise InvalidSearch("query", "A search value is too long.")
    try:
        cleaned = norm.clean_text(value, max_length=MAX_INPUT)
    except norm.NormalizationError:
        raise InvalidSearch("query", "A search value contains characters that cannot be searched.") from None
    return cleaned or None


def _email_key(value: str) -> str:
    try:
        # match_key folds plus tags and Gmail dots whatever a source's storage policy: ingestion
        # indexes exactly this form, so the search does too.
        return norm.normalize_email(value).match_key
    except norm.NormalizationError:
        raise InvalidSearch("email", "That is not a valid email address.") from None


def _phone_key(value: str, region: str | None) -> str:
    wanted = (region or DEFAULT_REGION).strip().upper()
    if not _REGION.match(wanted):
        raise InvalidSearch("region", "The region must be a two-letter country code, such as GB.")
    if norm.phone_is_placeholder(value):
        raise InvalidSearch("phone", "That phone number is a placeholder: it is never indexed.")
    try:
        return norm.normalize_phone(value, default_region=wanted)
    except norm.NormalizationError:
        raise InvalidSearch("phone", "That is not a valid phone number for the region.") from None


def _name_keys(kind: str, value: str) -> frozenset[str]:
    label = "first name" if kind == "first_name" else "last name"
    try:
        return frozenset(name_match_keys(value))
    except norm.NormalizationError:
        raise InvalidSearch(kind, f"That {label} cannot be searched.") from None


class CustomerSearch:
    """Exact lookups over the blind indexes, answered as customers (entities), never as values."""

    def __init__(self, db: Database, vault: Vault, *, limit: int = MAX_RESULTS) -> None:
        self.db = db
        self.vault = vault
        self.limit = limit

    def search(self, query: SearchQuery, *, line_of_business: str | None = None) -> SearchResult:
        """Customers whose records match every kind of key in ``query``.

        Within a kind, any of the input's match keys may match (``Müller`` is indexed as ``muller`` and
        ``mueller``); across kinds, one record must match them all (first *and* last name). With
        ``line_of_business`` (a department-scoped reader), only that department's records count: a
        customer it does not hold is not found, and the other departments' records are not revealed.
        """
        keys = query.lookup_keys()
        with self.db.read() as session:
            repository = RecordRepository(session, self.vault)
            matching: set[uuid.UUID] | None = None
            for kind in sorted(keys):
                found: set[uuid.UUID] = set()
                for value in sorted(keys[kind]):
                    found.update(repository.find(kind, value))
                matching = found if matching is None else matching & found
                if not matching:
                    break
            record_ids = sorted(matching or (), key=str)
            entities = _entities_of(session, record_ids, line_of_business)
            ordered = sorted(entities, key=str)
            capped = len(ordered) > self.limit
            chosen = ordered[: self.limit]
            members = _members_of(session, chosen, line_of_business)
        hits = tuple(
            SearchHit(
                entity_id=entity_id,
                matched=tuple(kind for kind in KINDS if kind in keys),
                records=len(members.get(entity_id, ())),
                sources=tuple(sorted({source for source, _ in members.get(entity_id, ())})),
                lines_of_business=tuple(sorted({lob for _, lob in members.get(entity_id, ())})),
            )
            for entity_id in chosen
        )
        return SearchResult(hits, tuple(kind for kind in KINDS if kind in keys), capped, self.limit)


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _entities_of(
    session: Session, record_ids: list[uuid.UUID], line_of_business: str | None
) -> set[uuid.UUID]:
    """The entities of matched records that are resolved (records not yet resolved have no customer)."""
    found: set[uuid.UUID] = set()
    for chunk in _chunks(record_ids):
        statement = select(EntityMember.entity_id).where(EntityMember.record_id.in_(chunk))
        if line_of_business is not None:
            statement = (
                statement.join(SourceRecord, SourceRecord.id == EntityMember.record_id)
                .join(Source, Source.id == SourceRecord.source_id)
                .where(Source.line_of_business == line_of_business)
            )
        found.update(session.execute(statement).scalars())
    return found


def _members_of(
    session: Session, entity_ids: list[uuid.UUID], line_of_business: str | None
) -> Mapping[uuid.UUID, list[tuple[str, str]]]:
    """(source name, line of business) of each member record, per entity."""
    members: dict[uuid.UUID, list[tuple[str, str]]] = defaultdict(list)
    if not entity_ids:
        return members
    statement = (
        select(EntityMember.entity_id, Source.name, Source.line_of_business)
        .join(SourceRecord, SourceRecord.id == EntityMember.record_id)
        .join(Source, Source.id == SourceRecord.source_id)
        .where(EntityMember.entity_id.in_(entity_ids))
    )
    if line_of_business is not None:
        statement = statement.where(Source.line_of_business == line_of_business)
    for entity_id, source, lob in session.execute(statement):
        members[entity_id].append((source, lob))
    return members
