"""CLV on purchase histories drawn from a known BG/NBD process with Gamma-Gamma spend: the fit must find the
parameters that generated them, and the output must stay aggregate and suppressed."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from lifetimes import BaseFitter, BetaGeoFitter, GammaGammaFitter
from lifetimes.generate_data import beta_geometric_nbd_model

from cdp.analytics.clv import ClvResult, NotEnoughData, fit_clv
from cdp.analytics.config import AnalyticsModel
from cdp.analytics.frame import Dataset
from cdp.analytics.privacy import Suppressor
from tests.analytics.synthetic import Event, build

# CDNOW's BG/NBD estimates (Fader, Hardie & Lee 2005) with alpha converted from weeks to days, and
# Gamma-Gamma spend with a population mean of p * v / (q - 1) = 30 per purchase.
TRUTH = {"r": 0.243, "alpha": 30.9, "a": 0.793, "b": 2.426}
SPEND = {"p": 6.0, "q": 4.0, "v": 15.0}
CUSTOMERS = 4000
BROWSERS = 10
RECENT_FREQUENT, LAPSED_FREQUENT, NON_BUYER = CUSTOMERS, CUSTOMERS + 1, CUSTOMERS + 2


def _generated(seed: int = 7) -> Dataset:
    """CUSTOMERS histories from the BG/NBD process (one purchase day at most per day, as the dataset counts
    them), then three hand-made customers: a frequent buyer who bought last week, one equally frequent who
    stopped ten months ago, and BROWSERS customers who never bought."""
    np.random.seed(seed)  # lifetimes' generator draws from numpy's global state
    age = np.random.randint(180, 721, size=CUSTOMERS)
    drawn = beta_geometric_nbd_model(age.astype(float), size=CUSTOMERS, **TRUTH)
    rng = np.random.default_rng(seed)
    spend_rate = rng.gamma(SPEND["q"], 1.0 / SPEND["v"], size=CUSTOMERS)
    customers: list[list[Event]] = []
    for i, (x, recency) in enumerate(zip(drawn["frequency"].astype(int), drawn["recency"], strict=True)):
        days = [0]
        last = math.floor(recency)
        if x > 0 and last > 0:
            between = (
                rng.choice(np.arange(1, last), size=min(x - 1, last - 1), replace=False) if last > 1 else []
            )
            days += [*(int(d) for d in between), last]
        spends = rng.gamma(SPEND["p"], 1.0 / spend_rate[i], size=len(days))
        customers.append(
            [
                Event(days_ago=float(age[i] - d), kind="purchase", amount=float(s))
                for d, s in zip(days, spends, strict=True)
            ]
        )
    customers.append([Event(days_ago=float(d), kind="purchase", amount=40.0) for d in range(365, 0, -36)])
    customers.append([Event(days_ago=float(d), kind="purchase", amount=40.0) for d in range(665, 300, -36)])
    customers += [[Event(days_ago=3.0 + i, kind="web_visit")] for i in range(BROWSERS)]
    return build(customers)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return _generated()


@pytest.fixture(scope="module")
def result(dataset: Dataset) -> ClvResult:
    return fit_clv(dataset)


def test_bg_nbd_recovers_the_parameters_that_generated_the_purchases(dataset: Dataset) -> None:
    unpenalized = dataclasses.replace(AnalyticsModel.default(), clv_penalizer=0.0)
    fitted = fit_clv(dataclasses.replace(dataset, model=unpenalized)).parameters["bg_nbd"]
    assert fitted["r"] == pytest.approx(TRUTH["r"], rel=0.1)
    assert fitted["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.1)
    # a and b are the least precisely identified; their ratio, the mean dropout probability after a
    # purchase, much better
    assert fitted["a"] == pytest.approx(TRUTH["a"], rel=0.3)
    assert fitted["b"] == pytest.approx(TRUTH["b"], rel=0.3)
    assert fitted["a"] / (fitted["a"] + fitted["b"]) == pytest.approx(
        TRUTH["a"] / (TRUTH["a"] + TRUTH["b"]), abs=0.04
    )


def test_the_default_penalizer_leaves_the_purchase_rate_alone_and_shrinks_the_dropout_a_little(
    result: ClvResult,
) -> None:
    fitted = result.parameters["bg_nbd"]
    assert fitted["r"] == pytest.approx(TRUTH["r"], rel=0.1)
    assert fitted["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.1)
    assert fitted["a"] / (fitted["a"] + fitted["b"]) == pytest.approx(
        TRUTH["a"] / (TRUTH["a"] + TRUTH["b"]), abs=0.06
    )


def test_gamma_gamma_recovers_the_mean_spend_per_purchase(dataset: Dataset, result: ClvResult) -> None:
    p, q, v = (result.parameters["gamma_gamma"][k] for k in ("p", "q", "v"))
    assert p * v / (q - 1) == pytest.approx(SPEND["p"] * SPEND["v"] / (SPEND["q"] - 1), rel=0.1)
    assert p == pytest.approx(SPEND["p"], rel=0.25)
    assert result.repeat_buyers_fitted_on == int(np.count_nonzero(dataset.purchases.frequency > 0))


def test_a_frequent_recent_buyer_is_worth_far_more_than_an_equally_frequent_lapsed_one(
    result: ClvResult,
) -> None:
    assert result.value[RECENT_FREQUENT] > 10 * result.value[LAPSED_FREQUENT]
    assert result.p_alive[RECENT_FREQUENT] > 0.9
    assert result.p_alive[LAPSED_FREQUENT] < 0.2
    assert result.expected_purchases[RECENT_FREQUENT] > 5 * result.expected_purchases[LAPSED_FREQUENT]


def test_customers_without_a_purchase_are_worth_nothing_and_have_no_probability_alive(
    result: ClvResult,
) -> None:
    assert result.value[NON_BUYER] == 0.0
    assert result.expected_purchases[NON_BUYER] == 0.0
    assert math.isnan(result.p_alive[NON_BUYER])
    assert np.count_nonzero(~result.buyers) == BROWSERS
    assert (result.value[~result.buyers] == 0).all()
    assert np.isfinite(result.value).all() and (result.value >= 0).all()
    assert np.isfinite(result.p_alive[result.buyers]).all()


def test_value_is_what_lifetimes_customer_lifetime_value_computes(
    dataset: Dataset, result: ClvResult
) -> None:
    purchases = dataset.purchases
    buyers = np.flatnonzero(purchases.buyers)
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series(result.parameters["bg_nbd"])
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time
    ggf = GammaGammaFitter()
    ggf.params_ = pd.Series(result.parameters["gamma_gamma"])
    frequency = pd.Series(purchases.frequency[buyers])
    expected = ggf.customer_lifetime_value(
        bgf,
        frequency,
        pd.Series(purchases.recency[buyers]),
        pd.Series(purchases.age[buyers]),
        pd.Series(np.nan_to_num(purchases.repeat_mean_value[buyers], nan=0.0)),
        time=12,
        discount_rate=0.01,
        freq="D",
    )
    np.testing.assert_allclose(result.value[buyers], expected.to_numpy(), rtol=1e-9)


def test_to_dict_is_aggregate_json_without_nan(result: ClvResult, dataset: Dataset) -> None:
    out = result.to_dict(Suppressor(5, dataset.size), "EUR")
    text = json.dumps(out, allow_nan=False)
    buyers = int(result.buyers.sum())
    assert out["model"] == "bg_nbd+gamma_gamma" and out["library"] == "lifetimes"
    assert out["customers"] == buyers == out["fitted_on"]
    assert out["total"] == pytest.approx(result.value.sum(), abs=0.01)
    assert out["mean"] == pytest.approx(result.value.sum() / buyers, abs=0.01)
    assert 0 < out["mean_p_alive"] < 1
    assert set(out["parameters"]) == {"bg_nbd", "gamma_gamma"}
    bins = out["histogram"]
    assert 5 <= len(bins) <= 10
    assert bins[0]["from"] == 0.0 and bins[-1]["to"] is None
    assert all(b["to"] == n["from"] for b, n in itertools.pairwise(bins))
    assert sum(b["customers"] for b in bins) == buyers
    # the top bin is open, so the largest value appears nowhere in the output
    assert f"{result.value.max():.2f}" not in text
    assert bins[-1]["from"] < result.value.max() / 2


def test_histogram_suppresses_small_bins_and_one_more_so_the_small_one_cannot_be_derived() -> None:
    values = np.array([1.0] * 20 + [3.0] * 3 + [10.0] * 177 + [0.0] * 50)
    buyers = np.arange(values.shape[0]) < 200
    result = ClvResult(
        value=values,
        p_alive=np.where(buyers, 0.5, np.nan),
        expected_purchases=np.where(buyers, 1.0, 0.0),
        parameters={
            "bg_nbd": {"r": 1.0, "alpha": 1.0, "a": 1.0, "b": 1.0},
            "gamma_gamma": {"p": 1.0, "q": 2.0, "v": 1.0},
        },
        fitted_on=200,
        repeat_buyers_fitted_on=100,
        buyers=buyers,
        horizon_months=12,
        monthly_discount_rate=0.01,
    )
    bins = result.to_dict(Suppressor(5, 250), "EUR")["histogram"]
    assert [(b["from"], b["to"]) for b in bins] == [(0.0, 2.8), (2.8, 10.0), (10.0, None)]
    assert [b["customers"] for b in bins] == [None, None, 177]
    assert [b["suppressed"] for b in bins] == [True, True, False]
    json.dumps(bins, allow_nan=False)


def test_too_few_buyers_raise_not_enough_data_saying_how_many_are_needed() -> None:
    tiny = build(
        [[Event(days_ago=float(10 * i + d), kind="purchase", amount=20.0) for d in (0, 5)] for i in range(10)]
    )
    with pytest.raises(NotEnoughData, match="at least 50 customers"):
        fit_clv(tiny)


def test_too_few_repeat_buyers_raise_not_enough_data() -> None:
    one_off = build([[Event(days_ago=float(i + 1), kind="purchase", amount=20.0)] for i in range(80)])
    with pytest.raises(NotEnoughData, match="at least 20 customers with purchases on two or more days"):
        fit_clv(one_off)


def test_fitting_on_a_sample_gives_nearly_the_same_parameters_every_time(
    dataset: Dataset, result: ClvResult
) -> None:
    model = dataclasses.replace(AnalyticsModel.default(), clv_max_fit_customers=2500)
    first = fit_clv(dataclasses.replace(dataset, model=model))
    again = fit_clv(dataclasses.replace(dataset, model=model))
    assert first.fitted_on == 2500 < result.fitted_on
    assert first.parameters == again.parameters
    np.testing.assert_array_equal(first.value, again.value)
    for name in ("r", "alpha"):
        assert first.parameters["bg_nbd"][name] == pytest.approx(result.parameters["bg_nbd"][name], rel=0.15)
    # every buyer is still scored, not only the sample
    assert np.count_nonzero(first.value > 0) == np.count_nonzero(result.value > 0)
    assert np.corrcoef(first.value, result.value)[0, 1] > 0.95


def test_a_fit_that_does_not_converge_raises_not_enough_data_without_printing(
    dataset: Dataset, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = BaseFitter._fit

    def one_iteration(self: BaseFitter, *args: object, **kwargs: object) -> object:
        return original(self, *args, maxiter=1, **kwargs)

    monkeypatch.setattr(BaseFitter, "_fit", one_iteration)
    with pytest.raises(NotEnoughData, match="BG/NBD did not converge"):
        fit_clv(dataclasses.replace(dataset))
    assert capsys.readouterr().out == ""  # `cdp analytics run clv --json` prints JSON and nothing else


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_buyers_who_all_buy_at_one_rate_still_get_finite_values(seed: int) -> None:
    """No rate heterogeneity: BG/NBD's likelihood has no finite maximum (r and alpha run off together), so
    the unpenalized fit fails or overflows and the penalty ladder must give a usable, reported fit."""
    rng = np.random.default_rng(seed)
    customers = []
    for _ in range(250):
        events, day = [], rng.uniform(420, 720)
        while day > 1:
            events.append(Event(float(day), "purchase", "web", amount=float(rng.lognormal(3.8, 0.5))))
            day -= rng.exponential(28)
        customers.append(events)
    result = fit_clv(build(customers))
    assert np.isfinite(result.value).all() and (result.value > 0).all()
    assert set(result.penalties) == {"bg_nbd", "gamma_gamma"}
    assert json.loads(json.dumps(result.to_dict(Suppressor(5, 250), "EUR"), allow_nan=False))["penalties"]
