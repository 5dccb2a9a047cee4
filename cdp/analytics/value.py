"""Customer profitability and purchase patterns.

Profitability follows ``[profitability]`` in the model, a deliberately simple and documented model:

    profit = gross_margin * net revenue - cost to serve
    cost to serve = sum over the customer's interactions, both directions, of cost_per_contact[channel]
                    (0 for a channel the model does not price) + complaint_surcharge per complaint-kind
                    interaction

Net revenue is :attr:`Purchases.revenue <cdp.analytics.frame.Purchases.revenue>` (refunds subtracted), so a
refund lowers profit by the margin it had brought. The assumptions are returned with every result: a reader
must be able to see which costs the figures rest on.

Purchase patterns describe *when, where and how much* people buy. A purchase is a revenue-kind row with a
positive amount in a convertible currency — the same rows :class:`~cdp.analytics.frame.Purchases` counts —
and revenue there is gross (a refund cannot be attributed to the hour of the sale it reverses). Every bar is
suppressed when fewer than k *distinct customers* contributed to it: 200 purchases by one person would
otherwise describe that person.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cdp.analytics.frame import Dataset
from cdp.analytics.privacy import Suppressor

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EPOCH_WEEKDAY = 3
"""1970-01-01 was a Thursday (Monday = 0)."""
_HOUR_EPSILON = 1e-6
"""Float days carry ~1e-12 of rounding, so 14:00 may arrive as 13:59:59.99999; a few milliseconds of
tolerance puts it back in its hour."""


@dataclass
class ValueResult:
    revenue: NDArray[np.float64]
    cost_to_serve: NDArray[np.float64]
    profit: NDArray[np.float64]
    """Per customer, in the base currency."""
    gross_margin: float
    complaint_surcharge: float
    cost_per_contact: dict[str, float]

    def assumptions(self) -> dict[str, Any]:
        return {
            "gross_margin": float(self.gross_margin),
            "complaint_surcharge": float(self.complaint_surcharge),
            "cost_per_contact": {name: float(cost) for name, cost in self.cost_per_contact.items()},
        }

    def to_dict(self, suppressor: Suppressor, currency: str) -> dict[str, Any]:
        """Totals, loss-makers and deciles by profit (10 = most profitable). Deciles are equal-sized groups
        of the customers ordered by profit (ties by customer index, so the split is deterministic); a decile's
        ``profit_share`` is its profit over the total and can be negative, or above 1 when others lose."""
        n = int(self.profit.shape[0])
        shown = suppressor.count(n) is not None
        total_profit = float(self.profit.sum())
        order = np.argsort(self.profit, kind="stable")
        decile = np.empty(n, dtype=np.intp)
        decile[order] = (np.arange(n) * 10) // max(n, 1)
        sizes = np.bincount(decile, minlength=10)
        revenue = np.bincount(decile, weights=self.revenue, minlength=10)
        cost = np.bincount(decile, weights=self.cost_to_serve, minlength=10)
        profit = np.bincount(decile, weights=self.profit, minlength=10)
        deciles = [
            {
                "decile": d + 1,
                **suppressor.cell(
                    int(sizes[d]),
                    mean_revenue=_mean(revenue[d], sizes[d]),
                    mean_cost_to_serve=_mean(cost[d], sizes[d]),
                    mean_profit=_mean(profit[d], sizes[d]),
                    profit_share=_round(profit[d] / total_profit, 4) if total_profit != 0 else None,
                ),
            }
            for d in range(10)
        ]
        return {
            "currency": currency,
            "assumptions": self.assumptions(),
            "customers": suppressor.count(n),
            "revenue": _round(self.revenue.sum(), 2) if shown else None,
            "cost_to_serve": _round(self.cost_to_serve.sum(), 2) if shown else None,
            "profit": _round(total_profit, 2) if shown else None,
            "unprofitable_customers": suppressor.count(int((self.profit < 0).sum())),
            "deciles": deciles,
        }

    def by_group(
        self, masks: dict[str, NDArray[np.bool_]], suppressor: Suppressor, currency: str
    ) -> list[dict[str, Any]]:
        """Totals per group (a segment, an RFM segment, a preferred channel), each a suppressed cell."""
        rows = []
        for name, mask in masks.items():
            size = int(mask.sum())
            profit = float(self.profit[mask].sum())
            rows.append(
                {
                    "segment": name,
                    "currency": currency,
                    **suppressor.cell(
                        size,
                        revenue=_round(self.revenue[mask].sum(), 2),
                        cost_to_serve=_round(self.cost_to_serve[mask].sum(), 2),
                        profit=_round(profit, 2),
                        mean_profit=_mean(profit, size),
                    ),
                }
            )
        return rows


def profitability(dataset: Dataset) -> ValueResult:
    frame = dataset.interactions
    model = dataset.model
    channel_cost = np.array(
        [model.cost_per_contact.get(name, 0.0) for name in frame.channels.names], dtype=float
    )
    row_cost = channel_cost[frame.channel] if channel_cost.shape[0] else np.zeros(len(frame))
    row_cost = row_cost + model.complaint_surcharge * frame.kind_mask(model.complaint_kinds)
    cost = np.bincount(frame.customer, weights=row_cost, minlength=dataset.size).astype(np.float64)
    revenue = dataset.purchases.revenue.astype(np.float64)
    return ValueResult(
        revenue=revenue,
        cost_to_serve=cost,
        profit=model.gross_margin * revenue - cost,
        gross_margin=model.gross_margin,
        complaint_surcharge=model.complaint_surcharge,
        cost_per_contact=dict(model.cost_per_contact),
    )


def purchase_patterns(dataset: Dataset, suppressor: Suppressor) -> dict[str, Any]:
    """Purchases by weekday, month, hour (UTC), channel and department, plus repeat buying and basket value.

    ``purchases`` (rows) is withheld with ``buyers`` when the buyers are too few to show: the total of a
    handful of people is theirs."""
    frame = dataset.interactions
    model = dataset.model
    n = dataset.size
    rows = frame.kind_mask(model.revenue_kinds) & np.isfinite(frame.amount) & (frame.amount > 0)
    customer = frame.customer[rows].astype(np.int64)
    day = frame.day[rows]
    amount = frame.amount[rows]
    whole_day = np.floor(day)

    purchases = dataset.purchases
    buyer_mask = purchases.buyers
    buyers = int(buyer_mask.sum())
    repeat = purchases.count >= 2
    n_repeat = int(repeat.sum())
    buyers_shown = suppressor.count(buyers) is not None
    share_shown = buyers > 0 and not (
        suppressor.hides(buyers) or suppressor.hides(n_repeat) or suppressor.hides(buyers - n_repeat)
    )
    gaps = purchases.recency[repeat] / purchases.frequency[repeat]

    weekday = (whole_day.astype(np.int64) + _EPOCH_WEEKDAY) % 7
    month = whole_day.astype(np.int64).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    hour = np.clip(np.floor((day - whole_day) * 24 + _HOUR_EPSILON), 0, 23).astype(np.int64)

    def table(bucket: NDArray[np.int64], labels: list[Any], key: str) -> list[dict[str, Any]]:
        count, revenue, customers = _buckets(bucket, len(labels), customer, amount, n)
        return [
            {
                key: label,
                **suppressor.cell(int(customers[b]), purchases=int(count[b]), revenue=_round(revenue[b], 2)),
            }
            for b, label in enumerate(labels)
        ]

    return {
        "currency": model.base_currency,
        "purchases": int(customer.shape[0]) if buyers_shown else None,
        "buyers": suppressor.count(buyers),
        "repeat_buyer_share": _round(n_repeat / buyers, 4) if share_shown else None,
        "mean_days_between_purchases": (
            _round(float(gaps.mean()), 1) if n_repeat and not suppressor.hides(n_repeat) else None
        ),
        "by_weekday": table(weekday, list(WEEKDAYS), "weekday"),
        "by_month": table(month, list(range(1, 13)), "month"),
        "by_hour": table(hour, list(range(24)), "hour"),
        "by_channel": table(frame.channel[rows].astype(np.int64), list(frame.channels.names), "channel"),
        "by_department": table(
            frame.department[rows].astype(np.int64), list(frame.departments.names), "department"
        ),
        "basket": {
            "mean_value": (_round(float(amount.mean()), 2) if buyers_shown and amount.shape[0] else None)
        },
    }


def _buckets(
    bucket: NDArray[np.int64],
    n_buckets: int,
    customer: NDArray[np.int64],
    amount: NDArray[np.float64],
    n: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """Rows, revenue and distinct customers per bucket.

    Distinct customers come from a customers x buckets presence table (a byte per cell, a few dozen MB at a
    million customers) rather than ``np.unique`` over the pairs, which is several times slower."""
    count: NDArray[np.int64] = np.bincount(bucket, minlength=n_buckets).astype(np.int64)
    revenue = np.bincount(bucket, weights=amount, minlength=n_buckets).astype(np.float64)
    present = np.zeros(n * n_buckets, dtype=bool)
    present[customer * n_buckets + bucket] = True
    customers: NDArray[np.int64] = present.reshape(n, n_buckets).sum(axis=0, dtype=np.int64)
    return count, revenue, customers


def _mean(total: float, size: int) -> float | None:
    return _round(float(total) / int(size), 2) if size else None


def _round(value: float, digits: int) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None
