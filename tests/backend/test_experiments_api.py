from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Experiment, Run
from backend.services.dispatch import SOFT_LIMIT_SLACK_S
from backend.services.reconciler import reconcile_once
from backend.settings import Settings
from tap_engine.config import resolve_config
from tests.backend.conftest import Api

URL = "/api/v1/experiments"


def test_one_experiment_without_sweep_is_one_run_with_the_resolved_config(api: Api) -> None:
    body = {
        "name": "short",
        "preset": "demo",
        "overrides": {"rounds": 3, "backbone.tiny_hidden_size": 16},
    }
    response = api.post(URL, json=body)
    assert response.status_code == 201, response.text
    experiment = response.json()
    assert experiment["name"] == "short" and experiment["preset"] == "demo"
    assert experiment["owner"] == "admin"
    [run] = experiment["runs"]
    expected = resolve_config("demo", overrides={"rounds": 3, "backbone.tiny_hidden_size": 16})
    assert run["config"] == expected.model_dump(mode="json")
    assert run["status"] == "queued" and run["total_rounds"] == 3 and run["progress"] == 0
    assert run["experiment_id"] == experiment["id"] and run["experiment_name"] == "short"
    assert api.queue_sent == [(run["id"], "auto")]


def test_a_sweep_gives_one_run_per_combination(api: Api) -> None:
    body = {
        "preset": "demo",
        "algorithm": "local",
        "overrides": {"rounds": 2},
        "sweep": {
            "seed": [1, 2, 3],
            "algorithm": ["fedavg", "local"],
            "backbone.tiny_hidden_size": [8],
        },
    }
    response = api.post(URL, json=body)
    assert response.status_code == 201, response.text
    runs = response.json()["runs"]
    assert sorted((r["seed"], r["algorithm"]) for r in runs) == [
        (seed, algorithm) for seed in (1, 2, 3) for algorithm in ("fedavg", "local")
    ]
    assert {r["config"]["backbone"]["tiny_hidden_size"] for r in runs} == {8}
    assert {r["config"]["rounds"] for r in runs} == {2}
    assert sorted(run_id for run_id, _ in api.queue_sent) == sorted(r["id"] for r in runs)


def test_the_submitted_body_is_kept_as_the_experiment_spec(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    body = {"preset": "demo", "sweep": {"seed": [5, 6]}}
    experiment_id = api.post(URL, json=body).json()["id"]
    with sessions() as session:
        assert session.get(Experiment, experiment_id).spec == body  # type: ignore[union-attr]


def test_runs_asking_for_cuda_go_to_the_gpu_queue_device(api: Api) -> None:
    api.post(URL, json={"preset": "demo", "sweep": {"device": ["cuda", "cpu"]}})
    assert [device for _, device in api.queue_sent] == ["cuda", "cpu"]


def test_runs_the_queue_cannot_take_stay_queued_and_are_sent_once_it_answers(
    api: Api, sessions: sessionmaker[Session], settings: Settings
) -> None:
    api.queue.fail = True
    response = api.post(URL, json={"preset": "demo", "sweep": {"seed": [1, 2, 3]}})
    assert response.status_code == 201
    runs = response.json()["runs"]
    assert {run["status"] for run in runs} == {"queued"}  # stored: nothing is lost
    assert api.queue_sent == []
    logs = api.get(f"/api/v1/runs/{runs[2]['id']}/logs").json()["items"]
    assert "run queue is unreachable" in logs[-1]["message"]
    assert "Connection refused" in logs[-1]["message"] and logs[-1]["level"] == "WARNING"

    api.queue.fail = False
    settings.resend_after_s = 0.01
    time.sleep(0.02)
    with sessions() as session:
        report = reconcile_once(session, api.queue, settings)
    assert sorted(report.resent) == sorted(run["id"] for run in runs)
    assert sorted(run_id for run_id, _ in api.queue_sent) == sorted(run["id"] for run in runs)
    with sessions() as session:
        assert {session.get(Run, r["id"]).sent_at is not None for r in runs} == {True}  # type: ignore[union-attr]


def test_each_run_is_sent_with_its_time_limits(api: Api, settings: Settings) -> None:
    api.post(URL, json={"preset": "demo"})
    api.post(URL, json={"preset": "demo", "time_limit_s": 90})
    # Celery's soft limit is the backstop, a little after the run's own; the kill follows.
    grace, slack = settings.run_kill_grace_s, SOFT_LIMIT_SLACK_S
    default = settings.run_time_limit_s
    assert api.queue.limits == [
        (default + slack, default + slack + grace),
        (90 + slack, 90 + slack + grace),
    ]
    # Under the minimum, or a month (longer than the broker keeps a message).
    for bad in (0, 9.5, 30 * 24 * 3600):
        response = api.post(URL, json={"preset": "demo", "time_limit_s": bad})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "time_limit_s"]
    assert len(api.queue_sent) == 2


