from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Metric, RunStatus, TrainingLoss
from tests.backend.conftest import Api, add_run


def test_runs_are_listed_newest_first_and_filter_by_experiment_and_status(api: Api) -> None:
    one = api.post("/api/v1/experiments", json={"preset": "demo"}).json()
    two = api.post("/api/v1/experiments", json={"preset": "demo", "sweep": {"seed": [1, 2]}}).json()
    page = api.get("/api/v1/runs").json()
    ids = [r["id"] for r in page["items"]]
    assert page["total"] == 3 and ids == sorted(ids, reverse=True)
    by_experiment = api.get("/api/v1/runs", params={"experiment_id": two["id"]}).json()
    assert {r["id"] for r in by_experiment["items"]} == {r["id"] for r in two["runs"]}
    assert api.get("/api/v1/runs", params={"status": "running"}).json() == {"items": [], "total": 0}
    assert api.get("/api/v1/runs", params={"status": "queued"}).json()["total"] == 3
    assert api.get("/api/v1/runs", params={"status": "bogus"}).status_code == 422
    paged = api.get("/api/v1/runs", params={"limit": 1, "offset": 2}).json()
    assert paged["total"] == 3 and [r["id"] for r in paged["items"]] == [one["runs"][0]["id"]]


def test_a_run_shows_its_experiment_progress_and_config(api: Api) -> None:
    experiment = api.post("/api/v1/experiments", json={"name": "e", "preset": "demo"}).json()
    run = api.get(f"/api/v1/runs/{experiment['runs'][0]['id']}").json()
    assert set(run) >= {
        "id", "experiment_id", "experiment_name", "preset", "algorithm", "seed", "status",
        "stage", "round", "total_rounds", "progress", "eta_s", "error", "created_at",
        "started_at", "finished_at", "config",
    }  # fmt: skip
    assert (run["experiment_name"], run["preset"], run["status"]) == ("e", "demo", "queued")
    assert run["created_at"].endswith("Z")  # UTC, even from SQLite


@pytest.mark.parametrize("suffix", ["", "/metrics", "/metrics.csv", "/losses"])
def test_an_unknown_run_is_404_naming_it(api: Api, suffix: str) -> None:
    response = api.get(f"/api/v1/runs/777{suffix}")
    assert response.status_code == 404
    assert response.json()["detail"] == "run 777 not found"


@pytest.fixture
def run_with_metrics(api: Api, sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        run = add_run(session)
        other = add_run(session)
        for run_id in (run.id, other.id):
            for rnd in (1, 2, 3):
                for client in (0, 1):
                    for model in ("global", "personal"):
                        session.add(
                            Metric(
                                run_id=run_id, round=rnd, stage="fl", client=client,
                                task="digits", model=model, split="local", metric="accuracy",
                                value=rnd / 10 + client, n=50,
                            )
                        )  # fmt: skip
        session.add(
            TrainingLoss(run_id=run.id, stage="fl", round=1, client=0, model="global",
                         task="digits", loss=2.5, steps=30)
        )  # fmt: skip
        run.status = RunStatus.SUCCEEDED
        session.commit()
        return run.id


def test_metrics_of_a_run_come_in_series_order(api: Api, run_with_metrics: int) -> None:
    page = api.get(f"/api/v1/runs/{run_with_metrics}/metrics").json()
    assert page["total"] == 12  # the other run's rows are not included
    keys = [(m["client"], m["model"], m["round"]) for m in page["items"]]
    assert keys == sorted(keys)
    assert set(page["items"][0]) >= {
        "round", "stage", "client", "task", "model", "split", "metric", "value",
    }  # fmt: skip


def test_metrics_filter_by_field_and_round_range(api: Api, run_with_metrics: int) -> None:
    url = f"/api/v1/runs/{run_with_metrics}/metrics"
    params = {"client": 1, "model": "personal", "round_min": 2, "round_max": 3}
    page = api.get(url, params=params).json()
    assert page["total"] == 2
    assert [(m["round"], m["value"]) for m in page["items"]] == [(2, 1.2), (3, 1.3)]
    assert api.get(url, params={"metric": "f1"}).json()["total"] == 0
    assert api.get(url, params={"split": "local", "task": "digits"}).json()["total"] == 12
    assert api.get(url, params={"stage": "post"}).json()["total"] == 0
    page = api.get(url, params={"limit": 5, "offset": 10}).json()
    assert page["total"] == 12 and len(page["items"]) == 2


def test_metrics_csv_has_the_same_rows_as_json(api: Api, run_with_metrics: int) -> None:
    url = f"/api/v1/runs/{run_with_metrics}/metrics"
    params = {"client": 0, "round_max": 2}
    response = api.get(f"{url}.csv", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    items = api.get(url, params=params).json()["items"]
    assert len(rows) == len(items) == 4
    assert [(int(r["round"]), r["model"], float(r["value"])) for r in rows] == [
        (m["round"], m["model"], m["value"]) for m in items
    ]


def test_losses_of_a_run(api: Api, run_with_metrics: int) -> None:
    page = api.get(f"/api/v1/runs/{run_with_metrics}/losses").json()
    assert page == {
        "items": [
            {"round": 1, "stage": "fl", "client": 0, "model": "global", "task": "digits",
             "loss": 2.5, "steps": 30}
        ],
        "total": 1,
    }  # fmt: skip
    assert api.get(f"/api/v1/runs/{run_with_metrics}/losses", params={"client": 1}).json() == {
        "items": [],
        "total": 0,
    }
