"""Churn risk: the probability that a customer does nothing in the next ``churn_horizon_days``, explained.

A logistic regression (scikit-learn) on ten behavioural features, standardized so each weight says how much
one standard deviation of the feature moves the log-odds. Deliberately simple: an analyst can read the whole
model off :meth:`ChurnResult.to_dict`, and :meth:`ChurnResult.explain` says why one customer scores high.

Time travel keeps it honest. With H the horizon and ``as_of`` now:

* **training** -- features as of ``c1 = as_of - H`` (only interactions up to c1), label: no activity in
  ``(c1, as_of]``. Trained on customers who could churn at c1: known by then and active in the year before.
* **validation** -- the same model trained one horizon earlier (features at ``c2 = as_of - 2H``, labels from
  ``(c2, c1]``) and scored on the c1 population: its ROC AUC is what the model achieves on a period it never
  saw, the way it is used.
* **scoring** -- the c1 model on everyone's features as of ``as_of``.

The three activity counts (last 90 days, last 365 days, trend) are correlated, so read their weights
together: with the trend in the model, a low 90-day count can carry the signal while the trend's weight
turns positive. :meth:`ChurnResult.explain` adds them up for one customer, which is what matters.

"Activity" is :meth:`Dataset.activity_rows` (anything inbound, plus the model's active kinds). Features are
computed for all customers at once with ``bincount`` over the interaction rows, so a million customers and
ten million rows take seconds. Customers who never did anything are scored too (at the capped recency); the
model has only seen customers active in the previous year, so for them the risk is an extrapolation of
"long silent", which is what they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from cdp.analytics.clv import NotEnoughData, suppressed_partition
from cdp.analytics.frame import OUTBOUND, Dataset
from cdp.analytics.privacy import Suppressor

RECENCY_CAP_DAYS = 730.0
"""Days since the last activity are capped here; customers with none get the cap."""
TENURE_CAP_DAYS = 3650.0
MIN_TRAINING_CUSTOMERS = 50
MIN_PER_CLASS = 5
"""A class with fewer examples than this gives weights that describe individuals, not a pattern."""
SAMPLE_SEED = 20_240_901


@dataclass(frozen=True)
class Feature:
    name: str
    description: str


FEATURES: tuple[Feature, ...] = (
    Feature("days_since_last_activity", "days since the customer last did anything (capped at 730)"),
    Feature("activity_90d", "activities in the last 90 days"),
    Feature("activity_365d", "activities in the last 365 days"),
    Feature("purchases_365d", "purchases and invoices in the last 365 days"),
    Feature("log_revenue_365d", "log(1 + revenue in the base currency) over the last 365 days"),
    Feature("complaints_90d", "complaints and cancellations in the last 90 days"),
    Feature("support_contacts_180d", "interactions with the support department in the last 180 days"),
    Feature("tenure_days", "days since the customer was first seen (capped at 3650)"),
    Feature("activity_trend", "activities in the last 90 days minus those in the 90 days before"),
    Feature("outbound_contacts_90d", "contacts the company sent the customer in the last 90 days"),
)

_ACTIVITY_365 = [f.name for f in FEATURES].index("activity_365d")


def _band_names(cuts: int) -> tuple[str, ...]:
    named = {
        1: ("low", "high"),
        2: ("low", "medium", "high"),
        3: ("low", "medium", "high", "very_high"),
        4: ("very_low", "low", "medium", "high", "very_high"),
    }
    return named.get(cuts, tuple(f"band_{i + 1}" for i in range(cuts + 1)))


@dataclass
class ChurnResult:
    """Per customer risk (indexes of the dataset) and the model that produced it.

    ``risk`` and :meth:`explain` are for in-process use (segments, a staff member's view of one customer
    through the access gate); only :meth:`to_dict` and :meth:`by_group` are aggregates fit to publish."""

    risk: NDArray[np.float64]
    """Probability of no activity in the next ``horizon_days``."""
    features: tuple[Feature, ...]
    coefficients: NDArray[np.float64]
    """Weights per feature on the standardized scale (log-odds per standard deviation)."""
    intercept: float
    validation_auc: float | None
    """ROC AUC of the model trained one horizon earlier on the training population (None when there was
    not enough history one horizon earlier)."""
    validation_customers: int
    trained_on: int
    base_rate: float
    """Share of the training customers who churned."""
    horizon_days: int
    risk_bands: tuple[float, ...]
    values: NDArray[np.float64]
    """Feature values as of ``as_of``, customers x features (what :meth:`explain` explains)."""
    feature_mean: NDArray[np.float64]
    feature_scale: NDArray[np.float64]

    @property
    def band_names(self) -> tuple[str, ...]:
        return _band_names(len(self.risk_bands))

    @property
    def high_risk_from(self) -> float:
        """Where "high risk" (:meth:`by_group`) starts: the upper half of the bands (0.5 by default)."""
        return self.risk_bands[len(self.risk_bands) // 2]

    def band_of(self) -> NDArray[np.int8]:
        """Each customer's band, an index into :attr:`band_names` (a risk on a cut point goes up a band)."""
        return np.searchsorted(np.asarray(self.risk_bands), self.risk, side="right").astype(np.int8)

    def explain(self, index: int) -> list[dict[str, Any]]:
        """Why customer ``index`` has their risk: each feature's value and its contribution to the log-odds
        (weight x standardized value), largest effect first. The log-odds are the intercept plus the sum.

        Contributions are relative to the average training customer (standardized value 0): 30 days of
        silence counts *against* churn when the average customer has been silent longer."""
        values = self.values[index]
        contributions = self.coefficients * (values - self.feature_mean) / self.feature_scale
        order = np.argsort(-np.abs(contributions), kind="stable")
        return [
            {
                "feature": self.features[i].name,
                "value": float(values[i]),
                "contribution": float(contributions[i]),
            }
            for i in order
        ]

    def to_dict(self, suppressor: Suppressor) -> dict[str, Any]:
        n = int(self.risk.shape[0])
        bounds = (0.0, *self.risk_bands, 1.0)
        counts = np.bincount(self.band_of(), minlength=len(bounds) - 1).astype(np.int64)
        cells = suppressed_partition(counts, suppressor)
        churned = round(self.base_rate * self.trained_on)
        training = Suppressor(suppressor.k, self.trained_on)
        return {
            "model": "logistic_regression",
            "library": "scikit-learn",
            "horizon_days": int(self.horizon_days),
            "trained_on": suppressor.count(self.trained_on),
            "training_churn_rate": None
            if training.hides(churned) or suppressor.hides(self.trained_on)
            else _finite(self.base_rate, 4),
            "validation": {
                "method": "out_of_time",
                "auc": None if self.validation_auc is None else _finite(self.validation_auc, 4),
                "customers": suppressor.count(self.validation_customers)
                if self.validation_auc is not None
                else None,
            },
            "intercept": _finite(self.intercept, 6),
            "coefficients": [
                {"feature": f.name, "description": f.description, "weight": _finite(float(w), 6)}
                for f, w in zip(self.features, self.coefficients, strict=True)
            ],
            "mean_risk": None if n == 0 or suppressor.hides(n) else _finite(float(self.risk.mean()), 4),
            "bands": [
                {"band": name, "from": float(bounds[i]), "to": float(bounds[i + 1]), **cells[i]}
                for i, name in enumerate(self.band_names)
            ],
        }

    def by_group(self, masks: dict[str, NDArray[np.bool_]], suppressor: Suppressor) -> list[dict[str, Any]]:
        """Mean risk and the share at high risk (risk >= :attr:`high_risk_from`) per segment. The share is
        withheld when the high-risk customers (or the others) within the segment are fewer than k."""
        high = self.risk >= self.high_risk_from
        rows = []
        for name, mask in masks.items():
            size = int(np.count_nonzero(mask))
            mean = _finite(float(self.risk[mask].mean()), 4) if size else None
            high_count = int(np.count_nonzero(high & mask))
            share = (
                None
                if not size or Suppressor(suppressor.k, size).hides(high_count)
                else round(high_count / size, 4)
            )
            rows.append({"segment": name, **suppressor.cell(size, mean_risk=mean, high_risk_share=share)})
        return rows


