"""Customer lifetime value: what each buyer is expected to spend over the next months, discounted.

Two probabilistic models from the ``lifetimes`` library, fitted on the purchase summaries of
:attr:`Dataset.purchases <cdp.analytics.frame.Dataset.purchases>` (periods in days):

* **BG/NBD** (Fader, Hardie & Lee 2005, ``BetaGeoFitter``): while a customer is "alive" they buy at their
  own Poisson rate (gamma distributed over customers, parameters ``r``, ``alpha``); after each purchase they
  may drop out for good with their own probability (beta distributed, ``a``, ``b``). From a buyer's repeat
  purchases (frequency), the age of their last one (recency) and their own age (T) it gives the probability
  they are still active and the purchases to expect over the horizon.
* **Gamma-Gamma** (Fader, Hardie & Lee 2005, ``GammaGammaFitter``, parameters ``p``, ``q``, ``v``): spend
  per purchase varies around each customer's own mean, which varies over customers. It is fitted on repeat
  buyers' mean repeat-purchase value and shrinks each buyer's mean towards the population's by how much
  evidence they have (a one-off buyer gets the population mean).

The value is Gamma-Gamma's expected spend per purchase times BG/NBD's expected purchases in each 30-day month
of the horizon, discounted monthly -- the computation of ``GammaGammaFitter.customer_lifetime_value`` with
``freq="D"``, done once per distinct (frequency, recency, T) instead of once per customer so a million
customers score in seconds.

**Assumption not enforced:** Gamma-Gamma assumes spend per purchase is independent of how often a customer
buys. Where frequent buyers systematically spend less (or more) per purchase the value is biased; check the
correlation of frequency and mean spend among repeat buyers before relying on the figures.

Both models have a handful of population parameters, so large populations are fitted on a seeded random
sample of ``clv_max_fit_customers`` buyers (the same data gives the same figures) and every buyer is scored.
``clv_penalizer`` regularizes BG/NBD (on lifetimes' rescaled time); Gamma-Gamma is fitted without a penalty
unless it fails to converge without one (see :func:`_fit_gamma_gamma`).
Results leave the module only as aggregates (:meth:`ClvResult.to_dict`): a total, a mean and a histogram
whose small bins are suppressed and whose top bin is open-ended, never an individual value.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import lifetimes.fitters
import numpy as np
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import ConvergenceError
from numpy.typing import NDArray

from cdp.analytics.frame import Dataset
from cdp.analytics.privacy import Suppressor
from cdp.errors import CdpError

MIN_BUYERS = 50
"""Fewer buyers than this cannot pin down BG/NBD's four parameters."""
MIN_REPEAT_BUYERS = 20
"""Gamma-Gamma learns only from repeat buyers (and BG/NBD's dropout from them too)."""
DAYS_PER_MONTH = 30
"""lifetimes' month for daily periods (``freq="D"``)."""
SAMPLE_SEED = 20_051_101
"""Seed of the fitting sample: fixed so the same data always gives the same parameters."""
HISTOGRAM_BINS = 10


class NotEnoughData(CdpError):
    """The data cannot support the model (too few customers, one class only, no convergence); the message
    says what is needed. It never carries counts of a group that could be smaller than the privacy floor."""


@dataclass
class ClvResult:
    """Per customer predictions (indexes of the dataset) and the fitted population parameters.

    The arrays are for in-process use (segments, ranking); only :meth:`to_dict` may leave the process."""

    value: NDArray[np.float64]
    """Predicted discounted spend over the horizon in the base currency; 0 for customers who never bought."""
    p_alive: NDArray[np.float64]
    """Probability the customer is still active; NaN for customers without a purchase (BG/NBD says nothing
    about them). BG/NBD lets customers drop out only right after a repeat purchase, so every one-off buyer
    has 1 here however long ago they bought: their lapse shows in ``expected_purchases`` instead."""
    expected_purchases: NDArray[np.float64]
    """Expected purchase days over the horizon; 0 for customers without a purchase."""
    parameters: dict[str, dict[str, float]]
    fitted_on: int
    """Buyers BG/NBD was fitted on (all buyers, or the sample)."""
    repeat_buyers_fitted_on: int
    """Repeat buyers Gamma-Gamma was fitted on."""
    buyers: NDArray[np.bool_]
    horizon_months: int
    monthly_discount_rate: float
    penalties: dict[str, float] = field(default_factory=dict)
    """The penalty each fit converged with (0 unless the data needed one, see PENALTY_LADDER)."""

    def to_dict(self, suppressor: Suppressor, currency: str) -> dict[str, Any]:
        """Aggregates only: parameters, total and mean value, mean probability alive and a histogram of
        buyers' values. No individual value, median, minimum or maximum: each would describe one person."""
        buyers = int(self.buyers.sum())
        hidden = suppressor.hides(buyers)
        values = self.value[self.buyers]
        total = _finite(float(values.sum()), 2) if buyers and not hidden else None
        mean = _finite(float(values.mean()), 2) if buyers and not hidden else None
        p_alive = _finite(float(self.p_alive[self.buyers].mean()), 4) if buyers and not hidden else None
        return {
            "model": "bg_nbd+gamma_gamma",
            "library": "lifetimes",
            "parameters": {
                model: {name: _finite(value, 6) for name, value in params.items()}
                for model, params in self.parameters.items()
            },
            "penalties": {model: float(value) for model, value in self.penalties.items()},
            "fitted_on": suppressor.count(self.fitted_on),
            "horizon_months": int(self.horizon_months),
            "monthly_discount_rate": float(self.monthly_discount_rate),
            "currency": currency,
            "customers": suppressor.count(buyers),
            "total": total,
            "mean": mean,
            "mean_p_alive": p_alive,
            "histogram": _histogram(values, suppressor, hide_all=hidden),
        }


