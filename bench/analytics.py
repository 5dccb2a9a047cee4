"""Customer analytics speed: segment evaluation, RFM, CLV, churn and the rest at 100k and 1M customers, and
the bulk extraction from the encrypted vault.

    python -m bench.analytics [--sizes 100000,1000000] [--repeat N] [--vault-size 100000]
                              [--postgres URL] [--parts a,b]

**Part A — computation** on the pseudonymous :class:`~cdp.analytics.frame.Dataset`, in memory. The data is
generated with numpy (seeded): customers join over two years; buyers purchase at their own gamma-distributed
rate and drop out after a repeat purchase with their own beta-distributed probability (the BG/NBD story),
spend lognormally around their own mean; everyone gets mailings, opens, clicks, visits, inquiries and the odd
complaint on their preferred channel (inbound activity stops when they lapse, mailings do not); a quarter
are billing customers invoiced monthly-ish, with credit notes. About 10 interactions per customer, heavy
tailed. Each step is timed on a fresh dataset (``Dataset.purchases`` is cached per dataset, so a step that
needs it pays for it), best of ``--repeat``. Baselines in the same run, on the same data:

* RFM the usual pandas way: transactions DataFrame → ``groupby(customer).agg`` → ``pd.qcut(rank(method=
  "first"), 5)`` per dimension → segment rules with ``np.select``; against ``score_rfm`` (with purchases).
* lifetimes' own pipeline: ``summary_data_from_transaction_data`` → ``BetaGeoFitter.fit`` →
  ``GammaGammaFitter.fit`` → ``customer_lifetime_value`` for every customer; against ``fit_clv`` (with
  purchases). Above 100k customers it is first timed on a 100k sample: if the linear projection to all
  customers exceeds ``--lifetimes-budget`` seconds the projection is reported instead of a full run.
* the issue's example segment (billing customers with a complaint in the last 90 days who consented to
  marketing email) as pandas filters, ``groupby`` and ``merge``; against the segment definition evaluated
  through :class:`~cdp.analytics.service.Scores`. Both must find the same customers.

The pandas inputs (transactions, interactions with ``kind`` as a categorical, departments, consent) are
built once outside the timings, as they would be read from a warehouse.

**Part B — extraction** from the real encrypted vault: ``--vault-size`` customers (a shop record each, a
ledger record with the same name and e-mail for a quarter of them, about ten interactions each, the same
generator) through the real intake (mapping, validation, encryption) into a temporary SQLite store, and
PostgreSQL when ``--postgres`` (or ``CDP_BENCH_POSTGRES_URL``) is given, in a private schema dropped
afterwards. Between records and interactions a batch ``resolve_all`` (what ``cdp resolve`` runs) trains the
match model and links each ledger account to its shop record; names and e-mails are distinct, so the
printed entity count must equal the customers, and a sample checks who joined whom. The build is timed
separately. Then ``AnalyticsService.load("analytics")`` (rows/s, customers/s) and ``analyse("rfm")`` end to
end, each with a fresh vault (empty data-key cache). Baseline in the same run: the per-customer read path
(``InteractionRepository.timeline`` with the encrypted details opened, paged, one session per customer, as
the profile timeline reads) on a seeded sample of 1,000 customers, extrapolated to all of them.

Each part runs in fresh processes (Part B: one to build, one to measure), so each peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import psycopg
from numpy.typing import NDArray
from sqlalchemy import func, make_url, select

from bench.common import Header, console, fmt_rate, parse_ints, peak_rss_mib, print_table, run_isolated
from cdp.analytics.channels import channel_preference
from cdp.analytics.churn import fit_churn
from cdp.analytics.clv import fit_clv
from cdp.analytics.config import AnalyticsModel
from cdp.analytics.frame import INBOUND, OUTBOUND, CustomerFrame, Dataset, InteractionFrame, Vocabulary
from cdp.analytics.privacy import Suppressor
from cdp.analytics.rfm import score_rfm
from cdp.analytics.segments import parse_definition
from cdp.analytics.service import AnalyticsService, Scores
from cdp.analytics.value import profitability, purchase_patterns
from cdp.config import Settings
from cdp.consent.catalog import ConsentCatalog
from cdp.db.models import Entity, EntityMember, SourceRecord
from cdp.db.types import utcnow
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.interactions import InteractionRepository
from cdp.sources.readers import RawRow
from cdp.sources.records import RecordRepository, SourceRepository
from cdp.vault import Vault

SEED = 20_261_201
AS_OF = 20_000.0
"""Part A's 'now' in days since the epoch (2024-10-04), as in the analytics tests."""
HISTORY_DAYS = 730.0
KINDS = (
    "purchase", "invoice", "credit_note", "complaint", "inquiry", "mailing", "newsletter_open",
    "newsletter_click", "visit",
)  # fmt: skip
CHANNELS = ("email", "phone", "web", "letter", "chat", "in_person")
DEPARTMENTS = ("sales", "support", "billing", "marketing")
MAX_REPEATS = 150
LIFETIMES_SAMPLE = 100_000
TIMELINE_SAMPLE = 1_000
TIMELINE_PAGE = 500
CONSENT_SHARE = 0.6
"""Share of customers for whom the seeded consent mask says marketing_email holds."""

SEGMENT_1 = "segment 1: issue example"
SEGMENT_2 = "segment 2: RFM and CLV"
SEGMENT_3 = "segment 3: any of two"
ISSUE_SEGMENT: dict[str, Any] = {
    "name": "billing-complainers",
    "description": "Billing customers who complained recently and may be emailed",
    "match": {
        "all": [
            {"department": "billing"},
            {"interactions": {"kind": ["complaint"], "within_days": 90}, "min": 1},
            {"consent": "marketing_email"},
        ]
    },
}
VALUE_SEGMENT: dict[str, Any] = {
    "name": "valuable-at-risk",
    "match": {
        "all": [{"rfm_segment": ["at_risk", "cannot_lose"]}, {"metric": "clv", "op": ">", "value": 100}]
    },
}
ACTIVE_SEGMENT: dict[str, Any] = {
    "name": "buyers-or-callers",
    "match": {
        "any": [
            {"interactions": {"kind": ["purchase"], "within_days": 30}, "min": 2},
            {"preferred_channel": "phone"},
        ]
    },
}

