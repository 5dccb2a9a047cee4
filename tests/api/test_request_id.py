"""Request ids: a well-formed incoming id is kept for correlation, anything else is replaced."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

GENERATED = re.compile(r"[0-9a-f]{32}")


def test_valid_incoming_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "lb-01.Abc_123-xyz"})
    assert response.headers["X-Request-ID"] == "lb-01.Abc_123-xyz"


def test_request_id_is_generated_when_none_is_sent(client: FlaskClient) -> None:
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert GENERATED.fullmatch(first)
    assert first != second


@pytest.mark.parametrize(
    "incoming",
    ["has spaces", "x" * 65, "y" * 200, "<script>", "a;b", "é", ""],
    ids=["spaces", "65-chars", "200-chars", "markup", "semicolon", "non-ascii", "empty"],
)
def test_malformed_request_id_is_replaced(client: FlaskClient, incoming: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


def test_problem_body_carries_the_same_request_id(client: FlaskClient) -> None:
    response = client.get("/missing", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.json is not None
    assert response.json["request_id"] == "abc-123"
