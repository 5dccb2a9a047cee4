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
from sqlalchemy import Connection, select

from cdp.analytics.config import AnalyticsModel
from cdp.analytics.frame import (
    INBOUND,
    OUTBOUND,
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
    ids: list[uuid.UUID] = []
    masks: list[int] = []
    first_seen: list[float] = []
    excluded: set[uuid.UUID] = set()
    rows = connection.execute(
        select(
            EntityMember.entity_id, EntityMember.record_id, SourceRecord.ingested_at, Source.line_of_business
        )
        .join(SourceRecord, SourceRecord.id == EntityMember.record_id)
        .join(Source, Source.id == SourceRecord.source_id)
        .order_by(EntityMember.entity_id)
    )
    for entity_id, record_id, ingested_at, line in rows:
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

    interactions, unconverted = _interactions(connection, vault, model, record_customer, as_of_day, len(ids))
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


def _interactions(
    connection: Connection,
    vault: Vault,
    model: AnalyticsModel,
    record_customer: dict[uuid.UUID, int],
    as_of: float,
    customers: int,
) -> tuple[InteractionFrame, int]:
    """One pass over the interaction metadata, converted to numpy a partition at a time (a million
    customers have some ten million interactions: Python lists of them would not fit in memory)."""
    channels, kinds, departments = _Codes(), _Codes(), _Codes()
    parts: dict[str, list[NDArray[Any]]] = {
        name: [] for name in ("customer", "day", "channel", "direction", "kind", "department")
    }
    money_ids: list[NDArray[np.object_]] = []
    money_rows: list[NDArray[np.intp]] = []
    money_kinds = model.revenue_kinds | model.refund_kinds
    kept = 0
    result = connection.execution_options(yield_per=_BATCH).execute(
        select(
            Interaction.id,
            Interaction.record_id,
            Interaction.occurred_at,
            Interaction.channel,
            Interaction.direction,
            Interaction.kind,
            Interaction.department,
        )
    )
    for partition in result.partitions():
        ids, records, times, chs, dirs, kds, depts = zip(*partition, strict=True)
        count = len(ids)
        customer = np.fromiter((record_customer.get(r, -1) for r in records), dtype=np.int32, count=count)
        day = np.fromiter((to_day(t) for t in times), dtype=np.float64, count=count)
        keep = (customer >= 0) & (day <= as_of)
        kind_names = np.array(kds, dtype=object)
        parts["customer"].append(customer[keep])
        parts["day"].append(day[keep])
        parts["channel"].append(channels.encode(np.array(chs, dtype=object)[keep].tolist()))
        parts["direction"].append(
            np.where(np.array(dirs, dtype=object)[keep] == "outbound", OUTBOUND, INBOUND)
        )
        parts["kind"].append(kinds.encode(kind_names[keep].tolist()))
        parts["department"].append(departments.encode(np.array(depts, dtype=object)[keep].tolist()))
        money = np.isin(kind_names[keep], list(money_kinds))
        money_ids.append(np.array(ids, dtype=object)[keep][money])
        money_rows.append(np.flatnonzero(money) + kept)
        kept += int(keep.sum())

    def joined(name: str, dtype: Any) -> NDArray[Any]:
        return np.concatenate(parts[name]).astype(dtype) if parts[name] else np.zeros(0, dtype=dtype)

    amount = np.full(kept, np.nan)
    unconverted = 0
    if money_ids:
        positions = np.concatenate(money_rows)
        row_ids = np.concatenate(money_ids)
        found, unconverted = _amounts(
            connection, vault, model, list(zip(positions.tolist(), row_ids, strict=True))
        )
        for position, value in found:
            amount[position] = value
    frame = InteractionFrame(
        customer=joined("customer", np.int32),
        day=joined("day", np.float64),
        channel=joined("channel", np.int16),
        direction=joined("direction", np.int8),
        kind=joined("kind", np.int16),
        department=joined("department", np.int16),
        amount=amount,
        channels=channels.vocabulary(),
        kinds=kinds.vocabulary(),
        departments=departments.vocabulary(),
    )
    order = np.lexsort((frame.day, frame.customer))
    return frame.take(order, np.arange(customers, dtype=np.int32)), unconverted


def _amounts(
    connection: Connection, vault: Vault, model: AnalyticsModel, pending: list[tuple[int, Any]]
) -> tuple[list[tuple[int, float]], int]:
    """Decrypt the amount and currency of the revenue rows, in the base currency."""
    out: list[tuple[int, float]] = []
    unconverted = 0
    for start in range(0, len(pending), 5_000):
        chunk = pending[start : start + 5_000]
        position_of = {row_id: position for position, row_id in chunk}
        rows = connection.execute(
            select(
                Interaction.id,
                Interaction.subject_id,
                Interaction.enc_details,
                Subject.key_version,
                Subject.kek_version,
                Subject.wrapped_key,
            )
            .join(Subject, Subject.id == Interaction.subject_id)
            .where(Interaction.id.in_(list(position_of)))
        )
        for row_id, subject_id, blob, key_version, kek_version, wrapped in rows:
            if wrapped is None:
                continue  # shredded between the scan and now: its data is gone
            cipher = vault.keys.open(subject_id, WrappedKey(key_version, kek_version, wrapped))
            details = cipher.decrypt(INTERACTION_TABLE, str(row_id), "details", blob)
            if not isinstance(details, dict) or details.get("amount") is None:
                continue
            rate = model.rate(details.get("currency"))
            if rate is None:
                unconverted += 1
                continue
            out.append((position_of[row_id], float(details["amount"]) * rate))
    return out, unconverted


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