# Part B's sources, after tests/analytics/world.py (the shop also names each interaction's department).
SHOP = """
name = "shop"
line_of_business = "sales"
default_country = "DE"
date_formats = ["%Y-%m-%d"]
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
Id = "source_record_id"
First = "first_name"
Last = "last_name"
Email = "email"
Country = "country"
Born = "date_of_birth"
[interactions.fields]
Ref = "interaction_id"
Id = "source_record_id"
At = "occurred_at"
Channel = "channel"
Direction = "direction"
Kind = "kind"
Department = "department"
Amount = "amount"
Currency = "currency"
"""

BILLING = """
name = "ledger"
line_of_business = "billing"
default_country = "GB"
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
Account = "source_record_id"
First = "first_name"
Last = "last_name"
Email = "email"
[interactions.fields]
Doc = "interaction_id"
Account = "source_record_id"
At = "occurred_at"
Channel = "channel"
Direction = "direction"
Kind = "kind"
Amount = "amount"
Currency = "currency"
"""

FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Karla", "Lukas",
    "Mia", "Noah", "Olga", "Paul", "Rosa", "Simon", "Tina", "Uwe", "Vera", "Wim", "Xenia", "Yusuf",
)  # fmt: skip
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "bi", "da", "fe", "go", "hu", "jo", "pe", "zu")


# ---------------------------------------------------------------------------------------------------
# Synthetic history (numpy, seeded)


@dataclass
class History:
    """Interactions of ``n`` customers as plain code arrays, sorted by customer then day."""

    n: int
    as_of: float
    customer: NDArray[np.int32]
    day: NDArray[np.float64]
    channel: NDArray[np.int16]
    direction: NDArray[np.int8]
    kind: NDArray[np.int16]
    department: NDArray[np.int16]
    amount: NDArray[np.float64]
    departments: NDArray[np.int64]
    first_seen: NDArray[np.float64]
    billing: NDArray[np.bool_]


def _code(names: Sequence[str], name: str) -> int:
    return list(names).index(name)


def _pick(
    rng: np.random.Generator, names: Sequence[str], weights: dict[str, float], size: int
) -> NDArray[np.intp]:
    """Codes of ``names`` drawn with the given relative weights (a name not listed is never drawn)."""
    p = np.array([weights.get(name, 0.0) for name in names])
    return np.asarray(rng.choice(len(names), size=size, p=p / p.sum()), dtype=np.intp)


