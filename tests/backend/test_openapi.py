"""The OpenAPI document: an example on every endpoint, and a schemathesis run over all of
it (valid token, generated parameters and bodies) with every check it has: the API answers
exactly as the document says."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy.orm import Session, sessionmaker

from backend.main import app
from backend.models import utcnow
from backend.services.events import record_event
from backend.settings import Settings
from tap_engine import events as ev
from tests.backend.conftest import Api, add_run

METHODS = {"get", "post", "put", "patch", "delete"}
# Per operation and database: enough to reach every check, small enough for CI.
EXAMPLES = 10


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
# A body's `overrides` and `sweep` name fields of the preset's config, which no JSON schema
# of the request can list, and /compare takes `runs` or `group`, a rule between parameters
# the document gives in words: a body or query the schema allows may still name a field the
# config lacks, or both, and gets the documented 422 saying which.
SEMANTIC_422 = """
[[operations]]
include-name = ["POST /api/v1/experiments", "POST /api/v1/experiments/preview",
                "GET /api/v1/compare"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""
schema = schemathesis.openapi.from_asgi(
    "/api/v1/openapi.json",
    app,
    config=schemathesis.config.SchemathesisConfig.from_str(SEMANTIC_422),
)
# The token goes in with every request (below); schemathesis does not drop or vary it, which
# would make a valid request of a "negative" one. `ignored_auth` still tries without it.
schema.config.generation.update(with_security_parameters=False)


@pytest.fixture
def finished_run(api: Api, sessions: sessionmaker[Session]) -> int:
    """Run 1, ended, with a row of every kind, one of them a loss that overflowed: the ids
    schemathesis generates start at the lowest, so the answers it checks hold real rows."""
    with sessions() as session:
        run = add_run(session)
        run.status, run.finished_at = "succeeded", utcnow()
        events = [
            ev.Evaluation(
                round=1, stage="fl", client=0, task="digits", model="global", split="local",
                metric="accuracy", value=0.5, n=8,
            ),
            ev.LocalTraining(
                round=1, client=0, model="personal", steps=2, losses={"digits": float("inf")}
            ),
            ev.TrainingStep(
                round=1, stage="post", client=0, model="final", step=1, micro_batches=1,
                losses={"digits": 0.7},
            ),
            ev.Replacement(
                round=1, client=0, task="digits", global_loss=0.9,
                personal_loss=float("inf"), margin=0.01, parameters_copied=10,
            ),
        ]  # fmt: skip
        for event in events:
            record_event(session, run.id, event)
        session.commit()
        return run.id


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure here is a bug, not a fluke
)
def test_the_api_does_what_its_document_says(
    case: Any, api: Api, settings: Settings, redis_url: str, finished_run: int
) -> None:
    """Every check schemathesis has (status codes, response schemas and headers, negative
    and positive data, Allow on 405, auth), on SQLite and on PostgreSQL."""
    settings.redis_url = redis_url  # a real Redis: health answers 200, not its documented 503
    case.call_and_validate(headers=api.auth)
