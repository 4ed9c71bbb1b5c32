"""A run's replacement events and its artifacts: the resolved config and the final
personalized adapters the engine saved (real safetensors files)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Replacement, Run
from backend.services.events import record_event
from backend.settings import Settings
from tap_engine import events as ev
from tap_engine.artifacts import save_final_state
from tests.backend.conftest import Api, add_run


def test_replacements_come_in_round_order_and_filter_by_client(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        run = add_run(session)
        for rnd, client in ((2, 1), (1, 1), (1, 0)):
            session.add(
                Replacement(
                    run_id=run.id,
                    round=rnd,
                    client=client,
                    task="vqa",
                    global_loss=1.0,
                    personal_loss=0.6,
                    margin=0.05,
                    parameters_copied=128,
                )
            )
        session.commit()
        run_id = run.id
    page = api.get(f"/api/v1/runs/{run_id}/replacements").json()
    assert page["total"] == 3
    assert [(r["round"], r["client"]) for r in page["items"]] == [(1, 0), (1, 1), (2, 1)]
    assert page["items"][0] == {
        "round": 1,
        "client": 0,
        "task": "vqa",
        "global_loss": 1.0,
        "personal_loss": 0.6,
        "margin": 0.05,
        "parameters_copied": 128,
    }
    one = api.get(f"/api/v1/runs/{run_id}/replacements", params={"client": 1}).json()
    assert [r["round"] for r in one["items"]] == [1, 2]
    assert api.get("/api/v1/runs/999/replacements").status_code == 404


def test_traffic_comes_in_round_order_and_filters_by_client_and_direction(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        run = add_run(session)
        for rnd, client, direction in ((2, 0, "up"), (1, 1, "down"), (1, 0, "up"), (1, 0, "down")):
            event = ev.RoundTraffic(
                round=rnd, client=client, direction=direction, bytes=4096, parameters=1024
            )
            record_event(session, run.id, event)
        session.commit()
        run_id = run.id
    url = f"/api/v1/runs/{run_id}/traffic"
    page = api.get(url).json()
    assert page["total"] == 4
    keys = [(r["round"], r["client"], r["direction"]) for r in page["items"]]
    assert keys == [(1, 0, "down"), (1, 0, "up"), (1, 1, "down"), (2, 0, "up")]
    assert page["items"][0] == {
        "round": 1,
        "client": 0,
        "direction": "down",
        "bytes": 4096,
        "parameters": 1024,
    }
    up = api.get(url, params={"client": 0, "direction": "up"}).json()
    assert [r["round"] for r in up["items"]] == [1, 2]
    bad = api.get(url, params={"direction": "sideways"})
    assert bad.status_code == 422 and "direction" in bad.text
    assert api.get("/api/v1/runs/999/traffic").status_code == 404


def test_the_config_and_each_clients_final_adapters_are_listed_and_downloaded(
    api: Api, sessions: sessionmaker[Session], settings: Settings
) -> None:
    with sessions() as session:
        run = add_run(session)
        run_id, config = run.id, run.config
    base = f"/api/v1/runs/{run_id}/artifacts"
    assert [a["name"] for a in api.get(base).json()] == ["config.json"]  # before it finishes

    workdir = settings.runs_dir / str(run_id)
    states = {c: {"lora.A": torch.randn(4, 2) + c, "head.w": torch.arange(3.0)} for c in (0, 1)}
    for client, state in states.items():
        save_final_state(workdir, client, state, "tap")
    (workdir / "artifacts" / "notes.txt").write_text("not an artifact")
    listed = api.get(base).json()
    assert [(a["name"], a["kind"], a["client"]) for a in listed] == [
        ("config.json", "config", None),
        ("client-000.safetensors", "adapter", 0),
        ("client-001.safetensors", "adapter", 1),
    ]
    assert listed[1]["size"] == (workdir / "artifacts" / "client-000.safetensors").stat().st_size

    got = api.get(f"{base}/config.json")
    assert got.status_code == 200 and json.loads(got.content) == config
    adapter = api.get(f"{base}/client-001.safetensors")
    assert adapter.status_code == 200
    assert adapter.headers["content-type"] == "application/octet-stream"
    tensors = load(adapter.content)
    assert set(tensors) == {"lora.A", "head.w"}
    assert torch.equal(tensors["lora.A"], states[1]["lora.A"])


def test_only_listed_artifacts_are_served(
    api: Api, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    (settings.runs_dir / str(run_id) / "artifacts").mkdir(parents=True)
    (settings.runs_dir / str(run_id) / "secret.txt").write_text("x")
    base = f"/api/v1/runs/{run_id}/artifacts"
    for name in ("notes.txt", "..%2Fsecret.txt", "client-9.safetensors", "checkpoints"):
        assert api.get(f"{base}/{name}").status_code == 404, name
    assert api.get("/api/v1/runs/999/artifacts").status_code == 404
    assert api.get("/api/v1/runs/999/artifacts/config.json").status_code == 404


def test_the_worker_recorded_workdir_is_where_artifacts_are_looked_for(
    api: Api, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions() as session:
        run = add_run(session)
        stored = session.get(Run, run.id)
        assert stored is not None
        stored.workdir = str(tmp_path / "elsewhere")
        session.commit()
        run_id = run.id
    save_final_state(tmp_path / "elsewhere", 3, {"w": torch.ones(2)}, "local")
    names = [a["name"] for a in api.get(f"/api/v1/runs/{run_id}/artifacts").json()]
    assert names == ["config.json", "client-003.safetensors"]