def _detail(api: Api, body: Any) -> list[dict[str, Any]]:
    response = api.post(URL, json=body)
    assert response.status_code == 422, response.text
    assert api.queue_sent == []
    return response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"preset": "nope"}, ["body", "preset"], "unknown preset 'nope'"),
        (
            {"preset": "demo", "overrides": {"rounds": 0}},
            ["body", "overrides", "rounds"],
            "greater than or equal to 1",
        ),
        (
            {"preset": "demo", "overrides": {"roundz": 3}},
            ["body", "overrides", "roundz"],
            "not permitted",
        ),
        (
            {"preset": "demo", "overrides": {"backbone.hidden_sise": 3}},
            ["body", "overrides", "backbone", "hidden_sise"],
            "not permitted",
        ),
        (
            {"preset": "demo", "overrides": {"rounds": "many"}},
            ["body", "overrides", "rounds"],
            "integer",
        ),
        (
            {"preset": "demo", "overrides": {"clients_per_round": 8}},
            ["body", "overrides", "clients_per_round"],
            "exceeds the scenario's 7 clients",
        ),
        (
            {"preset": "demo", "overrides": {"scenario.clients.9.tasks": []}},
            ["body", "overrides", "scenario", "clients", "9"],
            "out of range",
        ),
        (
            {
                "preset": "demo",
                "overrides": {"scenario": {"datasets": {"digits": {"source": "ftp"}}}},
            },
            ["body", "overrides", "scenario", "datasets", "digits", "source"],
            "'builtin', 'hub' or 'disk'",
        ),
        (
            {"preset": "demo", "algorithm": "tap2"},
            ["body", "algorithm"],
            "unknown algorithm 'tap2'",
        ),
        (
            {"preset": "demo", "overrides": {"margins.image_classification": -0.01}},
            ["body", "overrides", "margins", "image_classification"],
            "greater than or equal to 0",
        ),
        (
            {"preset": "demo", "sweep": {"margins.image_classification": [0.01, -1]}},
            ["body", "sweep", "margins.image_classification"],
            "greater than or equal to 0",
        ),
        (
            {"preset": "demo", "overrides": {"post_steps": 5}},
            ["body", "overrides", "post_steps"],
            "renamed post_iterations",
        ),
        ({"preset": "demo", "sweep": {"seed": [1, "x"]}}, ["body", "sweep", "seed"], "integer"),
        (
            {"preset": "demo", "sweep": {"clients_per_round": [2, 9]}},
            ["body", "sweep", "clients_per_round"],
            "exceeds",
        ),
    ],
)
def test_an_invalid_config_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], loc: list[str], words: str
) -> None:
    [error] = _detail(api, body)
    assert error["loc"] == loc
    assert words in error["msg"]
    assert {"type", "loc", "msg"} <= set(error)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "preset"]),
        ({"preset": 5}, ["body", "preset"]),
        ({"preset": "demo", "overrides": [1]}, ["body", "overrides"]),
        ({"preset": "demo", "sweep": {"seed": 41}}, ["body", "sweep", "seed"]),
        ({"preset": "demo", "sweep": {"seed": []}}, ["body", "sweep", "seed"]),
        ({"preset": "demo", "overide": {}}, ["body", "overide"]),
    ],
)
def test_a_malformed_body_is_fastapis_usual_422(
    api: Api, body: dict[str, Any], loc: list[str]
) -> None:
    assert [e["loc"] for e in _detail(api, body)] == [loc]


def test_a_sweep_reports_each_bad_value_once(api: Api) -> None:
    body = {"preset": "demo", "overrides": {"rounds": 0}, "sweep": {"seed": [1, 2, 3]}}
    assert [e["loc"] for e in _detail(api, body)] == [["body", "overrides", "rounds"]]


def test_a_sweep_too_large_for_one_experiment_is_refused(api: Api) -> None:
    body = {"preset": "demo", "sweep": {"seed": list(range(100)), "rounds": [1, 2, 3]}}
    [error] = _detail(api, body)
    assert error["loc"] == ["body", "sweep"] and "300 runs" in error["msg"]


