"""Service index, liveness and readiness: the probes an orchestrator or load balancer polls.

They expose no customer data and need no credentials. Readiness says *which* dependency is failing,
never how it is configured: no URLs, hosts, paths or key material.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import marshmallow as ma
from sqlalchemy.exc import SQLAlchemyError

import cdp
from api.context import current_platform
from api.errors import NOT_READY, PROBLEM_JSON, Problem, ProblemSchema
from api.smorest import Blueprint
from cdp.db.migrate import current_revision, head_revision
from cdp.errors import CdpError
from cdp.platform import Platform

logger = logging.getLogger(__name__)

blp = Blueprint("health", __name__, description="Service index and health probes")


class LinksSchema(ma.Schema):
    openapi = ma.fields.String(required=True)
    api_reference = ma.fields.String(
        required=True,
        metadata={"description": "Interactive API reference (Swagger UI) over the OpenAPI document"},
    )
    health = ma.fields.String(required=True)
    ready = ma.fields.String(required=True)
    privacy_center = ma.fields.String(required=True, metadata={"description": "Customers' web app"})
    department_view = ma.fields.String(required=True, metadata={"description": "Staff's web app"})
    compliance_console = ma.fields.String(
        required=True, metadata={"description": "Compliance officers' and DPOs' web app"}
    )


class IndexSchema(ma.Schema):
    service = ma.fields.String(required=True)
    version = ma.fields.String(required=True)
    links = ma.fields.Nested(LinksSchema, required=True)


class LivenessSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})


class ReadinessSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ready"})
    database = ma.fields.String(required=True, metadata={"example": "ok"})
    schema_revision = ma.fields.String(
        required=True, data_key="schema", metadata={"description": "Migration revision of the database"}
    )
    keyring = ma.fields.String(required=True, metadata={"example": "ok"})


class NotReadyProblemSchema(ProblemSchema):
    checks = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "Each check (database, schema, keyring): ok, failed or skipped"},
    )


@functools.cache
def _head_revision() -> str | None:
    # The migration scripts ship with the code, so the head cannot change while the process runs;
    # parsing them on every probe would be wasted work.
    return head_revision()


@dataclass
class Readiness:
    checks: dict[str, str] = field(
        default_factory=lambda: {"database": "skipped", "schema": "skipped", "keyring": "skipped"}
    )
    problems: list[str] = field(default_factory=list)
    revision: str | None = None

    @property
    def ready(self) -> bool:
        return not self.problems


def _failed(report: Readiness, check: str, reason: str, exc: BaseException | None = None) -> None:
    report.checks[check] = "failed"
    report.problems.append(reason)
    # CdpError messages are written for operators and carry no PII or passwords (cdp/errors.py);
    # anything else is named by class only.
    cause = str(exc) if isinstance(exc, CdpError) else type(exc).__name__ if exc else reason
    logger.warning("readiness check %s failed: %s", check, cause)


def check_readiness(platform: Platform) -> Readiness:
    """Run every check, so one probe reports all that is wrong rather than the first thing."""
    report = Readiness()
    try:
        platform.db.ping()
    except (CdpError, SQLAlchemyError, OSError) as exc:
        _failed(report, "database", "the database is unreachable", exc)
    else:
        report.checks["database"] = "ok"
        try:
            revision = current_revision(platform.db)
        except SQLAlchemyError as exc:
            _failed(report, "schema", "the schema revision cannot be read", exc)
        else:
            head = _head_revision()
            if revision == head:
                report.checks["schema"] = "ok"
                report.revision = revision
            else:
                _failed(report, "schema", f"the schema is at revision {revision}, expected {head}")
    try:
        platform.vault.keks.active_version()
    except (CdpError, OSError) as exc:
        _failed(report, "keyring", "the keyring is unusable", exc)
    else:
        report.checks["keyring"] = "ok"
    return report


@blp.route("/")
@blp.response(200, IndexSchema)
def index() -> dict[str, object]:
    """Service index.

    Points clients at the API description, the probes and the web apps, so none of them needs
    hard-coding.
    """
    return {
        "service": "cdp",
        "version": cdp.__version__,
        "links": {
            "openapi": "/openapi.json",
            "api_reference": "/docs/",
            "health": "/healthz",
            "ready": "/readyz",
            "privacy_center": "/privacy/",
            "department_view": "/staff/",
            "compliance_console": "/console/",
        },
    }


@blp.route("/healthz")
@blp.response(200, LivenessSchema)
def healthz() -> dict[str, str]:
    """Liveness probe.

    Answers while the process can serve requests. It does no I/O on purpose: a slow or down database
    must make the service unready, not get healthy workers restarted.
    """
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadinessSchema)
@blp.alt_response(
    503,
    schema=NotReadyProblemSchema,
    content_type=PROBLEM_JSON,
    description="A dependency is failing; `checks` names which",
)
def readyz() -> dict[str, str | None]:
    """Readiness probe.

    Ready means requests can succeed: the database answers, its schema is at this code's head
    revision and the keyring yields an active key. Otherwise a 503 problem names the failing checks.
    """
    report = check_readiness(current_platform())
    if not report.ready:
        raise Problem(
            503,
            type=NOT_READY,
            title="Service not ready",
            detail="Not ready: " + "; ".join(report.problems) + ".",
            extensions={"checks": report.checks},
        )
    return {"status": "ready", "database": "ok", "schema_revision": report.revision, "keyring": "ok"}