def generate(n: int, *, seed: int = SEED, as_of: float = AS_OF) -> History:
    """A two-year contact history of ``n`` customers; see the module docstring for the story."""
    rng = np.random.default_rng(seed)
    k = {name: _code(KINDS, name) for name in KINDS}
    c = {name: _code(CHANNELS, name) for name in CHANNELS}
    d = {name: _code(DEPARTMENTS, name) for name in DEPARTMENTS}

    first_seen = as_of - rng.uniform(1.0, HISTORY_DAYS, n)
    span = as_of - first_seen
    preferred = _pick(
        rng, CHANNELS, {"email": 35, "phone": 20, "web": 25, "letter": 5, "chat": 10, "in_person": 5}, n
    )
    billing = rng.random(n) < 0.25

    # Purchases: first purchase early in the customer's life, then repeats at the customer's own rate until
    # they drop out, which they may do after each repeat purchase.
    buyers = np.flatnonzero(rng.random(n) < 0.7)
    rate = rng.gamma(0.9, 1 / 45, n)
    drop = rng.beta(2.0, 6.0, n)
    spend = rng.lognormal(3.6, 0.5, n)
    first_purchase = first_seen[buyers] + span[buyers] * rng.beta(1.0, 3.0, buyers.shape[0])
    repeats = np.minimum(rng.geometric(drop[buyers]), MAX_REPEATS)
    owner = np.repeat(buyers, repeats)
    gaps = rng.exponential(1.0, owner.shape[0]) / rate[owner]
    ends = np.cumsum(repeats)
    starts = ends - repeats
    total = np.cumsum(gaps)
    elapsed = total - np.repeat(total[starts] - gaps[starts], repeats)
    repeat_day = np.repeat(first_purchase, repeats) + elapsed
    alive_until = first_seen + span * np.where(rng.random(n) < 0.5, 1.0, rng.random(n))
    last_repeat = repeat_day[ends - 1]
    alive_until[buyers] = np.where(last_repeat < as_of, last_repeat, as_of)
    kept = repeat_day < as_of
    purchase_customer = np.concatenate([buyers, owner[kept]])
    purchase_day = np.concatenate([first_purchase, repeat_day[kept]])
    m = purchase_customer.shape[0]
    purchase_amount = spend[purchase_customer] * rng.lognormal(-0.08, 0.4, m)
    purchase_channel = _pick(rng, CHANNELS, {"web": 60, "in_person": 15, "phone": 15, "email": 10}, m)

    # Billing customers: invoices while they are customers.
    billed = np.flatnonzero(billing)
    invoices = rng.poisson((alive_until[billed] - first_seen[billed]) / 40.0)
    invoice_customer = np.repeat(billed, invoices)
    q = invoice_customer.shape[0]
    invoice_day = first_seen[invoice_customer] + rng.random(q) * (
        alive_until[invoice_customer] - first_seen[invoice_customer]
    )
    invoice_amount = rng.lognormal(3.2, 0.3, q)
    invoice_channel = np.where(rng.random(q) < 0.8, c["email"], c["letter"])

    # Everything else: engagement at the customer's own yearly rate; inbound activity stops when they lapse.
    engagement = rng.gamma(1.0, 6.0, n)
    counts = rng.poisson(engagement * span / 365.0)
    other_customer = np.repeat(np.arange(n), counts)
    o = other_customer.shape[0]
    other_kind = _pick(
        rng,
        KINDS,
        {
            "mailing": 35,
            "newsletter_open": 15,
            "newsletter_click": 5,
            "visit": 25,
            "inquiry": 15,
            "complaint": 5,
        },
        o,
    )
    until = np.where(other_kind == k["mailing"], as_of, alive_until[other_customer])
    other_day = first_seen[other_customer] + rng.random(o) * (until - first_seen[other_customer])
    support = np.isin(other_kind, [k["inquiry"], k["complaint"]])
    own_channel = rng.random(o) < 0.6
    other_channel = np.select(
        [
            other_kind == k["mailing"],
            np.isin(other_kind, [k["newsletter_open"], k["newsletter_click"]]),
            other_kind == k["visit"],
            support & own_channel,
        ],
        [
            np.where(rng.random(o) < 0.85, c["email"], c["letter"]),
            c["email"],
            c["web"],
            preferred[other_customer],
        ],
        default=_pick(rng, CHANNELS, {"email": 40, "phone": 30, "letter": 10, "chat": 20}, o),
    )
    other_direction = np.where(
        (other_kind == k["visit"])
        | (other_kind == k["complaint"])
        | ((other_kind == k["inquiry"]) & (rng.random(o) < 0.75)),
        INBOUND,
        OUTBOUND,
    )
    other_department = np.select(
        [support & (rng.random(o) < 0.75), support, other_kind == k["visit"]],
        [d["support"], d["billing"], d["sales"]],
        default=d["marketing"],
    )

    customer = np.concatenate([purchase_customer, invoice_customer, other_customer])
    day = np.concatenate([purchase_day, invoice_day, other_day])
    kind = np.concatenate([np.full(m, k["purchase"]), np.full(q, k["invoice"]), other_kind])
    channel = np.concatenate([purchase_channel, invoice_channel, other_channel])
    direction = np.concatenate([np.full(m, INBOUND), np.full(q, OUTBOUND), other_direction])
    department = np.concatenate([np.full(m, d["sales"]), np.full(q, d["billing"]), other_department])
    amount = np.concatenate([purchase_amount, invoice_amount, np.full(o, np.nan)])

    # Credit notes: a few revenue rows are partly refunded some days later.
    refunded = np.flatnonzero(rng.random(m + q) < 0.04)
    refund_day = day[refunded] + rng.uniform(1.0, 20.0, refunded.shape[0])
    ok = refund_day < as_of
    refunded, refund_day = refunded[ok], refund_day[ok]
    r = refunded.shape[0]
    customer = np.concatenate([customer, customer[refunded]])
    day = np.concatenate([day, refund_day])
    kind = np.concatenate([kind, np.full(r, k["credit_note"])])
    channel = np.concatenate([channel, np.full(r, c["email"])])
    direction = np.concatenate([direction, np.full(r, OUTBOUND)])
    department = np.concatenate([department, np.full(r, d["billing"])])
    amount = np.concatenate([amount, np.round(amount[refunded] * rng.uniform(0.2, 1.0, r), 2)])
    amount = np.round(amount, 2)

    # Office hours, roughly: the time of day of every row (the whole day stays, so nothing passes as_of).
    whole = np.floor(day)
    day = whole + np.clip(rng.normal(0.58, 0.14, day.shape[0]), 0.01, 0.99)
    day = np.minimum(day, np.nextafter(as_of, 0.0))

    order = np.lexsort((day, customer))
    departments = np.zeros(n, dtype=np.int64)
    for code in range(len(DEPARTMENTS)):
        has = np.bincount(customer[department == code], minlength=n) > 0
        departments |= has.astype(np.int64) << code
    departments |= billing.astype(np.int64) << d["billing"]
    departments[departments == 0] = 1 << d["sales"]
    return History(
        n=n,
        as_of=as_of,
        customer=customer[order].astype(np.int32),
        day=day[order],
        channel=channel[order].astype(np.int16),
        direction=direction[order].astype(np.int8),
        kind=kind[order].astype(np.int16),
        department=department[order].astype(np.int16),
        amount=amount[order],
        departments=departments,
        first_seen=np.floor(first_seen),
        billing=billing,
    )


def to_dataset(history: History, model: AnalyticsModel, ids: list[uuid.UUID]) -> Dataset:
    """The Dataset the way ``tests/analytics/synthetic.py`` builds one, from whole arrays."""
    departments = Vocabulary(DEPARTMENTS)
    return Dataset(
        customers=CustomerFrame(
            ids=ids,
            departments=history.departments,
            department_names=departments,
            first_seen=history.first_seen,
        ),
        interactions=InteractionFrame(
            customer=history.customer,
            day=history.day,
            channel=history.channel,
            direction=history.direction,
            kind=history.kind,
            department=history.department,
            amount=history.amount,
            channels=Vocabulary(CHANNELS),
            kinds=Vocabulary(KINDS),
            departments=departments,
        ),
        as_of=history.as_of,
        model=model,
        purpose="analytics",
    )


def fresh(dataset: Dataset) -> Dataset:
    """The same data without the cached purchase summaries, so a timed step pays for them."""
    return Dataset(dataset.customers, dataset.interactions, dataset.as_of, dataset.model, dataset.purpose)


# ---------------------------------------------------------------------------------------------------
# Part A: computation