def test_a_preset_path_is_not_read_from_the_servers_disk(api: Api, tmp_path: Any) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text("rounds: 1\n")
    [error] = _detail(api, {"preset": str(preset)})
    assert error["loc"] == ["body", "preset"]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413(api: Api, settings: Settings, declared: bool) -> None:
    big = b'{"preset": "demo", "name": "' + b"x" * settings.max_body_bytes + b'"}'
    if declared:
        response = api.post(URL, content=big, headers={"Content-Type": "application/json"})
    else:
        chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
        response = api.post(URL, content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert api.queue_sent == []


def test_experiments_are_listed_newest_first_with_their_runs(api: Api) -> None:
    first = api.post(URL, json={"preset": "demo", "name": "a"}).json()
    second = api.post(URL, json={"preset": "demo", "name": "b", "sweep": {"seed": [1, 2]}}).json()
    page = api.get(URL).json()
    assert page["total"] == 2
    assert [e["id"] for e in page["items"]] == [second["id"], first["id"]]
    assert [len(e["runs"]) for e in page["items"]] == [2, 1]
    page = api.get(URL, params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 2 and [e["name"] for e in page["items"]] == ["a"]
    assert api.get(f"{URL}/{second['id']}").json() == second


def test_an_unknown_experiment_is_404_naming_it(api: Api) -> None:
    response = api.get(f"{URL}/4242")
    assert response.status_code == 404
    assert "experiment 4242" in response.json()["detail"]


def test_presets_are_listed_with_a_description(api: Api) -> None:
    items = api.get("/api/v1/presets").json()["items"]
    demo = next(p for p in items if p["name"] == "demo")
    assert demo["description"] and demo["clients"] == 7 and demo["algorithm"] == "tap"


def test_the_openapi_document_shows_an_example_submission(api: Api) -> None:
    schema = api.client.get("/api/v1/openapi.json").json()
    body = schema["components"]["schemas"]["ExperimentCreate"]
    assert body["examples"][0]["preset"] == "demo"


PREVIEW = f"{URL}/preview"


def test_a_preview_counts_the_runs_and_resolves_the_first_config_without_storing_anything(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    body = {
        "preset": "demo",
        "overrides": {"rounds": 3, "margins.image_classification": 0.02},
        "sweep": {"seed": [41, 42], "algorithm": ["tap", "fedavg"]},
    }
    response = api.post(PREVIEW, json=body)
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["runs"] == 4
    assert preview["combinations"] == [
        {"seed": 41, "algorithm": "tap"},
        {"seed": 41, "algorithm": "fedavg"},
        {"seed": 42, "algorithm": "tap"},
        {"seed": 42, "algorithm": "fedavg"},
    ]
    first = {**body["overrides"], "seed": 41, "algorithm": "tap"}
    assert preview["config"] == resolve_config("demo", overrides=first).model_dump(mode="json")
    assert api.queue_sent == []
    with sessions() as session:
        assert session.query(Experiment).count() == 0 and session.query(Run).count() == 0


def test_a_preview_without_a_sweep_is_one_run_with_no_sweep_values(api: Api) -> None:
    preview = api.post(PREVIEW, json={"preset": "demo", "algorithm": "fedavg"}).json()
    assert preview["runs"] == 1 and preview["combinations"] == [{}]
    assert preview["config"]["algorithm"] == "fedavg"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"preset": "nope"}, ["body", "preset"]),
        ({"preset": "demo", "overrides": {"rounds": 0}}, ["body", "overrides", "rounds"]),
        ({"preset": "demo", "algorithm": "fedprox"}, ["body", "algorithm"]),
        (
            {"preset": "demo", "overrides": {"margins.text_generation": -1}},
            ["body", "overrides", "margins", "text_generation"],
        ),
        ({"preset": "demo", "sweep": {"seed": []}}, ["body", "sweep", "seed"]),
    ],
)
def test_a_preview_refuses_what_a_submission_refuses_with_the_same_422(
    api: Api, body: dict[str, Any], loc: list[str]
) -> None:
    previewed = api.post(PREVIEW, json=body)
    submitted = api.post(URL, json=body)
    assert previewed.status_code == submitted.status_code == 422
    assert previewed.json() == submitted.json()
    assert [e["loc"] for e in previewed.json()["detail"]] == [loc]
    assert api.queue_sent == []
