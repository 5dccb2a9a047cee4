"""Build the analytics :class:`~cdp.analytics.frame.Dataset` from the vault, for consenting customers only.

The one place analytics touch stored data. It reads, for the customers the purpose's consent covers:
which lines of business know them, when they were first seen, and their interactions' metadata (day,
channel, direction, kind, department). It decrypts only what an analysis needs: the amount and currency of
revenue rows, and — when a segment asks for it — the country and year of birth from the normalized record.
Free text (summaries, contents, outcomes) is never opened.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, Connection, Float, String, cast, func, select

from cdp.analytics.config import AnalyticsModel
from cdp.analytics.frame import (
    INBOUND,
    OUTBOUND,
    SECONDS_PER_DAY,
    CustomerFrame,
    Dataset,
    InteractionFrame,
    Vocabulary,
    to_day,
)
from cdp.consent.ledger import ConsentLedger
from cdp.db.models import EntityMember, Interaction, Source, SourceRecord, Subject
from cdp.db.types import utcnow
from cdp.sources.interactions import INTERACTION_TABLE
from cdp.sources.records import RECORD_TABLE
from cdp.vault import Vault
from cdp.vault.subject_keys import WrappedKey

ANALYTICS_PURPOSES = ("analytics", "profiling")
"""Consent purposes an analysis may run under: ``analytics`` (aggregate statistics, legitimate interest:
everyone but objectors) and ``profiling`` (scores that tailor treatment of a person: explicit consent)."""

ATTRIBUTES = ("country", "birth_year")
_BATCH = 50_000
_JULIAN_DAY_OF_EPOCH = 2440587.5


def load_dataset(
    connection: Connection,
    vault: Vault,
    ledger: ConsentLedger,
    *,
    purpose: str,
    model: AnalyticsModel,
    attributes: Collection[str] = (),
    now: datetime | None = None,
    as_of: datetime | None = None,
) -> Dataset:
    """Everything the analyses need about the customers ``purpose`` holds for ``now``, with their history
    up to ``as_of`` (default: now).

    Consent is always taken as it stands ``now``: a look back at last spring processes data today, so a
    customer who objected since is left out of it too. Customers first seen after ``as_of`` count as
    first seen at ``as_of``."""
    if purpose not in ANALYTICS_PURPOSES:
        raise ValueError(f"analytics run under {' or '.join(ANALYTICS_PURPOSES)}, not {purpose!r}")
    unknown = set(attributes) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown attribute(s): {', '.join(sorted(unknown))}")
    moment = now or utcnow()
    cut = as_of or moment
    if cut > moment:
        raise ValueError("as_of must not be in the future")
    as_of_day = to_day(cut)
    standing = ledger.standing(connection, purpose, now=moment)

    lines: list[str] = []
    line_code: dict[str, int] = {}
    index_of: dict[uuid.UUID, int] = {}
    record_customer: dict[uuid.UUID, int] = {}
    record_key: dict[str, int] = {}
    """The same map keyed by the record id's text as the database renders it: the interaction scans
    fetch it so, sparing a UUID object per row (a million customers have ten million interactions)."""
    ids: list[uuid.UUID] = []
    masks: list[int] = []
    first_seen: list[float] = []
    excluded: set[uuid.UUID] = set()
    rows = connection.execute(
        select(
            EntityMember.entity_id,
            EntityMember.record_id,
            cast(EntityMember.record_id, String),
            SourceRecord.ingested_at,
            Source.line_of_business,
        )
        .join(SourceRecord, SourceRecord.id == EntityMember.record_id)
        .join(Source, Source.id == SourceRecord.source_id)
        .order_by(EntityMember.entity_id)
    )
    for entity_id, record_id, record_text, ingested_at, line in rows:
        index = index_of.get(entity_id)
        if index is None:
            if not standing.holds(entity_id):
                excluded.add(entity_id)
                continue
            index = index_of[entity_id] = len(ids)
            ids.append(entity_id)
            masks.append(0)
            first_seen.append(to_day(ingested_at))
        code = line_code.get(line)
        if code is None:
            code = line_code[line] = len(lines)
            lines.append(line)
        masks[index] |= 1 << code
        first_seen[index] = min(first_seen[index], to_day(ingested_at))
        record_customer[record_id] = index
        record_key[record_text] = index

    interactions, unconverted = _interactions(connection, vault, model, record_key, as_of_day, len(ids))
    first = np.minimum(np.array(first_seen, dtype=np.float64), as_of_day)
    if len(interactions.customer):
        earliest = np.full(len(ids), np.inf)
        np.minimum.at(earliest, interactions.customer, interactions.day)
        first = np.minimum(first, earliest)
    customers = CustomerFrame(
        ids=ids,
        departments=np.array(masks, dtype=np.int64),
        department_names=Vocabulary(tuple(lines)),
        first_seen=first,
    )
    if attributes:
        _load_attributes(connection, vault, record_customer, customers, set(attributes))
    return Dataset(
        customers=customers,
        interactions=interactions,
        as_of=as_of_day,
        model=model,
        purpose=purpose,
        excluded_without_consent=len(excluded),
        unconverted_amounts=unconverted,
    )


class _Codes:
    """Stable integer codes for an open vocabulary, assigned across partitions."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}

    def encode(self, values: Sequence[str]) -> NDArray[np.int16]:
        local, uniques = pd.factorize(pd.Series(values, dtype=object), sort=False)
        mapping = np.array([self.names.setdefault(str(u), len(self.names)) for u in uniques], dtype=np.int16)
        return mapping[local] if len(mapping) else np.zeros(len(values), dtype=np.int16)

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(tuple(self.names))