def best_of(repeat: int, make: Callable[[], Any], run: Callable[[Any], Any]) -> tuple[float, Any]:
    """Best wall time of ``run(make())`` over ``repeat`` runs (``make`` is outside the timing)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        arg = make()
        started = time.perf_counter()
        result = run(arg)
        best = min(best, time.perf_counter() - started)
    return best, result


def transactions_frame(dataset: Dataset) -> pd.DataFrame:
    """The revenue rows as the transaction log an analyst would start from (day-resolution dates)."""
    frame = dataset.interactions
    rows = frame.kind_mask(dataset.model.revenue_kinds) & np.isfinite(frame.amount) & (frame.amount > 0)
    return pd.DataFrame(
        {
            "customer": frame.customer[rows],
            "date": pd.to_datetime(np.floor(frame.day[rows]).astype(np.int64), unit="D"),
            "amount": frame.amount[rows],
        }
    )


def pandas_rfm(tx: pd.DataFrame, as_of: pd.Timestamp, model: AnalyticsModel) -> pd.DataFrame:
    rfm = tx.groupby("customer", sort=False).agg(
        last=("date", "max"), frequency=("date", "nunique"), monetary=("amount", "sum")
    )
    rfm["recency"] = (as_of - rfm["last"]).dt.days
    rfm["r"] = pd.qcut(rfm["recency"].rank(method="first"), 5, labels=[5, 4, 3, 2, 1]).astype(int)
    rfm["f"] = pd.qcut(rfm["frequency"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
    rfm["m"] = pd.qcut(rfm["monetary"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
    fm = (rfm["f"] + rfm["m"]) / 2
    rules = model.rfm_segments
    rfm["segment"] = np.select(
        [rfm["r"].between(*rule.recency) & fm.between(*rule.frequency_monetary) for rule in rules],
        [rule.name for rule in rules],
        default="other",
    )
    return rfm


def lifetimes_clv(
    tx: pd.DataFrame, as_of: pd.Timestamp, model: AnalyticsModel
) -> tuple[pd.Series, dict[str, dict[str, float]]]:
    """lifetimes' tutorial pipeline, all customers, no penalty."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        summary = summary_data_from_transaction_data(
            tx, "customer", "date", monetary_value_col="amount", observation_period_end=as_of, freq="D"
        )
        bgf = BetaGeoFitter(penalizer_coef=0.0)
        bgf.fit(summary["frequency"], summary["recency"], summary["T"])
        returning = summary[summary["frequency"] > 0]
        ggf = GammaGammaFitter(penalizer_coef=0.0)
        ggf.fit(returning["frequency"], returning["monetary_value"])
        clv: pd.Series = ggf.customer_lifetime_value(
            bgf,
            summary["frequency"],
            summary["recency"],
            summary["T"],
            summary["monetary_value"],
            time=model.clv_horizon_months,
            discount_rate=model.clv_monthly_discount_rate,
            freq="D",
        )
    params = {
        "bg_nbd": {name: float(bgf.params_[name]) for name in ("r", "alpha", "a", "b")},
        "gamma_gamma": {name: float(ggf.params_[name]) for name in ("p", "q", "v")},
    }
    return clv, params


@dataclass
class SegmentFrames:
    departments: pd.DataFrame
    interactions: pd.DataFrame
    consent: pd.DataFrame


def segment_frames(dataset: Dataset, consent: NDArray[np.bool_]) -> SegmentFrames:
    """A department table (customer, department), the interaction log and the consent list, as tables."""
    c = dataset.customers
    names = c.department_names.names
    members = [(np.flatnonzero(c.in_department(name)), name) for name in names]
    departments = pd.DataFrame(
        {
            "customer": np.concatenate([ids for ids, _ in members]),
            "department": pd.Categorical(
                np.concatenate([np.full(ids.shape[0], i) for i, (ids, _) in enumerate(members)]).astype(int),
            ).rename_categories(list(names)),
        }
    )
    frame = dataset.interactions
    interactions = pd.DataFrame(
        {
            "customer": frame.customer,
            "kind": pd.Categorical.from_codes(frame.kind, categories=list(frame.kinds.names)),
            "at": pd.to_datetime(np.round(frame.day * 86_400_000).astype(np.int64), unit="ms"),
        }
    )
    return SegmentFrames(departments, interactions, pd.DataFrame({"customer": np.flatnonzero(consent)}))


def pandas_segment(frames: SegmentFrames, as_of: pd.Timestamp) -> NDArray[np.int64]:
    billing = frames.departments.loc[frames.departments["department"] == "billing", ["customer"]]
    log = frames.interactions
    recent = log[(log["kind"] == "complaint") & (log["at"] > as_of - pd.Timedelta(days=90))]
    complaints = recent.groupby("customer").size().rename("complaints").reset_index()
    complaints = complaints[complaints["complaints"] >= 1]
    segment = billing.merge(complaints, on="customer").merge(frames.consent, on="customer")
    return np.sort(segment["customer"].unique())