def fit_clv(dataset: Dataset) -> ClvResult:
    """Fit BG/NBD and Gamma-Gamma on the dataset's buyers (a seeded sample when there are more than
    ``clv_max_fit_customers``) and score every buyer.

    Raises :class:`NotEnoughData` when there are too few buyers or repeat buyers, when Gamma-Gamma finds no
    finite mean spend, or when an optimizer does not converge."""
    model = dataset.model
    purchases = dataset.purchases
    buyers = purchases.buyers
    index = np.flatnonzero(buyers)
    frequency = purchases.frequency[index]
    recency = purchases.recency[index]
    age = np.maximum(purchases.age[index], recency)
    monetary = purchases.repeat_mean_value[index]
    _require(index.shape[0] >= MIN_BUYERS, f"CLV needs at least {MIN_BUYERS} customers with a purchase")
    _require(
        int(np.count_nonzero(frequency > 0)) >= MIN_REPEAT_BUYERS,
        f"CLV needs at least {MIN_REPEAT_BUYERS} customers with purchases on two or more days",
    )
    _require(float(age.max()) > 0, "CLV needs purchase histories longer than a day")

    sample = np.arange(index.shape[0])
    if index.shape[0] > model.clv_max_fit_customers:
        rng = np.random.default_rng(SAMPLE_SEED)
        sample = np.sort(rng.choice(index.shape[0], size=model.clv_max_fit_customers, replace=False))
    bgf = _fit_bg_nbd(
        frequency[sample],
        recency[sample],
        age[sample],
        model.clv_penalizer,
        model.clv_horizon_months,
        model.clv_monthly_discount_rate,
    )

    repeat = sample[(frequency[sample] > 0) & np.isfinite(monetary[sample]) & (monetary[sample] > 0)]
    _require(
        repeat.shape[0] >= MIN_REPEAT_BUYERS,
        f"Gamma-Gamma needs at least {MIN_REPEAT_BUYERS} repeat buyers with a positive spend",
    )
    ggf = _fit_gamma_gamma(frequency[repeat], monetary[repeat], model.clv_penalizer)

    spent = (frequency > 0) & np.isfinite(monetary) & (monetary > 0)
    spend = ggf.conditional_expected_average_profit(
        np.where(spent, frequency, 0.0), np.where(spent, monetary, 0.0)
    )
    discounted, expected, alive = _predict(
        bgf, frequency, recency, age, model.clv_horizon_months, model.clv_monthly_discount_rate
    )
    value_of_buyers = np.asarray(spend, dtype=np.float64) * discounted
    _require(
        bool(np.isfinite(value_of_buyers).all() and np.isfinite(expected).all()),
        "the fitted CLV models give non-finite predictions for this data; more purchase history is needed",
    )

    n = dataset.size
    value = np.zeros(n)
    value[index] = value_of_buyers
    expected_purchases = np.zeros(n)
    expected_purchases[index] = expected
    p_alive = np.full(n, np.nan)
    p_alive[index] = alive
    return ClvResult(
        value=value,
        p_alive=p_alive,
        expected_purchases=expected_purchases,
        parameters={
            "bg_nbd": {name: float(bgf.params_[name]) for name in ("r", "alpha", "a", "b")},
            "gamma_gamma": {name: float(ggf.params_[name]) for name in ("p", "q", "v")},
        },
        fitted_on=int(sample.shape[0]),
        repeat_buyers_fitted_on=int(repeat.shape[0]),
        buyers=buyers.copy(),
        horizon_months=model.clv_horizon_months,
        monthly_discount_rate=model.clv_monthly_discount_rate,
        penalties={"bg_nbd": float(bgf.penalizer_coef), "gamma_gamma": float(ggf.penalizer_coef)},
    )


