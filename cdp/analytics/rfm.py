"""RFM: recency, frequency and monetary value, scored 1 to 5 among the customers who bought something.

*Recency* is the days since the last purchase day (more recent scores higher), *frequency* the number of
purchase days (several invoices on one day are one purchase, as in :class:`~cdp.analytics.frame.Purchases`),
*monetary* the net revenue in the base currency (refunds subtracted). Each is scored by quintile among
buyers only: non-buyers would otherwise pile up in the bottom quintile and push every buyer up.

Tie rule: scores come from ranks, and customers with equal values share the mean rank of their tie block
(score = ``floor(5 * (mean_rank - 0.5) / buyers) + 1``). Equal values therefore always share a score, a
value never straddles a quintile edge, and the scores stay within 1..5 however few buyers there are (one
buyer scores 3 on everything: the middle, not the top). The price is that a tie block wider than a fifth
leaves a score empty — typically frequency, where most buyers bought once.

Segments come from ``[rfm] segments`` in the model: each rule is matched on the recency score and the mean
of the frequency and monetary scores, first match wins; a buyer no rule matches is ``other`` and a
customer without a purchase is ``no_purchase`` with all three scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cdp.analytics.config import RfmSegmentRule
from cdp.analytics.frame import Dataset
from cdp.analytics.privacy import Suppressor

OTHER = "other"
NO_PURCHASE = "no_purchase"
SCORES = (1, 2, 3, 4, 5)


@dataclass
class RfmResult:
    recency: NDArray[np.int8]
    frequency: NDArray[np.int8]
    monetary: NDArray[np.int8]
    """Scores 1..5 per customer, 0 for non-buyers."""
    segment: NDArray[np.int16]
    segment_names: tuple[str, ...]
    """``segment_names[segment[i]]`` is customer i's segment."""
    days_since_purchase: NDArray[np.float64]
    """Days from the last purchase day to as_of (NaN for non-buyers): what the recency score ranks."""
    purchase_days: NDArray[np.int64]
    revenue: NDArray[np.float64]

    @property
    def buyers(self) -> NDArray[np.bool_]:
        return self.recency > 0

    def masks(self) -> dict[str, NDArray[np.bool_]]:
        """Segment name -> its customers, for "by segment" breakdowns of other analyses."""
        return {name: self.segment == code for code, name in enumerate(self.segment_names)}

    def to_dict(self, suppressor: Suppressor, currency: str) -> dict[str, Any]:
        buyers = self.buyers
        n_buyers = int(buyers.sum())
        n_names = len(self.segment_names)
        segment = self.segment.astype(np.intp)
        sizes = np.bincount(segment, minlength=n_names)
        known_days = ~np.isnan(self.days_since_purchase)
        days_sum = np.bincount(
            segment, weights=np.where(known_days, self.days_since_purchase, 0.0), minlength=n_names
        )
        days_n = np.bincount(segment[known_days], minlength=n_names)
        purchases_sum = np.bincount(segment, weights=self.purchase_days.astype(np.float64), minlength=n_names)
        revenue_sum = np.bincount(segment, weights=self.revenue, minlength=n_names)
        segments = [
            {
                "segment": name,
                **suppressor.cell(
                    int(sizes[code]),
                    mean_days_since_purchase=_mean(days_sum[code], days_n[code], 1),
                    mean_purchases=_mean(purchases_sum[code], sizes[code], 2),
                    mean_revenue=_mean(revenue_sum[code], sizes[code], 2),
                ),
            }
            for code, name in enumerate(self.segment_names)
        ]
        grid_cell = (self.recency[buyers].astype(np.intp) - 1) * 5 + (
            self.frequency[buyers].astype(np.intp) - 1
        )
        grid_sizes = np.bincount(grid_cell, minlength=25)
        grid = [
            {"recency": r, "frequency": f, **suppressor.cell(int(grid_sizes[(r - 1) * 5 + (f - 1)]))}
            for r in SCORES
            for f in SCORES
        ]
        return {
            "buyers": suppressor.count(n_buyers),
            "non_buyers": suppressor.count(int(buyers.shape[0]) - n_buyers),
            "currency": currency,
            "segments": segments,
            "grid": grid,
            "quintile_edges": self._edges(suppressor),
        }

    def _edges(self, suppressor: Suppressor) -> dict[str, Any]:
        """Where each score begins. An edge is one customer's value, so it is rounded (days to whole days,
        revenue to 2 significant digits) and a dimension's edges are withheld unless every score band in it
        is large enough to show."""
        buyers = self.buyers
        days = self.days_since_purchase[buyers]
        count = self.purchase_days[buyers].astype(np.float64)
        revenue = self.revenue[buyers]

        def edges(
            scores: NDArray[np.int8], values: NDArray[np.float64], lowest: bool
        ) -> list[float | None] | None:
            bands = [scores == s for s in SCORES]
            if any(suppressor.hides(int(band.sum())) for band in bands):
                return None
            return [
                (float(values[band].min()) if lowest else float(values[band].max())) if band.any() else None
                for band in bands[1:]
            ]

        recency = edges(self.recency[buyers], days, lowest=False)
        frequency = edges(self.frequency[buyers], count, lowest=True)
        monetary = edges(self.monetary[buyers], revenue, lowest=True)
        return {
            "rule": "a score is reached at or beyond the edge for it; edges are rounded (days to whole days, "
            "revenue to 2 significant digits) and withheld unless every score band is large enough to show",
            "recency": _edge_rows(recency, "days_since_purchase_at_most", lambda v: float(round(v))),
            "frequency": _edge_rows(frequency, "purchases_at_least", lambda v: int(v)),
            "monetary": _edge_rows(monetary, "revenue_at_least", _two_significant),
        }


