"""Profitability (margin minus cost to serve) and purchase patterns, with distinct-customer suppression."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cdp.analytics.frame import from_day
from cdp.analytics.privacy import Suppressor
from cdp.analytics.value import profitability, purchase_patterns
from tests.analytics.synthetic import AS_OF, Event, build

# default model: margin 0.30, complaint surcharge 12.00, phone 4.50, email 1.20, web 0.15 per contact
WEB_BUYER = [Event(20, "purchase", "web", amount=100.0), Event(10, "purchase", "web", amount=50.0)]
REFUNDED = [
    Event(20, "purchase", "store", amount=200.0),  # a channel the model does not price: no cost
    Event(15, "credit_note", "email", amount=-80.0),
]
COMPLAINER = [Event(9, "complaint", "phone", "inbound"), Event(8, "call", "phone", "outbound")]


def test_profit_is_margin_on_net_revenue_minus_cost_to_serve() -> None:
    result = profitability(build([WEB_BUYER, REFUNDED, COMPLAINER]))
    assert result.revenue.tolist() == pytest.approx([150.0, 120.0, 0.0])
    assert result.cost_to_serve.tolist() == pytest.approx([0.30, 1.20, 4.50 + 12.0 + 4.50])
    assert result.profit.tolist() == pytest.approx([45.0 - 0.30, 36.0 - 1.20, -21.0])


def test_to_dict_totals_and_deciles_add_up() -> None:
    customers = [[Event(5, "purchase", "web", amount=float(10 * i))] for i in range(1, 91)]
    customers += [COMPLAINER] * 10
    result = profitability(build(customers))
    out = result.to_dict(Suppressor(5, 100), "EUR")
    json.dumps(out, allow_nan=False)
    total = 0.3 * sum(10 * i for i in range(1, 91)) - 90 * 0.15 - 10 * 21.0
    assert out["customers"] == 100
    assert out["profit"] == pytest.approx(total)
    assert out["revenue"] == pytest.approx(sum(10 * i for i in range(1, 91)))
    assert out["cost_to_serve"] == pytest.approx(90 * 0.15 + 210.0)
    assert out["unprofitable_customers"] == 10
    assert out["assumptions"]["gross_margin"] == 0.3
    assert out["assumptions"]["cost_per_contact"]["phone"] == 4.5
    deciles = out["deciles"]
    assert [d["decile"] for d in deciles] == list(range(1, 11))
    assert all(d["customers"] == 10 and not d["suppressed"] for d in deciles)
    assert deciles[0]["mean_profit"] == -21.0
    # the top decile holds purchases of 810..900: mean 855
    assert deciles[9]["mean_revenue"] == 855.0
    assert deciles[9]["mean_profit"] == pytest.approx(0.3 * 855 - 0.15)
    assert sum(d["mean_profit"] * d["customers"] for d in deciles) == pytest.approx(total, abs=0.1)
    assert sum(d["profit_share"] for d in deciles) == pytest.approx(1.0, abs=1e-3)
    assert [d["mean_profit"] for d in deciles] == sorted(d["mean_profit"] for d in deciles)


def test_small_populations_hide_totals_and_deciles() -> None:
    out = profitability(build([WEB_BUYER, REFUNDED, COMPLAINER])).to_dict(Suppressor(5, 3), "EUR")
    json.dumps(out, allow_nan=False)
    assert out["customers"] is None and out["profit"] is None and out["revenue"] is None
    assert out["unprofitable_customers"] is None
    assert all(d["suppressed"] or d["customers"] == 0 for d in out["deciles"])


def test_by_group_shows_exact_sums_and_suppresses_a_group_of_three() -> None:
    customers = [WEB_BUYER] * 5 + [COMPLAINER] * 3 + [REFUNDED] * 12
    result = profitability(build(customers))
    index = np.arange(20)
    rows = result.by_group(
        {"web_buyers": index < 5, "complainers": (index >= 5) & (index < 8)}, Suppressor(5, 20), "EUR"
    )
    json.dumps(rows, allow_nan=False)
    assert rows[0] == {
        "segment": "web_buyers",
        "currency": "EUR",
        "customers": 5,
        "revenue": 750.0,
        "cost_to_serve": 1.5,
        "profit": 223.5,
        "mean_profit": 44.7,
        "suppressed": False,
    }
    assert rows[1] == {
        "segment": "complainers",
        "currency": "EUR",
        "customers": None,
        "revenue": None,
        "cost_to_serve": None,
        "profit": None,
        "mean_profit": None,
        "suppressed": True,
    }


THURSDAY_NOON = 0.5  # days before as_of (Friday 2024-10-04 00:00 UTC)
MONDAY_SIX = 3.75
SUNDAY_TEN_PM = 5 - 22 / 24


def patterns_population() -> list[list[Event]]:
    thursday = [Event(THURSDAY_NOON, "purchase", "web", amount=20.0), Event(THURSDAY_NOON, "complaint")]
    monday = [Event(MONDAY_SIX, "invoice", "store", amount=30.0), Event(MONDAY_SIX, "payment", amount=30.0)]
    # two heavy buyers: 20 Sunday-night purchases each
    sunday = [Event(SUNDAY_TEN_PM + 7 * week, "purchase", "web", amount=10.0) for week in range(20)]
    unconverted = [Event(1, "purchase", "web", amount=None), Event(2, "question")]
    return [thursday] * 5 + [monday] * 5 + [sunday] * 2 + [unconverted] * 5


def test_planted_buckets_are_where_they_should_be() -> None:
    assert from_day(AS_OF - THURSDAY_NOON).strftime("%A %H:%M") == "Thursday 12:00"
    assert from_day(AS_OF - MONDAY_SIX).strftime("%A %H:%M") == "Monday 06:00"
    assert from_day(AS_OF - SUNDAY_TEN_PM).strftime("%A %H:%M") == "Sunday 22:00"


def test_weekday_and_hour_buckets_are_exact() -> None:
    out = purchase_patterns(build(patterns_population()), Suppressor(5, 17))
    json.dumps(out, allow_nan=False)
    assert out["purchases"] == 50
    assert out["buyers"] == 12
    assert out["currency"] == "EUR"
    weekdays = {row["weekday"]: row for row in out["by_weekday"]}
    assert list(weekdays) == ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    assert weekdays["thursday"] == {
        "weekday": "thursday",
        "customers": 5,
        "purchases": 5,
        "revenue": 100.0,
        "suppressed": False,
    }
    assert weekdays["monday"] == {
        "weekday": "monday",
        "customers": 5,
        "purchases": 5,
        "revenue": 150.0,
        "suppressed": False,
    }
    assert weekdays["friday"] == {
        "weekday": "friday",
        "customers": 0,
        "purchases": 0,
        "revenue": 0.0,
        "suppressed": False,
    }
    hours = {row["hour"]: row for row in out["by_hour"]}
    assert len(hours) == 24
    assert (hours[12]["customers"], hours[12]["purchases"]) == (5, 5)
    assert (hours[6]["customers"], hours[6]["purchases"]) == (5, 5)
    months = {row["month"]: row for row in out["by_month"]}
    assert (months[10]["customers"], months[10]["purchases"], months[10]["revenue"]) == (5, 5, 100.0)
    channels = {row["channel"]: row for row in out["by_channel"]}
    assert (channels["web"]["customers"], channels["web"]["purchases"]) == (7, 45)
    assert (channels["store"]["customers"], channels["store"]["purchases"]) == (5, 5)
    assert out["by_department"] == [
        {"department": "sales", "customers": 12, "purchases": 50, "revenue": 650.0, "suppressed": False}
    ]
    assert out["basket"] == {"mean_value": 13.0}


def test_a_bar_of_many_purchases_by_two_customers_is_suppressed() -> None:
    out = purchase_patterns(build(patterns_population()), Suppressor(5, 17))
    sunday = next(row for row in out["by_weekday"] if row["weekday"] == "sunday")
    assert sunday == {
        "weekday": "sunday",
        "customers": None,
        "purchases": None,
        "revenue": None,
        "suppressed": True,
    }
    hour = next(row for row in out["by_hour"] if row["hour"] == 22)
    assert hour["suppressed"] is True and hour["purchases"] is None
    # only the two heavy buyers repeat: share and gaps would describe them
    assert out["repeat_buyer_share"] is None
    assert out["mean_days_between_purchases"] is None


def test_repeat_share_and_days_between_purchases() -> None:
    twice = [Event(30, "purchase", amount=10.0), Event(20, "purchase", amount=10.0)]
    three_times = [
        Event(30, "purchase", amount=10.0),
        Event(26, "purchase", amount=10.0),
        Event(22, "purchase", amount=5.0),
    ]
    once = [Event(30, "purchase", amount=10.0)]
    never = [Event(30, "question")]
    out = purchase_patterns(
        build([twice] * 5 + [three_times] * 5 + [once] * 5 + [never] * 5), Suppressor(5, 20)
    )
    json.dumps(out, allow_nan=False)
    assert out["buyers"] == 15
    assert out["repeat_buyer_share"] == pytest.approx(0.6667)
    assert out["mean_days_between_purchases"] == 7.0  # (5 x 10 + 5 x 4) / 10
    assert out["purchases"] == 30