def suppressed_partition(counts: NDArray[np.int64], suppressor: Suppressor) -> list[dict[str, Any]]:
    """``suppressor.cell`` for each part of a partition whose total is published (histogram bins, risk bands).

    Hiding a single part is not enough when the total is shown: it would be the total minus the others. So
    when exactly one part is hidden, the smallest part that is shown and not empty is hidden with it; the two
    together hold at least k customers."""
    hidden = [suppressor.hides(int(c)) for c in counts]
    if sum(hidden) == 1:
        shown = [i for i, c in enumerate(counts) if not hidden[i] and c > 0]
        if shown:
            hidden[min(shown, key=lambda i: int(counts[i]))] = True
    return [
        {"customers": None, "suppressed": True} if hide else {"customers": int(c), "suppressed": False}
        for c, hide in zip(counts, hidden, strict=True)
    ]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise NotEnoughData(message)


def _discard(*args: object, **kwargs: object) -> None:
    """Stands in for ``print`` inside lifetimes' fitters module only."""


# lifetimes prints the optimizer's state to stdout when a fit does not converge: in `cdp analytics run
# --json` that would corrupt the JSON, in a server it is noise. Shadowing ``print`` in that one module
# silences it without touching sys.stdout, which other threads share; NotEnoughData says what happened.
setattr(lifetimes.fitters, "print", _discard)  # noqa: B010

_QUIET = threading.Lock()
TOLERANCES = (1e-7, 1e-6)
"""scipy's optimizer often stops with "precision loss" within reach of the optimum at lifetimes' default
tolerance of 1e-7 (on the mean log-likelihood); 1e-6 is still far below any difference that matters."""
PENALTY_LADDER = (0.001, 0.01, 0.1)
"""When a fit does not converge at ``clv.penalizer``, it is retried with each larger penalty here in turn.
BG/NBD has no finite maximum when buyers hardly differ in their purchase rates (r and alpha run off to
infinity together); a penalty pins them, at the price of some bias (lifetimes adds it to the mean
log-likelihood, so it does not fade with more data). The penalty that was used is reported."""


def _penalties(penalizer: float) -> tuple[float, ...]:
    return tuple(dict.fromkeys((penalizer, *(p for p in PENALTY_LADDER if p > penalizer))))


def _quietly() -> contextlib.ExitStack:
    """numpy warns on overflow while the optimizer searches; that helps no operator, the NotEnoughData
    message does. ``warnings.catch_warnings`` changes process-wide filters, so fits take turns (a fit is
    about a second even at a million customers)."""
    stack = contextlib.ExitStack()
    stack.enter_context(_QUIET)
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(np.errstate(all="ignore"))
    return stack


def _fit_bg_nbd(
    frequency: NDArray[np.float64],
    recency: NDArray[np.float64],
    age: NDArray[np.float64],
    penalizer: float,
    months: int,
    monthly_discount_rate: float,
) -> BetaGeoFitter:
    """Fitted on the distinct (frequency, recency, T) with their counts as weights: the same likelihood,
    far fewer terms (days are whole numbers, so histories repeat a lot).

    A fit is accepted only when its parameters are finite and it predicts finite values for the histories
    it was fitted on. Where buyers hardly differ in their rates the unpenalized optimum runs off towards
    infinity and may stop there "converged", with predictions that overflow: the next penalty is tried."""
    (f, r, t), counts = _distinct(frequency, recency, age)
    for attempt, tolerance in itertools.product(_penalties(penalizer), TOLERANCES):
        try:
            with _quietly():
                bgf = BetaGeoFitter(penalizer_coef=attempt).fit(f, r, t, weights=counts, tol=tolerance)
        except (ConvergenceError, np.linalg.LinAlgError, ValueError):
            continue
        if not all(math.isfinite(float(v)) and float(v) > 0 for v in bgf.params_):
            continue
        discounted, expected, alive = _predict(bgf, f, r, t, months, monthly_discount_rate)
        if np.isfinite(discounted).all() and np.isfinite(expected).all() and np.isfinite(alive).all():
            return bgf
    raise NotEnoughData(
        "BG/NBD did not converge on this purchase history; more buyers (or a larger clv.penalizer) are needed"
    )


