"""Churn risk on a generated population with a planted pattern: steady customers who keep coming back, and
customers whose activity thins while they complain, after which they go silent for good. The pattern is in
the history at every point in time, so the model can learn it; it must then rank the customers in that
pattern today far above everyone else, and say why."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray

from cdp.analytics.churn import FEATURES, ChurnResult, fit_churn
from cdp.analytics.clv import NotEnoughData
from cdp.analytics.config import AnalyticsModel
from cdp.analytics.frame import INBOUND, OUTBOUND, CustomerFrame, Dataset, InteractionFrame, Vocabulary
from cdp.analytics.privacy import Suppressor
from tests.analytics.synthetic import AS_OF, Event, build

HISTORY_DAYS = 800
STEADY = 2400
AT_RISK_NOW = 150
"""Planted customers who thinned out, complained and fell silent 20 to 75 days ago: the ones to flag."""
PLANTED_EARLIER = 750
"""Planted customers who went through the same at some point in the history (what the model learns from)."""
THINNING_DAYS = 150
KINDS = ("web_visit", "purchase", "newsletter_click", "question", "complaint", "newsletter")
DEPARTMENTS = ("sales", "support")


@dataclass
class Population:
    dataset: Dataset
    at_risk_now: NDArray[np.bool_]
    planted: NDArray[np.bool_]
    steady_active: NDArray[np.bool_]
    """Steady customers who are still active (a few steady ones stop without warning)."""


def _events(rng: np.random.Generator, customer: int, rate: float, start: float, end: float) -> list[tuple]:
    """Activity of one customer at ``rate`` per day between ``start`` and ``end`` days ago (start > end)."""
    n = rng.poisson(rate * (start - end))
    days_ago = rng.uniform(end, start, size=n)
    kind = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    return [(customer, d, k) for d, k in zip(days_ago, kind, strict=True)]


def _population(seed: int = 11) -> Population:
    rng = np.random.default_rng(seed)
    n = STEADY + AT_RISK_NOW + PLANTED_EARLIER
    rate = rng.uniform(1 / 30, 1 / 8, size=n)
    # the day (days ago) each customer falls silent; steady customers never, except 5% without warning
    silent_from = np.full(n, -1.0)
    sudden = rng.random(STEADY) < 0.05
    silent_from[:STEADY][sudden] = rng.uniform(0, HISTORY_DAYS - 200, size=int(sudden.sum()))
    silent_from[STEADY : STEADY + AT_RISK_NOW] = rng.uniform(20, 75, size=AT_RISK_NOW)
    silent_from[STEADY + AT_RISK_NOW :] = rng.uniform(75, HISTORY_DAYS - 150, size=PLANTED_EARLIER)
    planted = np.arange(n) >= STEADY

    rows: list[tuple] = []
    for i in range(n):
        stop = max(silent_from[i], 0.0)
        if planted[i]:
            thinning = silent_from[i] + THINNING_DAYS
            rows += _events(rng, i, rate[i], HISTORY_DAYS, thinning)
            rows += _events(rng, i, rate[i] / 4, thinning, stop)
            rows += [(i, d, 4) for d in rng.uniform(stop, thinning - 30, size=rng.integers(1, 4))]
        else:
            rows += _events(rng, i, rate[i], HISTORY_DAYS, stop)
            rows += [(i, d, 3) for d in rng.uniform(stop, HISTORY_DAYS, size=rng.poisson(2))]
        rows += [(i, float(d), 5) for d in range(HISTORY_DAYS - int(rng.integers(0, 30)), 0, -30)]
    customer = np.array([r[0] for r in rows], dtype=np.int32)
    day = AS_OF - np.array([r[1] for r in rows], dtype=np.float64)
    kind = np.array([r[2] for r in rows], dtype=np.int16)
    order = np.lexsort((day, customer))
    customer, day, kind = customer[order], day[order], kind[order]
    purchase = kind == KINDS.index("purchase")
    frame = InteractionFrame(
        customer=customer,
        day=day,
        channel=np.zeros(customer.shape[0], dtype=np.int16),
        direction=np.where(np.isin(kind, [2, 5]), OUTBOUND, INBOUND).astype(np.int8),
        kind=kind,
        department=np.where(np.isin(kind, [3, 4]), 1, 0).astype(np.int16),
        amount=np.where(purchase, rng.gamma(4.0, 15.0, size=customer.shape[0]), np.nan),
        channels=Vocabulary(("email",)),
        kinds=Vocabulary(KINDS),
        departments=Vocabulary(DEPARTMENTS),
    )
    dataset = Dataset(
        customers=CustomerFrame(
            ids=[uuid.UUID(int=i + 1) for i in range(n)],
            departments=np.ones(n, dtype=np.int64),
            department_names=Vocabulary(DEPARTMENTS),
            first_seen=np.full(n, AS_OF - HISTORY_DAYS),
        ),
        interactions=frame,
        as_of=AS_OF,
        model=AnalyticsModel.default(),
        purpose="analytics",
    )
    at_risk_now = (np.arange(n) >= STEADY) & (np.arange(n) < STEADY + AT_RISK_NOW)
    steady_active = ~planted & (silent_from < 0)
    return Population(dataset, at_risk_now, planted, steady_active)


@pytest.fixture(scope="module")
def population() -> Population:
    return _population()


@pytest.fixture(scope="module")
def result(population: Population) -> ChurnResult:
    return fit_churn(population.dataset)


def test_the_planted_cohort_is_ranked_far_above_steady_customers(
    population: Population, result: ChurnResult
) -> None:
    at_risk = result.risk[population.at_risk_now].mean()
    steady = result.risk[population.steady_active].mean()
    assert at_risk > 0.6
    assert steady < 0.1
    # among everyone still around (the steady and the cohort), the highest risks are the cohort's
    around = population.at_risk_now | population.steady_active
    ranked = np.flatnonzero(around)[np.argsort(-result.risk[around])]
    top = ranked[:AT_RISK_NOW]
    assert population.at_risk_now[top].mean() > 0.75
    # and the top decile of the whole base is made of planted customers (now or earlier)
    decile = np.argsort(-result.risk)[: result.risk.shape[0] // 10]
    assert population.planted[decile].mean() > 0.85


def test_out_of_time_validation_auc_is_reported_and_good(result: ChurnResult) -> None:
    assert result.validation_auc is not None
    assert result.validation_auc > 0.7
    assert result.validation_customers > 1000


def test_weights_have_the_expected_signs(result: ChurnResult) -> None:
    weight = {f.name: w for f, w in zip(result.features, result.coefficients, strict=True)}
    assert weight["days_since_last_activity"] > 0
    assert weight["activity_90d"] < 0
    assert weight["complaints_90d"] > 0


def test_explain_lists_every_feature_by_size_of_contribution(
    population: Population, result: ChurnResult
) -> None:
    cohort = np.flatnonzero(population.at_risk_now)
    complaints = [f.name for f in FEATURES].index("complaints_90d")
    index = int(cohort[np.argmax(result.values[cohort, complaints])])
    explanation = result.explain(index)
    assert {e["feature"] for e in explanation} == {f.name for f in FEATURES}
    sizes = [abs(e["contribution"]) for e in explanation]
    assert sizes == sorted(sizes, reverse=True)
    # the contributions add up to the customer's log-odds: the explanation is the whole story
    log_odds = result.intercept + sum(e["contribution"] for e in explanation)
    assert 1 / (1 + np.exp(-log_odds)) == pytest.approx(result.risk[index], rel=1e-9)
    by_name = {e["feature"]: e for e in explanation}
    assert by_name["complaints_90d"]["value"] >= 2
    assert by_name["complaints_90d"]["contribution"] > 0
    assert "complaints_90d" in [e["feature"] for e in explanation[:3]]


def test_bands_cover_everyone_and_to_dict_is_plain_json(population: Population, result: ChurnResult) -> None:
    out = result.to_dict(Suppressor(5, population.dataset.size))
    json.dumps(out, allow_nan=False)
    assert out["model"] == "logistic_regression" and out["library"] == "scikit-learn"
    assert out["horizon_days"] == 90
    assert out["validation"]["method"] == "out_of_time" and out["validation"]["auc"] > 0.7
    assert [c["feature"] for c in out["coefficients"]] == [f.name for f in FEATURES]
    assert all(c["description"] for c in out["coefficients"])
    assert [(b["band"], b["from"], b["to"]) for b in out["bands"]] == [
        ("low", 0.0, 0.25),
        ("medium", 0.25, 0.5),
        ("high", 0.5, 0.75),
        ("very_high", 0.75, 1.0),
    ]
    assert sum(b["customers"] for b in out["bands"]) == population.dataset.size
    assert 0 < out["training_churn_rate"] < 1
    assert out["mean_risk"] == pytest.approx(result.risk.mean(), abs=1e-4)
    assert result.band_of().dtype == np.int8
    assert np.bincount(result.band_of(), minlength=4).tolist() == [b["customers"] for b in out["bands"]]


def test_small_bands_are_suppressed_with_a_second_one_so_they_cannot_be_derived(result: ChurnResult) -> None:
    counts = np.bincount(result.band_of(), minlength=4)
    k = int(np.sort(counts)[1])  # only the smallest band is under k
    bands = result.to_dict(Suppressor(k, int(counts.sum())))["bands"]
    hidden = [b["suppressed"] for b in bands]
    assert sum(hidden) == 2
    assert bands[int(np.argmin(counts))]["suppressed"]
    assert all(b["customers"] is None for b in bands if b["suppressed"])


def test_by_group_reports_mean_risk_and_suppresses_small_segments(
    population: Population, result: ChurnResult
) -> None:
    tiny = np.zeros(population.dataset.size, dtype=bool)
    tiny[:3] = True
    rows = result.by_group(
        {"cohort": population.at_risk_now, "steady": population.steady_active, "tiny": tiny},
        Suppressor(5, population.dataset.size),
    )
    json.dumps(rows, allow_nan=False)
    by_name = {r["segment"]: r for r in rows}
    assert by_name["cohort"]["customers"] == AT_RISK_NOW
    assert by_name["cohort"]["mean_risk"] > 0.6
    assert by_name["cohort"]["high_risk_share"] > 0.6
    assert by_name["steady"]["mean_risk"] < 0.1
    assert by_name["tiny"] == {
        "segment": "tiny",
        "customers": None,
        "mean_risk": None,
        "high_risk_share": None,
        "suppressed": True,
    }


def test_a_tiny_dataset_raises_not_enough_data() -> None:
    tiny = build(
        [[Event(days_ago=float(d), kind="web_visit") for d in range(200, 0, -20)] for _ in range(20)]
    )
    with pytest.raises(NotEnoughData, match="at least 50 customers"):
        fit_churn(tiny)


def test_a_history_where_nobody_churns_raises_not_enough_data() -> None:
    loyal = build(
        [[Event(days_ago=float(d), kind="web_visit") for d in range(400, 0, -10)] for _ in range(60)]
    )
    with pytest.raises(NotEnoughData, match="churned"):
        fit_churn(loyal)


def test_without_history_one_horizon_earlier_validation_is_reported_as_missing() -> None:
    # everyone arrived 150 days ago: there is a training period (from 90 days ago) but none before it
    customers = [
        [Event(days_ago=float(d), kind="web_visit") for d in range(150, 100 if i % 2 else 0, -7)]
        for i in range(80)
    ]
    result = fit_churn(build(customers, first_seen_days_ago=[150.0] * 80))
    assert result.validation_auc is None
    assert result.trained_on == 80 and result.base_rate == 0.5
    validation = result.to_dict(Suppressor(5, 80))["validation"]
    assert validation == {"method": "out_of_time", "auc": None, "customers": None}