def part_a(size: int, repeat: int, lifetimes_budget: float) -> dict[str, Any]:
    """Generate ``size`` customers, time every analysis and its baseline; returns figures only."""
    model = AnalyticsModel.default()
    started = time.perf_counter()
    history = generate(size)
    ids = [uuid.UUID(int=i + 1) for i in range(size)]
    dataset = to_dataset(history, model, ids)
    generate_s = time.perf_counter() - started
    rows = len(dataset.interactions)
    consent = np.random.default_rng(SEED + 1).random(size) < CONSENT_SHARE
    purposes = frozenset(ConsentCatalog.default().purposes)
    rfm_names = frozenset(rule.name for rule in model.rfm_segments)

    def segment(data: dict[str, Any]) -> Callable[[Dataset], NDArray[np.bool_]]:
        def run(ds: Dataset) -> NDArray[np.bool_]:
            definition = parse_definition(data, consent_purposes=purposes, rfm_segments=rfm_names)
            scores = Scores(ds, lambda _purpose: consent)
            return definition.evaluate(ds, scores)

        return run

    suppressor = Suppressor(model.min_group_size, size)
    steps: list[tuple[str, Callable[[Dataset], Any]]] = [
        ("Dataset.purchases", lambda ds: ds.purchases),
        ("score_rfm", score_rfm),
        ("fit_clv", fit_clv),
        ("fit_churn", fit_churn),
        ("channel_preference", channel_preference),
        ("profitability", profitability),
        ("purchase_patterns", lambda ds: purchase_patterns(ds, suppressor)),
        (SEGMENT_1, segment(ISSUE_SEGMENT)),
        (SEGMENT_2, segment(VALUE_SEGMENT)),
        (SEGMENT_3, segment(ACTIVE_SEGMENT)),
    ]
    timings: dict[str, float] = {}
    outputs: dict[str, Any] = {}
    for name, step in steps:
        console.print(f"[dim]{size:,}: {name}…[/dim]")
        timings[name], outputs[name] = best_of(repeat, lambda: fresh(dataset), step)

    as_of = pd.Timestamp(np.datetime64(int(np.floor(dataset.as_of)), "D"))
    tx = transactions_frame(dataset)
    frames = segment_frames(dataset, consent)
    baselines: dict[str, float] = {}
    notes: dict[str, str] = {}

    console.print(f"[dim]{size:,}: pandas RFM…[/dim]")
    baselines["score_rfm"], _ = best_of(repeat, lambda: tx, lambda t: pandas_rfm(t, as_of, model))

    console.print(f"[dim]{size:,}: pandas segment…[/dim]")
    baselines[SEGMENT_1], found = best_of(repeat, lambda: frames, lambda f: pandas_segment(f, as_of))
    ours = np.flatnonzero(outputs[SEGMENT_1])
    notes[SEGMENT_1] = (
        f"same {ours.shape[0]:,} customers"
        if np.array_equal(ours, found)
        else f"DIFFERENT: cdp {ours.shape[0]:,}, pandas {found.shape[0]:,}"
    )

    clv_label = "fit_clv"
    lifetimes_fit: tuple[pd.Series, dict[str, dict[str, float]]] | None = None
    if size > LIFETIMES_SAMPLE:
        sample = np.sort(np.random.default_rng(SEED + 2).choice(size, LIFETIMES_SAMPLE, replace=False))
        sample_tx = tx[np.isin(tx["customer"].to_numpy(), sample)]
        console.print(f"[dim]{size:,}: lifetimes pipeline on a {LIFETIMES_SAMPLE:,} sample…[/dim]")
        sample_s, _ = best_of(1, lambda: sample_tx, lambda t: lifetimes_clv(t, as_of, model))
        projected = sample_s * size / LIFETIMES_SAMPLE
        if projected > lifetimes_budget:
            baselines[clv_label] = projected
            notes[clv_label] = (
                f"EXTRAPOLATED: {sample_s:.1f} s on a {LIFETIMES_SAMPLE:,} sample "
                f"x{size / LIFETIMES_SAMPLE:g}"
            )
    if clv_label not in baselines:
        console.print(f"[dim]{size:,}: lifetimes pipeline…[/dim]")
        baselines[clv_label], lifetimes_fit = best_of(
            repeat, lambda: tx, lambda t: lifetimes_clv(t, as_of, model)
        )
    ours_clv = outputs[clv_label]
    parameters = {model: {"cdp": values} for model, values in ours_clv.parameters.items()}
    if lifetimes_fit is not None:
        clv, fitted = lifetimes_fit
        buyers_mean = float(ours_clv.value[ours_clv.buyers].mean())
        notes[clv_label] = f"mean CLV {buyers_mean:,.2f} (lifetimes {float(np.asarray(clv).mean()):,.2f})"
        for model_name, values in fitted.items():
            parameters[model_name]["lifetimes"] = values

    sizes = {name: int(np.asarray(outputs[name]).sum()) for name in timings if name.startswith("segment")}
    return {
        "size": size,
        "rows": rows,
        "purchase_rows": int(tx.shape[0]),
        "buyers": int(dataset.purchases.buyers.sum()),
        "generate_s": generate_s,
        "timings": timings,
        "baselines": baselines,
        "notes": notes,
        "segment_sizes": sizes,
        "clv_parameters": parameters,
        "peak_rss_mib": peak_rss_mib(),
    }