def fit_churn(dataset: Dataset) -> ChurnResult:
    """Train at ``as_of - H``, validate the model trained at ``as_of - 2H`` on that period, score everyone
    as of ``as_of``. Raises :class:`NotEnoughData` when there are too few customers who could churn at
    ``as_of - H`` or they all behaved alike."""
    model = dataset.model
    horizon = float(model.churn_horizon_days)
    history = _History(dataset)
    c1 = dataset.as_of - horizon
    c2 = c1 - horizon

    x1, y1 = history.training_set(c1, dataset.as_of)
    pipeline, trained_on, base_rate = _train(x1, y1, model.churn_max_fit_customers)

    validation_auc: float | None = None
    try:
        x2, y2 = history.training_set(c2, c1)
        earlier, _, _ = _train(x2, y2, model.churn_max_fit_customers)
        validation_auc = float(roc_auc_score(y1, earlier.predict_proba(x1)[:, 1]))
    except NotEnoughData:
        validation_auc = None

    values = history.features(dataset.as_of)
    scaler: StandardScaler = pipeline.named_steps["standardscaler"]
    regression: LogisticRegression = pipeline.named_steps["logisticregression"]
    return ChurnResult(
        risk=pipeline.predict_proba(values)[:, 1].astype(np.float64),
        features=FEATURES,
        coefficients=regression.coef_[0].astype(np.float64),
        intercept=float(regression.intercept_[0]),
        validation_auc=validation_auc,
        validation_customers=int(y1.shape[0]),
        trained_on=trained_on,
        base_rate=base_rate,
        horizon_days=model.churn_horizon_days,
        risk_bands=model.churn_risk_bands,
        values=values,
        feature_mean=scaler.mean_.astype(np.float64),
        feature_scale=scaler.scale_.astype(np.float64),
    )


