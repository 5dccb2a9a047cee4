"""RFM scoring: quintiles among buyers with a documented tie rule, segments from the model, suppression."""

from __future__ import annotations

import json
import tomllib

import numpy as np

from cdp.analytics.config import DEFAULT_MODEL_FILE, AnalyticsModel
from cdp.analytics.frame import Dataset
from cdp.analytics.privacy import Suppressor
from cdp.analytics.rfm import quintile_scores, score_rfm
from tests.analytics.synthetic import Event, build

# (segment it must land in, days ago of the last purchase, purchase days, amount per purchase)
GROUPS = [
    ("champions", 1, 20, 100.0),  # R5 F5 M5 -> 2000 each
    ("new", 10, 1, 50.0),  # R4 F1 M1 -> 50
    ("needs_attention", 50, 3, 100.0),  # R3 F2 M2 -> 300
    ("at_risk", 150, 6, 100.0),  # R2 F3 M3 -> 600
    ("cannot_lose", 400, 12, 153.0),  # R1 F4 M4 -> 1836: lapsed big spenders
]


def planted() -> Dataset:
    """Five buyers per group (last purchases one day apart inside a group) and five non-buyers."""
    customers: list[list[Event]] = []
    for _, last, days, amount in GROUPS:
        for i in range(5):
            customers.append([Event(last + i + 7 * j, "purchase", amount=amount) for j in range(days)])
    customers += [[Event(3, "question")] for _ in range(5)]
    return build(customers)


def test_planted_groups_land_in_their_segments_with_exact_scores() -> None:
    result = score_rfm(planted())
    names = np.array(result.segment_names)[result.segment]
    expected_scores = {
        "champions": (5, 5, 5),
        "new": (4, 1, 1),
        "needs_attention": (3, 2, 2),
        "at_risk": (2, 3, 3),
        "cannot_lose": (1, 4, 4),
    }
    for g, (segment, *_) in enumerate(GROUPS):
        members = slice(5 * g, 5 * g + 5)
        assert list(names[members]) == [segment] * 5
        r, f, m = expected_scores[segment]
        assert list(result.recency[members]) == [r] * 5
        assert list(result.frequency[members]) == [f] * 5
        assert list(result.monetary[members]) == [m] * 5
    assert list(names[25:]) == ["no_purchase"] * 5
    assert (
        not result.recency[25:].any() and not result.frequency[25:].any() and not result.monetary[25:].any()
    )


def test_masks_partition_customers_by_segment() -> None:
    result = score_rfm(planted())
    masks = result.masks()
    assert sum(mask.astype(int) for mask in masks.values()).tolist() == [1] * 30
    assert int(masks["champions"].sum()) == 5
    assert int(masks["no_purchase"].sum()) == 5
    assert int(masks["loyal"].sum()) == 0
    assert list(masks)[-2:] == ["other", "no_purchase"]


def test_to_dict_reports_segments_grid_and_rounded_edges() -> None:
    out = score_rfm(planted()).to_dict(Suppressor(5, 30), "EUR")
    json.dumps(out, allow_nan=False)
    assert out["buyers"] == 25 and out["non_buyers"] == 5 and out["currency"] == "EUR"
    by_name = {row["segment"]: row for row in out["segments"]}
    assert by_name["champions"] == {
        "segment": "champions",
        "customers": 5,
        "mean_days_since_purchase": 3.0,
        "mean_purchases": 20.0,
        "mean_revenue": 2000.0,
        "suppressed": False,
    }
    assert by_name["cannot_lose"]["mean_revenue"] == 1836.0
    assert by_name["cannot_lose"]["mean_days_since_purchase"] == 402.0
    assert by_name["loyal"] == {
        "segment": "loyal",
        "customers": 0,
        "mean_days_since_purchase": None,
        "mean_purchases": None,
        "mean_revenue": None,
        "suppressed": False,
    }
    assert by_name["no_purchase"]["customers"] == 5
    assert by_name["no_purchase"]["mean_days_since_purchase"] is None
    assert by_name["no_purchase"]["mean_purchases"] == 0.0

    grid = {(row["recency"], row["frequency"]): row["customers"] for row in out["grid"]}
    assert len(grid) == 25
    assert {cell: n for cell, n in grid.items() if n} == {
        (5, 5): 5,
        (4, 1): 5,
        (3, 2): 5,
        (2, 3): 5,
        (1, 4): 5,
    }

    edges = out["quintile_edges"]
    assert edges["recency"] == [
        {"score": 2, "days_since_purchase_at_most": 154.0},
        {"score": 3, "days_since_purchase_at_most": 54.0},
        {"score": 4, "days_since_purchase_at_most": 14.0},
        {"score": 5, "days_since_purchase_at_most": 5.0},
    ]
    assert [row["purchases_at_least"] for row in edges["frequency"]] == [3, 6, 12, 20]
    # 1836 is one customer's exact revenue: the edge shows only two significant digits
    assert [row["revenue_at_least"] for row in edges["monetary"]] == [300.0, 600.0, 1800.0, 2000.0]


