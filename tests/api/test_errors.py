"""Every failure is an RFC 9457 problem, and none of them leaks what the request was processing.

Routes that fail on purpose are registered here, on the test's own app, never in the product code.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import marshmallow as ma
import psycopg
import pytest
import sqlalchemy.exc
from flask import Flask, abort
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api.smorest import Blueprint
from cdp.errors import DatabaseUnavailable

PROBLEM_JSON = "application/problem+json"
REQUIRED_MEMBERS = {"type", "title", "status", "detail", "instance", "request_id"}
FAKE_EMAIL = "jane.doe@example.com"


class SignupSchema(ma.Schema):
    email = ma.fields.Email(required=True)
    age = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0))


@pytest.fixture
def failing_client(app: Flask) -> FlaskClient:
    blp = Blueprint("test_only", __name__, url_prefix="/_test")

    @blp.route("/signup", methods=["POST"])
    @blp.arguments(SignupSchema)
    def signup(payload: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    @blp.route("/crash")
    def crash() -> str:
        raise RuntimeError(f"could not match customer {FAKE_EMAIL}")

    @blp.route("/database-down")
    def database_down() -> str:
        raise DatabaseUnavailable("cannot connect to database postgresql://cdp:***@db.internal:5432/cdp")

    @blp.route("/connection-lost")
    def connection_lost() -> str:
        raise sqlalchemy.exc.OperationalError(
            "SELECT * FROM subject WHERE email = " + repr(FAKE_EMAIL),  # noqa: S608 - never executed
            {},
            Exception("server closed the connection"),
        )

    @blp.route("/driver-connection-lost/<driver>")
    def driver_connection_lost(driver: str) -> str:
        if driver == "psycopg":
            raise psycopg.OperationalError(
                f"terminating connection due to administrator command {FAKE_EMAIL}"
            )
        raise sqlite3.OperationalError(f"database is locked {FAKE_EMAIL}")

    @blp.route("/abort/<int:status>")
    def abort_with(status: int) -> str:
        abort(status)

    app.register_blueprint(blp)
    return app.test_client()


def problem(response: TestResponse) -> dict[str, Any]:
    assert response.mimetype == PROBLEM_JSON
    body = response.json
    assert isinstance(body, dict)
    assert body.keys() >= REQUIRED_MEMBERS
    assert body["status"] == response.status_code
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_unknown_path_is_a_404_problem(client: FlaskClient) -> None:
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    body = problem(response)
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert body["instance"] == "/no/such/thing"
    assert body["detail"]


def test_wrong_method_is_a_405_problem_that_lists_the_allowed_methods(client: FlaskClient) -> None:
    response = client.delete("/healthz")
    assert response.status_code == 405
    body = problem(response)
    assert body["title"] == "Method Not Allowed"
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_a_413_problem(failing_client: FlaskClient) -> None:
    response = failing_client.post(
        "/_test/signup", data=b"x" * (2 * 1024 * 1024), content_type="application/json"
    )
    assert response.status_code == 413
    assert problem(response)["title"] == "Request Entity Too Large"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 415, 503])
def test_plain_http_errors_are_about_blank_problems_titled_by_status(
    failing_client: FlaskClient, status: int
) -> None:
    response = failing_client.get(f"/_test/abort/{status}")
    assert response.status_code == status
    body = problem(response)
    assert body["type"] == "about:blank"
    assert body["instance"] == f"/_test/abort/{status}"


def test_validation_error_is_a_422_problem_with_field_errors(failing_client: FlaskClient) -> None:
    response = failing_client.post("/_test/signup", json={"email": "not-an-email", "age": -1})
    assert response.status_code == 422
    body = problem(response)
    assert body["type"] == "https://cdp.example/problems/validation-error"
    assert set(body["errors"]["json"]) == {"email", "age"}
    assert all(isinstance(m, str) for messages in body["errors"]["json"].values() for m in messages)


def test_malformed_json_is_a_400_problem(failing_client: FlaskClient) -> None:
    response = failing_client.post("/_test/signup", data=b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert problem(response)["errors"] == {"json": ["Invalid JSON body."]}


def test_unexpected_exception_is_a_generic_500_that_leaks_no_personal_data(
    failing_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = failing_client.get("/_test/crash", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    body = problem(response)
    assert body["title"] == "Internal Server Error"
    assert FAKE_EMAIL not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)
    assert FAKE_EMAIL not in caplog.text
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged, "the failure must still be logged for operators"
    assert "RuntimeError" in logged[0].getMessage()
    assert "trace-500" in logged[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records), "a traceback would carry the message"


def test_database_unavailable_is_a_503_problem_without_connection_details(
    failing_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = failing_client.get("/_test/database-down")
    assert response.status_code == 503
    body = problem(response)
    assert body["type"] == "https://cdp.example/problems/database-unavailable"
    assert "db.internal" not in response.get_data(as_text=True)
    assert "db.internal" not in caplog.text


@pytest.mark.parametrize("driver", ["psycopg", "sqlite3"])
def test_a_driver_error_on_a_raw_cursor_is_the_same_retryable_503(
    failing_client: FlaskClient, caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    """The audit append writes through the driver's own cursor (Database.raw_write), whose errors
    SQLAlchemy does not wrap: a restart hitting it must not be a 500 either."""
    response = failing_client.get(f"/_test/driver-connection-lost/{driver}")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert problem(response)["type"] == "https://cdp.example/problems/database-unavailable"
    assert FAKE_EMAIL not in response.get_data(as_text=True) and FAKE_EMAIL not in caplog.text


def test_a_connection_lost_mid_request_is_a_retryable_503_without_the_statement(
    failing_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A database restart or failover surfaces as OperationalError: transient, so 503 + Retry-After
    (bench/load --restart-postgres-after shows the server serving again the moment it is back)."""
    response = failing_client.get("/_test/connection-lost")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    body = problem(response)
    assert body["type"] == "https://cdp.example/problems/database-unavailable"
    assert FAKE_EMAIL not in response.get_data(as_text=True) and FAKE_EMAIL not in caplog.text
    assert "SELECT" not in response.get_data(as_text=True)
