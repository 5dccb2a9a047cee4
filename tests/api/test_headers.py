"""Security headers on every response, successful or not."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/openapi.json", "/does-not-exist"])
def test_security_headers_are_on_every_response(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name


def test_security_headers_are_on_method_errors(client: FlaskClient) -> None:
    response = client.post("/healthz")
    assert response.status_code == 405
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