def _days_since_epoch(connection: Connection) -> ColumnElement[Any]:
    """``occurred_at`` as days since the epoch, computed by the database: converting ten million
    timestamps in Python costs more than the rest of the scan."""
    if connection.dialect.name == "sqlite":
        return (func.julianday(Interaction.occurred_at) - _JULIAN_DAY_OF_EPOCH).label("day")
    seconds = cast(func.extract("epoch", Interaction.occurred_at), Float)
    return (seconds / SECONDS_PER_DAY).label("day")


def _interactions(
    connection: Connection,
    vault: Vault,
    model: AnalyticsModel,
    record_key: dict[str, int],
    as_of: float,
    customers: int,
) -> tuple[InteractionFrame, int]:
    """Two scans, converted to numpy a partition at a time (a million customers have some ten million
    interactions; Python lists of them would not fit in memory): the metadata of every interaction that
    carries no money, then the revenue and refund rows with their encrypted details and their subjects'
    wrapped keys, decrypted here (amount and currency only are kept)."""
    codes = {name: _Codes() for name in ("channel", "kind", "department")}
    parts: dict[str, list[NDArray[Any]]] = {
        name: [] for name in ("customer", "day", "channel", "direction", "kind", "department", "amount")
    }
    money_kinds = sorted(model.revenue_kinds | model.refund_kinds)
    columns = (
        cast(Interaction.record_id, String),
        _days_since_epoch(connection),
        Interaction.channel,
        Interaction.direction,
        Interaction.kind,
        Interaction.department,
    )

    def add(rows: Sequence[Any], amounts: NDArray[np.float64] | None) -> None:
        records, times, chs, dirs, kds, depts = (list(c) for c in zip(*rows, strict=True))
        count = len(records)
        customer = np.fromiter((record_key.get(r, -1) for r in records), dtype=np.int32, count=count)
        day = np.array(times, dtype=np.float64)
        keep = (customer >= 0) & (day <= as_of)
        chosen = np.flatnonzero(keep).tolist()
        parts["customer"].append(customer[keep])
        parts["day"].append(day[keep])
        parts["channel"].append(codes["channel"].encode([chs[i] for i in chosen]))
        parts["direction"].append(
            np.array([OUTBOUND if dirs[i] == "outbound" else INBOUND for i in chosen], dtype=np.int8)
        )
        parts["kind"].append(codes["kind"].encode([kds[i] for i in chosen]))
        parts["department"].append(codes["department"].encode([depts[i] for i in chosen]))
        parts["amount"].append(amounts[keep] if amounts is not None else np.full(len(chosen), np.nan))

    plain = connection.execution_options(yield_per=_BATCH).execute(
        select(*columns).where(Interaction.kind.not_in(money_kinds))
    )
    for partition in plain.partitions():
        add(partition, None)

    unconverted = 0
    ciphers: dict[Any, Any] = {}
    money = connection.execution_options(yield_per=_BATCH).execute(
        select(
            *columns,
            Interaction.id,
            Interaction.subject_id,
            Interaction.enc_details,
            Subject.key_version,
            Subject.kek_version,
            Subject.wrapped_key,
        )
        .join(Subject, Subject.id == Interaction.subject_id)
        .where(Interaction.kind.in_(money_kinds))
    )
    for batch in money.partitions():
        amounts = np.full(len(batch), np.nan)
        for position, row in enumerate(batch):
            if row.wrapped_key is None or record_key.get(row[0], -1) < 0:
                continue  # shredded since the scan began, or a customer left out
            cipher = ciphers.get(row.subject_id)
            if cipher is None:
                wrapped = WrappedKey(row.key_version, row.kek_version, row.wrapped_key)
                cipher = ciphers[row.subject_id] = vault.keys.open(row.subject_id, wrapped)
            details = cipher.decrypt(INTERACTION_TABLE, str(row.id), "details", row.enc_details)
            if not isinstance(details, dict) or details.get("amount") is None:
                continue
            rate = model.rate(details.get("currency"))
            if rate is None:
                unconverted += 1
                continue
            amounts[position] = float(details["amount"]) * rate
        add([tuple(row[:6]) for row in batch], amounts)
        ciphers.clear()

    def joined(name: str, dtype: Any) -> NDArray[Any]:
        return np.concatenate(parts[name]).astype(dtype) if parts[name] else np.zeros(0, dtype=dtype)

    frame = InteractionFrame(
        customer=joined("customer", np.int32),
        day=joined("day", np.float64),
        channel=joined("channel", np.int16),
        direction=joined("direction", np.int8),
        kind=joined("kind", np.int16),
        department=joined("department", np.int16),
        amount=joined("amount", np.float64),
        channels=codes["channel"].vocabulary(),
        kinds=codes["kind"].vocabulary(),
        departments=codes["department"].vocabulary(),
    )
    order = np.lexsort((frame.day, frame.customer))
    return frame.take(order, np.arange(customers, dtype=np.int32)), unconverted


