"""The OpenAPI document: an example on every endpoint, and a schemathesis run over all of
it (valid token, generated parameters and bodies) that must never get a 5xx."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from backend.main import app
from backend.settings import Settings
from tests.backend.conftest import Api

METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    ]


def test_every_endpoint_shows_an_example_answer(api: Api) -> None:
    document = api.client.get("/api/v1/openapi.json").json()
    missing = []
    for method, path, op in _operations(document):
        ok = [code for code in op["responses"] if code.startswith("2")]
        content = [c for code in ok for c in op["responses"][code].get("content", {}).values()]
        if not any("example" in c or "examples" in c for c in content) and ok != ["204"]:
            missing.append(f"{method.upper()} {path}")
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            ref = body["schema"].get("$ref", "")
            schema = document["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
            has = "examples" in schema or any(
                "examples" in p for p in schema.get("properties", {}).values()
            )
            if not has:
                missing.append(f"{method.upper()} {path} (request body)")
    assert missing == []
    assert len(_operations(document)) >= 20


def test_every_endpoint_but_health_declares_bearer_auth(api: Api) -> None:
    document = api.client.get("/api/v1/openapi.json").json()
    for method, path, op in _operations(document):
        if path.endswith("/health") or path.endswith("/openapi.json"):
            continue
        assert op.get("security") == [{"HTTPBearer": []}], f"{method} {path}"
        assert "401" in op["responses"], f"{method} {path}"


# Loading the document needs no database; the requests run once `api` has started the app
# (migrations, bootstrap token) on the test's database.
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure here is a bug, not a fluke
)
def test_no_generated_request_gets_a_server_error(
    case: Any, api: Api, settings: Settings, redis_url: str
) -> None:
    settings.redis_url = redis_url  # a real Redis: health answers 200, not its documented 503
    case.call_and_validate(headers=api.auth, checks=[not_a_server_error])
