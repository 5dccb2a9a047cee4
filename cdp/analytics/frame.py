"""The columnar, pseudonymous view every analysis computes on.

:func:`cdp.analytics.dataset.load_dataset` builds it from the vault for the customers whose consent covers
the purpose; the analyses (RFM, CLV, churn, channels, value, segments) only ever see these arrays: customer
*indexes*, days, channel/kind/department codes and amounts in the base currency — no names, no contact
details, no free text. It lives in memory for one run and is never stored, so a withdrawn consent or an
erasure takes effect at the very next run.

Time is measured in days since the Unix epoch (float64), so "the last 90 days" is ``day > as_of - 90``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from cdp.analytics.config import AnalyticsModel

SECONDS_PER_DAY = 86_400.0
INBOUND = 0
OUTBOUND = 1


def to_day(moment: datetime) -> float:
    """Days since the epoch; naive datetimes are taken as UTC (the store keeps UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() / SECONDS_PER_DAY


def from_day(day: float) -> datetime:
    return datetime.fromtimestamp(day * SECONDS_PER_DAY, tz=UTC)


@dataclass(frozen=True)
class Vocabulary:
    """Codes for a small open vocabulary (kinds, channels, departments): ``names[code]``."""

    names: tuple[str, ...]

    def code(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None

    def codes(self, names: set[str] | frozenset[str] | list[str] | tuple[str, ...]) -> list[int]:
        return [i for i, n in enumerate(self.names) if n in names]


@dataclass
class InteractionFrame:
    """One row per interaction of an included customer, sorted by customer then day."""

    customer: NDArray[np.int32]
    day: NDArray[np.float64]
    channel: NDArray[np.int16]
    direction: NDArray[np.int8]
    kind: NDArray[np.int16]
    department: NDArray[np.int16]
    amount: NDArray[np.float64]
    """Signed revenue in the base currency for revenue and refund kinds; NaN for everything else and for
    amounts in a currency without a rate."""
    channels: Vocabulary
    kinds: Vocabulary
    departments: Vocabulary

    def __len__(self) -> int:
        return int(self.customer.shape[0])

    def kind_mask(self, names: set[str] | frozenset[str] | list[str] | tuple[str, ...]) -> NDArray[np.bool_]:
        return np.isin(self.kind, self.kinds.codes(names))

    def take(
        self, rows: NDArray[np.bool_] | NDArray[np.intp], customer_map: NDArray[np.int32]
    ) -> InteractionFrame:
        """The selected rows, with customer indexes renumbered through ``customer_map``."""
        return InteractionFrame(
            customer=customer_map[self.customer[rows]],
            day=self.day[rows],
            channel=self.channel[rows],
            direction=self.direction[rows],
            kind=self.kind[rows],
            department=self.department[rows],
            amount=self.amount[rows],
            channels=self.channels,
            kinds=self.kinds,
            departments=self.departments,
        )


@dataclass
class CustomerFrame:
    """One row per included customer (a resolved entity)."""

    ids: list[uuid.UUID]
    departments: NDArray[np.int64]
    """Bit ``i`` is set when the customer has a record in ``department_names[i]``'s line of business."""
    department_names: Vocabulary
    first_seen: NDArray[np.float64]
    """Day of the customer's earliest record or interaction."""
    country: NDArray[np.object_] | None = None
    """ISO country code per customer (None where unknown); loaded only when a segment asks for it."""
    birth_year: NDArray[np.float64] | None = None
    """Year of birth (NaN where unknown); loaded only when a segment asks for it."""

    def __len__(self) -> int:
        return len(self.ids)

    def in_department(self, name: str) -> NDArray[np.bool_]:
        code = self.department_names.code(name)
        if code is None:
            return np.zeros(len(self.ids), dtype=bool)
        return np.asarray((self.departments >> code) & 1 == 1, dtype=bool)


@dataclass
class Dataset:
    customers: CustomerFrame
    interactions: InteractionFrame
    as_of: float
    """The moment the analysis describes, in days (normally now)."""
    model: AnalyticsModel
    purpose: str
    excluded_without_consent: int = 0
    """Customers left out because their consent does not cover the purpose."""
    unconverted_amounts: int = 0
    """Revenue rows whose currency has no rate (left out of every monetary figure)."""
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.customers)

    def subset(self, mask: NDArray[np.bool_]) -> Dataset:
        """The customers where ``mask`` is True (a segment), with their interactions."""
        keep = np.flatnonzero(mask)
        remap = np.full(len(self.customers), -1, dtype=np.int32)
        remap[keep] = np.arange(keep.shape[0], dtype=np.int32)
        rows = mask[self.interactions.customer]
        c = self.customers
        customers = CustomerFrame(
            ids=[c.ids[i] for i in keep],
            departments=c.departments[keep],
            department_names=c.department_names,
            first_seen=c.first_seen[keep],
            country=c.country[keep] if c.country is not None else None,
            birth_year=c.birth_year[keep] if c.birth_year is not None else None,
        )
        return Dataset(
            customers=customers,
            interactions=self.interactions.take(rows, remap),
            as_of=self.as_of,
            model=self.model,
            purpose=self.purpose,
            excluded_without_consent=self.excluded_without_consent,
            unconverted_amounts=self.unconverted_amounts,
        )

    @cached_property
    def purchases(self) -> Purchases:
        return Purchases.of(self)

    def per_customer_count(self, rows: NDArray[np.bool_]) -> NDArray[np.int64]:
        """How many of the selected interaction rows each customer has."""
        return np.bincount(self.interactions.customer[rows], minlength=self.size).astype(np.int64)

    def activity_rows(self) -> NDArray[np.bool_]:
        """Rows where the customer did something (see ``[activity]`` in the model)."""
        frame = self.interactions
        return np.asarray((frame.direction == INBOUND) | frame.kind_mask(self.model.active_kinds), dtype=bool)


@dataclass(frozen=True)
class Purchases:
    """Per customer purchase history in the shape BG/NBD and RFM expect.

    A *purchase day* is a day with at least one revenue row (several invoices on one day are one
    transaction, as in the CDNOW convention). Customers without a purchase have ``count == 0`` and NaN
    dates."""

    count: NDArray[np.int64]
    """Purchase days."""
    first: NDArray[np.float64]
    last: NDArray[np.float64]
    revenue: NDArray[np.float64]
    """Net revenue in the base currency (refunds subtracted)."""
    repeat_mean_value: NDArray[np.float64]
    """Mean value of the repeat purchase days (all but the first), NaN without repeats (Gamma-Gamma's
    input)."""
    as_of: float

    @classmethod
    def of(cls, dataset: Dataset) -> Purchases:
        frame = dataset.interactions
        n = dataset.size
        model = dataset.model
        revenue_rows = frame.kind_mask(model.revenue_kinds) & ~np.isnan(frame.amount) & (frame.amount > 0)
        refund_rows = frame.kind_mask(model.refund_kinds) & ~np.isnan(frame.amount)
        sales = np.bincount(frame.customer[revenue_rows], weights=frame.amount[revenue_rows], minlength=n)
        refunds = np.bincount(
            frame.customer[refund_rows], weights=np.abs(frame.amount[refund_rows]), minlength=n
        )
        revenue = np.asarray(sales - refunds, dtype=np.float64)

        customer = frame.customer[revenue_rows]
        day = np.floor(frame.day[revenue_rows])
        amount = frame.amount[revenue_rows]
        count = np.zeros(n, dtype=np.int64)
        first = np.full(n, np.nan)
        last = np.full(n, np.nan)
        repeat_mean = np.full(n, np.nan)
        if customer.shape[0]:
            # one row per (customer, day) with the day's total
            ordered = bool(
                np.all(
                    (customer[1:] > customer[:-1]) | ((customer[1:] == customer[:-1]) & (day[1:] >= day[:-1]))
                )
            )
            if not ordered:  # frames from load_dataset come sorted; hand-built ones may not
                order = np.lexsort((day, customer))
                customer, day, amount = customer[order], day[order], amount[order]
            new_group = np.ones(customer.shape[0], dtype=bool)
            new_group[1:] = (customer[1:] != customer[:-1]) | (day[1:] != day[:-1])
            group_start = np.flatnonzero(new_group)
            day_customer = customer[group_start]
            day_value = np.add.reduceat(amount, group_start)
            day_of = day[group_start]
            count = np.bincount(day_customer, minlength=n).astype(np.int64)
            first_index = np.ones(day_customer.shape[0], dtype=bool)
            first_index[1:] = day_customer[1:] != day_customer[:-1]
            first[day_customer[first_index]] = day_of[first_index]
            last_index = np.ones(day_customer.shape[0], dtype=bool)
            last_index[:-1] = day_customer[1:] != day_customer[:-1]
            last[day_customer[last_index]] = day_of[last_index]
            repeats = ~first_index
            repeat_sum = np.bincount(day_customer[repeats], weights=day_value[repeats], minlength=n)
            repeat_n = np.bincount(day_customer[repeats], minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                repeat_mean = np.where(repeat_n > 0, repeat_sum / np.maximum(repeat_n, 1), np.nan)
        return cls(count, first, last, revenue, repeat_mean, dataset.as_of)

    @property
    def buyers(self) -> NDArray[np.bool_]:
        return self.count > 0

    @property
    def frequency(self) -> NDArray[np.float64]:
        """Repeat purchase days (BG/NBD's x); 0 for one-off buyers and non-buyers."""
        return np.maximum(self.count - 1, 0).astype(np.float64)

    @property
    def recency(self) -> NDArray[np.float64]:
        """Days between the first and the last purchase (BG/NBD's t_x); 0 without repeats."""
        return np.nan_to_num(self.last - self.first, nan=0.0)

    @property
    def age(self) -> NDArray[np.float64]:
        """Days between the first purchase and as_of (BG/NBD's T); NaN for non-buyers."""
        return np.asarray(np.floor(self.as_of) - self.first, dtype=np.float64)

    @property
    def days_since_last(self) -> NDArray[np.float64]:
        return self.as_of - self.last