def _train(x: NDArray[np.float64], y: NDArray[np.bool_], cap: int) -> tuple[Pipeline, int, float]:
    if y.shape[0] < MIN_TRAINING_CUSTOMERS:
        raise NotEnoughData(
            f"churn needs at least {MIN_TRAINING_CUSTOMERS} customers active in the year before the training "
            "cut-off (one horizon ago) to learn from"
        )
    if y.shape[0] > cap:
        rows = np.sort(np.random.default_rng(SAMPLE_SEED).choice(y.shape[0], size=cap, replace=False))
        x, y = x[rows], y[rows]
    churned = int(np.count_nonzero(y))
    if min(churned, y.shape[0] - churned) < MIN_PER_CLASS:
        raise NotEnoughData(
            f"churn needs at least {MIN_PER_CLASS} customers who churned and {MIN_PER_CLASS} who stayed in "
            "the training period; the history is too uniform to learn from"
        )
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(x, y)
    return pipeline, int(y.shape[0]), churned / y.shape[0]


class _History:
    """The interaction rows each feature counts, split out once so every cut-off is a few bincounts."""

    def __init__(self, dataset: Dataset) -> None:
        frame = dataset.interactions
        model = dataset.model
        self.size = dataset.size
        self.first_seen = dataset.customers.first_seen

        def rows(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
            return frame.customer[mask], frame.day[mask]

        self.activity = rows(dataset.activity_rows())
        revenue = frame.kind_mask(model.revenue_kinds) & ~np.isnan(frame.amount) & (frame.amount > 0)
        self.revenue = rows(revenue)
        self.revenue_amount = frame.amount[revenue]
        self.complaints = rows(frame.kind_mask(model.complaint_kinds))
        support = frame.departments.code("support")
        self.support = rows(
            frame.department == support if support is not None else np.zeros(len(frame), dtype=bool)
        )
        self.outbound = rows(frame.direction == OUTBOUND)

    def _count(
        self,
        rows: tuple[NDArray[np.int32], NDArray[np.float64]],
        start: float,
        end: float,
        weights: NDArray[np.float64] | None = None,
    ) -> NDArray[np.float64]:
        """Per customer count (or sum of ``weights``) of ``rows`` with ``start < day <= end``."""
        customer, day = rows
        inside = (day > start) & (day <= end)
        return np.bincount(
            customer[inside], weights=None if weights is None else weights[inside], minlength=self.size
        ).astype(np.float64)

    def features(self, cutoff: float) -> NDArray[np.float64]:
        """Customers x :data:`FEATURES`, from interactions on or before ``cutoff`` only."""
        customer, day = self.activity
        before = day <= cutoff
        last = np.full(self.size, -np.inf)
        np.maximum.at(last, customer[before], day[before])
        recency = np.minimum(cutoff - last, RECENCY_CAP_DAYS)
        activity_90 = self._count(self.activity, cutoff - 90, cutoff)
        return np.column_stack(
            [
                recency,
                activity_90,
                self._count(self.activity, cutoff - 365, cutoff),
                self._count(self.revenue, cutoff - 365, cutoff),
                np.log1p(self._count(self.revenue, cutoff - 365, cutoff, self.revenue_amount)),
                self._count(self.complaints, cutoff - 90, cutoff),
                self._count(self.support, cutoff - 180, cutoff),
                np.clip(cutoff - self.first_seen, 0.0, TENURE_CAP_DAYS),
                activity_90 - self._count(self.activity, cutoff - 180, cutoff - 90),
                self._count(self.outbound, cutoff - 90, cutoff),
            ]
        )

    def training_set(self, cutoff: float, label_end: float) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Features at ``cutoff`` and churn labels (no activity in ``(cutoff, label_end]``) of the customers
        who could churn then: first seen by the cut-off and active in the year before it."""
        values = self.features(cutoff)
        population = (self.first_seen <= cutoff) & (values[:, _ACTIVITY_365] > 0)
        churned = self._count(self.activity, cutoff, label_end) == 0
        return values[population], churned[population]


def _finite(value: float, digits: int) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None
