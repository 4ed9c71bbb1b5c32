"""``tapfl submit | list | show | cancel | retry | metrics | compare | export | users`` and
``tapfl create-user`` against a real uvicorn server (the CLI runs in-process through typer's
runner, except the tests that run the installed entry point as a subprocess)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from backend.models import Metric, RoundTraffic, Run
from tap_engine.artifacts import save_final_state
from tap_engine.cli import _load_plugins, app
from tests.client.conftest import LiveApi
from tests.conftest import clean_env

if not any(c.name == "submit" for c in app.registered_commands):
    _load_plugins()  # what `tapfl` does at start; once per process


Tapfl = Callable[..., str]


@pytest.fixture
def tapfl(live_api: LiveApi, monkeypatch: pytest.MonkeyPatch) -> Tapfl:
    for name in ("TAPFL_HOME", "TAPFL_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAPFL_API_URL", live_api.url)
    monkeypatch.setenv("TAPFL_TOKEN", live_api.admin_token)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (result.output, result.exception)
        return result.output

    return invoke


def test_catalog_lists_what_the_server_offers(tapfl: Tapfl) -> None:
    out = tapfl("catalog")
    algorithms = out.split("metrics:")[0]
    assert "tap_no_kd" in algorithms and "without distillation" in algorithms
    metrics = {
        line.split()[0]: line.split()[1]
        for line in out.split("metrics:")[1].split("presets:")[0].strip().splitlines()[1:]
    }
    assert metrics["chrf"] == "higher" and metrics["mse"] == "lower"
    presets = out.split("presets:")[1]
    assert any(line.split()[:2] == ["demo", "tap"] for line in presets.splitlines())
    offered = json.loads(tapfl("catalog", "--json"))
    assert [a["name"] for a in offered["algorithms"]][:2] == ["tap", "tap_no_kd"]


def test_submit_list_show_cancel_retry(tapfl: Tapfl) -> None:
    created = json.loads(
        tapfl(
            "submit",
            "demo",
            "--name",
            "cli sweep",
            "--set",
            "rounds=2",
            "--sweep",
            "seed=[5,6]",
            "--json",
        )
    )
    assert [r["seed"] for r in created["runs"]] == [5, 6]
    assert created["runs"][0]["config"]["rounds"] == 2
    run_id = created["runs"][0]["id"]

    listing = tapfl("list", "--search", "cli sweep")
    assert "cli sweep" in listing and f"{run_id}:tap/queued" in listing
    assert "(1 of 1)" in listing
    assert "status: queued" in tapfl("show", str(run_id))
    assert tapfl("cancel", str(run_id)).strip() == f"run {run_id}: cancelled"
    assert tapfl("retry", str(run_id)).strip() == f"run {run_id}: queued"
    shown = json.loads(tapfl("show", str(run_id), "--json"))
    assert [t["to_status"] for t in shown["transitions"]][-2:] == ["cancelled", "queued"]


def test_errors_are_one_line_and_exit_1(tapfl: Tapfl, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tapfl("submit", "demo", "--set", "rounds=0", code=1)
    assert "HTTP 422" in out and "body.overrides.rounds" in out
    assert "HTTP 404" in tapfl("show", "987654", code=1)
    monkeypatch.setenv("TAPFL_TOKEN", "nope")
    assert "HTTP 401" in tapfl("list", code=1)
    monkeypatch.setenv("TAPFL_API_URL", "http://127.0.0.1:9")
    assert "cannot reach the API" in tapfl("list", code=1)


def test_metrics_compare_and_export(tapfl: Tapfl, live_api: LiveApi, tmp_path: Path) -> None:
    runs = json.loads(tapfl("submit", "demo", "--sweep", "seed=[1,2]", "--json"))["runs"]
    ids = [r["id"] for r in runs]
    with live_api.sessions()() as session:
        for i, run_id in enumerate(ids):
            session.get(Run, run_id).status = "succeeded"  # type: ignore[union-attr]
            for client in (0, 1):
                session.add(
                    Metric(
                        run_id=run_id,
                        round=1,
                        stage="fl",
                        client=client,
                        task="t",
                        model="personal",
                        split="local",
                        metric="accuracy",
                        value=0.4 + 0.2 * i,
                        n=4,
                    )
                )
        up = {"round": 1, "client": 0, "direction": "up", "bytes": 2048, "parameters": 512}
        session.add(RoundTraffic(run_id=ids[0], **up))
        session.commit()
    save_final_state(live_api.home / "runs" / str(ids[0]), 1, {"w": torch.zeros(2)}, "tap")

    table = tapfl("metrics", str(ids[1]), "--client", "1")
    assert "accuracy" in table and "0.6000" in table and len(table.strip().splitlines()) == 2
    rows = list(csv.DictReader(io.StringIO(tapfl("metrics", str(ids[0]), "--csv"))))
    assert [(r["client"], r["value"]) for r in rows] == [("0", "0.4"), ("1", "0.4")]

    compared = tapfl("compare", "accuracy", "--runs", f"{ids[0]},{ids[1]}")
    assert "higher is better" in compared and "0.5000 ± 0.1000" in compared
    group = runs[0]["group_id"]
    by_group = json.loads(tapfl("compare", "accuracy", "--group", group, "--json"))
    assert by_group["groups"][0]["run_ids"] == ids

    tapfl("export", str(ids[0]), "-o", str(tmp_path))
    folder = tmp_path / f"run-{ids[0]}"
    assert json.loads((folder / "run.json").read_text())["id"] == ids[0]
    assert (folder / "metrics.csv").read_text().count("\n") == 3
    assert json.loads((folder / "artifacts" / "config.json").read_text())["seed"] == 1
    assert (folder / "artifacts" / "client-001.safetensors").stat().st_size > 0
    assert {p.name for p in folder.iterdir()} == {
        "run.json",
        "metrics.csv",
        "losses.json",
        "steps.json",
        "replacements.json",
        "traffic.json",
        "logs.json",
        "artifacts",
    }
    assert json.loads((folder / "steps.json").read_text()) == []  # no stage 2 rows written
    assert json.loads((folder / "traffic.json").read_text()) == [
        {"round": 1, "client": 0, "direction": "up", "bytes": 2048, "parameters": 512}
    ]


def _installed(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tap_engine.cli", *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_users_are_managed_over_the_api(
    tapfl: Tapfl, live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tapfl("users", "create", "dave").strip().splitlines()[-1]
    listed = tapfl("users", "list")
    assert "dave" in listed and token[:6] + "…" in listed and token not in listed
    assert tapfl("users", "create", "dave", code=1).startswith("error:")  # exists
    monkeypatch.setenv("TAPFL_TOKEN", token)
    assert "HTTP 403" in tapfl("users", "list", code=1)  # dave is no admin
    json.loads(tapfl("list", "--json"))
    monkeypatch.setenv("TAPFL_TOKEN", live_api.admin_token)
    assert tapfl("users", "revoke", "dave").strip() == "revoked dave"
    monkeypatch.setenv("TAPFL_TOKEN", token)
    assert "HTTP 401" in tapfl("list", code=1)


def test_the_server_command_creates_a_user_in_the_database(live_api: LiveApi) -> None:
    created = _installed("create-user", "erin", "--admin", TAPFL_HOME=str(live_api.home))
    assert created.returncode == 0, created.stderr
    assert "created admin user erin" in created.stderr
    token = created.stdout.strip()
    as_erin = _installed("users", "list", TAPFL_API_URL=live_api.url, TAPFL_TOKEN=token)
    assert as_erin.returncode == 0, as_erin.stderr
    assert "erin" in as_erin.stdout
    again = _installed("create-user", "erin", TAPFL_HOME=str(live_api.home))
    assert again.returncode == 1 and "erin" in again.stderr
