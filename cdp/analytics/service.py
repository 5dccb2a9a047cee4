"""The analytics service: saved segments, their evaluation (on demand and on schedule) and the analyses.

Every run starts from the vault and the consent ledger as they are now (:func:`load_dataset`): only the
customers the purpose covers are included, nothing per customer is stored, and only aggregates that pass
small-cohort suppression leave this module. Each run is audited with its purpose, the analysis, the
segment (id and version) and the population size — counts, never values.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cdp.analytics import charts
from cdp.analytics.channels import ChannelResult, channel_preference
from cdp.analytics.churn import ChurnResult, fit_churn
from cdp.analytics.clv import ClvResult, NotEnoughData, fit_clv
from cdp.analytics.config import AnalyticsModel
from cdp.analytics.dataset import ANALYTICS_PURPOSES, load_dataset
from cdp.analytics.errors import AnalyticsError, SegmentConflict, SegmentNotFound
from cdp.analytics.frame import Dataset, from_day
from cdp.analytics.privacy import Suppressor
from cdp.analytics.rfm import RfmResult, score_rfm
from cdp.analytics.segments import METRICS, SegmentDefinition, SegmentDefinitionError, parse_definition
from cdp.analytics.value import ValueResult, profitability, purchase_patterns
from cdp.audit import AuditEvent, Outcome, record, record_now
from cdp.audit.context import current_actor
from cdp.consent.ledger import ConsentLedger
from cdp.db import Database
from cdp.db.models import AnalyticsSegment, AnalyticsSegmentSnapshot
from cdp.db.types import utcnow
from cdp.platform import Platform
from cdp.vault import Vault

ANALYSES: dict[str, str] = {
    "rfm": "Recency, frequency and monetary scores and the RFM segments",
    "clv": "Customer lifetime value (BG/NBD + Gamma-Gamma): parameters and distribution",
    "churn": "Churn risk (logistic regression): coefficients, validation, risk bands and risk by group",
    "channels": "Channel preference and response rates per channel",
    "profitability": "Revenue, cost to serve and profit: totals, deciles and by group",
    "purchases": "Purchase patterns: by weekday, hour, month, channel and department",
}
GROUPINGS = ("rfm", "department", "channel", "segments")
SNAPSHOT_TRIGGERS = ("on_demand", "schedule")


@dataclass(frozen=True)
class SegmentView:
    id: uuid.UUID
    name: str
    description: str
    purpose: str
    schedule: str | None
    definition: dict[str, Any]
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    next_run_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "description": self.description,
            "purpose": self.purpose,
            "schedule": self.schedule,
            "definition": self.definition,
            "version": self.version,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "next_run_at": self.next_run_at.isoformat() if self.next_run_at else None,
        }


def _view(row: AnalyticsSegment) -> SegmentView:
    return SegmentView(
        row.id,
        row.name,
        row.description,
        row.purpose,
        row.schedule,
        json.loads(row.definition),
        row.version,
        row.created_by,
        row.created_at,
        row.updated_at,
        row.next_run_at,
    )


def _next_run(schedule: str | None, after: datetime) -> datetime | None:
    if schedule is None:
        return None
    from apscheduler.triggers.cron import CronTrigger

    fire: datetime | None = CronTrigger.from_crontab(schedule, timezone="UTC").get_next_fire_time(None, after)
    return fire


class Scores:
    """The per-customer scores a segment or a grouping can use, fitted once per run on the whole
    consenting population (a segment's customers are scored relative to everyone, not to each other)."""

    def __init__(self, dataset: Dataset, consent: Callable[[str], NDArray[np.bool_]]) -> None:
        self.dataset = dataset
        self._consent = consent
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def rfm(self) -> RfmResult:
        result: RfmResult = self._once("rfm", lambda: score_rfm(self.dataset))
        return result

    def clv(self) -> ClvResult:
        try:
            result: ClvResult = self._once("clv", lambda: fit_clv(self.dataset))
        except NotEnoughData as exc:
            raise AnalyticsError(f"lifetime value cannot be computed: {exc}") from None
        return result

    def churn(self) -> ChurnResult:
        try:
            result: ChurnResult = self._once("churn", lambda: fit_churn(self.dataset))
        except NotEnoughData as exc:
            raise AnalyticsError(f"churn risk cannot be computed: {exc}") from None
        return result

    def channels(self) -> ChannelResult:
        result: ChannelResult = self._once("channels", lambda: channel_preference(self.dataset))
        return result

    def value(self) -> ValueResult:
        result: ValueResult = self._once("value", lambda: profitability(self.dataset))
        return result

    # MetricSource ------------------------------------------------------------------------------------

    def values(self, metric: str) -> NDArray[np.float64]:
        d = self.dataset
        if metric == "days_since_last_activity":
            rows = d.activity_rows()
            last = np.full(d.size, -np.inf)
            np.maximum.at(last, d.interactions.customer[rows], d.interactions.day[rows])
            return np.where(np.isfinite(last), d.as_of - last, np.nan)
        if metric == "days_since_last_purchase":
            return d.purchases.days_since_last
        if metric == "purchases":
            return d.purchases.count.astype(np.float64)
        if metric == "revenue":
            return d.purchases.revenue
        if metric == "tenure_days":
            return d.as_of - d.customers.first_seen
        if metric == "clv":
            return self.clv().value
        if metric == "p_alive":
            return self.clv().p_alive
        if metric == "churn_risk":
            return self.churn().risk
        if metric == "profit":
            return self.value().profit
        raise AnalyticsError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")

    def rfm_segments(self) -> Mapping[str, NDArray[np.bool_]]:
        return self.rfm().masks()

    def preferred_channels(self) -> Mapping[str, NDArray[np.bool_]]:
        return self.channels().masks()

    def consent(self, purpose: str) -> NDArray[np.bool_]:
        return self._consent(purpose)


class AnalyticsService:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        *,
        model: AnalyticsModel | None = None,
        ledger: ConsentLedger | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.model = model or AnalyticsModel.default()
        self.ledger = ledger or ConsentLedger(db)

    @classmethod
    def for_platform(cls, platform: Platform) -> AnalyticsService:
        path = platform.settings.analytics_model_file
        model = AnalyticsModel.load(path) if path is not None else AnalyticsModel.default()
        return cls(platform.db, platform.vault, model=model)

    # -- definitions ----------------------------------------------------------------------------------

    def parse(self, data: Any) -> SegmentDefinition:
        return parse_definition(
            data,
            consent_purposes=frozenset(self.ledger.catalog.purposes),
            rfm_segments=frozenset(rule.name for rule in self.model.rfm_segments),
        )

    def create_segment(self, data: Any, *, actor: str) -> SegmentView:
        definition = self.parse(data)
        now = utcnow()
        with self.db.transaction() as session:
            if session.execute(
                select(AnalyticsSegment.id).where(AnalyticsSegment.name == definition.name)
            ).first():
                raise SegmentConflict(f"a segment named {definition.name} exists already")
            row = AnalyticsSegment(
                id=uuid.uuid4(),
                name=definition.name,
                description=definition.description,
                purpose=definition.purpose,
                schedule=definition.schedule,
                definition=json.dumps(definition.raw, sort_keys=True),
                version=1,
                created_by=actor,
                created_at=now,
                updated_at=now,
                next_run_at=_next_run(definition.schedule, now),
            )
            session.add(row)
            session.flush()
            self._audit_change(session, row, "create")
            return _view(row)

    def update_segment(
        self, segment_id: uuid.UUID, data: Any, *, actor: str, expected_version: int | None = None
    ) -> SegmentView:
        definition = self.parse(data)
        now = utcnow()
        with self.db.transaction() as session:
            row = session.get(AnalyticsSegment, segment_id, with_for_update=True)
            if row is None:
                raise SegmentNotFound(f"segment {segment_id} does not exist")
            if expected_version is not None and expected_version != row.version:
                raise SegmentConflict(
                    f"segment {segment_id} is at version {row.version}, not {expected_version}"
                )
            if (
                definition.name != row.name
                and session.execute(
                    select(AnalyticsSegment.id).where(AnalyticsSegment.name == definition.name)
                ).first()
            ):
                raise SegmentConflict(f"a segment named {definition.name} exists already")
            row.name = definition.name
            row.description = definition.description
            row.purpose = definition.purpose
            row.schedule = definition.schedule
            row.definition = json.dumps(definition.raw, sort_keys=True)
            row.version += 1
            row.updated_at = now
            row.next_run_at = _next_run(definition.schedule, now)
            session.flush()
            self._audit_change(session, row, "update")
            return _view(row)

    def delete_segment(self, segment_id: uuid.UUID) -> None:
        with self.db.transaction() as session:
            row = session.get(AnalyticsSegment, segment_id)
            if row is None:
                raise SegmentNotFound(f"segment {segment_id} does not exist")
            self._audit_change(session, row, "delete")
            session.execute(
                delete(AnalyticsSegmentSnapshot).where(AnalyticsSegmentSnapshot.segment_id == row.id)
            )
            session.delete(row)

    def _audit_change(self, session: Session, row: AnalyticsSegment, op: str) -> None:
        record(
            session,
            AuditEvent(
                "analytics.segments",
                details={"op": op, "segment": str(row.id), "name": row.name, "version": row.version},
            ),
        )

    def segments(self) -> list[SegmentView]:
        with self.db.read() as session:
            rows = session.execute(select(AnalyticsSegment).order_by(AnalyticsSegment.name)).scalars()
            return [_view(row) for row in rows]

    def segment(self, ref: str | uuid.UUID) -> SegmentView:
        """A segment by id or by name."""
        with self.db.read() as session:
            return _view(self._row(session, ref))

    def _row(self, session: Session, ref: str | uuid.UUID) -> AnalyticsSegment:
        row: AnalyticsSegment | None = None
        if isinstance(ref, uuid.UUID):
            row = session.get(AnalyticsSegment, ref)
        else:
            try:
                row = session.get(AnalyticsSegment, uuid.UUID(ref))
            except ValueError:
                row = session.execute(
                    select(AnalyticsSegment).where(AnalyticsSegment.name == ref)
                ).scalar_one_or_none()
        if row is None:
            raise SegmentNotFound(f"segment {ref} does not exist")
        return row

    # -- evaluation -----------------------------------------------------------------------------------

    def load(
        self, purpose: str, *, attributes: frozenset[str] = frozenset(), as_of: datetime | None = None
    ) -> tuple[Dataset, Scores]:
        """The consenting population with its history up to ``as_of`` (default now; consent is always
        as it stands now), and the scores over it."""
        if purpose not in ANALYTICS_PURPOSES:
            raise AnalyticsError(f"purpose must be {' or '.join(ANALYTICS_PURPOSES)}")
        if as_of is not None and as_of > utcnow():
            raise AnalyticsError("as_of must not be in the future")
        with self.db.read() as session:  # one snapshot: consent, members and interactions agree
            dataset = load_dataset(
                session.connection(),
                self.vault,
                self.ledger,
                purpose=purpose,
                model=self.model,
                attributes=attributes,
                as_of=as_of,
            )
        ids = dataset.customers.ids

        def consent(name: str) -> NDArray[np.bool_]:
            with self.db.connect() as connection:
                standing = self.ledger.standing(connection, name)
            listed = np.fromiter((i in standing.listed for i in ids), dtype=bool, count=len(ids))
            return listed if standing.needs_grant else ~listed

        return dataset, Scores(dataset, consent)

    def _evaluate(
        self, definition: SegmentDefinition, as_of: datetime | None
    ) -> tuple[Dataset, Scores, NDArray[np.bool_]]:
        dataset, scores = self.load(definition.purpose, attributes=definition.needs().attributes, as_of=as_of)
        return dataset, scores, definition.evaluate(dataset, scores)

    def preview(self, data: Any, *, as_of: datetime | None = None) -> dict[str, Any]:
        """Evaluate a definition without saving it (audited like any run), optionally on the history up
        to ``as_of``."""
        definition = self.parse(data)
        dataset, scores, mask = self._evaluate(definition, as_of)
        report = self._segment_report(definition, dataset, scores, mask)
        record_now(self.db, self._run_event(dataset, "segment_preview", None, int(mask.sum())))
        return report

    def evaluate(
        self, ref: str | uuid.UUID, *, trigger: str = "on_demand", actor: str = "system"
    ) -> dict[str, Any]:
        """Evaluate a saved segment and keep its size as a snapshot (counts over time)."""
        view = self.segment(ref)
        definition = self.parse(view.definition)
        dataset, scores, mask = self._evaluate(definition, None)
        size = int(mask.sum())
        report = self._segment_report(definition, dataset, scores, mask)
        now = utcnow()
        with self.db.transaction() as session:
            row = session.get(AnalyticsSegment, view.id)
            if row is None:
                raise SegmentNotFound(f"segment {view.id} was deleted during the evaluation")
            session.add(
                AnalyticsSegmentSnapshot(
                    id=uuid.uuid4(),
                    segment_id=view.id,
                    segment_version=view.version,
                    evaluated_at=now,
                    size=size,
                    population=dataset.size,
                    trigger=trigger,
                    actor=actor,
                )
            )
            record(session, self._run_event(dataset, "segment", view, size))
        report["segment"] = {"id": str(view.id), "name": view.name, "version": view.version}
        return report

    def evaluate_due(self, *, now: datetime | None = None) -> list[str]:
        """Evaluate every segment whose schedule is due; returns their names.

        Each due segment is first *claimed* by moving its next run time forward with a compare-and-set,
        so when several server workers look at once exactly one evaluates it. One failing segment (say,
        not enough data for a score it uses) is audited as failed and does not hold up the others."""
        moment = now or utcnow()
        with self.db.read() as session:
            due = list(
                session.execute(
                    select(
                        AnalyticsSegment.id,
                        AnalyticsSegment.name,
                        AnalyticsSegment.schedule,
                        AnalyticsSegment.next_run_at,
                    ).where(AnalyticsSegment.next_run_at.is_not(None), AnalyticsSegment.next_run_at <= moment)
                ).all()
            )
        done = []
        for segment_id, name, schedule, next_run_at in due:
            with self.db.transaction() as session:
                claimed = session.execute(
                    update(AnalyticsSegment)
                    .where(AnalyticsSegment.id == segment_id, AnalyticsSegment.next_run_at == next_run_at)
                    .values(next_run_at=_next_run(schedule, moment))
                ).rowcount  # type: ignore[attr-defined]
            if claimed != 1:
                continue
            try:
                self.evaluate(segment_id, trigger="schedule", actor=current_actor().principal)
            except (AnalyticsError, SegmentNotFound, SegmentDefinitionError) as exc:
                record_now(
                    self.db,
                    AuditEvent(
                        "analytics.run",
                        outcome=Outcome.FAILED,
                        purpose="analytics",
                        details={
                            "analysis": "segment",
                            "segment": str(segment_id),
                            "error": type(exc).__name__,
                        },
                    ),
                )
                continue
            done.append(name)
        return done

    def history(self, ref: str | uuid.UUID, *, limit: int = 365) -> dict[str, Any]:
        with self.db.read() as session:
            row = self._row(session, ref)
            snapshots = list(
                session.execute(
                    select(AnalyticsSegmentSnapshot)
                    .where(AnalyticsSegmentSnapshot.segment_id == row.id)
                    .order_by(AnalyticsSegmentSnapshot.evaluated_at.desc())
                    .limit(limit)
                ).scalars()
            )
            view = _view(row)
        points = []
        for snap in reversed(snapshots):
            suppressor = Suppressor(self.model.min_group_size, snap.population)
            points.append(
                {
                    "evaluated_at": snap.evaluated_at.isoformat(),
                    "segment_version": snap.segment_version,
                    "size": suppressor.count(snap.size),
                    "population": suppressor.population_count(),
                    "suppressed": suppressor.hides(snap.size),
                    "trigger": snap.trigger,
                }
            )
        return {
            "segment": {"id": str(view.id), "name": view.name, "version": view.version},
            "privacy": Suppressor(self.model.min_group_size, 0).describe(),
            "history": points,
        }

    def _segment_report(
        self, definition: SegmentDefinition, dataset: Dataset, scores: Scores, mask: NDArray[np.bool_]
    ) -> dict[str, Any]:
        size = int(mask.sum())
        population = Suppressor(self.model.min_group_size, dataset.size)
        inside = Suppressor(self.model.min_group_size, size)
        shown = not population.hides(size) and size > 0
        report: dict[str, Any] = {
            "name": definition.name,
            "purpose": definition.purpose,
            "as_of": from_day(dataset.as_of).isoformat(),
            "size": population.count(size),
            "suppressed": population.hides(size),
            "population": population.population_count(),
            "excluded_without_consent": dataset.excluded_without_consent,
            "share": round(size / dataset.size, 4) if shown and dataset.size else None,
            "privacy": population.describe(),
            "notes": definition.unknown_names(dataset),
            "by_department": [],
            "by_rfm_segment": [],
            "by_preferred_channel": [],
            "value": None,
        }
        if not shown:
            return report
        customers = dataset.customers
        report["by_department"] = [
            {"department": name, **inside.cell(int((mask & customers.in_department(name)).sum()))}
            for name in customers.department_names.names
        ]
        report["by_rfm_segment"] = [
            {"segment": name, **inside.cell(int((mask & member).sum()))}
            for name, member in scores.rfm_segments().items()
        ]
        report["by_preferred_channel"] = [
            {"channel": name, **inside.cell(int((mask & member).sum()))}
            for name, member in scores.preferred_channels().items()
        ]
        value = scores.value()
        report["value"] = {
            "currency": self.model.base_currency,
            "revenue": round(float(value.revenue[mask].sum()), 2),
            "cost_to_serve": round(float(value.cost_to_serve[mask].sum()), 2),
            "profit": round(float(value.profit[mask].sum()), 2),
        }
        return report

    # -- analyses -------------------------------------------------------------------------------------

    def analyse(
        self,
        analysis: str,
        *,
        purpose: str = "analytics",
        segment: str | uuid.UUID | None = None,
        group_by: str = "rfm",
        as_of: datetime | None = None,
    ) -> dict[str, Any]:
        """One analysis over the consenting population (or a saved segment of it), on the history up to
        ``as_of`` (default now: a look back, for instance at data whose history ends in the past)."""
        if analysis not in ANALYSES:
            raise AnalyticsError(f"unknown analysis {analysis!r}; analyses: {', '.join(ANALYSES)}")
        if group_by not in GROUPINGS:
            raise AnalyticsError(f"group_by must be one of {', '.join(GROUPINGS)}")
        view = self.segment(segment) if segment is not None else None
        definition = self.parse(view.definition) if view is not None else None
        attributes = definition.needs().attributes if definition is not None else frozenset()
        dataset, scores = self.load(
            definition.purpose if definition else purpose, attributes=attributes, as_of=as_of
        )
        mask = definition.evaluate(dataset, scores) if definition else np.ones(dataset.size, dtype=bool)
        size = int(mask.sum())
        suppressor = Suppressor(self.model.min_group_size, size)
        currency = self.model.base_currency
        scope = dataset if definition is None else dataset.subset(mask)
        if analysis == "rfm":
            result = _restrict(scores.rfm(), mask).to_dict(suppressor, currency)
        elif analysis == "clv":
            result = _restrict(scores.clv(), mask).to_dict(suppressor, currency)
        elif analysis == "churn":
            churn = scores.churn()
            result = _restrict(churn, mask).to_dict(suppressor)
            groups = {name: member & mask for name, member in self._groups(group_by, dataset, scores).items()}
            result["by_group"] = {"group_by": group_by, "groups": churn.by_group(groups, suppressor)}
        elif analysis == "channels":
            result = _restrict(scores.channels(), mask).to_dict(suppressor)
        elif analysis == "profitability":
            value = scores.value()
            result = _restrict(value, mask).to_dict(suppressor, currency)
            groups = {name: member & mask for name, member in self._groups(group_by, dataset, scores).items()}
            result["by_group"] = {
                "group_by": group_by,
                "groups": value.by_group(groups, suppressor, currency),
            }
        else:
            result = purchase_patterns(scope, suppressor)
        record_now(self.db, self._run_event(dataset, analysis, view, size))
        return {
            "analysis": analysis,
            "purpose": dataset.purpose,
            "as_of": from_day(dataset.as_of).isoformat(),
            "segment": {"id": str(view.id), "name": view.name, "version": view.version} if view else None,
            "customers": suppressor.population_count(),
            "excluded_without_consent": dataset.excluded_without_consent,
            "unconverted_amounts": dataset.unconverted_amounts,
            "privacy": suppressor.describe(),
            "result": result,
        }

    def _groups(self, group_by: str, dataset: Dataset, scores: Scores) -> dict[str, NDArray[np.bool_]]:
        if group_by == "rfm":
            return dict(scores.rfm_segments())
        if group_by == "department":
            return {
                name: dataset.customers.in_department(name)
                for name in dataset.customers.department_names.names
            }
        if group_by == "channel":
            return dict(scores.preferred_channels())
        out = {}
        for view in self.segments():
            definition = self.parse(view.definition)
            if definition.purpose != dataset.purpose or definition.needs().attributes:
                continue  # evaluated on another population, or needs attributes this run did not load
            out[view.name] = definition.evaluate(dataset, scores)
        return out

    def chart(
        self,
        name: str,
        fmt: str,
        *,
        segment: str | uuid.UUID | None = None,
        group_by: str = "rfm",
        as_of: datetime | None = None,
    ) -> bytes:
        if name not in charts.CHARTS:
            raise AnalyticsError(f"unknown chart {name!r}; charts: {', '.join(charts.CHARTS)}")
        if fmt not in charts.FORMATS:
            raise AnalyticsError(f"format must be one of {', '.join(charts.FORMATS)}")
        k = self.model.min_group_size
        if name == "segment-sizes":
            if segment is None:
                raise AnalyticsError("the segment-sizes chart needs a segment")
            history = self.history(segment)
            return charts.segment_sizes(history["segment"]["name"], history["history"], fmt, k=k)
        if name == "clv-distribution":
            report = self.analyse("clv", segment=segment, as_of=as_of)
            return charts.clv_distribution(report["result"], fmt, k=k, population=report["customers"])
        if name == "churn-by-segment":
            report = self.analyse("churn", segment=segment, group_by=group_by, as_of=as_of)
            return charts.churn_by_segment(
                report["result"]["by_group"]["groups"],
                fmt,
                k=k,
                horizon_days=self.model.churn_horizon_days,
                population=report["customers"],
            )
        report = self.analyse("channels", segment=segment, as_of=as_of)
        return charts.channel_mix(report["result"], fmt, k=k, population=report["customers"])

    def _run_event(self, dataset: Dataset, analysis: str, view: SegmentView | None, size: int) -> AuditEvent:
        details: dict[str, Any] = {"analysis": analysis, "customers": size, "population": dataset.size}
        if view is not None:
            details.update(segment=str(view.id), segment_version=view.version)
        return AuditEvent("analytics.run", purpose=dataset.purpose, details=details)


def _restrict(result: Any, mask: NDArray[np.bool_]) -> Any:
    """The same result for the customers in ``mask`` only: every per-customer array field is filtered
    (fitted parameters and vocabularies are kept)."""
    if bool(mask.all()):
        return result
    n = mask.shape[0]
    changes = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
            changes[item.name] = value[mask]
    return dataclasses.replace(result, **changes)
