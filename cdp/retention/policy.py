"""The retention policy (``policies.toml``): categories with retention periods, and legal obligations
that keep pseudonymized documents after an erasure.

Checked on load — unknown keys, unknown lines of business, duplicate categories and malformed periods
are refused with the key named — because a typo in a retention policy either destroys data early or
keeps it forever, and neither may happen silently.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from cdp.errors import CdpError

LINES_OF_BUSINESS = ("sales", "support", "billing", "marketing")
ANCHORS = ("last_activity", "ingested")
_PERIOD = re.compile(r"^([1-9][0-9]{0,3})([ymd])$")


class RetentionConfigError(CdpError):
    """The retention policy is invalid; the message names the key."""


@dataclass(frozen=True)
class Period:
    """A retention period in calendar terms: years and months are calendar-exact (a record kept two
    years from 29 February is kept until 28 February, not 730 days)."""

    amount: int
    unit: str

    @classmethod
    def parse(cls, text: str, where: str) -> Period:
        match = _PERIOD.match(text) if isinstance(text, str) else None
        if match is None:
            raise RetentionConfigError(f"{where}: period must look like '2y', '18m' or '90d'")
        return cls(int(match.group(1)), match.group(2))

    def before(self, moment: datetime) -> datetime:
        """``moment`` minus this period: anything anchored before it has expired."""
        if self.unit == "d":
            return moment - timedelta(days=self.amount)
        months = self.amount * 12 if self.unit == "y" else self.amount
        return _add_months(moment, -months)

    def after(self, moment: datetime) -> datetime:
        if self.unit == "d":
            return moment + timedelta(days=self.amount)
        months = self.amount * 12 if self.unit == "y" else self.amount
        return _add_months(moment, months)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


@dataclass(frozen=True)
class Category:
    name: str
    line_of_business: str
    keep: Period
    anchor: str
    description: str


@dataclass(frozen=True)
class Obligation:
    name: str
    line_of_business: str
    interaction_kinds: tuple[str, ...]
    keep: Period
    basis: str

    def applies(self, line_of_business: str, kind: str) -> bool:
        return line_of_business == self.line_of_business and kind in self.interaction_kinds


OPERATIONAL = ("quarantine", "outbox")


@dataclass(frozen=True)
class RetentionPolicy:
    version: int
    digest: str
    content: str
    categories: tuple[Category, ...]
    obligations: tuple[Obligation, ...]
    operational: dict[str, Period]
    """How long quarantined rows and outbox messages are kept (each must be named)."""

    @classmethod
    def load(cls, path: Path | None = None) -> RetentionPolicy:
        if path is None:
            text = resources.files("cdp.retention").joinpath("policies.toml").read_text("utf-8")
        else:
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                raise RetentionConfigError(f"cannot read the retention policy {path}: {reason}") from None
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> RetentionPolicy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RetentionConfigError(f"retention policy is not valid TOML: {exc}") from None
        _only(data, {"version", "category", "obligation", "operational"}, "retention policy")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise RetentionConfigError("version: must be a positive integer")
        categories = tuple(_category(i, raw) for i, raw in enumerate(data.get("category", [])))
        if not categories:
            raise RetentionConfigError("category: at least one category is required")
        seen: set[str] = set()
        lines: set[str] = set()
        for category in categories:
            if category.name in seen:
                raise RetentionConfigError(f"category {category.name!r} is defined twice")
            if category.line_of_business in lines:
                raise RetentionConfigError(
                    f"category {category.name!r}: line of business {category.line_of_business!r} "
                    "already has a category"
                )
            seen.add(category.name)
            lines.add(category.line_of_business)
        missing = set(LINES_OF_BUSINESS) - lines
        if missing:
            raise RetentionConfigError(
                f"category: no retention period for {', '.join(sorted(missing))} (data would be kept forever)"
            )
        obligations = tuple(_obligation(i, raw) for i, raw in enumerate(data.get("obligation", [])))
        raw_operational = data.get("operational")
        if not isinstance(raw_operational, dict):
            raise RetentionConfigError(f"operational: a table with {', '.join(OPERATIONAL)} is required")
        _only(raw_operational, set(OPERATIONAL), "operational")
        missing_operational = [name for name in OPERATIONAL if name not in raw_operational]
        if missing_operational:
            raise RetentionConfigError(f"operational: no period for {', '.join(missing_operational)}")
        operational = {
            name: Period.parse(raw_operational[name], f"operational.{name}") for name in OPERATIONAL
        }
        return cls(
            version=version,
            digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            content=text,
            categories=categories,
            obligations=obligations,
            operational=operational,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "sha256": self.digest,
            "categories": [
                {
                    "name": c.name,
                    "line_of_business": c.line_of_business,
                    "keep": str(c.keep),
                    "anchor": c.anchor,
                    "description": c.description,
                }
                for c in self.categories
            ],
            "obligations": [
                {
                    "name": o.name,
                    "line_of_business": o.line_of_business,
                    "interaction_kinds": list(o.interaction_kinds),
                    "keep": str(o.keep),
                    "basis": o.basis,
                }
                for o in self.obligations
            ],
            "operational": {name: str(period) for name, period in self.operational.items()},
        }

    def category_of(self, line_of_business: str) -> Category:
        for category in self.categories:
            if category.line_of_business == line_of_business:
                return category
        raise RetentionConfigError(f"no retention category for line of business {line_of_business!r}")

    def obligation_for(self, line_of_business: str, kind: str) -> Obligation | None:
        for obligation in self.obligations:
            if obligation.applies(line_of_business, kind):
                return obligation
        return None

    def longest_keep_after(self, moment: datetime) -> datetime:
        """The latest moment any data anchored at ``moment`` may still be kept (audit retention must
        reach past it, or the log could forget a destruction before the data it is about is gone)."""
        periods = [c.keep for c in self.categories] + [o.keep for o in self.obligations]
        return max(period.after(moment) for period in periods)


def check_audit_outlives_data(policy: RetentionPolicy, audit_retention_days: int) -> None:
    """Refuse an audit retention shorter than the longest data retention: the log must still hold the
    record of every access to data that is still kept, and of its destruction when it goes."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    longest = (policy.longest_keep_after(start) - start).days
    if audit_retention_days <= longest:
        raise RetentionConfigError(
            f"audit_retention_days ({audit_retention_days}) must be longer than the longest data retention "
            f"({longest} days, retention policy version {policy.version})"
        )