def _load_attributes(
    connection: Connection,
    vault: Vault,
    record_customer: dict[uuid.UUID, int],
    customers: CustomerFrame,
    wanted: set[str],
) -> None:
    """Country (the most recently updated record that has one) and year of birth, from the normalized
    record: decrypted here, kept only as these two coarse values."""
    n = len(customers)
    country = np.full(n, None, dtype=object)
    birth_year = np.full(n, np.nan)
    country_at: dict[int, datetime] = {}
    records = list(record_customer)
    for start in range(0, len(records), 5_000):
        chunk = records[start : start + 5_000]
        rows = connection.execute(
            select(
                SourceRecord.id,
                SourceRecord.subject_id,
                SourceRecord.updated_at,
                SourceRecord.enc_normalized,
                Subject.key_version,
                Subject.kek_version,
                Subject.wrapped_key,
            )
            .join(Subject, Subject.id == SourceRecord.subject_id)
            .where(SourceRecord.id.in_(chunk))
        )
        for record_id, subject_id, updated_at, blob, key_version, kek_version, wrapped in rows:
            if blob is None or wrapped is None:
                continue
            cipher = vault.keys.open(subject_id, WrappedKey(key_version, kek_version, wrapped))
            normalized = cipher.decrypt(RECORD_TABLE, str(record_id), "normalized", blob)
            if not isinstance(normalized, dict):
                continue
            index = record_customer[record_id]
            code = normalized.get("country")
            if code and (index not in country_at or updated_at > country_at[index]):
                country[index] = str(code)
                country_at[index] = updated_at
            dob = normalized.get("date_of_birth")
            if dob and np.isnan(birth_year[index]):
                with contextlib.suppress(ValueError):
                    birth_year[index] = float(str(dob)[:4])
    if "country" in wanted:
        customers.country = country
    if "birth_year" in wanted:
        customers.birth_year = birth_year