def score_rfm(dataset: Dataset) -> RfmResult:
    purchases = dataset.purchases
    buyers = purchases.buyers
    n = dataset.size
    days_since = np.where(buyers, purchases.days_since_last, np.nan)
    recency = np.zeros(n, dtype=np.int8)
    frequency = np.zeros(n, dtype=np.int8)
    monetary = np.zeros(n, dtype=np.int8)
    recency[buyers] = quintile_scores(-days_since[buyers])
    frequency[buyers] = quintile_scores(purchases.count[buyers].astype(np.float64))
    monetary[buyers] = quintile_scores(purchases.revenue[buyers])

    names, table = _segment_table(dataset.model.rfm_segments)
    segment = np.full(n, names.index(NO_PURCHASE), dtype=np.int16)
    segment[buyers] = table[recency[buyers], frequency[buyers].astype(np.intp) + monetary[buyers]]
    return RfmResult(
        recency=recency,
        frequency=frequency,
        monetary=monetary,
        segment=segment,
        segment_names=names,
        days_since_purchase=days_since,
        purchase_days=purchases.count.copy(),
        revenue=purchases.revenue.copy(),
    )


def quintile_scores(values: NDArray[np.float64]) -> NDArray[np.int8]:
    """1..5 by quintile of ``values`` (higher value, higher score); ties share their mean rank's score.

    Integer arithmetic on twice the mean rank, so a tie block whose mean rank sits exactly on an edge
    lands on the same side on every platform."""
    n = values.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    twice_mean_rank_minus_one = 2 * ends - counts
    block_score = (5 * twice_mean_rank_minus_one) // (2 * n) + 1
    scores: NDArray[np.int8] = np.clip(block_score, 1, 5).astype(np.int8)[inverse.reshape(-1)]
    return scores


def _segment_table(rules: tuple[RfmSegmentRule, ...]) -> tuple[tuple[str, ...], NDArray[np.int16]]:
    """Segment code for every (recency score, frequency + monetary score) pair: 5 x 9 reachable cells,
    decided once with the rules' own ``matches`` so the vectorized lookup cannot drift from them."""
    names = list(dict.fromkeys([*(rule.name for rule in rules), OTHER, NO_PURCHASE]))
    table = np.full((6, 11), names.index(OTHER), dtype=np.int16)
    for r in SCORES:
        for fm_sum in range(2, 11):
            for rule in rules:
                if rule.matches(r, fm_sum / 2):
                    table[r, fm_sum] = names.index(rule.name)
                    break
    return tuple(names), table


def _mean(total: float, size: int, digits: int) -> float | None:
    if size == 0:
        return None
    value = float(total) / int(size)
    return round(value, digits) if math.isfinite(value) else None


def _two_significant(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return 0.0
    return float(round(value, 1 - math.floor(math.log10(abs(value)))))


def _edge_rows(
    edges: list[float | None] | None, key: str, rounder: Callable[[float], float | int]
) -> list[dict[str, Any]] | None:
    if edges is None:
        return None
    return [
        {"score": score, key: None if edge is None else rounder(edge)}
        for score, edge in zip(SCORES[1:], edges, strict=True)
    ]
