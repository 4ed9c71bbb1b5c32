from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Metric, Run, RunStatus, TrainingLoss, TrainingStepLoss
from backend.services import runs
from backend.services.run_logs import add_log
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
        "id",
        "experiment_id",
        "experiment_name",
        "preset",
        "algorithm",
        "seed",
        "status",
        "stage",
        "round",
        "total_rounds",
        "progress",
        "eta_s",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "config",
    }
    assert (run["experiment_name"], run["preset"], run["status"]) == ("e", "demo", "queued")
    assert run["created_at"].endswith("Z")  # UTC, even from SQLite


@pytest.mark.parametrize(
    "suffix", ["", "/metrics", "/metrics.csv", "/losses", "/steps", "/logs", "/logs.txt"]
)
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
                                run_id=run_id,
                                round=rnd,
                                stage="fl",
                                client=client,
                                task="digits",
                                model=model,
                                split="local",
                                metric="accuracy",
                                value=rnd / 10 + client,
                                n=50,
                            )
                        )
        session.add(
            TrainingLoss(
                run_id=run.id,
                stage="fl",
                round=1,
                client=0,
                model="global",
                task="digits",
                loss=2.5,
                steps=30,
            )
        )
        run.status = RunStatus.SUCCEEDED
        session.commit()
        return run.id


def test_metrics_of_a_run_come_in_series_order(api: Api, run_with_metrics: int) -> None:
    page = api.get(f"/api/v1/runs/{run_with_metrics}/metrics").json()
    assert page["total"] == 12  # the other run's rows are not included
    keys = [(m["client"], m["model"], m["round"]) for m in page["items"]]
    assert keys == sorted(keys)
    assert set(page["items"][0]) >= {
        "round",
        "stage",
        "client",
        "task",
        "model",
        "split",
        "metric",
        "value",
    }


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
            {
                "round": 1,
                "stage": "fl",
                "client": 0,
                "model": "global",
                "task": "digits",
                "loss": 2.5,
                "steps": 30,
            }
        ],
        "total": 1,
    }
    assert api.get(f"/api/v1/runs/{run_with_metrics}/losses", params={"client": 1}).json() == {
        "items": [],
        "total": 0,
    }


@pytest.fixture
def run_with_steps(api: Api, sessions: sessionmaker[Session]) -> int:
    """Two clients' stage 2: the teacher's task losses, the student's and its lambda x KD,
    two steps each; written in an order the API must not serve them in."""
    with sessions() as session:
        run, other = add_run(session), add_run(session)
        rows = [
            (client, model, step, term, task)
            for client in (1, 0)
            for model in ("global_ft", "final")
            for step in (2, 1)
            for term in (("kd", "task") if model == "final" else ("task",))
            for task in ("vqa", "cls")
        ]
        for run_id in (run.id, other.id):
            for client, model, step, term, task in rows:
                key = {"client": client, "model": model, "step": step, "term": term, "task": task}
                value = 1.0 / step if term == "task" else 0.001 * step
                session.add(
                    TrainingStepLoss(
                        run_id=run_id, stage="post", round=4, micro_batches=4, value=value, **key
                    )
                )
        session.commit()
        return run.id


def test_steps_of_a_run_come_by_client_model_step_term_and_task(
    api: Api, run_with_steps: int
) -> None:
    page = api.get(f"/api/v1/runs/{run_with_steps}/steps").json()
    assert page["total"] == 2 * (2 * 2 + 2 * 4)  # the other run's rows are not included
    keys = [(r["client"], r["model"], r["step"], r["term"], r["task"]) for r in page["items"]]
    assert keys[:6] == [
        (0, "final", 1, "kd", "cls"),
        (0, "final", 1, "kd", "vqa"),
        (0, "final", 1, "task", "cls"),
        (0, "final", 1, "task", "vqa"),
        (0, "final", 2, "kd", "cls"),
        (0, "final", 2, "kd", "vqa"),
    ]
    assert keys == sorted(keys)
    first = {"round": 4, "stage": "post", "client": 0, "model": "final", "step": 1}
    assert page["items"][0] == {
        **first,
        "micro_batches": 4,
        "term": "kd",
        "task": "cls",
        "value": 0.001,
    }


def test_steps_filter_by_client_model_term_and_task_and_page(api: Api, run_with_steps: int) -> None:
    url = f"/api/v1/runs/{run_with_steps}/steps"
    kd = api.get(url, params={"client": 1, "term": "kd", "task": "vqa"}).json()
    assert [(r["step"], r["value"]) for r in kd["items"]] == [(1, 0.001), (2, 0.002)]
    teacher = api.get(url, params={"model": "global_ft", "client": 0}).json()
    assert teacher["total"] == 4 and {r["term"] for r in teacher["items"]} == {"task"}
    assert api.get(url, params={"stage": "fl"}).json() == {"items": [], "total": 0}
    page = api.get(url, params={"limit": 5, "offset": 20}).json()
    assert page["total"] == 24 and len(page["items"]) == 4
    assert page["items"][-1]["client"] == 1 and page["items"][-1]["model"] == "global_ft"
    assert api.get(url, params={"limit": 0}).status_code == 422


def _claimed(sessions: sessionmaker[Session], run_id: int) -> None:
    with sessions() as session:
        owner = runs.Owner.current("worker-1")
        assert runs.claim_run(
            session, run_id, owner, task_id="t", heartbeat_timeout_s=60, max_recoveries=3
        )