def _only(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise RetentionConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RetentionConfigError(f"{where}.{key}: a non-empty string is required")
    return value


def _category(index: int, raw: Any) -> Category:
    where = f"category[{index}]"
    if not isinstance(raw, dict):
        raise RetentionConfigError(f"{where}: must be a table")
    _only(raw, {"name", "line_of_business", "keep", "anchor", "description"}, where)
    line = _text(raw, "line_of_business", where)
    if line not in LINES_OF_BUSINESS:
        raise RetentionConfigError(f"{where}.line_of_business: one of {', '.join(LINES_OF_BUSINESS)}")
    anchor = raw.get("anchor", "last_activity")
    if anchor not in ANCHORS:
        raise RetentionConfigError(f"{where}.anchor: one of {', '.join(ANCHORS)}")
    return Category(
        name=_text(raw, "name", where),
        line_of_business=line,
        keep=Period.parse(raw.get("keep", ""), f"{where}.keep"),
        anchor=anchor,
        description=str(raw.get("description", "")),
    )


def _obligation(index: int, raw: Any) -> Obligation:
    where = f"obligation[{index}]"
    if not isinstance(raw, dict):
        raise RetentionConfigError(f"{where}: must be a table")
    _only(raw, {"name", "line_of_business", "interaction_kinds", "keep", "basis"}, where)
    line = _text(raw, "line_of_business", where)
    if line not in LINES_OF_BUSINESS:
        raise RetentionConfigError(f"{where}.line_of_business: one of {', '.join(LINES_OF_BUSINESS)}")
    kinds = raw.get("interaction_kinds")
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) and k for k in kinds):
        raise RetentionConfigError(f"{where}.interaction_kinds: a non-empty list of interaction kinds")
    return Obligation(
        name=_text(raw, "name", where),
        line_of_business=line,
        interaction_kinds=tuple(kinds),
        keep=Period.parse(raw.get("keep", ""), f"{where}.keep"),
        basis=_text(raw, "basis", where),
    )
