"""The analytics model as data (``model.toml``): which kinds carry revenue, exchange rates, what counts as
activity, the cost-to-serve assumptions, RFM segments, the CLV and churn settings and the privacy floor.

Loaded and checked once; a bad file fails with a message naming the key, never half-loads."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdp.errors import CdpError

DEFAULT_MODEL_FILE = Path(__file__).with_name("model.toml")


class AnalyticsConfigError(CdpError):
    """The analytics model file is missing a key or holds a value that makes no sense."""


@dataclass(frozen=True)
class RfmSegmentRule:
    name: str
    recency: tuple[int, int]
    frequency_monetary: tuple[int, int]

    def matches(self, r: int, fm: float) -> bool:
        return self.recency[0] <= r <= self.recency[1] and (
            self.frequency_monetary[0] <= fm <= self.frequency_monetary[1]
        )


@dataclass(frozen=True)
class AnalyticsModel:
    version: int
    min_group_size: int
    revenue_kinds: frozenset[str]
    refund_kinds: frozenset[str]
    base_currency: str
    rates: dict[str, float]
    active_kinds: frozenset[str]
    complaint_kinds: frozenset[str]
    response_window_days: float
    gross_margin: float
    complaint_surcharge: float
    cost_per_contact: dict[str, float]
    rfm_segments: tuple[RfmSegmentRule, ...]
    clv_horizon_months: int
    clv_monthly_discount_rate: float
    clv_max_fit_customers: int
    clv_penalizer: float
    churn_horizon_days: int
    churn_max_fit_customers: int
    churn_risk_bands: tuple[float, ...]
    source: str = field(default="model.toml", compare=False)

    @classmethod
    def default(cls) -> AnalyticsModel:
        return cls.load(DEFAULT_MODEL_FILE)

    @classmethod
    def load(cls, path: Path) -> AnalyticsModel:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AnalyticsConfigError(f"analytics model file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise AnalyticsConfigError(f"analytics model file {path} is not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model.toml") -> AnalyticsModel:
        reader = _Reader(data, source)
        rates = {
            str(code).upper(): reader.positive(f"transactions.rates.{code}", value)
            for code, value in reader.table("transactions.rates").items()
        }
        base = reader.text("transactions.base_currency").upper()
        if rates.get(base) != 1.0:
            raise AnalyticsConfigError(
                f"{source}: transactions.rates must give the base currency {base} as 1.0"
            )
        segments = []
        for index, entry in enumerate(reader.list("rfm.segments")):
            where = f"rfm.segments[{index}]"
            if not isinstance(entry, dict) or set(entry) != {"name", "r", "fm"}:
                raise AnalyticsConfigError(f"{source}: {where} needs exactly name, r and fm")
            segments.append(
                RfmSegmentRule(
                    str(entry["name"]), _score_range(entry["r"], where), _score_range(entry["fm"], where)
                )
            )
        if not segments:
            raise AnalyticsConfigError(f"{source}: rfm.segments is empty")
        bands = tuple(float(b) for b in reader.list("churn.risk_bands"))
        if list(bands) != sorted(bands) or not all(0 < b < 1 for b in bands):
            raise AnalyticsConfigError(f"{source}: churn.risk_bands must rise strictly between 0 and 1")
        min_group = int(reader.number("privacy.min_group_size"))
        if min_group < 2:
            raise AnalyticsConfigError(f"{source}: privacy.min_group_size must be at least 2")
        return cls(
            version=int(reader.number("version")),
            min_group_size=min_group,
            revenue_kinds=frozenset(reader.list("transactions.revenue_kinds")),
            refund_kinds=frozenset(reader.list("transactions.refund_kinds")),
            base_currency=base,
            rates=rates,
            active_kinds=frozenset(reader.list("activity.active_kinds")),
            complaint_kinds=frozenset(reader.list("activity.complaint_kinds")),
            response_window_days=reader.positive("activity.response_window_days"),
            gross_margin=reader.fraction("profitability.gross_margin"),
            complaint_surcharge=reader.non_negative("profitability.complaint_surcharge"),
            cost_per_contact={
                str(channel): reader.non_negative(f"profitability.cost_per_contact.{channel}", value)
                for channel, value in reader.table("profitability.cost_per_contact").items()
            },
            rfm_segments=tuple(segments),
            clv_horizon_months=int(reader.positive("clv.horizon_months")),
            clv_monthly_discount_rate=reader.fraction("clv.monthly_discount_rate"),
            clv_max_fit_customers=int(reader.positive("clv.max_fit_customers")),
            clv_penalizer=reader.non_negative("clv.penalizer"),
            churn_horizon_days=int(reader.positive("churn.horizon_days")),
            churn_max_fit_customers=int(reader.positive("churn.max_fit_customers")),
            churn_risk_bands=bands,
            source=source,
        )

    def rate(self, currency: str | None) -> float | None:
        """Units of the base currency per unit of ``currency``; an amount without a currency is taken to
        be in the base currency; None when there is no rate."""
        if currency is None:
            return 1.0
        return self.rates.get(currency.upper())


def _score_range(value: Any, where: str) -> tuple[int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and 1 <= v <= 5 for v in value)
        or value[0] > value[1]
    ):
        raise AnalyticsConfigError(f"{where}: a score range is [low, high] with 1 <= low <= high <= 5")
    return (value[0], value[1])


class _Reader:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def _get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise AnalyticsConfigError(f"{self.source}: {dotted} is missing")
            node = node[part]
        return node

    def table(self, dotted: str) -> dict[str, Any]:
        value = self._get(dotted)
        if not isinstance(value, dict):
            raise AnalyticsConfigError(f"{self.source}: {dotted} must be a table")
        return value

    def list(self, dotted: str) -> list[Any]:
        value = self._get(dotted)
        if not isinstance(value, list):
            raise AnalyticsConfigError(f"{self.source}: {dotted} must be a list")
        return value

    def text(self, dotted: str) -> str:
        value = self._get(dotted)
        if not isinstance(value, str) or not value:
            raise AnalyticsConfigError(f"{self.source}: {dotted} must be a non-empty string")
        return value

    def number(self, dotted: str, value: Any = None) -> float:
        value = self._get(dotted) if value is None else value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise AnalyticsConfigError(f"{self.source}: {dotted} must be a number")
        return float(value)

    def positive(self, dotted: str, value: Any = None) -> float:
        number = self.number(dotted, value)
        if number <= 0:
            raise AnalyticsConfigError(f"{self.source}: {dotted} must be greater than 0")
        return number

    def non_negative(self, dotted: str, value: Any = None) -> float:
        number = self.number(dotted, value)
        if number < 0:
            raise AnalyticsConfigError(f"{self.source}: {dotted} must not be negative")
        return number

    def fraction(self, dotted: str) -> float:
        number = self.number(dotted)
        if not 0 <= number < 1:
            raise AnalyticsConfigError(f"{self.source}: {dotted} must be between 0 and 1")
        return number