def test_cancel_a_queued_run_at_once_and_a_running_one_after_its_step(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    experiment = api.post("/api/v1/experiments", json={"preset": "demo", "sweep": {"seed": [1, 2]}})
    queued, running = (r["id"] for r in experiment.json()["runs"])
    _claimed(sessions, running)

    response = api.post(f"/api/v1/runs/{queued}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["finished_at"]
    response = api.post(f"/api/v1/runs/{running}/cancel")
    assert response.json()["status"] == "cancelling" and response.json()["finished_at"] is None
    history = [(t["from_status"], t["to_status"]) for t in response.json()["transitions"]]
    assert history == [(None, "queued"), ("queued", "running"), ("running", "cancelling")]
    assert "cancel requested by admin" in response.json()["transitions"][-1]["reason"]
    assert api.post(f"/api/v1/runs/{running}/cancel").json()["status"] == "cancelling"


def test_cancel_or_retry_what_the_status_does_not_allow_is_a_409_saying_why(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    run_id = api.post("/api/v1/experiments", json={"preset": "demo"}).json()["runs"][0]["id"]
    response = api.post(f"/api/v1/runs/{run_id}/retry")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"run {run_id} is queued; only a failed or cancelled run can be retried"
    )
    with sessions() as session:
        session.get(Run, run_id).status = "succeeded"  # type: ignore[union-attr]
        session.commit()
    response = api.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 409 and "already succeeded" in response.json()["detail"]
    assert api.post("/api/v1/runs/4040/cancel").status_code == 404
    assert api.post("/api/v1/runs/4040/retry").status_code == 404


def test_retry_queues_a_cancelled_run_and_sends_it_again(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    run_id = api.post("/api/v1/experiments", json={"preset": "demo"}).json()["runs"][0]["id"]
    api.post(f"/api/v1/runs/{run_id}/cancel")
    response = api.post(f"/api/v1/runs/{run_id}/retry")
    assert response.status_code == 200
    run = response.json()
    assert run["status"] == "queued" and run["finished_at"] is None and run["error"] is None
    assert "resumes from its last checkpoint" in run["transitions"][-1]["reason"]
    assert api.queue_sent == [(run_id, "auto"), (run_id, "auto")]


def test_a_run_shows_each_clients_latest_losses_and_its_sweep_group(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    body = {"preset": "demo", "sweep": {"seed": [1, 2], "algorithm": ["fedavg", "local"]}}
    experiment = api.post("/api/v1/experiments", json=body).json()
    groups = {r["group_id"] for r in experiment["runs"]}
    assert len(groups) == 1
    assert sorted((r["sweep"]["seed"], r["sweep"]["algorithm"]) for r in experiment["runs"]) == [
        (1, "fedavg"),
        (1, "local"),
        (2, "fedavg"),
        (2, "local"),
    ]
    other = api.post("/api/v1/experiments", json={"preset": "demo"}).json()["runs"][0]
    assert other["group_id"] not in groups and other["sweep"] is None
    page = api.get("/api/v1/runs", params={"group_id": groups.pop()}).json()
    assert page["total"] == 4

    run_id = experiment["runs"][0]["id"]
    with sessions() as session:
        for rnd, client, loss in ((1, 0, 2.0), (2, 0, 1.5), (1, 1, 2.2), (3, 1, 1.1)):
            session.add(
                TrainingLoss(
                    run_id=run_id,
                    stage="fl",
                    round=rnd,
                    client=client,
                    model="global",
                    task="digits",
                    loss=loss,
                    steps=10,
                )
            )
        session.commit()
    latest = api.get(f"/api/v1/runs/{run_id}").json()["latest_losses"]
    assert [(x["client"], x["round"], x["loss"]) for x in latest] == [(0, 2, 1.5), (1, 3, 1.1)]


def test_logs_come_in_order_after_a_cursor_and_as_text(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    run_id = api.post("/api/v1/experiments", json={"preset": "demo"}).json()["runs"][0]["id"]
    with sessions() as session:
        for i in range(5):
            add_log(
                session,
                run_id,
                f"line {i}",
                level="WARNING" if i == 3 else "INFO",
                source="engine",
                attempt=1,
            )
        session.commit()
    page = api.get(f"/api/v1/runs/{run_id}/logs").json()
    assert page["total"] == 6  # the submission, then the five lines
    items = page["items"]
    assert "submitted by admin" in items[0]["message"] and items[0]["source"] == "api"
    assert [x["message"] for x in items[1:]] == [f"line {i}" for i in range(5)]
    assert set(items[0]) == {"seq", "time", "level", "source", "message"}
    seqs = [x["seq"] for x in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6

    after = api.get(f"/api/v1/runs/{run_id}/logs", params={"after": seqs[2], "limit": 2}).json()
    assert [x["message"] for x in after["items"]] == ["line 2", "line 3"]
    assert after["total"] == 3  # lines after the cursor, regardless of limit
    warnings = api.get(f"/api/v1/runs/{run_id}/logs", params={"level": "WARNING"}).json()
    assert [x["message"] for x in warnings["items"]] == ["line 3"]
    assert api.get(f"/api/v1/runs/{run_id}/logs", params={"level": "LOUD"}).status_code == 422

    text = api.get(f"/api/v1/runs/{run_id}/logs.txt")
    assert text.headers["content-type"].startswith("text/plain")
    lines = text.text.splitlines()
    assert len(lines) == 6 and lines[4].endswith("WARNING [engine] line 3")
    assert api.get("/api/v1/runs/999/logs").status_code == 404
