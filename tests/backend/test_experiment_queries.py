"""Listing experiments by owner, run status, algorithm, preset and text; deleting one with
everything its runs wrote."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import (
    Metric,
    Replacement,
    Run,
    RunLog,
    RunStatus,
    RunTransition,
    TrainingLoss,
    TrainingStepLoss,
)
from backend.settings import Settings
from tests.backend.conftest import Api

URL = "/api/v1/experiments"


def _names(api: Api, **params: object) -> list[str]:
    response = api.get(URL, params=params)
    assert response.status_code == 200, response.text
    return [e["name"] for e in response.json()["items"]]


def test_experiments_filter_by_owner_status_algorithm_preset_and_text(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    token = api.post("/api/v1/users", json={"name": "bob"}).json()["token"]
    api.post(URL, json={"name": "tap margin study", "preset": "demo", "algorithm": "tap"})
    api.post(
        URL,
        json={
            "name": "Baselines 50%",
            "preset": "demo",
            "sweep": {"algorithm": ["fedavg", "local"]},
        },
    )
    bobs = api.client.post(
        URL, headers={"Authorization": f"Bearer {token}"}, json={"name": "bob's", "preset": "demo"}
    ).json()
    with sessions() as session:
        run = session.get(Run, bobs["runs"][0]["id"])
        assert run is not None
        run.status = RunStatus.FAILED
        session.commit()

    assert _names(api) == ["bob's", "Baselines 50%", "tap margin study"]
    assert _names(api, owner="bob") == ["bob's"]
    assert _names(api, owner="admin") == ["Baselines 50%", "tap margin study"]
    assert _names(api, status="failed") == ["bob's"]
    assert _names(api, status="queued") == ["Baselines 50%", "tap margin study"]
    assert _names(api, algorithm="local") == ["Baselines 50%"]
    assert _names(api, algorithm="local", owner="bob") == []
    assert _names(api, preset="demo", q="MARGIN") == ["tap margin study"]
    assert _names(api, q="50%") == ["Baselines 50%"]  # % is a character, not a wildcard
    assert _names(api, q="5_%") == []
    assert api.get(URL, params={"status": "lost"}).status_code == 422
    page = api.get(URL, params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and [e["name"] for e in page["items"]] == ["Baselines 50%"]
    filtered = api.get(URL, params={"status": "queued", "limit": 1}).json()
    assert filtered["total"] == 2 and len(filtered["items"]) == 1


def test_deleting_an_experiment_removes_its_runs_rows_and_directories(
    api: Api, sessions: sessionmaker[Session], settings: Settings
) -> None:
    doomed = api.post(URL, json={"preset": "demo", "sweep": {"seed": [1, 2]}}).json()
    kept = api.post(URL, json={"preset": "demo"}).json()
    run_ids = [r["id"] for r in doomed["runs"]]
    with sessions() as session:
        for run_id in [*run_ids, kept["runs"][0]["id"]]:
            session.get(Run, run_id).status = RunStatus.CANCELLED  # type: ignore[union-attr]
            session.add(
                Metric(
                    run_id=run_id,
                    round=1,
                    stage="fl",
                    client=0,
                    task="t",
                    model="global",
                    split="local",
                    metric="accuracy",
                    value=0.5,
                    n=4,
                )
            )
            session.add(
                TrainingLoss(
                    run_id=run_id,
                    stage="fl",
                    round=1,
                    client=0,
                    model="global",
                    task="t",
                    loss=1.0,
                    steps=2,
                )
            )
            session.add(
                Replacement(
                    run_id=run_id,
                    round=1,
                    client=0,
                    task="t",
                    global_loss=1.0,
                    personal_loss=0.5,
                    margin=0.0,
                    parameters_copied=3,
                )
            )
            session.add(
                TrainingStepLoss(
                    run_id=run_id,
                    stage="post",
                    round=1,
                    client=0,
                    model="final",
                    step=1,
                    micro_batches=4,
                    term="kd",
                    task="t",
                    value=0.001,
                )
            )
            (settings.runs_dir / str(run_id) / "artifacts").mkdir(parents=True)
        session.commit()

    response = api.client.delete(f"{URL}/{doomed['id']}", headers=api.auth)
    assert response.status_code == 204
    assert api.get(f"{URL}/{doomed['id']}").status_code == 404
    assert api.get(f"/api/v1/runs/{run_ids[0]}").status_code == 404
    with sessions() as session:
        tables = (Run, Metric, TrainingLoss, TrainingStepLoss, Replacement, RunLog)
        for table in (*tables, RunTransition):
            count = session.scalar(
                select(func.count()).select_from(table).where(table.id.in_(run_ids))
                if table is Run
                else select(func.count()).select_from(table).where(table.run_id.in_(run_ids))
            )
            assert count == 0, table.__name__
        assert session.scalar(select(func.count()).select_from(Metric)) == 1  # the other's
        assert session.scalar(select(func.count()).select_from(TrainingStepLoss)) == 1
    assert not any((settings.runs_dir / str(i)).exists() for i in run_ids)
    assert (settings.runs_dir / str(kept["runs"][0]["id"])).exists()
    assert api.client.delete(f"{URL}/{doomed['id']}", headers=api.auth).status_code == 404


def test_an_experiment_with_active_runs_is_not_deleted(api: Api) -> None:
    experiment = api.post(URL, json={"preset": "demo"}).json()
    response = api.client.delete(f"{URL}/{experiment['id']}", headers=api.auth)
    assert response.status_code == 409
    assert "cancel them first" in response.json()["detail"]
    assert api.get(f"{URL}/{experiment['id']}").status_code == 200


def test_presets_are_shown_with_every_field(api: Api, tmp_path: Path) -> None:
    demo = api.get("/api/v1/presets/demo")
    assert demo.status_code == 200
    assert {"algorithm", "rounds", "seed", "backbone", "scenario"} <= set(demo.json())
    assert api.get("/api/v1/presets/nope").status_code == 404
    assert api.get("/api/v1/presets/..%2Fetc").status_code == 404
