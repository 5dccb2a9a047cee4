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


def test_no_documentation_ui_is_served(client: FlaskClient) -> None:
    for path in ("/swagger-ui", "/redoc", "/rapidoc"):
        assert client.get(path).status_code == 404
