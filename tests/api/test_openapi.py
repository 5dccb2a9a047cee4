"""The OpenAPI document: 3.1, served without any UI, describing the probes and the problem shape."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_openapi_document_is_3_1_and_lists_the_probes(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec is not None
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "cdp"
    assert {"/", "/healthz", "/readyz"} <= spec["paths"].keys()


def test_openapi_documents_errors_as_problem_json(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec is not None
    not_ready = spec["paths"]["/readyz"]["get"]["responses"]["503"]
    assert "application/problem+json" in not_ready["content"]
    default_error = spec["components"]["responses"]["DEFAULT_ERROR"]
    assert list(default_error["content"]) == ["application/problem+json"]
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "request_id"} <= set(problem["required"])
    assert problem.get("additionalProperties") is not False, "problems may carry extension members"


def test_every_operation_documents_the_errors_any_call_can_get(client: FlaskClient) -> None:
    """401/403 (with the RFC 6750 challenge) on every protected operation and 503 (with Retry-After)
    everywhere, besides each operation's own; an operation's own 503 (readiness) is kept as it is."""
    spec = client.get("/openapi.json").json
    assert spec is not None
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert "503" in responses, f"{method} {path}"
            if operation.get("security"):
                assert {"401", "403"} <= set(responses), f"{method} {path}"
    profile = spec["paths"]["/v1/customers/{customer_id}"]["get"]["responses"]
    assert profile["401"] == {"$ref": "#/components/responses/TokenRejected"}
    assert profile["503"] == {"$ref": "#/components/responses/Unavailable"}
    rejected = spec["components"]["responses"]["TokenRejected"]
    assert rejected["headers"]["WWW-Authenticate"]["required"] is True
    assert "Retry-After" in spec["components"]["responses"]["Unavailable"]["headers"]
    assert "application/problem+json" in spec["paths"]["/readyz"]["get"]["responses"]["503"]["content"]


def test_only_the_self_hosted_reference_is_served_not_flask_smorests_cdn_pages(client: FlaskClient) -> None:
    for path in ("/swagger-ui", "/redoc", "/rapidoc"):
        assert client.get(path).status_code == 404
    assert client.get("/docs/").status_code == 200