def test_small_groups_and_their_edges_are_suppressed() -> None:
    customers = [[Event(10 * i + 1, "purchase", amount=10.0 * (i + 1))] for i in range(10)]
    customers += [[Event(2, "question")] for _ in range(3)]
    out = score_rfm(build(customers)).to_dict(Suppressor(5, 13), "EUR")
    json.dumps(out, allow_nan=False)
    # three non-buyers are too few to show, and so are the ten buyers: they are everyone but those three
    assert out["buyers"] is None
    assert out["non_buyers"] is None
    assert out["quintile_edges"]["recency"] is None
    assert out["quintile_edges"]["monetary"] is None
    no_purchase = next(row for row in out["segments"] if row["segment"] == "no_purchase")
    assert no_purchase == {
        "segment": "no_purchase",
        "customers": None,
        "mean_days_since_purchase": None,
        "mean_purchases": None,
        "mean_revenue": None,
        "suppressed": True,
    }
    assert all(row["customers"] in (0, None) for row in out["grid"])


def test_monetary_uses_net_revenue_after_refunds() -> None:
    big_refund = [Event(5, "purchase", amount=1000.0), Event(4, "credit_note", amount=-990.0)]
    customers = [big_refund] + [[Event(5, "purchase", amount=100.0 + i)] for i in range(4)]
    result = score_rfm(build(customers))
    assert result.revenue[0] == 10.0
    assert result.monetary.tolist() == [1, 2, 3, 4, 5]


def test_quintile_scores_stay_in_range_with_very_few_buyers() -> None:
    assert quintile_scores(np.array([7.0])).tolist() == [3]
    assert quintile_scores(np.array([1.0, 2.0])).tolist() == [2, 4]
    assert quintile_scores(np.array([3.0, 1.0, 2.0])).tolist() == [5, 1, 3]
    assert quintile_scores(np.array([4.0, 4.0, 4.0])).tolist() == [3, 3, 3]
    assert quintile_scores(np.arange(10.0)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores(np.zeros(0)).tolist() == []


def test_tied_values_share_the_score_of_their_mean_rank() -> None:
    # six one-off buyers hold ranks 1..6: mean rank 3.5 scores 2, never split across 1 and 2
    values = np.array([1.0] * 6 + [2.0, 3.0, 4.0, 5.0])
    assert quintile_scores(values).tolist() == [2] * 6 + [4, 4, 5, 5]


def test_buyers_no_rule_matches_are_other() -> None:
    settings = tomllib.loads(DEFAULT_MODEL_FILE.read_text(encoding="utf-8"))
    settings["rfm"] = {"segments": [{"name": "champions", "r": [5, 5], "fm": [4, 5]}]}
    only_champions = AnalyticsModel.from_dict(settings)
    customers = [[Event(1 + i, "purchase", amount=10.0 * (i + 1))] for i in range(5)]
    result = score_rfm(build(customers, model=only_champions))
    assert result.segment_names == ("champions", "other", "no_purchase")
    assert [result.segment_names[s] for s in result.segment] == ["other"] * 5
