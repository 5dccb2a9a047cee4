"""Build :class:`~cdp.analytics.frame.Dataset` objects straight from Python values, without a database, for
tests of the analyses' arithmetic (the vault-backed loader has its own tests)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cdp.analytics.config import AnalyticsModel
from cdp.analytics.frame import INBOUND, OUTBOUND, CustomerFrame, Dataset, InteractionFrame, Vocabulary

AS_OF = 20_000.0
"""A fixed 'now' in days since the epoch (2024-10-04)."""


@dataclass(frozen=True)
class Event:
    days_ago: float
    kind: str
    channel: str = "email"
    direction: str = "inbound"
    department: str = "sales"
    amount: float | None = None


def build(
    customers: Sequence[Sequence[Event]],
    *,
    as_of: float = AS_OF,
    departments: Sequence[Sequence[str]] | None = None,
    first_seen_days_ago: Sequence[float] | None = None,
    model: AnalyticsModel | None = None,
) -> Dataset:
    """One customer per entry of ``customers`` (their events); ``departments[i]`` are the lines of business
    customer i has records in (default: the departments of their events, or sales)."""
    events = [(i, e) for i, evs in enumerate(customers) for e in evs]
    events.sort(key=lambda pair: (pair[0], -pair[1].days_ago))
    channels = Vocabulary(tuple(sorted({e.channel for _, e in events} | {"email"})))
    kinds = Vocabulary(tuple(sorted({e.kind for _, e in events} | {"purchase"})))
    dept_names = sorted(
        {e.department for _, e in events} | {d for ds in (departments or []) for d in ds} | {"sales"}
    )
    depts = Vocabulary(tuple(dept_names))
    n = len(customers)
    mask = np.zeros(n, dtype=np.int64)
    for i in range(n):
        names = (
            departments[i] if departments is not None else ({e.department for e in customers[i]} or {"sales"})
        )
        for name in names:
            mask[i] |= 1 << dept_names.index(name)
    first_seen = np.array(
        [
            as_of
            - (
                first_seen_days_ago[i]
                if first_seen_days_ago is not None
                else max([e.days_ago for e in customers[i]], default=0.0)
            )
            for i in range(n)
        ],
        dtype=np.float64,
    )
    frame = InteractionFrame(
        customer=np.array([i for i, _ in events], dtype=np.int32),
        day=np.array([as_of - e.days_ago for _, e in events], dtype=np.float64),
        channel=np.array([channels.names.index(e.channel) for _, e in events], dtype=np.int16),
        direction=np.array(
            [INBOUND if e.direction == "inbound" else OUTBOUND for _, e in events], dtype=np.int8
        ),
        kind=np.array([kinds.names.index(e.kind) for _, e in events], dtype=np.int16),
        department=np.array([dept_names.index(e.department) for _, e in events], dtype=np.int16),
        amount=np.array([np.nan if e.amount is None else e.amount for _, e in events], dtype=np.float64),
        channels=channels,
        kinds=kinds,
        departments=depts,
    )
    return Dataset(
        customers=CustomerFrame(
            ids=[uuid.UUID(int=i + 1) for i in range(n)],
            departments=mask,
            department_names=depts,
            first_seen=first_seen,
        ),
        interactions=frame,
        as_of=as_of,
        model=model or AnalyticsModel.default(),
        purpose="analytics",
    )