def report_a(results: list[dict[str, Any]], repeats: dict[int, int]) -> None:
    baseline_names = {
        "score_rfm": "pandas groupby + qcut",
        "fit_clv": "lifetimes pipeline",
        SEGMENT_1: "pandas filter + merge",
    }
    for r in results:
        size = r["size"]
        rows = []
        for name, seconds in r["timings"].items():
            base = r["baselines"].get(name)
            check = r["notes"].get(name) or (
                f"{r['segment_sizes'][name]:,} customers" if name in r["segment_sizes"] else ""
            )
            rows.append(
                [
                    name,
                    f"{seconds:.3f}",
                    fmt_rate(size, seconds),
                    baseline_names.get(name, ""),
                    f"{base:.2f}" if base is not None else "",
                    f"{base / seconds:.1f}x" if base is not None and seconds > 0 else "",
                    check,
                ]
            )
        print_table(
            f"Part A — {size:,} customers, {r['rows']:,} interactions ({r['rows'] / size:.1f} per customer), "
            f"{r['buyers']:,} buyers, {r['purchase_rows']:,} revenue rows; "
            f"generated in {r['generate_s']:.1f} s (not counted); best of {repeats[size]}; "
            f"peak RSS {r['peak_rss_mib']:,.0f} MiB",
            [
                "step (fresh dataset: pays for purchases)",
                "cdp s",
                "customers/s",
                "baseline",
                "baseline s",
                "baseline/cdp",
                "check",
            ],
            rows,
            left=1,
        )
        for model, params in r["clv_parameters"].items():
            console.print(
                f"  {model}: "
                + "; ".join(
                    f"{who} " + ", ".join(f"{k}={v:.3g}" for k, v in values.items())
                    for who, values in params.items()
                )
            )
    for label, definition, note in (
        (SEGMENT_1, ISSUE_SEGMENT, f"consent: a seeded {CONSENT_SHARE:.0%} of customers"),
        (SEGMENT_2, VALUE_SEGMENT, "fresh Scores: fits RFM and CLV"),
        (SEGMENT_3, ACTIVE_SEGMENT, "fresh Scores: channel preference"),
    ):
        console.print(f"  {label} ({note}):\n    {_compact(definition['match'])}", markup=False)
    console.print(
        "  The pandas and lifetimes baselines start from ready DataFrames (revenue rows only for RFM and\n"
        "  lifetimes); cdp starts from the whole interaction frame."
    )


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------
# Part B: extraction from the vault


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Store:
    """Where Part B's store lives, in a form that crosses into the build and measurement processes."""

    backend: str
    data_dir: str
    database_url: str | None

    def settings(self) -> Settings:
        if self.database_url is None:
            return Settings(data_dir=Path(self.data_dir))
        return Settings(data_dir=Path(self.data_dir), database_url=self.database_url)