def _fit_gamma_gamma(
    frequency: NDArray[np.float64], monetary: NDArray[np.float64], penalizer: float
) -> GammaGammaFitter:
    """Fitted without a penalty first, then with ``clv.penalizer`` and the larger PENALTY_LADDER steps only
    if that does not converge.

    lifetimes penalizes Gamma-Gamma's raw parameters, and p and q are typically several units large: even
    0.001 pulls them far from the data (on generated spend with p = 6 it halves p). Spend is divided by its
    mean for the fit and ``v``, a scale parameter, multiplied back, so a penalty -- when one is needed --
    means the same in euros as in kronor, as lifetimes already does with time for BG/NBD."""
    scale = float(monetary.mean())
    failure: Exception | None = None
    for coefficient in (0.0, *_penalties(penalizer)):
        try:
            with _quietly():
                ggf = GammaGammaFitter(penalizer_coef=coefficient).fit(frequency, monetary / scale)
            break
        except (ConvergenceError, np.linalg.LinAlgError, ValueError) as exc:
            failure = exc
    else:
        raise NotEnoughData(
            "Gamma-Gamma did not converge on the repeat buyers' spend; more repeat buyers are needed"
        ) from failure
    ggf.params_["v"] *= scale
    p, q, v = (float(ggf.params_[name]) for name in ("p", "q", "v"))
    _require(
        all(math.isfinite(x) for x in (p, q, v)) and q > 1,
        "Gamma-Gamma found no finite mean spend per purchase (q <= 1): spend is too heavy-tailed or there "
        "are too few repeat buyers",
    )
    return ggf


def _predict(
    bgf: BetaGeoFitter,
    frequency: NDArray[np.float64],
    recency: NDArray[np.float64],
    age: NDArray[np.float64],
    months: int,
    monthly_discount_rate: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per buyer: discounted expected purchases over the horizon (the sum over months of the month's
    expected purchases / (1 + d)^month, as lifetimes' ``customer_lifetime_value``), expected purchases over
    the horizon and probability alive -- computed once per distinct history."""
    (f, r, t), _counts, inverse = _distinct(frequency, recency, age, inverse=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cumulative = np.stack(
            [np.zeros_like(f)]
            + [
                np.asarray(bgf.predict(float(m * DAYS_PER_MONTH), f, r, t), dtype=np.float64)
                for m in range(1, months + 1)
            ]
        )
        alive = np.asarray(bgf.conditional_probability_alive(f, r, t), dtype=np.float64)
    discount = (1.0 + monthly_discount_rate) ** -np.arange(1, months + 1, dtype=np.float64)
    discounted = discount @ np.diff(cumulative, axis=0)
    return discounted[inverse], cumulative[-1][inverse], alive[inverse]


def _distinct(*columns: NDArray[np.float64], inverse: bool = False) -> Any:
    """The distinct rows of equally long columns, their counts and (optionally) each row's distinct index."""
    order = np.lexsort(columns[::-1])
    sorted_columns = [c[order] for c in columns]
    changed = np.zeros(order.shape[0], dtype=bool)
    changed[0] = True
    for c in sorted_columns:
        changed[1:] |= c[1:] != c[:-1]
    group = np.cumsum(changed) - 1
    firsts = np.flatnonzero(changed)
    unique = tuple(c[firsts] for c in sorted_columns)
    counts = np.diff(np.append(firsts, order.shape[0]))
    if not inverse:
        return unique, counts
    position = np.empty(order.shape[0], dtype=np.int64)
    position[order] = group
    return unique, counts, position


def _histogram(
    values: NDArray[np.float64], suppressor: Suppressor, *, hide_all: bool
) -> list[dict[str, Any]]:
    """About ten bins with edges at buyers' value deciles rounded to two significant digits, so each edge
    describes a tenth of the buyers rather than anyone in particular. The top bin is open-ended: a closed
    one would bound the largest value."""
    edges = _nice_edges(values)
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 1)
    counts = np.bincount(bins, minlength=len(edges))
    cells = (
        [{"customers": None, "suppressed": True} for _ in edges]
        if hide_all
        else suppressed_partition(counts.astype(np.int64), suppressor)
    )
    return [
        {"from": edges[i], "to": edges[i + 1] if i + 1 < len(edges) else None, **cells[i]}
        for i in range(len(edges))
    ]


def _nice_edges(values: NDArray[np.float64]) -> list[float]:
    if values.shape[0] == 0:
        return [0.0]
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)[1:-1])
    nice = {_two_significant(float(q)) for q in quantiles if q > 0}
    return sorted({0.0, *nice})


def _two_significant(x: float) -> float:
    digits = 1 - math.floor(math.log10(x))
    return float(round(x, digits))


def _finite(value: float, digits: int) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None
