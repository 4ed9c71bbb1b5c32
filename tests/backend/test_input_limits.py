"""Inputs past a documented limit are a 422 naming the field, never a 500 nor a run that
fails (or succeeds meaninglessly) later; ids are never handed out twice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.schemas import MAX_RUNS_PER_EXPERIMENT
from backend.services.dispatch import SOFT_LIMIT_SLACK_S
from backend.settings import MIN_RUN_TIME_LIMIT_S
from tap_engine.config import MAX_DESCRIPTION_CHARS
from tests.backend.conftest import Api

URL = "/api/v1/experiments"
NAN = float("nan")


def _refused(api: Api, body: Any, url: str = URL) -> list[dict[str, Any]]:
    # Python's json writes NaN and Infinity, as a client's might; the API must answer them.
    response = api.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert api.queue_sent == []
    return response.json()["detail"]


def _overrides(**values: Any) -> dict[str, Any]:
    return {"preset": "demo", "overrides": values}


@pytest.mark.parametrize(
    ("overrides", "loc", "words"),
    [
        ({"rounds": 10**30}, ["rounds"], "less than or equal to 100000"),
        ({"rounds": 2**31}, ["rounds"], "less than or equal to 100000"),
        ({"seed": 2**63}, ["seed"], "less than or equal to 2147483647"),
        ({"seed": -1}, ["seed"], "greater than or equal to 0"),
        ({"peak_lr": NAN}, ["peak_lr"], "finite number"),
        ({"peak_lr": "inf"}, ["peak_lr"], "finite number"),
        ({"margins.image_classification": NAN}, ["margins", "image_classification"], "finite"),
        ({"backbone.tiny_hidden_size": 10**6}, ["backbone", "tiny_hidden_size"], "4096"),
        ({"batch_size": 10**9}, ["batch_size"], "65536"),
        ({"description": "x" * (MAX_DESCRIPTION_CHARS + 1)}, ["description"], "at most 2000"),
        ({"name": "n" * 501}, ["name"], "at most 500 characters"),
        (
            {"scenario.datasets.digits.source": "hub", "scenario.datasets.digits.name": "/var"},
            ["scenario", "datasets", "digits", "name"],
            "not a hub dataset id",
        ),
        (
            {"scenario.datasets.digits.source": "hub", "scenario.datasets.digits.name": "a/../b"},
            ["scenario", "datasets", "digits", "name"],
            "not a hub dataset id",
        ),
        (
            {"scenario.datasets.digits.path": "/data/digits"},
            ["scenario", "datasets", "digits", "path"],
            "builtin dataset",
        ),
    ],
)
def test_a_setting_out_of_its_bounds_is_a_422_naming_its_path(
    api: Api, overrides: dict[str, Any], loc: list[str], words: str
) -> None:
    [error] = _refused(api, _overrides(**overrides))
    assert error["loc"] == ["body", "overrides", *loc]
    assert words in error["msg"]


def test_a_number_json_cannot_hold_is_refused_as_written(api: Api) -> None:
    # 1e400 reads as infinity; the 422 still is valid JSON, the input written as a string.
    body = '{"preset": "demo", "overrides": {"kd_lambda": 1e400}}'
    response = api.post(URL, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "overrides", "kd_lambda"] and error["input"] == "inf"


@pytest.mark.parametrize("limit", [NAN, 0.01, MIN_RUN_TIME_LIMIT_S - 0.5])
def test_a_time_limit_under_the_minimum_or_not_a_number_is_refused(api: Api, limit: float) -> None:
    [error] = _refused(api, {"preset": "demo", "time_limit_s": limit})
    assert error["loc"] == ["body", "time_limit_s"]


def test_the_minimum_time_limit_itself_is_accepted(api: Api) -> None:
    response = api.post(URL, json={"preset": "demo", "time_limit_s": MIN_RUN_TIME_LIMIT_S})
    assert response.status_code == 201, response.text
    assert api.queue.limits[0][0] == MIN_RUN_TIME_LIMIT_S + SOFT_LIMIT_SLACK_S


@pytest.mark.parametrize("url", [URL, f"{URL}/preview"])
def test_a_sweep_is_sized_from_its_axes_before_any_run_is_built(api: Api, url: str) -> None:
    # 160^3 = 4,096,000 combinations in a 2 KB body: refused from the three lengths.
    values = list(range(160))
    body = {"preset": "demo", "sweep": {"seed": values, "rounds": values, "eval_every": values}}
    [error] = _refused(api, body, url)
    assert error["loc"] == ["body", "sweep"]
    assert error["msg"] == (
        f"the sweep gives 160 x 160 x 160 = 4096000 runs; at most {MAX_RUNS_PER_EXPERIMENT} "
        "fit in one experiment"
    )


def test_a_request_field_of_the_wrong_json_type_is_refused_not_coerced(api: Api) -> None:
    [error] = _refused(api, {"preset": "demo", "time_limit_s": "60"})
    assert error["loc"] == ["body", "time_limit_s"]
    response = api.post("/api/v1/users", json={"name": "ada", "admin": 0})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "admin"]


def test_every_request_body_example_of_the_document_is_accepted(api: Api) -> None:
    document = api.client.get("/api/v1/openapi.json").json()
    [example] = document["components"]["schemas"]["ExperimentCreate"]["examples"]
    response = api.post(f"{URL}/preview", json=example)
    assert response.status_code == 200, response.text
    assert response.json()["runs"] == 4


def test_ids_are_never_reused_after_a_delete(api: Api) -> None:
    def submit() -> tuple[int, int]:
        experiment = api.post(URL, json={"preset": "demo"}).json()
        return experiment["id"], experiment["runs"][0]["id"]

    experiment_id, run_id = submit()
    assert api.post(f"/api/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
    deleted = api.client.delete(f"{URL}/{experiment_id}", headers=api.auth)
    assert deleted.status_code == 204
    # The deleted experiment was the newest: SQLite without AUTOINCREMENT reused its ids.
    assert submit() == (experiment_id + 1, run_id + 1)


def test_a_405_lists_every_method_of_the_path(api: Api) -> None:
    response = api.client.put(URL, headers=api.auth)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    response = api.client.get(f"{URL}/preview", headers=api.auth)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