@contextmanager
def vault_store(postgres_url: str | None) -> Iterator[Store]:
    """A fresh, migrated store (and its key file) in a temporary directory; on PostgreSQL in a private
    schema, dropped afterwards (as tests/conftest.py does)."""
    with tempfile.TemporaryDirectory(prefix="cdp-analytics-") as tmp:
        schema: str | None = None
        url: str | None = None
        if postgres_url is not None:
            schema = f"bench_{uuid.uuid4().hex[:16]}"
            with psycopg.connect(_libpq_dsn(postgres_url), autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            separator = "&" if "?" in postgres_url else "?"
            url = f"{postgres_url}{separator}options={quote(f'-csearch_path={schema}')}"
        try:
            store = Store("postgres" if url else "sqlite", tmp, url)
            platform, _ = Platform.initialize(store.settings())
            platform.close()
            yield store
        finally:
            if schema is not None and postgres_url is not None:
                with psycopg.connect(_libpq_dsn(postgres_url), autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def opened(store: Store) -> Iterator[Platform]:
    platform = Platform.open(store.settings())
    try:
        yield platform
    finally:
        platform.close()


def _names(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Distinct family names (five syllables from a seeded permutation of the index) and first names."""
    rng = np.random.default_rng(seed)
    code = rng.permutation(len(SYLLABLES) ** 5)[:n]
    digits = [(code // len(SYLLABLES) ** p) % len(SYLLABLES) for p in range(5)]
    last = ["".join(SYLLABLES[int(d[i])] for d in digits).capitalize() for i in range(n)]
    first = [FIRST_NAMES[i] for i in rng.integers(0, len(FIRST_NAMES), n)]
    return first, last


def _stamps(days: NDArray[np.float64]) -> list[str]:
    seconds = np.round(days * 86_400).astype(np.int64).astype("datetime64[s]")
    return [s.replace("T", " ") for s in np.datetime_as_string(seconds, unit="m").tolist()]


def source_rows(history: History) -> dict[tuple[str, str], list[RawRow]]:
    """The history as the shop's and the ledger's own rows (strings, their column names)."""
    n = history.n
    first, last = _names(n, SEED + 3)
    rng = np.random.default_rng(SEED + 4)
    born = _stamps(rng.uniform(-15_000.0, 11_000.0, n))
    countries = np.array(["DE", "AT", "CH", "DE"])[rng.integers(0, 4, n)].tolist()
    emails = [
        f"{f.lower()}.{s.lower()}.{i}@example.de" for i, (f, s) in enumerate(zip(first, last, strict=True))
    ]
    shop_records = [
        {
            "Id": f"S-{i}",
            "First": first[i],
            "Last": last[i],
            "Email": emails[i],
            "Country": countries[i],
            "Born": born[i][:10],
        }
        for i in range(n)
    ]
    billing_records = [
        {"Account": f"B-{i}", "First": first[i], "Last": last[i], "Email": emails[i]}
        for i in np.flatnonzero(history.billing).tolist()
    ]
    at = _stamps(history.day)
    to_ledger = (history.department == DEPARTMENTS.index("billing")) & history.billing[history.customer]
    customer = history.customer.tolist()
    channel = [CHANNELS[i] for i in history.channel.tolist()]
    direction = ["inbound" if v == INBOUND else "outbound" for v in history.direction.tolist()]
    kind = [KINDS[i] for i in history.kind.tolist()]
    department = [DEPARTMENTS[i] for i in history.department.tolist()]
    amount = history.amount.tolist()
    shop_events: list[dict[str, str]] = []
    billing_events: list[dict[str, str]] = []
    for row, ledger in enumerate(to_ledger.tolist()):
        money = amount[row] == amount[row]  # not NaN
        if ledger:
            billing_events.append(
                {
                    "Doc": f"D{row}",
                    "Account": f"B-{customer[row]}",
                    "At": at[row],
                    "Channel": channel[row],
                    "Direction": direction[row],
                    "Kind": kind[row],
                    "Amount": f"{amount[row] / 1.17:.2f}" if money else "",
                    "Currency": "GBP" if money else "",
                }
            )
        else:
            shop_events.append(
                {
                    "Ref": f"E{row}",
                    "Id": f"S-{customer[row]}",
                    "At": at[row],
                    "Channel": channel[row],
                    "Direction": direction[row],
                    "Kind": kind[row],
                    "Department": department[row],
                    "Amount": f"{amount[row]:.2f}" if money else "",
                    "Currency": "EUR" if money else "",
                }
            )

    def raw(items: list[dict[str, str]]) -> list[RawRow]:
        return [RawRow(number, values) for number, values in enumerate(items, start=1)]

    return {
        ("shop", "records"): raw(shop_records),
        ("ledger", "records"): raw(billing_records),
        ("shop", "interactions"): raw(shop_events),
        ("ledger", "interactions"): raw(billing_events),
    }


def identity_check(platform: Platform, history: History, sample: int = 200) -> dict[str, int]:
    """Who became whom: entity sizes, and for a seeded sample of billing customers whether their ledger
    account joined their own shop record (and nobody else's)."""
    with platform.db.read() as session:
        sizes = np.array(
            session.execute(select(func.count()).select_from(EntityMember).group_by(EntityMember.entity_id))
            .scalars()
            .all()
        )
        sources = SourceRepository(session)
        records = RecordRepository(session, platform.vault)
        shop, ledger = sources.id_of("shop"), sources.id_of("ledger")
        billed = np.flatnonzero(history.billing)
        picked = np.random.default_rng(SEED + 7).choice(billed, min(sample, billed.shape[0]), replace=False)
        joined = 0
        for i in picked.tolist():
            pair = [
                records.find_by_natural_key(shop, f"S-{i}"),
                records.find_by_natural_key(ledger, f"B-{i}"),
            ]
            entities = {
                session.execute(
                    select(EntityMember.entity_id).where(EntityMember.record_id == r)
                ).scalar_one()
                for r in pair
            }
            joined += len(entities) == 1
    return {
        "entities": int(sizes.shape[0]),
        "pairs": int((sizes == 2).sum()),
        "larger": int((sizes > 2).sum()),
        "billing": int(history.billing.sum()),
        "checked": int(picked.shape[0]),
        "joined": joined,
    }


def _fresh_platform(platform: Platform) -> Platform:
    """The same store with a new Vault: an empty data-key cache, as in a freshly started process."""
    return Platform(platform.settings, platform.db, Vault.from_settings(platform.settings))


def per_customer_reads(platform: Platform, entities: Sequence[uuid.UUID]) -> tuple[float, int]:
    """Each customer's whole contact history through the timeline read path, one session per customer."""
    vault = platform.vault
    rows = 0
    started = time.perf_counter()
    for entity in entities:
        with platform.db.read() as session:
            subjects = list(
                session.execute(
                    select(SourceRecord.subject_id)
                    .join(EntityMember, EntityMember.record_id == SourceRecord.id)
                    .where(EntityMember.entity_id == entity)
                ).scalars()
            )
            repo = InteractionRepository(session, vault)
            cursor: str | None = None
            while True:
                page = repo.timeline(subjects, limit=TIMELINE_PAGE, cursor=cursor, with_details=True)
                rows += len(page.entries)
                cursor = page.next_cursor
                if cursor is None:
                    break
    return time.perf_counter() - started, rows


def build_vault(store: Store, customers: int) -> dict[str, Any]:
    """Part B's data through the real intake, then who became whom; runs in a process of its own."""
    as_of = float(np.floor(utcnow().timestamp() / 86_400.0)) - 1.0
    history = generate(customers, seed=SEED + 5, as_of=as_of)
    rows = source_rows(history)
    console.print(
        f"[dim]{store.backend}: ingesting {customers:,} customers and "
        f"{len(history.customer):,} interactions…[/dim]"
    )
    with opened(store) as platform:
        started = time.perf_counter()
        ingest = IngestService(platform.db, platform.vault, chunk_size=2_000)
        ingest.register_source(SHOP)
        ingest.register_source(BILLING)
        rejected = 0
        build: dict[str, float] = {}
        for (source, kind), items in rows.items():
            if kind == "interactions" and "resolve" not in build:
                # The first batch run trains the match model and links each ledger account to its shop
                # record (until then every record is an entity of its own), as `cdp resolve` would.
                build["records"] = time.perf_counter() - started
                IdentityService(platform.db, platform.vault).resolve_all()
                build["resolve"] = time.perf_counter() - started - build["records"]
            summary = ingest.ingest_rows(source, items, kind=kind)
            rejected += summary.rejected
        build["total"] = time.perf_counter() - started
        build["interactions"] = build["total"] - build["records"] - build["resolve"]
        with platform.db.read() as session:
            records = int(session.execute(select(func.count()).select_from(SourceRecord)).scalar_one())
        identity = identity_check(platform, history)
        if platform.db.is_sqlite:
            with platform.db.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            with platform.db.engine.connect() as conn:
                autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("interaction", "source_record", "entity_member", "subject"):
                    autocommit.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
    return {
        "customers": customers,
        "records": records,
        "identity": identity,
        "generated_rows": int(history.customer.shape[0]),
        "rejected": rejected,
        "build": build,
        "build_peak_mib": peak_rss_mib(),
    }


def measure_vault(store: Store) -> dict[str, Any]:
    """The timings, in a fresh process (as a server worker would start), each with a fresh vault."""
    with opened(store) as platform:
        with platform.db.read() as session:
            entity_ids = list(session.execute(select(Entity.id).order_by(Entity.id)).scalars())
        console.print(f"[dim]{store.backend}: per-customer reads of {TIMELINE_SAMPLE:,} customers…[/dim]")
        sample_n = min(TIMELINE_SAMPLE, len(entity_ids))
        picked = np.random.default_rng(SEED + 6).choice(len(entity_ids), sample_n, replace=False)
        sample_s, sample_rows = per_customer_reads(_fresh_platform(platform), [entity_ids[i] for i in picked])

        console.print(f"[dim]{store.backend}: AnalyticsService.load…[/dim]")
        service = AnalyticsService.for_platform(_fresh_platform(platform))
        started = time.perf_counter()
        dataset, _ = service.load("analytics")
        load_s = time.perf_counter() - started
        loaded_customers, loaded_rows = dataset.size, len(dataset.interactions)
        del dataset

        console.print(f"[dim]{store.backend}: analyse('rfm')…[/dim]")
        service = AnalyticsService.for_platform(_fresh_platform(platform))
        started = time.perf_counter()
        report = service.analyse("rfm")
        rfm_s = time.perf_counter() - started
    return {
        "backend": store.backend,
        "entities": len(entity_ids),
        "loaded_customers": loaded_customers,
        "loaded_rows": loaded_rows,
        "load_s": load_s,
        "rfm_s": rfm_s,
        "rfm_buyers": report["result"]["buyers"],
        "sample_n": sample_n,
        "sample_rows": sample_rows,
        "sample_s": sample_s,
        "peak_rss_mib": peak_rss_mib(),
    }


def part_b(customers: int, postgres_url: str | None) -> dict[str, Any]:
    """Build the store in one fresh process and measure it in another, so the measurements' peak RSS and
    caches are their own."""
    with vault_store(postgres_url) as store:
        built = run_isolated(build_vault, store, customers)
        measured = run_isolated(measure_vault, store)
    return {**built, **measured}


def report_b(results: list[dict[str, Any]]) -> None:
    def column(r: dict[str, Any]) -> list[str]:
        per_customer = r["sample_s"] / r["sample_n"] * r["entities"]
        ident = r["identity"]
        build = r["build"]
        return [
            f"{r['customers']:,} / {r['records']:,} / {r['generated_rows']:,} ({r['rejected']:,} rejected)",
            f"{build['total']:.0f} s (records {build['records']:.0f}, resolve_all {build['resolve']:.0f}, "
            f"interactions {build['interactions']:.0f}); peak RSS {r['build_peak_mib']:,.0f} MiB",
            f"{ident['entities']:,}: {ident['pairs']:,} shop+ledger pairs of {ident['billing']:,} accounts, "
            f"{ident['larger']:,} larger; sample {ident['joined']}/{ident['checked']} joined correctly",
            f"{r['loaded_customers']:,} customers, {r['loaded_rows']:,} rows",
            f"{r['load_s']:.1f}",
            fmt_rate(r["loaded_rows"], r["load_s"]),
            fmt_rate(r["loaded_customers"], r["load_s"]),
            f"{r['rfm_s']:.1f} (buyers reported: {r['rfm_buyers']:,})",
            f"{r['sample_n']:,} customers, {r['sample_rows']:,} rows in {r['sample_s']:.2f} s "
            f"({r['sample_s'] / r['sample_n'] * 1000:.1f} ms each)",
            f"{per_customer:,.0f}",
            f"{per_customer / r['load_s']:.1f}x",
            f"{r['peak_rss_mib']:,.0f}",
        ]

    labels = [
        "customers / records / interaction rows ingested",
        "build through the intake (not counted)",
        "entities after resolution",
        "AnalyticsService.load('analytics')",
        "  load s",
        "  rows/s",
        "  customers/s",
        "analyse('rfm') end to end, s",
        "baseline: per-customer timeline reads",
        "  extrapolated to all customers, s",
        "  per-customer / bulk load",
        "peak RSS MiB (measuring process)",
    ]
    columns = [column(r) for r in results]
    print_table(
        "Part B — extraction from the encrypted vault (built in one process, measured in a fresh one; "
        "each measurement with a fresh vault: empty data-key cache)",
        ["", *(r["backend"] for r in results)],
        [[label, *(c[i] for c in columns)] for i, label in enumerate(labels)],
        left=1 + len(results),
    )


# ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="Part A customer counts")
    parser.add_argument(
        "--repeat", type=int, default=None, help="best of N runs per step (default 3 up to 100k, 1 above)"
    )
    parser.add_argument("--vault-size", type=int, default=100_000, help="Part B customers")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("CDP_BENCH_POSTGRES_URL"),
        help="also run Part B on this PostgreSQL URL (default: $CDP_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--parts", default="a,b", help="which parts to run: a, b or a,b")
    parser.add_argument(
        "--lifetimes-budget",
        type=float,
        default=180.0,
        help="above 100k customers, extrapolate the lifetimes pipeline from a 100k sample when the "
        "projection exceeds this many seconds",
    )
    args = parser.parse_args()
    sizes = parse_ints(args.sizes, "--sizes")
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - {"a", "b"}:
        raise SystemExit("--parts takes a, b or a,b")
    if args.vault_size < 10:
        raise SystemExit("--vault-size must be at least 10")
    repeats = {size: args.repeat or (3 if size <= 100_000 else 1) for size in sizes}
    params: dict[str, Any] = {"parts": ",".join(sorted(parts))}
    if "a" in parts:
        params["sizes (A)"] = ", ".join(f"{s:,} (best of {repeats[s]})" for s in sizes)
    if "b" in parts:
        params["vault size (B)"] = f"{args.vault_size:,}"
        params["postgres (B)"] = make_url(args.postgres).render_as_string() if args.postgres else "not given"
    Header("Customer analytics: computation and extraction", params).print(["sqlite"])

    if "a" in parts:
        report_a(
            [run_isolated(part_a, size, repeats[size], args.lifetimes_budget) for size in sizes], repeats
        )
    if "b" in parts:
        targets: list[str | None] = [None] + ([args.postgres] if args.postgres else [])
        report_b([part_b(args.vault_size, url) for url in targets])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(
        f"Peak RSS (getrusage): largest part {children:,.0f} MiB, this process {own:,.0f} MiB. "
        f"Finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    )


if __name__ == "__main__":
    main()
