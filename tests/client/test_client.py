"""The Python client against a real uvicorn server: every call, errors as ApiError."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load

from backend.client import ApiError, TapflClient
from backend.models import Metric, Replacement, RoundTraffic, Run, TrainingStepLoss
from tap_engine.artifacts import save_final_state
from tests.client.conftest import LiveApi


@pytest.fixture
def admin(live_api: LiveApi) -> TapflClient:
    return TapflClient(live_api.url, live_api.admin_token)


def test_from_env_reads_the_api_url_and_token(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPFL_API_URL", live_api.url)
    monkeypatch.setenv("TAPFL_TOKEN", live_api.admin_token)
    with TapflClient.from_env() as api:
        assert [p["name"] for p in api.presets()] and api.runs()["total"] >= 0
    monkeypatch.setenv("TAPFL_TOKEN", "wrong")
    with TapflClient.from_env() as api, pytest.raises(ApiError) as raised:
        api.runs()
    assert raised.value.status == 401


def test_submit_list_show_cancel_retry(admin: TapflClient) -> None:
    experiment = admin.submit(
        "demo", name="client sweep", overrides={"rounds": 2}, sweep={"seed": [1, 2]}
    )
    assert experiment["owner"] == "admin" and len(experiment["runs"]) == 2
    listed = admin.experiments(q="client sweep")
    assert [e["id"] for e in listed["items"]] == [experiment["id"]]
    run_id = experiment["runs"][0]["id"]
    assert admin.run(run_id)["status"] == "queued"
    assert admin.cancel_run(run_id)["status"] == "cancelled"
    assert admin.retry_run(run_id)["status"] == "queued"
    assert any("retried" in line["message"] for line in admin.all_logs(run_id))
    page = admin.logs(run_id, limit=1)
    assert len(page["items"]) == 1 and page["total"] == len(admin.all_logs(run_id)) > 1


def test_bad_input_and_unknown_ids_raise_api_errors_with_field_paths(admin: TapflClient) -> None:
    with pytest.raises(ApiError) as raised:
        admin.submit("demo", overrides={"rounds": 0})
    assert raised.value.status == 422
    assert raised.value.detail[0]["loc"] == ["body", "overrides", "rounds"]
    assert "HTTP 422" in str(raised.value) and "body.overrides.rounds" in str(raised.value)
    assert list(raised.value.field_errors()) == ["overrides.rounds"]
    with pytest.raises(ApiError) as missing:
        admin.run(987654)
    assert missing.value.status == 404


def test_another_users_run_is_readable_but_not_cancellable(
    admin: TapflClient, live_api: LiveApi
) -> None:
    token = admin.create_user("carol")["token"]
    run_id = admin.submit("demo")["runs"][0]["id"]
    with TapflClient(live_api.url, token) as carol:
        assert carol.run(run_id)["id"] == run_id
        with pytest.raises(ApiError) as raised:
            carol.cancel_run(run_id)
        assert raised.value.status == 403
    assert "carol" in [u["name"] for u in admin.users()]
    admin.revoke_user("carol")
    with TapflClient(live_api.url, token) as carol, pytest.raises(ApiError) as revoked:
        carol.run(run_id)
    assert revoked.value.status == 401


def test_results_metrics_csv_compare_replacements_and_artifacts(
    admin: TapflClient, live_api: LiveApi
) -> None:
    runs = admin.submit("demo", sweep={"seed": [1, 2]})["runs"]
    ids = [r["id"] for r in runs]
    with live_api.sessions()() as session:
        for i, run_id in enumerate(ids):
            session.get(Run, run_id).status = "succeeded"  # type: ignore[union-attr]
            for rnd in (1, 2):
                session.add(
                    Metric(
                        run_id=run_id,
                        round=rnd,
                        stage="fl",
                        client=0,
                        task="t",
                        model="personal",
                        split="local",
                        metric="accuracy",
                        value=0.5 + 0.1 * i + 0.01 * rnd,
                        n=4,
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
                    parameters_copied=7,
                )
            )
        session.commit()
    save_final_state(live_api.home / "runs" / str(ids[0]), 0, {"w": torch.ones(3)}, "tap")

    rows = admin.metrics(ids[0], metric="accuracy")
    assert [(r["round"], r["value"]) for r in rows] == [(1, 0.51), (2, 0.52)]
    assert admin.metrics_csv(ids[0]).decode().splitlines()[0].startswith("round,stage,client")
    assert admin.replacements(ids[1])[0]["parameters_copied"] == 7
    result = admin.compare("accuracy", runs=ids)
    [group] = result["groups"]
    assert group["run_ids"] == ids and group["final"][0]["mean"] == pytest.approx(0.57)
    assert [a["name"] for a in admin.artifacts(ids[0])] == ["config.json", "client-000.safetensors"]
    assert torch.equal(load(admin.artifact(ids[0], "client-000.safetensors"))["w"], torch.ones(3))


def test_steps_reads_every_page_of_a_runs_stage_two(
    admin: TapflClient, live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = admin.submit("demo")["runs"][0]["id"]
    where = {"run_id": run_id, "stage": "post", "round": 2, "client": 0, "model": "final"}
    with live_api.sessions()() as session:
        for step in (1, 2, 3):
            for term, value in (("task", 1.0 / step), ("kd", 0.001 * step)):
                row = {"step": step, "micro_batches": 4, "term": term, "task": "t"}
                session.add(TrainingStepLoss(**where, **row, value=value))
        session.commit()
    monkeypatch.setattr("backend.client.http.PAGE_LIMIT", 2)  # 6 rows: three requests
    rows = admin.steps(run_id)
    assert [(r["step"], r["term"]) for r in rows] == [
        (step, term) for step in (1, 2, 3) for term in ("kd", "task")
    ]
    kd = admin.steps(run_id, term="kd", client=0)
    assert [r["value"] for r in kd] == pytest.approx([0.001, 0.002, 0.003])
    with pytest.raises(ApiError) as missing:
        admin.steps(987654)
    assert missing.value.status == 404


def test_an_experiment_is_read_then_deleted_once_its_runs_are_cancelled(
    admin: TapflClient,
) -> None:
    experiment = admin.submit("demo", name="to delete", time_limit_s=90)
    assert admin.experiment(experiment["id"])["name"] == "to delete"
    with pytest.raises(ApiError) as busy:
        admin.delete_experiment(experiment["id"])
    assert busy.value.status == 409
    admin.cancel_run(experiment["runs"][0]["id"])
    admin.delete_experiment(experiment["id"])
    with pytest.raises(ApiError) as gone:
        admin.experiment(experiment["id"])
    assert gone.value.status == 404


def test_replacements_read_every_page(
    admin: TapflClient, live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = admin.submit("demo")["runs"][0]["id"]
    with live_api.sessions()() as session:
        for rnd in range(1, 6):
            session.add(
                Replacement(
                    run_id=run_id,
                    round=rnd,
                    client=rnd % 2,
                    task="t",
                    global_loss=1.0,
                    personal_loss=0.5,
                    margin=0.0,
                    parameters_copied=rnd,
                )
            )
        session.commit()
    monkeypatch.setattr("backend.client.http.PAGE_LIMIT", 2)  # 5 rows: three requests
    assert [r["round"] for r in admin.replacements(run_id)] == [1, 2, 3, 4, 5]
    assert [r["round"] for r in admin.replacements(run_id, client=1)] == [1, 3, 5]


def test_traffic_reads_every_page_and_filters(
    admin: TapflClient, live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = admin.submit("demo")["runs"][0]["id"]
    with live_api.sessions()() as session:
        for rnd in (1, 2):
            for direction in ("down", "up"):
                row = {"round": rnd, "client": 0, "direction": direction}
                session.add(RoundTraffic(run_id=run_id, **row, bytes=4 * rnd, parameters=rnd))
        session.commit()
    monkeypatch.setattr("backend.client.http.PAGE_LIMIT", 3)  # 4 rows: two requests
    rows = admin.traffic(run_id)
    assert [(r["round"], r["direction"], r["bytes"]) for r in rows] == [
        (1, "down", 4),
        (1, "up", 4),
        (2, "down", 8),
        (2, "up", 8),
    ]
    assert [r["round"] for r in admin.traffic(run_id, direction="up")] == [1, 2]
