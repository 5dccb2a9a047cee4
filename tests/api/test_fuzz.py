"""Schemathesis against the live app: every operation of the OpenAPI document, fed generated requests
(valid and invalid) with real tokens, must never answer 5xx and must answer only what its document says —
documented status codes, content types and response schemas — and reject schema-invalid input.

Tokens are real: client-credentials tokens from ``/oauth/token`` for a role that holds the operation's
scope (so generated input reaches the handler, not just the scope check) and for a role that does not
(the refusal must be documented too); the customer operations use a signed-in customer's token. Examples
are bounded (``CDP_FUZZ_EXAMPLES``, default 12 per operation and role) so the suite stays fast; ``make
fuzz`` runs the same test with many more.

``positive_data_acceptance`` (a request the schema allows must be accepted) holds for every operation
except those in :data:`RULES_BEYOND_THE_SCHEMA`: they validate more than a JSON schema can say (one of
several lookup keys, a time range's order, a purpose's own channels, a segment definition's grammar, a
source's own column mapping) and answer such requests 422 with a problem body on purpose — each with the
rule that a generated request can break. Any other operation rejecting schema-valid input fails here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from sqlalchemy import select

from api import create_app
from cdp.access.roles import ROLE_SCOPES, SERVICE_ROLES
from cdp.config import Settings
from cdp.db.models import SourceRecord
from cdp.platform import Platform
from tests.api.tokens import customer_token, service_token
from tests.profiles.fixtures import seed_customers

EXAMPLES = int(os.environ.get("CDP_FUZZ_EXAMPLES", "12"))
DEPARTMENT = {"department_agent": "sales"}
SKIPPED = {"GET /v1/dsr/downloads/{token}"}
"""A capability URL: generated tokens are all unknown (404, tested elsewhere)."""

_TIME_RANGE = "until must be later than since (a cross-field rule)"
RULES_BEYOND_THE_SCHEMA = {
    "GET /v1/audit/entries": _TIME_RANGE,
    "GET /v1/audit/export": _TIME_RANGE,
    "GET /v1/audit/reports/access": _TIME_RANGE,
    "GET /v1/me/access-log": _TIME_RANGE,
    "GET /v1/me/timeline": _TIME_RANGE,
    "POST /v1/analytics/segments": "a segment rule has exactly one operator (the definition's own grammar)",
    "POST /v1/analytics/segments/preview": "a segment rule has exactly one operator (its own grammar)",
    "POST /v1/customers/{customer_id}/consents": "each purpose takes only its own channels",
    "POST /v1/me/consents": "each purpose takes only its own channels",
    "POST /v1/customers/search": "give an email, a phone number or a last name (one of several keys)",
    "POST /v1/retention/holds": "exactly one of customer_id and record_id",
    "POST /v1/retention/holds/{hold_id}/release": "the reason has 3 to 300 characters once trimmed",
    "POST /v1/sources/{source}/records": "rows carry the source mapping's own columns",
    "POST /v1/sources/{source}/interactions": "rows carry the source mapping's own columns",
}
"""Operations exempt from ``positive_data_acceptance``, each with the rule beyond its JSON schema."""


def _operation_scopes() -> list[tuple[str, str | None]]:
    """(label, scope) of every operation, from the document of a throw-away app."""
    with tempfile.TemporaryDirectory() as tmp:
        platform, _ = Platform.initialize(Settings(data_dir=Path(tmp)))
        try:
            document = create_app(platform=platform).test_client().get("/openapi.json").get_json()
        finally:
            platform.close()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            security = operation.get("security") or []
            scope = security[0]["oauth2"][0] if security else None
            label = f"{method.upper()} {path}"
            if label not in SKIPPED:
                found.append((label, scope))
    return sorted(found)


OPERATIONS = _operation_scopes()


@dataclass
class Fuzzing:
    schema: schemathesis.schemas.BaseSchema
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def fuzzing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzing]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    platform, _ = Platform.initialize(Settings(data_dir=tmp_path / "cdp"))
    seed_customers(platform, tmp_path)
    app = create_app(platform=platform)
    client = app.test_client()
    tokens = {}
    for role in sorted(SERVICE_ROLES):
        tokens[role] = service_token(
            platform, client, role, department=DEPARTMENT.get(role), name=f"fuzz {role}"
        )
    with platform.db.read() as session:
        record_id = session.execute(select(SourceRecord.id).order_by(SourceRecord.id).limit(1)).scalar_one()
    tokens["customer"] = customer_token(platform, record_id)
    try:
        yield Fuzzing(schemathesis.openapi.from_wsgi("/openapi.json", app), tokens)
    finally:
        platform.close()


def test_every_exemption_from_positive_data_acceptance_names_a_real_operation() -> None:
    assert set(RULES_BEYOND_THE_SCHEMA) <= {label for label, _ in OPERATIONS}


def _roles(scope: str | None) -> list[str | None]:
    """A role holding the scope (customer for the self-service scopes), and one lacking it."""
    if scope is None:
        return [None]
    holding = next((r for r in sorted(SERVICE_ROLES) if scope in ROLE_SCOPES[r]), "customer")
    lacking = next(r for r in sorted(SERVICE_ROLES) if scope not in ROLE_SCOPES[r])
    return [holding, lacking]


CASES = [(label, role) for label, scope in OPERATIONS for role in _roles(scope)]


@pytest.mark.parametrize(("label", "role"), CASES, ids=[f"{label} as {role}" for label, role in CASES])
def test_generated_requests_get_documented_answers_and_no_server_error(
    fuzzing: Fuzzing, label: str, role: str | None
) -> None:
    method, path = label.split(" ", 1)
    operation = fuzzing.schema[path][method]
    headers = {"Authorization": f"Bearer {fuzzing.tokens[role]}"} if role else {}
    excluded = [positive_data_acceptance] if label in RULES_BEYOND_THE_SCHEMA else []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    run()
